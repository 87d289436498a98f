"""Top-1 accuracy in the report: ``run --eval``, ``api.evaluate``, the sweep's ``top1`` column and
``plot pareto --y top1``.

The models here are hand-set so that the expected prediction is a known function of the input:
``channel_net`` predicts the channel with the largest mean (its classifier is the identity on
the per-channel means), so a label set to that channel is right and any other is wrong; the
labels of the test data are chosen so that exactly the inputs whose index is not a multiple of 3
are labelled right. ``two_path_net`` is routed: its router sends an input whose channel-0 mean
is positive to path 1, which predicts the channel with the *smallest* mean (path 0 predicts the
largest); its plain ``forward`` always runs path 0, so a top-1 that used it would differ.
``level_net`` is nested: level 1 predicts the largest channel mean, level 2 the smallest.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from edgesim import api, build
from edgesim.cli import main
from edgesim.errors import DataError, ModelError
from edgesim.request import model_request
from edgesim.testing import stderr_lines
from edgesim.zoo import data as mdata
from edgesim.zoo.registry import REGISTRY, ModelSpec, get_spec

ROOT = Path(__file__).resolve().parent.parent
NPU = str(ROOT / "edgesim" / "hwconfigs" / "npu_small.yaml")
SHAPE = (3, 4, 4)
N = 40
CHANNEL = "test_eval:channel_net"


# --------------------------------------------------------------------------- hand-set models

def _identity_head(sign: float = 1.0) -> nn.Linear:
    fc = nn.Linear(3, 3)
    with torch.no_grad():
        fc.weight.copy_(sign * torch.eye(3))
        fc.bias.zero_()
    return fc


def channel_net() -> nn.Module:
    """logits = the per-channel means: the class is the channel with the largest mean."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), _identity_head())


channel_net.input_shape = SHAPE  # type: ignore[attr-defined]


