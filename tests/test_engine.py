"""The engine's laws, on random small workloads and configs, and closed-form cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgesim.sim import (
    INFERENCE_COLUMNS,
    LAYER_COLUMNS,
    POLICIES,
    PREFETCH_MODES,
    InferenceRow,
    LayerRow,
    simulate,
    summarize,
)
from edgesim.sim.tiling import TileError
from edgesim.testing import tiny_config, tiny_workload
from edgesim.workload import LayerOp, Path, WeightBlock, Workload

FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def workloads(draw) -> Workload:
    """1-8 blocks of 1 B..6 KB (dense, or csr with some zeros), 1-3 paths of 1-6 ops (0-2 blocks
    each), 1-7 inputs."""
    nblocks = draw(st.integers(1, 8))
    sizes = draw(st.lists(st.integers(1, 6000), min_size=nblocks, max_size=nblocks))
    blocks = []
    for k, s in enumerate(sizes):
        enc = draw(st.sampled_from(["dense", "csr"]))
        nonzeros = s if enc == "dense" else draw(st.integers(0, s))
        blocks.append(WeightBlock(f"w{k}", s, nonzeros, 8, enc, s, s))
    npaths = draw(st.integers(1, 3))
    paths = []
    for p in range(npaths):
        nops = draw(st.integers(1, 6))
        ops = []
        for j in range(nops):
            reads = draw(st.lists(st.integers(0, nblocks - 1), max_size=2, unique=True))
            macs = draw(st.integers(0, 50_000))
            act = draw(st.integers(0, 3000))
            kind = "linear" if macs else "eltwise"
            shape = (("M", 1), ("N", 8), ("K", max(1, macs // 8))) if macs else ()
            ops.append(LayerOp(f"p{p}op{j}", kind, tuple(f"w{b}" for b in reads), act, act,
                               2 * act, macs, macs, "int8", shape))
        paths.append(Path(f"path{p}", tuple(ops)))
    seq = draw(st.lists(st.integers(0, npaths - 1), min_size=1, max_size=7))
    return Workload("random", "dense", {b.id: b for b in blocks}, tuple(paths),
                    np.asarray(seq), {"precision": "int8"})


@st.composite
def configs(draw):
    """The tiny config with random SRAM, channel, clock, prefetch depth and activation reserve."""
    sram = draw(st.integers(0, 20_000))
    return tiny_config(sram=sram, overrides=[
        f"offchip.bandwidth={draw(st.integers(1, 16))}GB/s",
        f"offchip.latency={draw(st.integers(0, 500))}ns",
        f"offchip.burst={draw(st.sampled_from([1, 32, 64, 256]))}B",
        f"clock={draw(st.sampled_from([100, 480, 500, 1000, 2000]))}MHz",
        f"prefetch.depth={draw(st.integers(0, 3))}",
        f"sram.activation_reserve={draw(st.integers(0, 1024))}B",
    ])


def _total(df: pd.DataFrame, col: str = "weight_dram_bytes") -> int:
    return int(df[col].sum())


def _runs(hw, w, **kw):
    """``simulate(hw, w, **kw)``, or None when an op's smallest tile does not fit the SRAM
    (``TileError``: the config cannot run the model at all)."""
    try:
        return simulate(hw, w, **kw)
    except TileError:
        return None


def _sim(hw, w, **kw):
    """``simulate``; a case whose SRAM cannot hold an op's smallest tile is not an example."""
    r = _runs(hw, w, **kw)
    assume(r is not None)
    return r


@FAST
@given(w=workloads(), sizes=st.lists(st.integers(0, 40_000), min_size=2, max_size=4))
def test_belady_bytes_never_rise_as_sram_grows(w, sizes):
    # weight bytes (re-fetches included) and activation bytes (re-reads included) never rise
    # as SRAM grows; a size that runs the model is never followed by a larger one that cannot
    runs = [_runs(tiny_config(sram=s), w, policy="belady") for s in sorted(sizes)]
    ok = [r is not None for r in runs]
    assert ok == sorted(ok), ok
    runs = [r for r in runs if r is not None]
    for col in ("weight_dram_bytes", "act_dram_bytes"):
        totals = [_total(r.inferences, col) for r in runs]
        assert all(a >= b for a, b in itertools.pairwise(totals)), (col, totals)


