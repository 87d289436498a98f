"""Routed trees end to end: active parameters, per-path bytes, routing, residency under skew."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgesim import api
from edgesim.config import load_config
from edgesim.sim import POLICIES, simulate

ROOT = Path(__file__).resolve().parent.parent
NPU = str(ROOT / "edgesim" / "hwconfigs" / "npu_small.yaml")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tree():
    return api.workload("sigmab_r50", inputs=64)


@pytest.fixture(scope="module")
def dense():
    return api.workload("dense_r50")


def test_sigmab_r50_active_params_are_40_to_42_percent_of_dense(tree, dense):
    info, base = api.model_info(tree), api.model_info(dense)
    assert 0.40 * base["total_params"] <= info["active_params"] <= 0.42 * base["total_params"]
    assert abs(info["total_params"] - base["total_params"]) <= 0.10 * base["total_params"]
    assert info["paths"] == 4


def test_sigmab_pn2_active_params_are_40_to_42_percent_of_dense():
    info = api.model_info(api.workload("sigmab_pn2"))
    base = api.model_info(api.workload("dense_pn2"))
    assert 0.40 * base["total_params"] <= info["active_params"] <= 0.42 * base["total_params"]
    assert abs(info["total_params"] - base["total_params"]) <= 0.10 * base["total_params"]


def test_parameter_accounting_of_the_catalogue(tree):
    # the tree = backbone + internal nodes (their layers and routers) + leaves, every block on
    # some path; a path (e.g. L-R) = backbone + nodes root and L (layer3 blocks 2-5 and the
    # routers) + the leaf LR, whose blocks no other path reads
    on_paths = set().union(*(tree.path_blocks(i) for i in range(len(tree.paths))))
    assert on_paths == set(tree.blocks)
    for i, path in enumerate(tree.paths):
        turns = path.name.split("-")
        nodes = ["root"] + ["".join(turns[:d]) for d in range(1, len(turns))]
        leaf = "nodes." + "".join(turns) + "."
        expected = {b for b in tree.blocks if b.startswith("backbone.")}
        expected |= {b for n in nodes for b in tree.blocks if b.startswith(f"nodes.{n}.")}
        expected |= {b for b in tree.blocks if b.startswith(leaf)}
        assert {f"nodes.{n}.router.weight" for n in nodes} <= expected
        assert any(b.startswith(f"nodes.{turns[0]}.layer3_2.") for b in expected)
        assert set(tree.path_blocks(i)) == expected
        others = set().union(*(tree.path_blocks(k) for k in range(len(tree.paths)) if k != i))
        assert not {b for b in expected if b.startswith(leaf)} & others


def test_inputs_take_different_paths_and_each_row_moves_its_path(tree):
    # no SRAM for weights (the activation reserve takes all of it): nothing survives between
    # inferences, so every row moves the stored bytes of the path it took, plus what tiling
    # re-fetches (an op whose input comes back from off-chip streams its weights once per
    # input stripe: sim.tiling)
    run = api.run(NPU, "sigmab_r50", inputs=64,
                  overrides=["sram.size=256KiB", "sram.activation_reserve=256KiB"])
    df = run.inferences
    assert len(df) == 64
    assert df.path.nunique() > 1
    names = [p.name for p in tree.paths]
    expected = [tree.path_stored_bytes(names.index(p)) for p in df.path]
    assert list(df.weight_dram_bytes - df.weight_refetch_bytes) == expected


def test_skewed_stream_with_sram_for_backbone_and_one_leaf(tree):
    # 90 % of inputs take path 0: SRAM holding backbone + routers + one leaf lets lru and pinned
    # keep the hot leaf, so steady-state bytes fall below the bytes of the paths taken; belady,
    # the offline optimum, is lowest.
    rng = np.random.default_rng(0)
    seq = np.where(rng.random(200) < 0.9, 0, rng.integers(1, 4, 200))
    w = tree.with_sequence(seq)
    need = max(w.path_stored_bytes(i) for i in range(len(w.paths)))
    hw = load_config(NPU, [f"sram.size={need + 256 * 1024}B", "sram.activation_reserve=256KiB"])
    steady = {p: int(simulate(hw, w, policy=p).inferences.weight_dram_bytes.iloc[1:].sum())
              for p in POLICIES}
    path_bytes = sum(w.path_stored_bytes(int(p)) for p in seq[1:])
    assert steady["lru"] < path_bytes
    assert steady["pinned"] < path_bytes
    assert steady["belady"] <= min(steady["lru"], steady["pinned"])


def test_router_gates_show_up_as_stalls(tree):
    # an op's weights overlap its compute (engine.py), so a gated fetch stalls only when it
    # takes longer than the op: at 1 GB/s a leaf's weights do, while the backbone's still move
    # under the backbone's compute, leaving the port idle for a speculative fetch
    hw = load_config(NPU, ["sram.size=64MiB", "offchip.bandwidth=1GB/s"])
    w = tree.with_sequence([0, 0])
    gated = simulate(hw, w).inferences
    spec = simulate(hw, w, prefetch="speculative").inferences
    assert spec.stall_cycles[0] < gated.stall_cycles[0]
