"""The trace cache: entries round-trip exactly, hold no code, and live in a private folder."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgesim import cache
from edgesim.cli import main
from edgesim.errors import CacheError
from edgesim.testing import tiny_workload
from edgesim.workload import LayerOp, WeightBlock, Workload
from edgesim.workload import Path as IRPath

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EDGESIM_CACHE", str(folder))
    return folder


def _routed() -> Workload:
    """Two paths sharing one backbone op object, each gated by a router; every kind of value
    the IR holds (str, int, float, bool, None, tuple, list, dict, NumPy scalar and array)."""
    blocks = [WeightBlock("stem.weight", 64, 40, 8, "bitmap", 50, 64,
                          {"scale": 0.125, "grid": (3, 3), "tags": ["a", "b"]}),
              WeightBlock("router.weight", 16, 16, 8, "dense", 16, 16, rule="2:4"),
              WeightBlock("leaf0.weight", 32, 32, 4, "dense", 16, 16),
              WeightBlock("leaf1.weight", 32, 8, 1, "signed_binary", 6, 4,
                          {"sign": -1, "nan": float("nan"), "n": np.int64(7)})]
    stem = LayerOp("stem", "conv", ("stem.weight",), 48, 64, 112, 640, 400, "int8",
                   (("N", 1), ("K", 4), ("C", 3), ("R", 1), ("S", 1), ("P", 4), ("Q", 4)),
                   {"fused_with": "relu", "opt": None}, fused=True)
    router = LayerOp("router", "router", ("router.weight",), 64, 2, 66, 128, 128, "int8",
                     (("M", 1), ("N", 2), ("K", 64)), router="tree.router")
    leaves = [LayerOp(f"leaf{i}", "linear", (f"leaf{i}.weight",), 64, 10, 74, 320, 320,
                      "int4", (("M", 1), ("N", 10), ("K", 32)), gate="tree.router")
              for i in range(2)]
    paths = tuple(IRPath(f"p{i}", (stem, router, leaves[i]), {"leaf": i}) for i in range(2))
    return Workload("toy_tree", "sigmab", {b.id: b for b in blocks}, paths,
                    np.array([0, 1, 1, 0, 1], dtype=np.int32),
                    {"precision": "int8", "input": {"inputs": 5, "seed": 0, "data": None},
                     "levels": (1, 2), "freqs": np.array([0.4, 0.6])})


def _same(a, b) -> None:
    """Equal values of equal types, field by field, down the IR."""
    assert type(a) is type(b), (a, b)
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name))
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


@pytest.mark.parametrize("make", [lambda: tiny_workload(inputs=3), _routed])
def test_workload_round_trips_with_every_field_and_the_same_digest(private_cache, make):
    w = make()
    cache.save("workload", "k", w)
    back = cache.load("workload", "k")
    _same(w, back)
    assert back.digest() == w.digest()


def test_shared_objects_stay_shared(private_cache):
    # the backbone op is one object in both paths; after a round trip it still is
    w = _routed()
    cache.save("workload", "k", w)
    back = cache.load("workload", "k")
    assert back.paths[0].ops[0] is back.paths[1].ops[0]
    assert back.paths[0].ops[2] is not back.paths[1].ops[2]


def test_a_traced_model_loads_with_its_digest(private_cache):
    from edgesim import api
    fresh = api.workload("usermodels:tiny_net", use_cache=False)
    api.workload("usermodels:tiny_net")           # traces and stores
    cached = api.workload("usermodels:tiny_net")  # loads
    _same(fresh, cached)
    assert cached.digest() == fresh.digest()


def test_a_routing_sequence_round_trips(private_cache):
    seq = np.array([3, 1, 4, 1, 5], dtype=np.int32)
    cache.save("route", "r", seq)
    back = cache.load("route", "r")
    assert back.dtype == np.int32
    assert back.tolist() == [3, 1, 4, 1, 5]


# --------------------------------------------------------------------------- hostile entries

class _Plant:
    """Unpickling this creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _entry(kind: str, key: str) -> Path:
    return cache.cache_dir() / kind / f"{key}.npz"


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _header(kind: str, key: str) -> dict:
    return cache._header(kind, key)


def test_a_planted_pickle_is_a_miss(private_cache, tmp_path):
    marker = tmp_path / "pwned"
    p = _entry("workload", "k")
    p.parent.mkdir(parents=True)
    p.write_bytes(pickle.dumps(_Plant(marker)))
    assert cache.load("workload", "k") is None
    assert not marker.exists()