@FAST
@given(w=workloads(), sram=st.integers(0, 20_000))
def test_lru_and_pinned_never_beat_belady(w, sram):
    hw = tiny_config(sram=sram)
    best = _total(_sim(hw, w, policy="belady").inferences)
    for policy in POLICIES.keys() - {"belady"}:
        r = _runs(hw, w, policy=policy)   # pinned's reserved room may leave no tile room
        assert r is None or _total(r.inferences) >= best


@FAST
@given(w=workloads(), hw=configs(),
       policy=st.sampled_from(list(POLICIES)),
       prefetch=st.sampled_from(list(PREFETCH_MODES)))
def test_latency_is_at_least_the_roofline(w, hw, policy, prefetch):
    df = _sim(hw, w, policy=policy, prefetch=prefetch).inferences
    for row in df.itertuples():
        compute_s = row.macs / (hw.macs_per_cycle["int8"] * hw.clock_hz)
        moved = row.weight_dram_bytes + row.act_dram_bytes
        transfer_s = moved / hw.offchip_bytes_per_s
        assert row.latency_s >= max(compute_s, transfer_s) * (1 - 1e-12)
        assert row.cycles == row.compute_cycles + row.stall_cycles
        assert row.stall_cycles >= 0


@st.composite
def energy_configs(draw):
    """The tiny config with random SRAM, channel, energies per byte, bit, MAC and index."""
    def pj(lo, hi):
        return draw(st.floats(lo, hi, allow_nan=False).map(lambda x: round(x, 3)))
    return tiny_config(sram=draw(st.integers(0, 20_000)), overrides=[
        f"offchip.bandwidth={draw(st.integers(1, 16))}GB/s",
        f"offchip.latency={draw(st.integers(0, 500))}ns",
        f"sram.read_energy={pj(0.1, 5)}pJ/B", f"sram.write_energy={pj(0.1, 5)}pJ/B",
        f"offchip.read_energy={pj(1, 50)}pJ/bit", f"offchip.write_energy={pj(1, 50)}pJ/bit",
        f"sram.leakage={pj(0.1, 20)}mW", f"energy.index_decode={pj(0.01, 2)}pJ",
        f"energy.mac.int8={pj(0.05, 2)}pJ", f"energy.pe_register={pj(0, 1)}pJ/B",
        f"compute.skip_zero_weights={draw(st.booleans())}".lower(),
    ])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-24)


@FAST
@given(w=workloads(), hw=energy_configs(), policy=st.sampled_from(list(POLICIES)),
       prefetch=st.sampled_from(list(PREFETCH_MODES)))
