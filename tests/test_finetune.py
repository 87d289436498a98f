"""`edgesim finetune`: soft routing on labelled data, a checkpoint that `run --weights` reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgesim.cli import main
from edgesim.testing import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
NPU = str(ROOT / "edgesim" / "hwconfigs" / "npu_small.yaml")

pytestmark = pytest.mark.slow


def test_finetune_saves_a_tree_that_run_reloads(tmp_path, capsys):
    # a small labelled set in the documented .pt layout
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "train.pt"
    torch.save({"inputs": torch.randn(8, 3, 32, 32, generator=g),
                "labels": torch.randint(0, 100, (8,), generator=g)}, data)
    ckpt = tmp_path / "tree.pt"
    assert main(["finetune", "sigmab_r50_c100", "--data", str(data), "--checkpoint", str(ckpt),
                 "--steps", "2", "--batch", "4"]) == 0
    captured = capsys.readouterr()
    assert "2 steps" in captured.out
    assert "routing entropy 0.000 bits" in captured.out     # the last step is hard
    assert "edgesim: step 1 T=1 loss" in captured.err       # progress on stderr
    assert "entropy" in captured.err
    assert ckpt.is_file()

    from edgesim.zoo.sigmab import load_tree
    tree = load_tree(ckpt)
    assert tree.num_paths == 4

    assert main(["run", NPU, "--model", "sigmab_r50_c100", "--weights", str(ckpt),
                 "--inputs", "3", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 4


def test_finetune_rejects_bad_data_and_dense_models(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"inputs": torch.zeros(2, 3, 8, 8), "labels": torch.zeros(2)}, bad)
    assert main(["finetune", "sigmab_r50_c100", "--data", str(bad),
                 "--checkpoint", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.pt" in err
    assert len(err.splitlines()) == 1
    assert main(["finetune", "dense_r50_c100", "--checkpoint", str(tmp_path / "t.pt")]) == 2
    assert "not a routed tree" in capsys.readouterr().err


def test_run_routes_the_users_data(tmp_path, capsys):
    # a .npy of 5 CIFAR-size images: one row per input, each with the path its router chose
    import numpy as np
    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    data = tmp_path / "inputs.npy"
    np.save(data, x)
    assert main(["run", NPU, "--model", "sigmab_r50_c100", "--data", str(data), "--inputs", "5",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 5
    from edgesim.build import built_model
    from edgesim.zoo.registry import get_spec
    tree = built_model(get_spec("sigmab_r50_c100"), None, 0)
    names = tree.path_names()
    with torch.no_grad():
        expected = [names[i] for i in tree.route(torch.from_numpy(x)).tolist()]
    assert [r.split(",")[1] for r in rows] == expected
    assert main(["run", NPU, "--model", "sigmab_r50_c100", "--data", str(data),
                 "--inputs", "9"]) == 2
    assert "inputs.npy" in capsys.readouterr().err


def test_a_dense_checkpoint_becomes_the_tree_in_run_and_finetune(tmp_path, capsys):
    # a user's dense CIFAR ResNet-50 (seed 3, not the zoo's seed 0) and 8 labelled inputs
    from edgesim.zoo.resnet import resnet50_cifar
    from edgesim.zoo.sigmab import load_tree

    torch.manual_seed(3)
    dense = resnet50_cifar(100).eval()
    torch.save(dense.state_dict(), tmp_path / "dense.pt")
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "train.pt"
    torch.save({"inputs": torch.randn(8, 3, 32, 32, generator=g),
                "labels": torch.randint(0, 100, (8,), generator=g)}, data)
    ckpt = tmp_path / "tree.pt"
    assert main(["finetune", "sigmab_r50_c100", "--weights", str(tmp_path / "dense.pt"),
                 "--data", str(data), "--checkpoint", str(ckpt), "--steps", "1",
                 "--batch", "8", "--lr", "1e-12"]) == 0
    capsys.readouterr()
    tree = load_tree(ckpt)
    # calibrated on the 8 training inputs; the backbone is the user's
    assert tree.config["nodes"]["root"]["calibration"] == 8
    assert torch.allclose(tree.backbone["stem"].conv1.weight, dense.conv1.weight)
    n = sum(p.numel() for p in dense.parameters())
    assert abs(tree.param_counts()["total"] - n) <= 0.10 * n
    assert main(["run", NPU, "--model", "sigmab_r50_c100", "--weights",
                 str(tmp_path / "dense.pt"), "--data", str(data), "--inputs", "8",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 9
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    assert main(["run", NPU, "--model", "sigmab_r50_c100", "--weights",
                 str(tmp_path / "bad.pt")]) == 2
    err = stderr_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert "bad.pt" in err[0]
    assert "conv1.weight" in err[0]