@pytest.mark.parametrize("value", [
    {"py/reduce": [{"py/function": "pathlib.Path.touch"}, {"py/tuple": ["MARKER"]}]},
    {"@o": "pathlib.Path", "v": ["MARKER"]},
    {"@o": "os:system", "v": ["touch MARKER"]},
    {"@o": "Workload", "v": {"__reduce__": "touch MARKER"}},
    {"@o": "Workload", "v": ["touch MARKER"]},
    {"__reduce__": ["os.system", ["touch MARKER"]]},
])
def test_a_planted_json_payload_is_a_miss(private_cache, tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    text = json.dumps({"header": _header("workload", "k"), "arrays": 0, "value": value})
    _zip(_entry("workload", "k"), {"doc.json": text.replace("MARKER", "pwned").encode()})
    assert cache.load("workload", "k") is None
    assert not (tmp_path / "pwned").exists()


def test_an_array_holding_a_pickle_is_a_miss(private_cache, tmp_path):
    marker = tmp_path / "pwned"
    buf = io.BytesIO()
    np.save(buf, np.array([_Plant(marker)], dtype=object), allow_pickle=True)
    doc = json.dumps({"header": _header("route", "r"), "arrays": 1, "value": {"@a": 0}})
    _zip(_entry("route", "r"), {"doc.json": doc.encode(), "a0.npy": buf.getvalue()})
    assert cache.load("route", "r") is None
    assert not marker.exists()


def test_an_array_header_claiming_a_huge_shape_is_a_miss(private_cache):
    # 2**40 int64s (8 TiB) announced, 8 bytes present: refused before anything is allocated
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<i8", "fortran_order": False, "shape": (2**40,)})
    doc = json.dumps({"header": _header("route", "r"), "arrays": 1, "value": {"@a": 0}})
    _zip(_entry("route", "r"), {"doc.json": doc.encode(),
                                "a0.npy": buf.getvalue() + b"\0" * 8})
    assert cache.load("route", "r") is None


def test_truncated_foreign_and_stale_entries_are_misses(private_cache, monkeypatch):
    cache.save("workload", "k", tiny_workload())
    good = _entry("workload", "k").read_bytes()
    _entry("workload", "cut").write_bytes(good[: len(good) // 2])
    assert cache.load("workload", "cut") is None
    _entry("workload", "other").write_bytes(good)    # a valid entry under another key
    assert cache.load("workload", "other") is None
    monkeypatch.setattr(cache, "FORMAT_VERSION", cache.FORMAT_VERSION + 1)
    assert cache.load("workload", "k") is None      # written by another format version


def test_a_poisoned_cache_is_rebuilt_end_to_end(private_cache, tmp_path):
    # every entry of a real run replaced by a hostile pickle: the run rebuilds, no marker
    from edgesim import api
    marker = tmp_path / "pwned"
    before = api.workload("usermodels:tiny_net").digest()
    entries = [p for p in private_cache.rglob("*") if p.is_file()]
    assert entries
    for p in entries:
        p.write_bytes(pickle.dumps(_Plant(marker)))
    assert api.workload("usermodels:tiny_net").digest() == before
    assert not marker.exists()
    assert cache.load("workload", entries[0].stem) is not None  # the rebuilt entry was stored


# --------------------------------------------------------------------------- the folder

def test_the_folder_is_created_private(private_cache):
    cache.save("route", "r", np.zeros(2, dtype=np.int32))
    assert private_cache.stat().st_mode & 0o777 == 0o700
    assert (private_cache / "route").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_folder_others_can_write_is_refused(private_cache, mode):
    private_cache.mkdir()
    private_cache.chmod(mode)
    with pytest.raises(CacheError, match=f"{private_cache}.*mode {mode:#o}"):
        cache.load("workload", "k")


def test_the_cli_refuses_a_world_writable_cache_in_one_line(private_cache, capsys):
    private_cache.mkdir()
    private_cache.chmod(0o777)
    assert main(["run", "npu_small", "--model", "usermodels:tiny_net"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("edgesim: error: cache folder")
    assert str(private_cache) in err
    assert "0o777" in err


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused(private_cache):
    private_cache.mkdir(mode=0o700)
    os.chown(private_cache, 65534, 65534)
    with pytest.raises(CacheError, match="another user"):
        cache.cache_dir()


def test_a_user_model_edited_in_place_is_traced_afresh(private_cache, tmp_path, monkeypatch):
    # the same factory name, its module's source changed: a new key, a new trace (8 -> 16
    # channels: the conv's weight block grows from 3*8*9 to 3*16*9 elements)
    import importlib
    import sys

    from edgesim import api
    src = tmp_path / "editable_model.py"
    body = ("from torch import nn\n\ndef net():\n    return nn.Sequential(nn.Conv2d(3, {c}, 3), "
            "nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({c}, 4))\n\n"
            "net.input_shape = (3, 8, 8)\n")
    src.write_text(body.format(c=8))
    monkeypatch.syspath_prepend(str(tmp_path))
    first = api.workload("editable_model:net")
    assert first.blocks["0.weight"].elements == 3 * 8 * 9
    src.write_text(body.format(c=16))
    sys.modules.pop("editable_model", None)
    importlib.invalidate_caches()
    second = api.workload("editable_model:net")
    assert second.blocks["0.weight"].elements == 3 * 16 * 9


@pytest.mark.parametrize("field", ["in_bytes", "out_bytes", "live_bytes"])
def test_an_entry_with_negative_op_bytes_is_a_miss(private_cache, field):
    # a hand-edited entry (the saved op's bytes made negative) is not simulated (simpy's
    # "Negative delay"): the IR refuses it as it is read back, and a refused entry is a miss
    w = tiny_workload(inputs=2)
    op = w.paths[0].ops[0]
    object.__setattr__(op, field, -4096)
    cache.save("workload", "k", w)
    assert cache.load("workload", "k") is None
    with pytest.raises(ValueError, match=r"op a: negative byte count"):
        dataclasses.replace(op)