def test_energy_is_the_sum_of_its_parts(w, hw, policy, prefetch):
    # each part against its own formula (DESIGN.md, energy), from the workload and the config:
    #   mac     = executed MACs of each op (effective ones when zeros are skipped) x pJ/MAC of
    #             its precision
    #   array   = executed MACs of each op with MACs x (weight bits + activation bits + 32
    #             accumulator bits) / 8 x PE register pJ/B
    #   sram    = bytes read x read pJ/B + bytes written x write pJ/B, where reads are every
    #             op's weight bytes and input bytes plus the activations written off-chip, and
    #             writes every op's output plus the weights brought on chip plus the
    #             activations read from off-chip
    #   offchip = (weights read + activations read) x 8 x read pJ/bit + activations written
    #             x 8 x write pJ/bit; with the default placement (one off-chip memory holding
    #             the arena, plan.py) the activations read are the network input (op 0's
    #             in_bytes) plus every spill S read back by its consumer, those written the
    #             network output (the last unfused op's out_bytes) plus S, where S sums
    #             min(out, live - reserve) over the ops before that last one
    #   decode  = nonzeros of each op's non-dense blocks x pJ per index
    #   leak    = leakage W x latency
    # and the total is exactly the sum of the six.
    for row in _sim(hw, w, policy=policy, prefetch=prefetch).rows:
        ops = w.paths[int(w.sequence[row.input])].ops
        blocks = [[w.blocks[b] for b in dict.fromkeys(op.weights)] for op in ops]
        executed = [op.effective_macs if hw.skip_zero_weights else op.macs for op in ops]
        assert row.macs == sum(executed)
        mac_pj = sum(m * hw.mac_pj[op.precision] for m, op in zip(executed, ops, strict=True))
        assert _close(row.energy_mac_j, mac_pj * 1e-12)
        # register accesses per MAC of (weight, activation, partial sum) by dataflow
        # (edgesim.sim.energy.REGISTER_ACCESSES; by hand in tests/test_energy.py)
        bits = {"int8": 8, "int4": 4, "fp16": 16, "binary": 1}
        w_n, a_n, p_n = {"weight_stationary": (1, 2, 2),
                         "output_stationary": (2, 2, 2)}[hw.array_dataflow]
        reg_bits = sum(m * (w_n * bits[op.precision] + a_n * hw.act_bits + p_n * 32)
                       for m, op in zip(executed, ops, strict=True) if op.macs)
        assert _close(row.energy_array_j, reg_bits / 8 * hw.register_pj_per_byte * 1e-12)
        last = max(j for j, op in enumerate(ops) if not op.fused or j == 0)
        spills = sum(min(op.out_bytes, max(0, op.live_bytes - hw.act_reserve_bytes))
                     for op in ops[:last])
        # re-reads of an input per weight tile (sim.tiling) are reads too (laws in test_tiling)
        act_read = ops[0].in_bytes + spills + row.act_reread_bytes
        act_write = ops[last].out_bytes + spills
        assert row.act_dram_bytes == act_read + act_write
        assert row.sram_read_bytes == act_write + sum(
            op.in_bytes + sum(b.stored_bytes for b in bl)
            for op, bl in zip(ops, blocks, strict=True))
        assert row.sram_write_bytes == (act_read + sum(op.out_bytes for op in ops)
                                        + row.weight_dram_bytes - row.spec_wasted_bytes)
        assert _close(row.energy_sram_j, (row.sram_read_bytes * hw.sram_read_pj_per_byte
                                          + row.sram_write_bytes * hw.sram_write_pj_per_byte)
                      * 1e-12)
        assert _close(row.energy_offchip_j,
                      ((row.weight_dram_bytes + act_read) * 8 * hw.offchip_read_pj_per_bit
                       + act_write * 8 * hw.offchip_write_pj_per_bit) * 1e-12)
        decoded = sum(b.nonzeros for bl in blocks for b in bl if b.encoding != "dense")
        assert _close(row.energy_decode_j, decoded * hw.index_decode_pj * 1e-12)
        assert _close(row.energy_leak_j, hw.sram_leak_w * row.latency_s)
        assert row.energy_j == (row.energy_mac_j + row.energy_array_j + row.energy_sram_j
                                + row.energy_offchip_j + row.energy_decode_j
                                + row.energy_leak_j)


@FAST
@given(w=workloads(), hw=configs(),
       policy=st.sampled_from(list(POLICIES)),
       prefetch=st.sampled_from(list(PREFETCH_MODES)),
       stream=st.one_of(st.none(), st.tuples(st.integers(8, 80), st.integers(0, 2**32 - 1))))
def test_memo_and_reruns_give_identical_tables(w, hw, policy, prefetch, stream):
    # and on a longer random stream over the paths (inputs, seed): belady's memo takes an
    # inference when its state, path and condition on the future (the order of the next
    # uses its evictions compared) are met again, and every such inference must be the one
    # run event by event
    if stream is not None:
        n, seed = stream
        w = w.with_sequence(np.random.default_rng(seed).integers(0, len(w.paths), n))
    a = _sim(hw, w, policy=policy, prefetch=prefetch).inferences
    b = simulate(hw, w, policy=policy, prefetch=prefetch).inferences
    c = simulate(hw, w, policy=policy, prefetch=prefetch, memo=False).inferences
    assert a.to_csv() == b.to_csv() == c.to_csv()
    # per op too: the memo's run takes the timeline's one-pass recurrence over the ops that
    # move bytes (``engine._schedule``, ``bound.stall_bounds``), the memo off SimPy's event
    # loop over every op; each op's transfer and compute times and bound must agree
    on = simulate(hw, w, policy=policy, prefetch=prefetch, per_layer=True).layers
    off = simulate(hw, w, policy=policy, prefetch=prefetch, per_layer=True, memo=False).layers
    assert on.to_csv() == off.to_csv()


