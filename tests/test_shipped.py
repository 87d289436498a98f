"""The registry models ship traced: a first run answers without tracing or importing torch, and
what is shipped is what a fresh trace gives (so the shipped entries never go stale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgesim import build, cache, ship
from edgesim.testing import registry_model
from edgesim.zoo.registry import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
WANTED = list(ship.expected())


def test_every_registry_model_ships_its_workload_and_first_routes():
    models = {name for name, _, kind, _ in WANTED if kind == "workload"}
    assert models == set(REGISTRY)
    routed = {name for name, _, kind, _ in WANTED if kind == "route"}
    assert routed == {n for n, s in REGISTRY.items() if s.dynamic}
    missing = [(name, kind) for name, _, kind, key in WANTED if cache.shipped(kind, key) is None]
    assert not missing, ("not shipped (keys change with the cache format and the specs): run "
                         f"`python -m edgesim.ship`: {missing}")


def test_nothing_stale_is_shipped():
    keep = {cache.SHIPPED / kind / f"{key}.npz.gz" for _, _, kind, key in WANTED}
    assert set(cache.SHIPPED.glob("*/*.npz.gz")) == keep


def test_a_shipped_routed_workload_is_a_whole_catalogue():
    # sigmab_r50: 4 leaves, so 4 paths; batch 0 routes 64 inputs, each to one of them
    name = "sigmab_r50"
    (wkey,) = [k for n, _, kind, k in WANTED if n == name and kind == "workload"]
    (rkey,) = [k for n, _, kind, k in WANTED if n == name and kind == "route"]
    w, seq = cache.shipped("workload", wkey), cache.shipped("route", rkey)
    assert len(w.paths) == 4
    assert seq.shape == (64,)
    assert set(seq.tolist()) <= {0, 1, 2, 3}


def test_a_hostile_shipped_entry_is_a_miss(tmp_path, monkeypatch):
    import gzip
    monkeypatch.setattr(cache, "SHIPPED", tmp_path)
    (tmp_path / "route").mkdir()
    (tmp_path / "route" / "k.npz.gz").write_bytes(gzip.compress(b"\0" * 1000))
    assert cache.shipped("route", "k") is None
    monkeypatch.setattr(cache, "SHIPPED_LIMIT", 100)   # inflates past the limit: not read
    cache.ship(tmp_path, "route", "big", list(range(1000)))
    assert cache.shipped("route", "big") is None


def test_ship_then_load_round_trips(tmp_path, monkeypatch):
    from edgesim.testing import tiny_workload
    w = tiny_workload(inputs=3)
    monkeypatch.setattr(cache, "SHIPPED", tmp_path)
    p = cache.ship(tmp_path, "workload", "k", w)
    assert p.stat().st_mode & 0o777 == 0o644
    first = p.read_bytes()
    cache.ship(tmp_path, "workload", "k", w)
    assert p.read_bytes() == first                 # same value, same bytes
    assert cache.load("workload", "k").digest() == w.digest()


_NO_TORCH = """
import sys
from edgesim.cli import main
code = main(["run", "npu_small", "--model", "sigmab_r50", "--format", "json"])
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


def test_a_first_registry_run_imports_no_torch(tmp_path):
    env = {**os.environ, "EDGESIM_CACHE": str(tmp_path / "empty-cache")}
    out = subprocess.run([sys.executable, "-c", _NO_TORCH], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path)
    report, _, status = out.stdout.strip().rpartition("\n")
    assert status == "NO-TORCH 0", out.stderr
    assert out.stderr == ""                          # no stage did work: nothing traced
    assert len(json.loads(report)["inferences"]) == 8
    assert not (tmp_path / "empty-cache" / "workload").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "precision", "kind", "key"), [
    # a full-size model is built once per session (edgesim.testing.registry_model): under
    # pytest-xdist the tests that read one model run in one worker (its xdist_group)
    pytest.param(*w, marks=pytest.mark.xdist_group(f"registry-{w[0]}")) for w in WANTED],
    ids=[f"{n}-{k}" for n, _, k, _ in WANTED])
def test_a_shipped_entry_is_a_fresh_trace(name, precision, kind, key, monkeypatch):
    # each model is built once per session (edgesim.testing.registry_model): its workload and
    # route entries, and test_pruning's full-size checks, share it
    monkeypatch.setattr(build, "_build", registry_model)
    catalogue = None
    if kind == "route":
        (wkey,) = [k for n, p, kd, k in WANTED if n == name and p == precision
                   and kd == "workload"]
        catalogue = cache.shipped("workload", wkey)
    fresh = ship.build_entry(name, precision, kind, catalogue)
    assert ship.same(kind, fresh, cache.shipped(kind, key)), \
        f"{name} {kind}: shipped entry is stale; run `python -m edgesim.ship`"