class PointMean(nn.Module):
    """Point clouds ``(B, 16, 3)``: logits = the mean of each coordinate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = _identity_head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=1))


def point_net() -> nn.Module:
    return PointMean()


point_net.input_shape = (16, 3)  # type: ignore[attr-defined]


class TwoPath(nn.Module):
    """Routed: path 1 (argmin of the channel means) when channel 0's mean is > 0, else path 0
    (argmax). ``forward`` is path 0 for every input (not what is deployed)."""

    num_paths = 2

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.router = nn.Linear(3, 2)
        with torch.no_grad():   # logit 1 - logit 0 = 2 x mean of channel 0
            self.router.weight.copy_(torch.tensor([[-1.0, 0, 0], [1.0, 0, 0]]))
            self.router.bias.zero_()
        self.leaves = nn.ModuleList([_identity_head(1.0), _identity_head(-1.0)])

    def path_names(self) -> list[str]:
        return ["max", "min"]

    def route(self, x: torch.Tensor) -> torch.Tensor:
        return self.router(self.pool(x)).argmax(dim=1)

    def forward_path(self, x: torch.Tensor, i: int) -> torch.Tensor:
        f = self.pool(x)
        self.router(f)
        return self.leaves[i](f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.leaves[0](self.pool(x))


def two_path_net() -> nn.Module:
    return TwoPath()


class Levels(nn.Module):
    """Nested stand-in: level 1 predicts the largest channel mean, level 2 the smallest."""

    levels = 2

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList([_identity_head(1.0), _identity_head(-1.0)])
        self.level = 1

    def set_level(self, k: int) -> None:
        self.level = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[self.level - 1](self.pool(x))


def level_net() -> nn.Module:
    return Levels()


@pytest.fixture
def specs():
    """Register the routed and nested stand-ins for one test."""
    added = {
        "eval_two_path": ModelSpec("eval_two_path", "dense", "test_eval:two_path_net", {},
                                   SHAPE, "routed stand-in", dynamic=True),
        "eval_levels": ModelSpec("eval_levels", "nested", "test_eval:level_net", {}, SHAPE,
                                 "nested stand-in"),
    }
    REGISTRY.update(added)
    yield added
    for name in added:
        REGISTRY.pop(name, None)


# --------------------------------------------------------------------------- labelled data

def _inputs(n: int = N, seed: int = 3) -> torch.Tensor:
    return torch.randn((n, *SHAPE), generator=torch.Generator().manual_seed(seed))


def _labels(pred: torch.Tensor) -> torch.Tensor:
    """``pred`` where the index is not a multiple of 3, a wrong class (pred + 1) where it is."""
    idx = torch.arange(len(pred))
    return torch.where(idx % 3 == 0, (pred + 1) % 3, pred)


def _right(n: int) -> int:
    """Inputs labelled right by ``_labels``: those whose index is not a multiple of 3."""
    return sum(1 for i in range(n) if i % 3)


def _channel_pred(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)).argmax(dim=1)


def _routed_pred(x: torch.Tensor) -> torch.Tensor:
    m = x.mean(dim=(2, 3))
    return torch.where(m[:, 0] > 0, m.argmin(dim=1), m.argmax(dim=1))


@pytest.fixture
def labelled(tmp_path) -> Path:
    x = _inputs()
    path = tmp_path / "labelled.pt"
    torch.save({"x": x, "y": _labels(_channel_pred(x))}, path)
    return path


# --------------------------------------------------------------------------- top-1 by hand

def test_top1_equals_the_hand_count(labelled):
    got = build.evaluate(get_spec(CHANNEL), data=str(labelled))
    # 40 inputs, indices 0, 3, ..., 39 (14 of them) labelled wrong: 26 right
    assert got == {"top1": 26 / 40, "correct": 26, "inputs": 40}
    assert _right(N) == 26


def test_the_first_inputs_only(labelled):
    got = build.evaluate(get_spec(CHANNEL), data=str(labelled), inputs=10)
    assert (got["correct"], got["inputs"]) == (_right(10), 10)   # 1..9 minus 3, 6, 9: 6
    with pytest.raises(DataError, match=r"labelled\.pt: holds 40 labelled inputs, --inputs "
                       "asks for 41"):
        build.evaluate(get_spec(CHANNEL), data=str(labelled), inputs=41)


def test_a_routed_model_runs_each_input_through_its_own_path(tmp_path, specs):
    x = _inputs(seed=5)
    pred = _routed_pred(x)
    assert 0 < int((x.mean(dim=(2, 3))[:, 0] > 0).sum()) < N   # both paths are taken
    torch.save({"x": x, "y": _labels(pred)}, tmp_path / "r.pt")
    got = build.evaluate(specs["eval_two_path"], data=str(tmp_path / "r.pt"))
    assert (got["correct"], got["inputs"]) == (_right(N), N)
    # the plain forward (path 0 for all) would score differently on the same labels
    path0 = int((_channel_pred(x) == _labels(pred)).sum())
    assert path0 != _right(N)


def test_a_nested_model_is_evaluated_at_the_selected_level(tmp_path, specs):
    x = _inputs(seed=7)
    torch.save({"x": x, "y": x.mean(dim=(2, 3)).argmin(dim=1)}, tmp_path / "min.pt")
    at = {k: build.evaluate(specs["eval_levels"], data=str(tmp_path / "min.pt"), level=k)
          for k in (1, 2)}
    assert at[2]["correct"] == N             # level 2 predicts the smallest mean: all right
    assert at[1]["correct"] == 0             # level 1 the largest: never the smallest


def test_npz_npy_pair_and_class_folders_read_the_same_labels(tmp_path):
    x = _inputs(6)
    y = _channel_pred(x)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())
    np.save(tmp_path / "imgs.npy", x.numpy())
    np.save(tmp_path / "imgs_labels.npy", y.numpy().astype(np.float32))   # whole floats
    for name in ("d.npz", "x.npy", "imgs.npy"):
        gx, gy = mdata.load_labelled(tmp_path / name, "image", SHAPE)
        assert torch.equal(gx, x)
        assert gy.tolist() == y.tolist()
    # an image folder: class folders 0/ and 2/ (a numeric name is the class number)
    import matplotlib.image as mpimg
    for cls, value in (("0", 1.0), ("2", 0.0)):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for k in range(2):
            mpimg.imsave(tmp_path / "imgs" / cls / f"{k}.png", np.full((4, 4, 3), value))
    fx, fy = mdata.load_labelled(tmp_path / "imgs", "image", SHAPE)
    assert fx.shape == (4, *SHAPE)
    assert fy.tolist() == [0, 0, 2, 2]
    # the inputs of a labelled file are what --data gives a routed model
    assert torch.equal(mdata.load_inputs(tmp_path / "d.npz", "image", SHAPE), x)
    assert mdata.load_inputs(tmp_path / "imgs", "image", SHAPE).shape == (4, *SHAPE)


def test_point_clouds_from_an_npz(tmp_path):
    x = torch.randn((12, 16, 3), generator=torch.Generator().manual_seed(2))
    y = _labels(x.mean(dim=1).argmax(dim=1))
    np.savez(tmp_path / "pts.npz", inputs=x.numpy(), labels=y.numpy())
    got = build.evaluate(get_spec("test_eval:point_net"), data=str(tmp_path / "pts.npz"))
    assert (got["correct"], got["inputs"]) == (_right(12), 12)   # 12 minus 0, 3, 6, 9: 8


# --------------------------------------------------------------------------- bad labelled data

def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    x = _inputs(4)
    cases = []

    def pt(name: str, obj, expected: str) -> None:
        torch.save(obj, tmp_path / name)
        cases.append((tmp_path / name, expected))

    pt("short.pt", {"x": x, "y": torch.tensor([0, 1, 2])}, "3 labels for 4 inputs")
    pt("range.pt", {"x": x, "y": torch.tensor([0, 1, 2, 7])},
       r"label 7 of input 3 is out of range; expected classes 0\.\.2")
    pt("neg.pt", {"x": x, "y": torch.tensor([0, -1, 2, 1])}, "label -1 of input 1 is negative")
    pt("frac.pt", {"x": x, "y": torch.tensor([0.0, 0.5, 1.0, 2.0])}, "not a whole class")
    pt("nolabels.pt", x, "holds inputs without labels")
    pt("shape.pt", {"x": torch.zeros(4, 1, 4, 4), "y": torch.zeros(4, dtype=torch.long)},
       r"expected \(n, 3, 4, 4\)")
    pt("keys.pt", {"a": x}, r"expected \{'x': inputs")
    pt("nan.pt", {"x": torch.full((4, *SHAPE), float("nan")), "y": torch.zeros(4)},
       "input 0 holds NaN")
    np.save(tmp_path / "alone.npy", x.numpy())
    cases.append((tmp_path / "alone.npy", "no labels file alone_labels.npy"))
    np.savez(tmp_path / "obj.npz", x=np.array([object()], dtype=object))
    cases.append((tmp_path / "obj.npz", "obj.npz"))
    flat = tmp_path / "flat"
    flat.mkdir()
    import matplotlib.image as mpimg
    mpimg.imsave(flat / "a.png", np.zeros((4, 4, 3)))
    cases.append((flat, "no class sub-folders"))
    return cases


def test_bad_label_files_are_one_line_data_errors(tmp_path):
    for path, expected in _bad_files(tmp_path):
        with pytest.raises(DataError, match=expected) as info:
            build.evaluate(get_spec(CHANNEL), data=str(path))
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)


def test_bad_label_files_exit_2_on_the_command_line(tmp_path, capsys):
    for path, _expected in _bad_files(tmp_path)[:4]:
        assert main(["run", NPU, "--model", CHANNEL, "--data", str(path), "--eval"]) == 2
        raw = capsys.readouterr().err
        (err,) = stderr_lines(raw)
        assert "Traceback" not in raw
        assert str(path) in err


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_in_the_data_file_is_never_run(tmp_path, capsys):
    import pickle

    class Boom:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "ran",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Boom(), "y": [0]}))
    assert main(["run", NPU, "--model", CHANNEL, "--data", str(tmp_path / "evil.pt"),
                 "--eval"]) == 2
    assert not (tmp_path / "ran").exists()
    assert "evil.pt" in capsys.readouterr().err


def test_eval_without_data_is_one_line(capsys):
    assert main(["run", NPU, "--model", CHANNEL, "--eval"]) == 2
    assert "--eval needs --data" in capsys.readouterr().err


def test_a_model_whose_output_is_not_logits_is_named(tmp_path):
    spec = ModelSpec("eval_pool", "dense", "torch.nn:Identity", {}, SHAPE)
    torch.save({"x": _inputs(2), "y": torch.tensor([0, 1])}, tmp_path / "d.pt")
    with pytest.raises(ModelError, match=r"eval_pool: the model gives \(2, 3, 4, 4\)"):
        build.evaluate(spec, data=str(tmp_path / "d.pt"))


# --------------------------------------------------------------------------- the report

def test_summary_and_json_carry_top1_and_the_count(labelled, capsys):
    assert main(["run", NPU, "--model", CHANNEL, "--data", str(labelled), "--eval"]) == 0
    lines = capsys.readouterr().out.splitlines()
    last = " ".join(line[2:] for line in lines[lines.index("", lines.index("") + 1) + 1:])
    assert last == f"top-1 65.00 % (26 of 40 inputs of {labelled} correct)"   # wrapped at 100
    # the stream is the data: 40 inference rows after the column header
    start = next(i for i, line in enumerate(lines) if line.startswith("input"))
    table = lines[start + 1:lines.index("")]
    assert [int(r.split()[0]) for r in table] == list(range(40))
    assert main(["run", NPU, "--model", CHANNEL, "--data", str(labelled), "--eval",
                 "--inputs", "10", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accuracy"] == {"top1": 0.6, "correct": 6, "inputs": 10, "data": str(labelled)}
    assert len(doc["inferences"]) == 10
    assert doc["run"]["inputs"] == 10


def test_a_repeated_eval_is_answered_from_the_cache(labelled, monkeypatch):
    first = api.evaluate(CHANNEL, data=str(labelled))
    api._EVALS.clear()                     # not this process's memo: the disk entry

    def boom(*_a, **_k):
        raise AssertionError("evaluated again")
    monkeypatch.setattr(build, "evaluate", boom)
    t0 = time.perf_counter()
    again = api.evaluate(CHANNEL, data=str(labelled))
    assert again == first
    assert time.perf_counter() - t0 < 1.0
    # another seed, data or input count is another entry
    with pytest.raises(AssertionError, match="evaluated again"):
        api.evaluate(CHANNEL, data=str(labelled), inputs=5)


def test_a_routed_run_routes_the_labelled_inputs(tmp_path, specs):
    x = _inputs(seed=5)
    torch.save({"x": x, "y": _labels(_routed_pred(x))}, tmp_path / "r.pt")
    r = api.run(NPU, model_request("eval_two_path", data=str(tmp_path / "r.pt"), evaluate=True))
    assert r.accuracy["correct"] == _right(N)
    assert r.accuracy["inputs"] == N
    routed = (x.mean(dim=(2, 3))[:, 0] > 0).long().tolist()
    assert r.inferences["path"].tolist() == [["max", "min"][i] for i in routed]


def test_a_registry_model_states_the_chance_level():
    """Registry models have seeded random weights; the report line says so."""
    from edgesim.cli._common import accuracy_line
    line = accuracy_line({"top1": 0.1, "correct": 1, "inputs": 10, "data": "d.pt"},
                         random_weights=True)
    assert line.startswith("# top-1 10.00 % (1 of 10 inputs of d.pt correct)")
    assert "expect chance level" in line


# --------------------------------------------------------------------------- sweep and plot

def test_sweep_has_a_top1_column_and_pareto_takes_it(labelled, tmp_path, specs):
    import sqlite3

    from edgesim.plot import plot
    from edgesim.sweep import sweep
    x = _inputs()
    torch.save({"x": x, "y": _labels(_routed_pred(x))}, tmp_path / "r.pt")
    out = tmp_path / "sw"
    models = [model_request(m, data=str(tmp_path / "r.pt"), evaluate=True)
              for m in (CHANNEL, "eval_two_path")]
    df = sweep(NPU, models, ["sram.size=4KiB,64KiB"], inputs=20, out_dir=out,
               executor="serial")
    # channel_net is right where the routed prediction is the largest mean, by hand:
    want = int((_channel_pred(x[:20]) == _labels(_routed_pred(x))[:20]).sum()) / 20
    assert df["top1"].tolist() == [want, _right(20) / 20] * 2
    assert list(df.columns).index("top1") == list(df.columns).index("inputs") + 1
    csv = (out / "sweep.csv").read_text().splitlines()
    assert "top1" in csv[0].split(",")
    with sqlite3.connect(out / "results.sqlite") as db:
        stored = [json.loads(r)["top1"] for (r,) in db.execute("SELECT row FROM results")]
    assert sorted(stored) == sorted(df["top1"].tolist())
    paths = plot("pareto", out, x="weight_dram_bytes", y="top1",   # weight_dram_bytes_steady
                 out=tmp_path / "acc_pareto")
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert paths[0].stat().st_size > 10_000
    svg = paths[1].read_text()
    assert "steady-state off-chip weight bytes per inference (B)" in svg
    assert "top-1 accuracy (%)" in svg
    assert "upper-left is better" in svg


def test_sweep_command_line_eval_and_a_sweep_without_top1(labelled, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["sweep", NPU, "--model", CHANNEL, "--set", "sram.size=4KiB", "--executor",
                 "serial", "--out", str(out), "--data", str(labelled), "--eval"]) == 0
    head, row = (out / "sweep.csv").read_text().splitlines()[:2]
    cols = head.split(",")
    assert float(row.split(",")[cols.index("top1")]) == 26 / 40
    assert int(row.split(",")[cols.index("inputs")]) == 40
    plain = tmp_path / "plain"
    assert main(["sweep", NPU, "--model", CHANNEL, "--set", "sram.size=4KiB", "--executor",
                 "serial", "--out", str(plain), "--inputs", "2"]) == 0
    capsys.readouterr()
    assert main(["plot", "pareto", str(plain), "--y", "top1"]) == 2
    err = capsys.readouterr().err
    assert "'top1' is not in the table; run the sweep with --data LABELLED --eval" in err


def test_an_evaluated_sweep_is_byte_identical_when_rerun_afresh(labelled, tmp_path):
    from edgesim.sweep import sweep
    models = [model_request(CHANNEL, data=str(labelled), evaluate=True)]
    for out in ("a", "b"):
        api._EVALS.clear()
        sweep(NPU, models, ["sram.size=4KiB,8KiB"], out_dir=tmp_path / out, executor="serial")
    assert (tmp_path / "a" / "sweep.csv").read_bytes() == \
        (tmp_path / "b" / "sweep.csv").read_bytes()
    # a rerun into the same folder resumes: every row is found, top1 included
    again = sweep(NPU, models, ["sram.size=4KiB,8KiB"], out_dir=tmp_path / "a",
                  executor="serial")
    assert again["top1"].tolist() == [26 / 40] * 2


def test_eval_refuses_a_traced_workload_and_a_tampered_top1(labelled, tmp_path):
    import sqlite3

    from edgesim.sweep import sweep
    from edgesim.sweep.store import StoreError
    out = tmp_path / "s"
    models = [model_request(CHANNEL, data=str(labelled), evaluate=True)]
    sweep(NPU, models, out_dir=out, executor="serial")
    with sqlite3.connect(out / "results.sqlite") as db:
        (key, row), = db.execute("SELECT key, row FROM results")
        db.execute("UPDATE results SET row = ? WHERE key = ?",
                   (row.replace('"top1": 0.65', '"top1": 1.5'), key))
    with pytest.raises(StoreError, match=r"top1 = 1\.5, expected a fraction 0\.\.1"):
        sweep(NPU, models, out_dir=out, executor="serial")