@FAST
@given(w=workloads(), policy=st.sampled_from(list(POLICIES)))
def test_sram_holding_the_model_moves_nothing_after_first_use(w, policy):
    hw = tiny_config(sram=w.stored_bytes)
    df = _sim(hw, w, policy=policy).inferences
    seen: set[str] = set()
    for i, p in enumerate(w.sequence):
        new = set(w.path_blocks(int(p))) - seen
        assert df.weight_dram_bytes[i] == sum(w.blocks[b].stored_bytes for b in new)
        seen |= new


@FAST
@given(w=workloads(), policy=st.sampled_from(list(POLICIES)))
def test_no_weight_sram_moves_every_path_in_full(w, policy):
    # nothing stays on chip, so every op streams its blocks: a path moves its stored bytes,
    # and a block read by two ops of the path moves twice
    df = _sim(tiny_config(sram=0), w, policy=policy).inferences
    for i, p in enumerate(w.sequence):
        per_op = sum(w.blocks[b].stored_bytes for op in w.paths[int(p)].ops
                     for b in dict.fromkeys(op.weights))
        assert df.weight_dram_bytes[i] == per_op >= w.path_stored_bytes(int(p))


def test_columns_and_one_row_per_input():
    df = simulate(tiny_config(), tiny_workload(inputs=5)).inferences
    assert tuple(df.columns) == INFERENCE_COLUMNS
    assert list(df.input) == [0, 1, 2, 3, 4]


def test_cold_inference_closed_form():
    # tiny: 1 GHz, 64 int8 MACs/cycle on an 8x8 weight-stationary array, vector unit 8
    # elements/cycle (one per column, the default), no SRAM port cap; 1 GB/s (1 ns per byte),
    # no latency, 1-byte bursts. A fold costs 8 (weight load) + 8 + 8 - 2 (fill, drain) = 22
    # cycles plus one per pixel streamed (edgesim.sim.mapping).
    # One off-chip memory holds weights and the arena (the default placement), so the
    # network's input (op a's 100 B) is read from it and its output (op b's 10 B) written to
    # it, on the one port, in queue order (plan.py, engine.py).
    # An op starts when the one before it ends and ends when its compute and its last byte
    # (kept weights, streamed weights, activation reads and writes) are done (engine.py).
    # op a: 1000 B kept -> DMA 0..1000 ns, then its 100 B input streamed 1000..1100 ns;
    #       C*R*S = 8 rows, K = 8 columns: one fold streaming 1000 pixels = 22 + 1000 = 1022
    #       cycles -> compute 0..1022 ns, ends when its input has arrived: 1100 ns.
    # relu: reads 100 elements on 8 lanes = 13 cycles -> 1100..1113 ns.
    # op b: 2000 B kept; may start once op (2 - depth 2 - 1) < 0 ended, i.e. right after the
    #       port is free: DMA 1100..3100 ns. K=250 on rows: ceil(250/8) = 32 folds, N=8 one
    #       column fold, M=1 pixel: 32 x (22 + 1) = 736 cycles (weight-load bound; MAC bound
    #       32) -> compute 1113..1849 ns; its 10 B output written 3100..3110 ns (queued
    #       behind its weights on the one port): ends 3110 ns.
    # latency 3110 ns; compute cycles 1022 + 13 + 736 = 1771; stall 3110 - 1771 = 1339.
    df = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=2)).inferences
    cold = df.iloc[0]
    assert cold.weight_dram_bytes == 3000
    assert cold.compute_cycles == 1771
    assert cold.cycles == 3110
    assert cold.stall_cycles == 3110 - 1771
    assert math.isclose(cold.latency_s, 3110e-9, rel_tol=1e-12)
    assert cold.act_dram_bytes == 100 + 10
    # warm: everything resident; the input (0..100 ns) and output (1035..1045 ns, after relu)
    # overlap compute: no stall, 1771 cycles
    assert df.iloc[1].weight_dram_bytes == 0
    assert df.iloc[1].cycles == 1771


def test_energy_closed_form():
    # warm inference of tiny_workload (weights resident, activations fit in 1 KiB):
    # MAC: 66,000 MACs x 0.2 pJ = 13,200 pJ
    # SRAM reads: weights 3000 B + activations in 100+100+100 + the 10 B output read out to
    # off-chip = 3310 B at 1 pJ/B
    # SRAM writes: activations out 100+100+10 + the 100 B input brought in = 310 B at 1 pJ/B
    # off-chip: input 100 B read + output 10 B written = 110 B x 8 x 10 pJ/bit = 8800 pJ;
    # leakage 1 mW x 1771 ns (the warm latency, test_cold_inference_closed_form)
    df = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=2)).inferences
    warm = df.iloc[1]
    assert math.isclose(warm.energy_mac_j, 13_200e-12, rel_tol=1e-12)
    assert warm.sram_read_bytes == 3310
    assert warm.sram_write_bytes == 310
    assert math.isclose(warm.energy_sram_j, 3620e-12, rel_tol=1e-12)
    assert math.isclose(warm.energy_offchip_j, 8800e-12, rel_tol=1e-12)
    assert math.isclose(warm.energy_leak_j, 1e-3 * 1771e-9, rel_tol=1e-9)


