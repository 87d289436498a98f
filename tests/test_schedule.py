"""The compiler's schedule (``schedule: optimal | vela``) and reading an input in place
(``placement.input: in_place``): laws with their derivations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesim.config import load_config
from edgesim.sim import simulate
from edgesim.sim.plan import Machine, edge_cycles, input_read
from edgesim.sim.tiling import (
    ONCE,
    Block,
    BlockBuffer,
    TileError,
    in_place_bytes,
    output_block,
    plan_tiling,
)
from edgesim.testing import tiny_config
from edgesim.workload import LayerOp, WeightBlock, Workload

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Ethos-U65-512's SHRAM as ethos_u65.yaml states it (44 banks of 1 KiB, ...)
U65 = BlockBuffer(44 * 1024, 1024, 8, 16, 4, (2, 2, 8), (32, 64, 128), 16, 8)


# ---------------------------------------------------------------------------------------------
# reading in place
# ---------------------------------------------------------------------------------------------

def test_in_place_read_of_a_3x3_stride_2_conv_by_hand():
    # a 32x32x3 input, 3x3 stride 2 -> 16x16x16, output blocks of 8x8 pixels x 16 channels:
    # 2 x 2 x 1 = 4 blocks. A block's window: (8 - 1) * 2 + 3 = 17 rows and columns (the halo
    # of 1 beyond 2 x 8), rounded up to the 2x2 micro-block = 18 x 18 pixels x 3 channels =
    # 972 B, 4 x 972 = 3,888 B read (the input has 3,072: 27 % more for the halos). Each
    # pixel's slice is one run of 8 B (the 8-channel slice) on a bus of 64 B bursts: it moves
    # at 8/64 of the bandwidth, 3,888 x 64 / 8 = 31,104 B of bus time.
    block = Block(h=8, w=8, d=16, ih=18, iw=18, ifm_d=8)
    assert in_place_bytes(block, P=16, Q=16, K=16, C=3, H=32, W=32, burst=64, run=8) == 31_104
    # runs of a burst or more: the bytes as read
    assert in_place_bytes(block, P=16, Q=16, K=16, C=3, H=32, W=32, burst=64, run=64) == 3_888
    # 32 output channels in blocks of 16: the window is read once per depth block
    assert in_place_bytes(block, P=16, Q=16, K=32, C=3, H=32, W=32, burst=64, run=64) == 7_776


def test_a_kernel_beyond_the_sub_kernel_reads_its_window_once_per_piece():
    # KWS's first conv: a 49x10x1 input, 10x4 kernel stride 2 -> 25x5x64. On 8 x 8 pieces
    # (compute.block.sub_kernel, regor s_SubkernelLimits) the 10 rows are ceil(10/8) = 2
    # pieces x ceil(4/8) = 1: each block's window is read twice, twice the bytes of the same
    # blocks with an unlimited sub-kernel.
    w = Workload.single_path("kws", "dense", [WeightBlock("w", 2560, 2560, 8, "dense", 2560,
                                                          2560)],
                             [LayerOp("stem", "conv", ("w",), 490, 8000, 8490, 320_000,
                                      320_000, "int8",
                                      (("N", 1), ("K", 64), ("C", 1), ("R", 10), ("S", 4),
                                       ("P", 25), ("Q", 5)),
                                      meta={"strides": (2, 2), "pads": (4, 5, 1, 2)})], 1)
    pieced = Machine.from_config(tiny_config(overrides=[*_IN_PLACE,
                                                        "compute.block.sub_kernel=[8, 8]"]))
    whole = Machine.from_config(tiny_config(overrides=_IN_PLACE))
    (a, placed_a), (b, placed_b) = (input_read(m, w.paths[0].ops[0]) for m in (pieced, whole))
    assert placed_a
    assert placed_b
    assert a == 2 * b


def test_the_block_fits_the_buffer_and_a_first_conv_reads_in_runs_of_the_slice():
    # VWW's first conv (96x96x3, 3x3 stride 2 -> 48x48x8) on the U65's SHRAM: every block
    # whose double-buffered window and accumulators fit 44 banks is tried; 16 x 16 x 8 wins
    # (window 34 x 34 x 8 ch = 9,248 B: 10 banks x 2 = 20, rounded to 8-bank granules = 24;
    # accumulators 16 x 16 x 8 x 4 B = 8 KiB: 8 x 2 = 16; 24 + 16 = 40 <= 44).
    b = output_block(U65, P=48, Q=48, K=8, C=3, R=3, S=3, stride=(2, 2))
    assert b == Block(16, 16, 8, 34, 34, 8)
    # 3 x 3 blocks x 34 x 34 x 3 B = 31,212 B, in 8 B runs of 128 B bursts: x 16
    assert in_place_bytes(b, P=48, Q=48, K=8, C=3, H=96, W=96, burst=128,
                          run=b.ifm_d) == 31_212 * 16


def test_a_buffer_smaller_than_a_micro_block_is_an_error():
    tiny = U65._replace(buffer=1024)
    with pytest.raises(ValueError, match="no output block"):
        output_block(tiny, P=8, Q=8, K=8, C=3, R=3, S=3)


def _stem(h: int = 32) -> Workload:
    blocks = [WeightBlock("w", 432, 432, 8, "dense", 432, 432)]
    op = LayerOp("stem", "conv", ("w",), h * h * 3, (h // 2) ** 2 * 16, h * h * 3,
                 (h // 2) ** 2 * 16 * 27, (h // 2) ** 2 * 16 * 27, "int8",
                 (("N", 1), ("K", 16), ("C", 3), ("R", 3), ("S", 3), ("P", h // 2),
                  ("Q", h // 2)), meta={"strides": (2, 2), "pads": (0, 0, 1, 1)})
    return Workload.single_path("stem", "dense", blocks, [op], 1)


_IN_PLACE = ["placement.input=in_place", "compute.block.buffer=44 KiB",
             "compute.block.ifm_granule=8", "compute.block.acc_granule=16",
             "compute.block.ublock=[2, 2, 8]", "compute.block.max=[32, 64, 128]",
             "compute.block.split_depth=16", "compute.block.ifm_depth=8",
             "compute.block.source=test"]


def test_in_place_bytes_are_counted_in_act_dram_bytes():
    w = _stem()
    staged = simulate(tiny_config(), w).rows[0]
    placed_hw = tiny_config(overrides=_IN_PLACE)
    placed = simulate(placed_hw, w).rows[0]
    m = Machine.from_config(placed_hw)
    nbytes, in_place = input_read(m, w.paths[0].ops[0])
    block = output_block(m.block, P=16, Q=16, K=16, C=3, R=3, S=3, stride=(2, 2))
    assert in_place
    assert nbytes == in_place_bytes(block, P=16, Q=16, K=16, C=3, H=32, W=32,
                                    burst=m.memories[0].burst_bytes, run=8)
    out = w.paths[0].ops[0].out_bytes            # the network's output, written once
    assert staged.act_dram_bytes == 32 * 32 * 3 + out
    assert placed.act_dram_bytes == nbytes + out
    assert placed.latency_s >= staged.latency_s


def test_in_place_needs_a_block_buffer():
    with pytest.raises(ValueError, match=r"compute\.block\.buffer"):
        Machine.from_config(tiny_config(overrides=["placement.input=in_place"]))


def test_non_ethos_configs_stage_the_input_and_keep_the_optimal_schedule():
    for name in ("npu_small", "nvdla_small", "edgetpu"):
        hw = load_config(name)
        assert (hw.placement_input, hw.schedule, hw.block["buffer"]) == ("staged", "optimal", 0)


# ---------------------------------------------------------------------------------------------
# the schedule
# ---------------------------------------------------------------------------------------------

def test_vela_streams_the_weights_once_per_ofm_stripe_by_hand():
    # 4,000 B of weights over 4 output channels, 1,000 B of off-chip input over 4 output rows
    # (250 B a row); 2,000 B of weight SRAM, 500 B for input stripes. Vela cuts the output into
    # stripes of 500 // 250 = 2 rows, 2 stripes, and streams all the weights past each:
    # (2 - 1) x 4,000 = 4,000 B fetched again. The optimum reads the input twice instead
    # (2 weight tiles of 2 channels: (2 - 1) x 1,000 = 1,000 B).
    kw = {"weight_bytes": 4000, "input_offchip": 1000, "input_bytes": 1000, "channels": 4,
          "rows": 4, "weight_buf": 2000, "act_buf": 500}
    vela = plan_tiling("c", schedule="vela", **kw)
    assert (vela.order, vela.input_stripes, vela.weight_refetch) == ("input_outer", 2, 4000)
    best = plan_tiling("c", **kw)
    assert (best.order, best.weight_tiles, best.act_reread) == ("weights_outer", 2, 1000)
    # the partial sums fit: the optimum splits the reduction for free, Vela does not
    assert plan_tiling("c", psum_bytes=400, **kw).order == "reduction_outer"
    assert plan_tiling("c", psum_bytes=400, schedule="vela", **kw) == vela


# the optimal schedule (the default) never moves more bytes nor takes longer as SRAM grows:
# tests/test_tiling.py::test_bytes_and_latency_never_rise_as_sram_grows


@FAST
@given(w=st.integers(1, 60_000), i_off=st.integers(1, 20_000), extra=st.integers(0, 20_000),
       k=st.integers(1, 64), p=st.integers(1, 64), wb=st.integers(1, 60_000),
       ab=st.integers(1, 20_000), more=st.integers(0, 40_000))
def test_the_vela_tiling_never_costs_more_with_more_sram_in_the_same_order(
        w, i_off, extra, k, p, wb, ab, more):
    # a bigger weight or stripe buffer never costs the Vela schedule more bytes while its
    # choice of order (weights outer / input outer) stays the same
    kw = {"weight_bytes": w, "input_offchip": i_off, "input_bytes": i_off + extra,
          "channels": k, "rows": p}
    try:
        small = plan_tiling("c", schedule="vela", weight_buf=wb, act_buf=ab, **kw)
    except TileError:
        return
    big = plan_tiling("c", schedule="vela", weight_buf=wb + more, act_buf=ab + more, **kw)
    if big.order == small.order or big is ONCE:
        assert (big.weight_refetch + big.act_reread) <= (small.weight_refetch
                                                          + small.act_reread)


def test_the_vela_schedule_keeps_the_smaller_caches_schedule_where_it_switches_order():
    """Vela's rule (stream the weights once per output stripe as soon as a stripe fits) alone is
    not monotone in SRAM: where a bigger cache first fits an input stripe, it trades a re-read
    of the input for re-reads of the weights. By hand, a quarter of SRAM for activations: 1,000
    B of weights over 4 channels (250 B each), 1,200 B of input over 4 rows (300 B a row). At
    1,000 B of SRAM the share (250 B) holds no row: weights outer, tiles of 750 // 250 = 3
    channels, 2 tiles, the input read twice: 1,200 B again. At 1,200 B the share (300 B) holds
    one row: Vela's rule takes 4 stripes, the weights read 4 times: 3 x 1,000 = 3,000 B again.
    The largest smaller SRAM whose share holds no row is 1,199 B (share 299 B, weights 900 B):
    its schedule (weights outer, 2 tiles of 3 channels: 1,200 B again) runs on 1,200 B too and
    is cheaper, so the ``vela`` schedule takes it: 1,200 B, not more than at 1,000 B."""
    kw = {"weight_bytes": 1000, "input_offchip": 1200, "input_bytes": 1200, "channels": 4,
          "rows": 4}
    small = plan_tiling("c", schedule="vela", weight_buf=750, act_buf=250, sram_bytes=1000,
                        **kw)
    assert (small.order, small.weight_tiles, small.act_reread) == ("weights_outer", 2, 1200)
    # Vela's rule alone (no SRAM size to look below): the non-monotone step
    rule = plan_tiling("c", schedule="vela", weight_buf=900, act_buf=300, **kw)
    assert (rule.order, rule.input_stripes, rule.weight_refetch) == ("input_outer", 4, 3000)
    big = plan_tiling("c", schedule="vela", weight_buf=900, act_buf=300, sram_bytes=1200, **kw)
    assert (big.order, big.weight_tiles, big.act_reread) == ("weights_outer", 2, 1200)
    # where input outer is the cheaper, Vela's rule stands: 10,000 B of weights over 40
    # channels, 2,400 B of input over 8 rows (300 B). At 6,000 B of SRAM (share 1,500 B) Vela
    # takes stripes of 5 rows, 2 stripes: 10,000 B again; the SRAM of 1,199 B below the
    # threshold has 900 B of weights: tiles of 3 channels, 14 tiles, 13 x 2,400 = 31,200 B.
    kw40 = {**kw, "weight_bytes": 10_000, "channels": 40, "input_offchip": 2400,
            "input_bytes": 2400, "rows": 8}
    vela = plan_tiling("c", schedule="vela", weight_buf=4500, act_buf=1500, sram_bytes=6000,
                       **kw40)
    assert (vela.order, vela.input_stripes, vela.weight_refetch) == ("input_outer", 2, 10_000)
    below = plan_tiling("c", schedule="vela", weight_buf=900, act_buf=299, sram_bytes=1199,
                        **kw40)
    assert (below.order, below.weight_tiles, below.act_reread) == ("weights_outer", 14, 31_200)
    # the optimal schedule takes the cheaper order at every size
    assert plan_tiling("c", act_buf=300, weight_buf=900, **kw).order == "weights_outer"


@FAST
@given(w=st.integers(1, 60_000), i_off=st.integers(1, 20_000), extra=st.integers(0, 20_000),
       k=st.integers(1, 64), p=st.integers(1, 64), pct=st.integers(1, 99),
       sizes=st.lists(st.integers(1, 200_000), min_size=2, max_size=6))
def test_the_vela_tiling_never_costs_more_as_a_shared_sram_grows(w, i_off, extra, k, p, pct,
                                                                   sizes):
    # an SRAM of growing size, a fixed percentage of it for activations (floored to bytes, as
    # edgesim.config reads a percentage reserve): the vela schedule's extra bytes never rise,
    # across its switch from weights outer to input outer too
    kw = {"weight_bytes": w, "input_offchip": i_off, "input_bytes": i_off + extra,
          "channels": k, "rows": p}
    last = None
    for size in sorted(sizes):
        ab = size * pct // 100
        try:
            t = plan_tiling("c", schedule="vela", weight_buf=size - ab, act_buf=ab,
                            sram_bytes=size, **kw)
        except TileError:
            assert last is None, "a larger SRAM cannot run what a smaller one ran"
            continue
        extra_bytes = t.weight_refetch + t.act_reread
        if last is not None:
            assert extra_bytes <= last, (size, t)
        last = extra_bytes


@FAST
@given(w=st.integers(1, 60_000), i_off=st.integers(0, 20_000), extra=st.integers(0, 20_000),
       k=st.integers(1, 64), p=st.integers(1, 64), wb=st.integers(1, 60_000),
       ab=st.integers(1, 20_000), psum=st.none() | st.integers(1, 40_000))
def test_optimal_tiling_is_a_lower_bound_on_the_vela_tiling(w, i_off, extra, k, p, wb, ab,
                                                            psum):
    # per op, the extra bytes the optimum's tiling costs never exceed those of Vela's
    # (the optimum takes the cheapest of the orders Vela's is one of, or a free split)
    kw = {"weight_bytes": w, "input_offchip": i_off, "input_bytes": i_off + extra,
          "channels": k, "rows": p, "weight_buf": wb, "act_buf": ab, "psum_bytes": psum}
    try:
        vela = plan_tiling("c", schedule="vela", **kw)
    except TileError:
        return
    best = plan_tiling("c", **kw)
    assert (best.weight_refetch + best.act_reread) <= (vela.weight_refetch + vela.act_reread)


def test_a_conv_pays_its_first_input_and_last_output_block_transfer():
    # KWS's 3x3 depthwise conv, 25x5x64 from 25x5x64, on ethos_u65 (16-byte SRAM port, 32
    # cycles of SRAM latency, compute.block.latency). Its output block (tiling.output_block,
    # a depthwise conv reading only its own channels) is 26x6x16; the first input block is the
    # block's window clipped to the input, (25 - 1) + 3 = 27 rows x (5 - 1) + 3 = 7 columns x
    # 16 channels = 3,024 B: 32 + 3,024 / 16 = 221 cycles; the last output block 25 x 5 x 16
    # = 2,000 B: 32 + 125 = 157; 378 in all (regor EstimateMacOpCycles, First and Last).
    m = Machine.from_config(load_config("ethos_u65"))
    dw = LayerOp("dw", "conv", ("w",), 8000, 8000, 16000, 72_000, 72_000, "int8",
                 (("N", 1), ("K", 64), ("C", 1), ("R", 3), ("S", 3), ("P", 25), ("Q", 5)),
                 meta={"groups": 64, "strides": (1, 1)})
    assert edge_cycles(m, dw) == 221 + 157
    # no block buffer (ethos_u55 states none): nothing before or after
    assert edge_cycles(Machine.from_config(load_config("ethos_u55")), dw) == 0
    # KWS's batch-1 FC, 64 -> 12: one input slice of 32 channels, 32 + 32 // 16 = 34, and
    # the 12 outputs, 32 + 12 // 16 = 32 (Vela: 150 cycles, 79 of them MAC cycles)
    fc = LayerOp("fc", "linear", ("w",), 64, 12, 76, 768, 768, "int8",
                 (("M", 1), ("N", 12), ("K", 64)))
    assert edge_cycles(m, fc) == 34 + 32


def test_the_network_output_is_written_by_a_trailing_softmax():
    # FC -> fused softmax with the arena off-chip: the softmax's command chain produces the
    # output, so its write (12 B) is the softmax's transfer, not the FC's (a fused ReLU's
    # output is its producer's and is written by the producer)
    from edgesim.sim.plan import _act_parts
    m = Machine.from_config(load_config("ethos_u65"))
    fc = LayerOp("fc", "linear", ("w",), 64, 12, 76, 768, 768, "int8",
                 (("M", 1), ("N", 12), ("K", 64)))
    sm = LayerOp("sm", "act", (), 12, 12, 24, 0, 0, "int8", fused=True,
                 meta={"func": "softmax"})
    relu = LayerOp("relu", "act", (), 12, 12, 24, 0, 0, "int8", fused=True,
                   meta={"func": "relu"})
    def writes(parts):    # op 0 also reads the network input (64 B) from the arena
        return [tuple(t for t in ps if t[1]) for ps in parts]

    assert writes(_act_parts(m, [fc, sm])[0]) == [(), ((m.arena_mem, True, 12),)]
    assert writes(_act_parts(m, [fc, relu])[0]) == [((m.arena_mem, True, 12),), ()]
