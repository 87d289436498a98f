"""One labelled-data loader (``edgesim.zoo.data.load_labelled``) for ``run --eval`` and
``finetune --data``: whatever a careless or hostile user gives as labelled data is one
``DataError`` line from both commands, exit code 2, no code run from the file, nothing written.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile import run_cli

from edgesim.cli import main
from edgesim.testing import error_line
from edgesim.zoo.sigmab import train

MODEL = "sigmab_r50_c100"          # input 3 x 32 x 32, 100 classes


class _Payload:
    """Unpickling this runs ``os.system`` (touching a marker) — unless nothing is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _huge_npz(path: Path) -> Path:
    """An .npz whose x.npy header claims (2^50, 3, 32, 32) float64: 10.9 PiB... x 3 x 32 x 32,
    in a file of a few hundred bytes."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1125899906842624, 3, 32, 32), }"
    header = header.ljust(118) + "\n"
    body = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", body)
        z.writestr("y.npy", _npy(np.zeros(1, dtype=np.int64)))
    return path


def _npy(a: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each hostile labelled file and a fragment of the line it must give."""
    x = torch.zeros(4, 3, 32, 32)
    out: dict[str, tuple[Path, str]] = {}

    def pt(name: str, obj, expected: str) -> None:
        p = tmp_path / f"{name}.pt"
        torch.save(obj, p)
        out[name] = (p, expected)
    pt("strings", {"x": "four images", "y": [0, 1, 2, 3]}, "holds the inputs as a str")
    pt("none_labels", {"x": x, "y": None}, "holds inputs without labels")
    pt("ragged", {"x": [[0.0, 1.0], [2.0]], "y": [0, 1]}, "holds the inputs as a list")
    pt("string_labels", {"x": x, "y": ["cat", "dog", "cat", "dog"]}, "holds the labels as a list")
    pt("nan_labels", {"x": x, "y": torch.tensor([0.0, float("nan"), 1.0, 2.0])},
       "is not a whole class number")
    pt("too_few_labels", {"x": x, "y": torch.tensor([0, 1])}, "2 labels for 4 inputs")
    pt("nan_inputs", {"x": x.clone().fill_(float("nan")), "y": torch.tensor([0, 1, 2, 3])},
       "input 0 holds NaN or infinite values")
    pt("out_of_range", {"x": x, "y": torch.tensor([0, 1, 2, 100])},
       "label 100 of input 3 is out of range")
    npz = tmp_path / "string_labels.npz"
    np.savez(npz, x=np.zeros((2, 3, 32, 32), np.float32), y=np.array(["a", "b"]))
    out["npz_string_labels"] = (npz, "the labels of dtype <U1")
    out["huge_npz"] = (_huge_npz(tmp_path / "huge.npz"), "huge.npz: cannot read inputs")
    payload = tmp_path / "payload.pt"
    with payload.open("wb") as fh:       # a plain pickle, as torch.save(obj) would not refuse
        pickle.dump({"x": _Payload(tmp_path / "marker"), "y": [0]}, fh)
    out["payload"] = (payload, "payload.pt: cannot read inputs")
    unlabelled = tmp_path / "x.npy"
    np.save(unlabelled, np.zeros((2, 3, 32, 32), np.float32))
    out["unlabelled_npy"] = (unlabelled, "no labels file y.npy beside it")
    obj_npy = tmp_path / "objects.npy"
    np.save(obj_npy, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    out["object_npy"] = (obj_npy, "objects.npy: cannot read inputs")
    return out


CASES = ["strings", "none_labels", "ragged", "string_labels", "nan_labels", "too_few_labels",
         "nan_inputs", "out_of_range", "npz_string_labels", "huge_npz", "payload",
         "unlabelled_npy", "object_npy"]


def test_finetune_reads_labelled_data_with_the_one_loader():
    from edgesim.zoo import data
    assert train.load_labelled is data.load_labelled


@pytest.mark.parametrize("case", CASES)
def test_finetune_and_eval_refuse_bad_labelled_data_in_one_line(tmp_path, capsys, case):
    path, expected = _cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    for cmd in (["finetune", MODEL, "--checkpoint", str(tmp_path / "out.pt"), "--steps", "1"],
                ["run", "npu_small", "--model", MODEL, "--eval"]):
        code = main([*cmd, "--data", str(path)])
        line = error_line(capsys.readouterr().err)
        assert code == 2, line
        assert line.startswith("edgesim: error: "), line
        assert expected in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before     # no out.pt, no marker


@pytest.mark.slow
@pytest.mark.parametrize("case", ["payload", "huge_npz"])
def test_boxed_finetune_refuses_hostile_data(tmp_path, case):
    # the same, as a separate process under an address-space cap: no allocation attempt of
    # the header's size gets through, no code runs
    path, expected = _cases(tmp_path)[case]
    got = run_cli(["finetune", MODEL, "--checkpoint", str(tmp_path / "out.pt"), "--data",
                   str(path)], tmp_path)
    assert got.code == 2
    assert expected in got.error_line()
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "out.pt").exists()


def test_a_folder_whose_files_vanish_is_one_line(tmp_path, capsys):
    # /proc: entries vanish while the cache key's fingerprint walks it; a data folder read as
    # class folders of images, none found
    for cmd in (["finetune", MODEL, "--checkpoint", str(tmp_path / "out.pt")],
                ["run", "npu_small", "--model", MODEL, "--eval"]):
        code = main([*cmd, "--data", "/proc"])
        line = error_line(capsys.readouterr().err)
        assert code == 2, line
        assert line.startswith("edgesim: error: /proc"), line
    assert not (tmp_path / "out.pt").exists()


def test_a_changed_file_changes_the_folder_fingerprint(tmp_path):
    from edgesim import cache
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "a.png").write_bytes(b"x")
    (tmp_path / "0" / "b.png").write_bytes(b"y")
    fp = cache.file_fingerprint(tmp_path)
    (tmp_path / "0" / "b.png").write_bytes(b"yy")
    assert cache.file_fingerprint(tmp_path) != fp          # a changed file changes the key