def test_prefetch_none_serialises_transfer_and_compute():
    # with prefetch off op b's 2000 B start only after relu ends (1113 ns, see
    # test_cold_inference_closed_form): 1113..3113 ns; its 10 B output write queues behind
    # them, 3113..3123 ns; b computes 1113..1849 ns and ends with its last byte: 3123 ns,
    # 13 ns later than with prefetch (3110 ns)
    df = simulate(tiny_config(sram="1 MiB"), tiny_workload(), prefetch="none").inferences
    assert df.cycles[0] == 3123


def test_activation_spill_is_counted_apart_from_weights():
    # 1 KiB activation reserve; an op holding 3000 live bytes (2000 of them its output) has
    # 3000 - 1024 = 1976 bytes without room, all of them output: written out by it and read
    # back by its consumer, 2 x 1976 = 3952 bytes; with the network input (1000 B) and output
    # (10 B) of the off-chip arena, act_dram_bytes = 3952 + 1010 = 4962; weights unaffected.
    blocks = [WeightBlock("w", 10, 10, 8, "dense", 10, 10)]
    ops = [LayerOp("big", "linear", ("w",), 1000, 2000, 3000, 10, 10, "int8",
                   (("M", 1), ("N", 1), ("K", 10))),
           LayerOp("head", "linear", (), 2000, 10, 1000, 0, 0, "int8")]
    w = Workload.single_path("spill", "dense", blocks, ops, 2)
    df = simulate(tiny_config(sram="1 MiB"), w).inferences
    assert list(df.act_dram_bytes) == [4962, 4962]
    assert list(df.weight_dram_bytes) == [10, 0]


def test_skip_zero_weights_uses_effective_macs():
    blocks = [WeightBlock("w", 100, 25, 8, "dense", 100, 100)]
    ops = [LayerOp("fc", "linear", ("w",), 10, 10, 20, 6400, 1600, "int8",
                   (("M", 1), ("N", 8), ("K", 800)))]
    w = Workload.single_path("sparse", "dense", blocks, ops, 1)
    dense = simulate(tiny_config(), w).inferences
    skip = simulate(tiny_config(overrides=["compute.skip_zero_weights=true"]), w).inferences
    assert dense.macs[0] == 6400
    assert skip.macs[0] == 1600
    assert skip.energy_mac_j[0] < dense.energy_mac_j[0]


def test_nested_layout_runs_only_its_nonzeros():
    # a weight read in the nested layout is walked by the nested kernels where the config says
    # its compute does (compute.skip_formats): 1600 of the 6400 MACs (its nonzeros) run even
    # on hardware that does not skip zeros; the same weight in a dense or a generic sparse
    # layout runs all 6400 there (tests/test_mcu.py: without skip_formats, nested runs dense)
    def one(encoding):
        blocks = [WeightBlock("w", 100, 25, 8, encoding, 100, 100)]
        ops = [LayerOp("fc", "linear", ("w",), 10, 10, 20, 6400, 1600, "int8",
                       (("M", 1), ("N", 8), ("K", 800)))]
        w = Workload.single_path("n", "nested", blocks, ops, 1)
        return simulate(tiny_config(overrides=["formats=[dense,csr,nested]",
                                               "compute.skip_formats=[nested]"]), w).rows[0]
    assert one("nested").macs == 1600
    assert one("csr").macs == one("dense").macs == 6400


