"""`finetune` checks its outputs and inputs first; training stops on NaN; an interrupted run
keeps its last good checkpoint. No real tree is built: a counting builder and a tiny stand-in
module take its place, so these tests are fast."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import edgesim.zoo.sigmab.checkpoint as ckpt_mod
from edgesim.cli import main
from edgesim.errors import DataError, EdgesimError, ModelError
from edgesim.zoo.sigmab import train
from edgesim.zoo.sigmab.tree import Soft

MODEL = "sigmab_r50_c100"          # 100 classes, inputs (3, 32, 32)


class TinyTree(nn.Module):
    """What ``fine_tune`` uses of a tree: parameters and ``_soft(x) -> (logits, gates)``.

    ``fail_at``: the step (1, 2, ...) whose forward raises ``fail_with``."""

    def __init__(self, classes: int = 100, fail_at: int | None = None,
                 fail_with: BaseException | None = None):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, classes)
        self.calls = 0
        self.fail_at, self.fail_with = fail_at, fail_with

    def _soft(self, x, temperature=1.0, hard=False, track=0.0):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.fail_with
        return Soft(self.fc(x.flatten(1)), [], torch.ones(x.shape[0], 1))


@pytest.fixture
def builds(monkeypatch):
    """Calls of the builder and of ``fine_tune``; a save that writes the state dict."""
    record = {"built": 0, "trained": 0}
    real_fine_tune = train.fine_tune

    def counting_fine_tune(*args, **kwargs):
        record["trained"] += 1
        return real_fine_tune(*args, **kwargs)

    monkeypatch.setattr(train, "fine_tune", counting_fine_tune)
    monkeypatch.setattr(ckpt_mod, "save_tree", lambda tree, path: torch.save(
        {k: v.clone() for k, v in tree.state_dict().items()}, path))
    return record


def _builder(record, tree=None):
    def build(spec, weights, seed, data):
        record["built"] += 1
        return tree if tree is not None else TinyTree()
    return build


def _data(tmp_path, n=8, labels=None, inputs=None) -> Path:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g) if inputs is None else inputs
    y = torch.randint(0, 100, (n,), generator=g) if labels is None else labels
    path = tmp_path / "train.pt"
    torch.save({"inputs": x, "labels": y}, path)
    return path


def _finetune(tmp_path, record, checkpoint, tree=None, **kwargs):
    if "data" not in kwargs:
        kwargs["data"] = str(_data(tmp_path))
    return train.finetune(MODEL, checkpoint=str(checkpoint), builder=_builder(record, tree),
                          batch=4, **kwargs)


# --------------------------------------------------------------------------- before any work

@pytest.mark.parametrize(("where", "message"), [
    ("missing/tree.pt", "folder {parent} does not exist; create it first"),
    ("afile/tree.pt", "folder {parent} is not a folder"),
    ("adir", "is a folder; expected a regular file or a new file name"),
])
def test_bad_checkpoint_path_is_refused_before_training(tmp_path, builds, where, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    target = tmp_path / where
    with pytest.raises(EdgesimError) as info:
        _finetune(tmp_path, builds, target)
    assert str(info.value).startswith(f"--checkpoint {target}: ")
    assert message.format(parent=target.parent) in str(info.value)
    assert builds == {"built": 0, "trained": 0}
    assert not (tmp_path / "missing").exists()          # nothing created


def test_unwritable_checkpoint_folder_is_refused_before_training(tmp_path, builds,
                                                                 monkeypatch):
    # root may write anywhere, so the folder's refusal is simulated where the probe writes
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(train.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(ModelError, match=r"cannot write in .* \(Permission denied\)"):
        _finetune(tmp_path, builds, tmp_path / "tree.pt")
    assert builds == {"built": 0, "trained": 0}


@pytest.mark.parametrize(("flag", "kwargs"), [
    ("--batch 0", {"batch": 0}), ("--epochs -1", {"epochs": -1}), ("--epochs 0", {"epochs": 0}),
    ("--steps 0", {"steps": 0}), ("--lr nan", {"lr": float("nan")}), ("--lr -0.1", {"lr": -0.1}),
    ("--samples 0", {"samples": 0}),
])
def test_bad_numbers_are_refused_before_training(tmp_path, builds, flag, kwargs):
    args = {"batch": 4, **kwargs}
    with pytest.raises(ModelError, match=f"^{flag}: expected"):
        train.finetune(MODEL, checkpoint=str(tmp_path / "t.pt"), builder=_builder(builds),
                       **args)
    assert builds == {"built": 0, "trained": 0}


def test_cli_batch_zero_is_one_line(tmp_path, capsys):
    assert main(["finetune", MODEL, "--checkpoint", str(tmp_path / "t.pt"), "--batch", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "argument --batch: expected an integer in 1..1_024, got '0'" in err


def test_missing_data_and_weights_folder_refused_before_building(tmp_path, builds):
    with pytest.raises(DataError, match=r"--data .*nope\.pt: no such file or folder"):
        _finetune(tmp_path, builds, tmp_path / "t.pt", data=str(tmp_path / "nope.pt"))
    with pytest.raises(ModelError, match=r"--weights .*: is a folder"):
        _finetune(tmp_path, builds, tmp_path / "t.pt", weights=str(tmp_path))
    assert builds == {"built": 0, "trained": 0}


# --------------------------------------------------------------------------- the data

@pytest.mark.parametrize("bad", [100, -1, 1000])
def test_out_of_range_label_names_the_file_and_label(tmp_path, builds, bad):
    labels = torch.zeros(8, dtype=torch.long)
    labels[5] = bad
    data = _data(tmp_path, labels=labels)
    with pytest.raises(DataError) as info:
        _finetune(tmp_path, builds, tmp_path / "t.pt", data=str(data))
    text = str(info.value)
    assert text.startswith(f"{data}: label {bad} of input 5 is ")   # out of range / negative
    if bad >= 0:
        assert "expected classes 0..99" in text
    assert builds == {"built": 0, "trained": 0}
    assert not (tmp_path / "t.pt").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_stop_before_training(tmp_path, builds, value):
    x = torch.randn(8, 3, 32, 32)
    x[3, 1, 2, 2] = value
    data = _data(tmp_path, inputs=x)
    with pytest.raises(DataError, match=r"train\.pt: input 3 holds NaN or infinite values"):
        _finetune(tmp_path, builds, tmp_path / "t.pt", data=str(data))
    assert builds["trained"] == 0
    assert not (tmp_path / "t.pt").exists()


def test_fractional_labels_are_refused(tmp_path, builds):
    data = _data(tmp_path, labels=torch.full((8,), 0.5))
    with pytest.raises(DataError, match=r"label 0\.5 of input 0 is not a whole class number"):
        _finetune(tmp_path, builds, tmp_path / "t.pt", data=str(data))


def test_cli_out_of_range_label_is_one_line(tmp_path, capsys):
    data = _data(tmp_path, labels=torch.full((8,), 100))
    assert main(["finetune", MODEL, "--data", str(data),
                 "--checkpoint", str(tmp_path / "t.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{data}: label 100 of input 0 is out of range" in err


# --------------------------------------------------------------------------- training

def test_nan_loss_stops_training_before_a_weight_changes(tmp_path, builds):
    tree = TinyTree()
    with torch.no_grad():
        tree.fc.weight[0, 0] = float("nan")
    before = tree.fc.bias.clone()
    with pytest.raises(ModelError, match=r"training stopped at step 1 \(epoch 1\): the loss is "
                                         r"nan"):
        _finetune(tmp_path, builds, tmp_path / "t.pt", tree=tree)
    assert torch.equal(tree.fc.bias, before)
    assert not (tmp_path / "t.pt").exists()              # no NaN checkpoint


def test_checkpoint_is_saved_after_every_epoch(tmp_path, builds):
    # 8 samples, batch 4: 2 steps per epoch
    out = tmp_path / "t.pt"
    losses = _finetune(tmp_path, builds, out, epochs=3)
    assert len(losses) == 6
    assert out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt", "train.pt"]   # no temp files


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), RuntimeError("disk on fire")])
def test_interrupted_run_keeps_the_last_epochs_checkpoint(tmp_path, builds, failure):
    out = tmp_path / "t.pt"
    # step 4 is the second step of epoch 2: epoch 1's tree is the last good one
    tree = TinyTree(fail_at=4, fail_with=failure)
    after_epoch_1 = {}
    real = ckpt_mod.save_tree

    def save(t, path):
        after_epoch_1.update({k: v.clone() for k, v in t.state_dict().items()})
        real(t, path)

    ckpt_mod.save_tree = save
    try:
        with pytest.raises(type(failure)):
            _finetune(tmp_path, builds, out, tree=tree, epochs=3)
    finally:
        ckpt_mod.save_tree = real
    saved = torch.load(out, weights_only=True)
    assert set(saved) == set(after_epoch_1)
    for k, v in saved.items():
        assert torch.equal(v, after_epoch_1[k]), k
    assert not torch.equal(saved["fc.weight"], tree.fc.weight.detach())  # step 3 moved it on
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt", "train.pt"]


def test_an_older_checkpoint_is_replaced_whole_or_not_at_all(tmp_path, builds, monkeypatch):
    out = tmp_path / "t.pt"
    out.write_bytes(b"previous checkpoint")

    def half_written(tree, path):
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "save_tree", half_written)
    with pytest.raises(ModelError, match=r"--checkpoint .*t\.pt: cannot write \(No space left"):
        _finetune(tmp_path, builds, out)
    assert out.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt", "train.pt"]