def _routed() -> Workload:
    """Backbone (1000 B) -> router (10 B) -> one of two leaves (4000 B each)."""
    blocks = [WeightBlock(n, s, s, 8, "dense", s, s)
              for n, s in [("bb", 1000), ("r", 10), ("l0", 4000), ("l1", 4000)]]
    bb = LayerOp("bb", "linear", ("bb",), 100, 100, 200, 8000, 8000, "int8",
                 (("M", 1), ("N", 8), ("K", 1000)))
    r = LayerOp("r", "router", ("r",), 100, 2, 102, 20, 20, "int8",
                (("M", 1), ("N", 2), ("K", 10)))

    def leaf(k):
        return LayerOp(f"l{k}", "linear", (f"l{k}",), 100, 10, 110, 4000, 4000, "int8",
                       (("M", 1), ("N", 8), ("K", 500)), gate="r")
    paths = (Path("L", (bb, r, leaf(0))), Path("R", (bb, r, leaf(1))))
    seq = [0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    return Workload("tree", "sigmab", {b.id: b for b in blocks}, paths, np.asarray(seq))


def test_router_gates_leaf_fetch_and_stall_shows():
    # SRAM holds the whole tree; look at the cold inference, where the leaf must be fetched.
    # Gated: the leaf's 4000 B (4000 ns) may move only after the router ends, so the leaf op
    # (1449 ns of compute) waits for them. Speculative: the most frequent leaf (L) moves right
    # after the backbone.
    w = _routed()
    hw = tiny_config(sram=9010)
    gated = simulate(hw, w).inferences
    spec = simulate(hw, w, prefetch="speculative").inferences
    assert gated.weight_dram_bytes[0] == spec.weight_dram_bytes[0] == w.path_stored_bytes(0)
    assert spec.stall_cycles[0] < gated.stall_cycles[0]
    # batch-1 linears on the tiny 8x8 weight-stationary array: ceil(K/8) folds of 8 (weight
    # load) + 14 (fill, drain) + 1 (the one pixel) = 23 cycles (edgesim.sim.mapping); an op
    # ends when its compute and its last byte are done (engine.py). One port, 1 ns per byte:
    # bb weights 0..1000 ns, the network input 1000..1100, router weights 1100..1110.
    # bb: K=1000: 125 folds x 23 = 2875 cycles -> 0..2875 ns; router: K=10: 2 folds x 23 = 46
    # -> 2875..2921 ns. Gated leaf: its 4000 B move 2921..6921 ns, its 10 B output
    # 6921..6931; K=500: 63 folds x 23 = 1449 cycles, 2921..4370 ns: ends 6931 ns, stall
    # 6931 - (2875 + 46 + 1449) = 2561 cycles. Speculative: the leaf moves as soon as the port
    # is free, 1110..5110 ns, the output 5110..5120: ends 5120 ns, stall 750.
    assert gated.cycles[0] == 6931
    assert gated.stall_cycles[0] == 2561
    assert spec.cycles[0] == 5120
    assert spec.stall_cycles[0] == 750
    # a wrong guess costs the guessed leaf's bytes, reported and counted as moved
    w_miss = w.with_sequence([1, 0, 0, 0])
    g = simulate(hw, w_miss).inferences
    s = simulate(hw, w_miss, prefetch="speculative").inferences
    assert s.spec_wasted_bytes[0] == 4000
    assert g.spec_wasted_bytes[0] == 0
    assert s.weight_dram_bytes[0] == g.weight_dram_bytes[0] + 4000


def test_routed_policies_on_skewed_paths():
    # SRAM holds backbone + router + one leaf (5010 B): belady <= pinned, lru; pinned keeps the
    # hot leaf L, so its steady state moves only R's leaf when R runs.
    w = _routed()
    hw = tiny_config(sram=5010)
    res = {p: simulate(hw, w, policy=p).inferences.weight_dram_bytes.iloc[1:].sum()
           for p in POLICIES}
    assert res["belady"] <= min(res["lru"], res["pinned"])
    assert res["pinned"] == 2 * 4000
    path_bytes = sum(w.path_stored_bytes(int(p)) for p in w.sequence[1:])
    assert res["lru"] < path_bytes
    assert res["pinned"] < path_bytes


def test_per_layer_rows_add_up_to_inference_rows():
    r = simulate(tiny_config(sram=1500), tiny_workload(inputs=3), per_layer=True)
    per = r.layers.groupby("input")[["weight_dram_bytes", "compute_cycles"]].sum()
    assert list(per.weight_dram_bytes) == list(r.inferences.weight_dram_bytes)
    assert list(per.compute_cycles) == list(r.inferences.compute_cycles)


def test_unknown_policy_and_prefetch_are_errors():
    with pytest.raises(ValueError, match="unknown policy"):
        simulate(tiny_config(), tiny_workload(), policy="fifo")
    with pytest.raises(ValueError, match="unknown prefetch"):
        simulate(tiny_config(), tiny_workload(), prefetch="eager")


def test_summary_cold_and_steady():
    r = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=4))
    s = r.summary["weight_dram_bytes"]
    assert s["cold"] == 3000
    assert s["steady_mean"] == 0
    assert s["p99"] == 0


def test_rows_are_named_and_the_columns_are_their_fields():
    r = simulate(tiny_config(sram=1500), tiny_workload(inputs=2), per_layer=True)
    assert all(isinstance(row, InferenceRow) for row in r.rows)
    assert all(isinstance(row, LayerRow) for row in r.layer_rows)
    assert INFERENCE_COLUMNS == InferenceRow._fields
    assert LAYER_COLUMNS == LayerRow._fields
    assert [row.input for row in r.rows] == [0, 1]
    # per op rows: 3 ops per input, in op order
    assert [(row.input, row.op, row.name) for row in r.layer_rows] == [
        (i, j, name) for i in range(2) for j, name in enumerate(("a", "relu", "b"))]


def test_prefetch_modes_are_described():
    assert list(PREFETCH_MODES) == ["next", "none", "speculative"]
    assert all(isinstance(d, str) and d for d in PREFETCH_MODES.values())


def test_a_streamed_routed_run_counts_each_distinct_inference_in_its_summary(monkeypatch):
    # A streamed run counts each distinct inference (a memo entry) once, however its paths
    # alternate, flushing the counts when MEMO_LIMIT distinct ones are held. Its rows and
    # summary must be those of the kept rows and of no memo at all, for every policy and a
    # memo that starts over every 2 situations (so the counts are flushed mid-stream).
    from edgesim.sim import engine
    rng = np.random.default_rng(3)
    w = _routed().with_sequence(rng.integers(0, 2, size=400))
    hw = tiny_config(sram=6000)   # the backbone and one leaf: the leaves take turns
    for limit in (engine.MEMO_LIMIT, 2):
        monkeypatch.setattr(engine, "MEMO_LIMIT", limit)
        for policy in ("lru", "pinned", "belady"):
            kept = simulate(hw, w, policy=policy, memo=False)
            rows: list = []
            streamed = simulate(hw, w, policy=policy, on_row=rows.append, keep_rows=False)
            assert rows == kept.rows, (limit, policy)
            assert streamed.summary == kept.summary == summarize(kept.rows), (limit, policy)
            assert len({r.weight_dram_bytes for r in rows}) > 1, policy  # paths differ


def test_a_routed_stream_with_the_memo_is_the_one_run_event_by_event_per_op(passes):
    # The routed tree (a backbone, a router, two 4000 B leaves) on random path sequences, at
    # SRAM sizes from less than a leaf to the whole tree, every prefetch mode (speculative:
    # a wrong guess moves the other leaf before the router decides, queued at the first
    # gated op) and policy: the memo's run (the set pass, ``_schedule`` over the ops that
    # move bytes) must give every inference's and every op's row of the run without it.
    # (The arena in SRAM too: then a leaf op whose leaf is on chip moves nothing but a
    # wrong guess.) Both with the compiled passes (``sim/_kernel.c``, where built) and
    # with the Python ones they stand for (``passes``).
    rng = np.random.default_rng(8)
    for sram, arena in itertools.product((2000, 5010, 6000, 9010), ("offchip", "sram")):
        w = _routed().with_sequence(rng.integers(0, 2, size=30))
        hw = tiny_config(sram=sram + (1000 if arena == "sram" else 0),
                         overrides=[f"placement.arena={arena}"])
        for prefetch in PREFETCH_MODES:
            for policy in POLICIES:
                on = simulate(hw, w, policy=policy, prefetch=prefetch, per_layer=True)
                off = simulate(hw, w, policy=policy, prefetch=prefetch, per_layer=True,
                               memo=False)
                assert on.rows == off.rows, (sram, arena, prefetch, policy)
                assert on.layer_rows == off.layer_rows, (sram, arena, prefetch, policy)
                # (without per-op rows the memo's run takes the compiled schedule, if built)
                rows = simulate(hw, w, policy=policy, prefetch=prefetch).rows
                assert rows == off.rows, (sram, arena, prefetch, policy)
                if prefetch == "speculative" and sram < 9010 and policy == "lru":
                    assert any(r.spec_wasted_bytes for r in on.rows)   # guesses went wrong


def test_vectors_of_one_digest_are_told_apart_by_the_timeline_memo(monkeypatch):
    # The timeline memo files a policy's vector under its digest (``_kernel.digest``) and
    # compares the vectors it finds there: with every vector given one digest, each
    # inference must still be the one run event by event (a wrong compare would hand one
    # path's or state's timeline to another), and the memo must have met more than one
    # vector under it.
    from edgesim.sim import engine
    if engine._kernel is None:
        pytest.skip("the compiled passes were not built on this machine")
    met = []
    run_vec = engine._run_vec

    def one_digest(channel, plan, vec, wasted, depth, speculative, runs):
        met.append(len(runs.get((id(plan), 0, wasted), ())))
        return run_vec(channel, plan, vec, wasted, depth, speculative, runs)
    monkeypatch.setattr(engine._kernel, "digest", lambda vec: 0)
    monkeypatch.setattr(engine, "_run_vec", one_digest)
    w = _routed().with_sequence(np.random.default_rng(3).integers(0, 2, size=60))
    for sram in (2000, 5010, 9010):
        hw = tiny_config(sram=sram)
        for policy in ("lru", "belady"):
            on = simulate(hw, w, policy=policy)
            off = simulate(hw, w, policy=policy, memo=False)
            assert on.rows == off.rows, (sram, policy)
    assert max(met) > 1


def test_times_past_64_bits_take_the_python_timeline_and_the_same_rows(monkeypatch):
    # 10^7 weight bytes at 1 B/s take 10^7 s = 10^19 ps, past 2^63 ps (~9.2 x 10^18): the
    # compiled timeline (``_kernel.run``, int64) must give way to the Python one (ints of any
    # size), so the memo's run still equals the run event by event.
    from edgesim.sim import engine
    if engine._kernel is None:
        pytest.skip("the compiled passes were not built on this machine")
    big = 10_000_000
    w = Workload.single_path(
        "big", "dense", [WeightBlock("l.weight", big, big, 8, "dense", big, big)],
        [LayerOp("l", "linear", ("l.weight",), 100, 10, 110, big, big, "int8",
                 (("M", 1), ("N", 10), ("K", big // 10)))], 3, {"precision": "int8"})
    hw = tiny_config(sram=1000, overrides=["offchip.bandwidth=1 B/s"])
    gave_way = []
    run = engine._kernel.run

    def watched(*args):
        try:
            return run(*args)
        except OverflowError:
            gave_way.append(True)
            raise
    monkeypatch.setattr(engine._kernel, "run", watched)
    on = simulate(hw, w, policy="lru")
    off = simulate(hw, w, policy="lru", memo=False)
    assert gave_way
    assert on.rows == off.rows
    assert on.rows[0].latency_s >= big   # (at least the bytes at 1 B/s)


def test_the_plan_cache_takes_equal_configs_and_hashes_each_config_once(monkeypatch):
    # Compiled plans are kept per (config, paths, blocks, policy room): a config equal to
    # one met before (loaded again) takes its plans, a different one (another SRAM) compiles
    # its own, and rows are the same either way. A config hashes every field (~25 us for a
    # shipped one), so each config object is hashed once however often it is run.
    from edgesim.sim import engine
    calls = []
    real = engine.compile_paths
    monkeypatch.setattr(engine, "compile_paths", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(engine, "_PLANS", {})
    monkeypatch.setattr(engine, "_HASHED", {})
    w = tiny_workload(inputs=4)
    hw = tiny_config(sram=1500)
    cls = type(hw)
    hashes = []
    monkeypatch.setattr(cls, "__hash__", lambda self, real=cls.__hash__: hashes.append(1)
                        or real(self))
    first = simulate(hw, w, policy="lru")
    again = tiny_config(sram=1500)   # (equal, another object)
    assert again == hw
    assert again is not hw
    assert type(again) is cls
    for _ in range(3):
        assert simulate(again, w, policy="lru").rows == first.rows
    assert len(calls) == 1
    assert len(hashes) == 2   # (once per config object)
    simulate(tiny_config(sram=3000), w, policy="lru")
    assert len(calls) == 2
