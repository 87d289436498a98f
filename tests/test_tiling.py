"""Tiling within an op (``edgesim.sim.tiling``): closed-form cases and the laws of the orders."""

from __future__ import annotations

import itertools
from pathlib import Path as FilePath

import pytest
from chains import conv, conv_chains
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgesim.cli import main
from edgesim.sim import simulate
from edgesim.sim.tiling import TileError, plan_tiling
from edgesim.testing import stderr_lines, tiny_config
from edgesim.workload import WeightBlock, Workload

NPU = str(FilePath(__file__).resolve().parent.parent / "edgesim" / "hwconfigs" / "npu_small.yaml")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _one_conv(weight_bytes: int, in_bytes: int, out_bytes: int, *, k: int = 4,
              p: int = 4) -> Workload:
    blocks = [WeightBlock("w", weight_bytes, weight_bytes, 8, "dense", weight_bytes,
                          weight_bytes)]
    op = conv("c", "w", k=k, p=p, in_bytes=in_bytes, out_bytes=out_bytes)
    return Workload.single_path("one", "dense", blocks, [op], 1)


# ---------------------------------------------------------------------------------------------
# closed form
# ---------------------------------------------------------------------------------------------

def test_two_by_two_tiling_by_hand():
    # 2000 B of weights over 4 output channels (500 B each) in a 1000 B weight SRAM: 2 channels
    # per tile, 2 tiles. 3000 B of off-chip input over 4 output rows (750 B each) in a 1500 B
    # activation share: 2 rows per stripe, 2 stripes.
    #   weights outer: the input crosses once per tile: (2 - 1) x 3000 = 3000 B re-read
    #   input outer:   the weights cross once per stripe: (2 - 1) x 2000 = 2000 B re-fetched
    # input outer moves fewer bytes and is chosen.
    kw = dict(weight_bytes=2000, input_offchip=3000, input_bytes=3000, channels=4, rows=4,
              weight_buf=1000, act_buf=1500)
    t = plan_tiling("c", **kw)
    assert (t.order, t.weight_tiles, t.input_stripes) == ("input_outer", 1, 2)
    assert (t.weight_refetch, t.act_reread) == (2000, 0)
    # the same op with 1000 B of input (2 stripes of 500 B in a 500 B share): weights outer
    # re-reads (2 - 1) x 1000 = 1000 B, input outer re-fetches 2000 B: weights outer
    t = plan_tiling("c", **{**kw, "input_offchip": 1000, "input_bytes": 1000, "act_buf": 500})
    assert (t.order, t.weight_tiles, t.act_reread, t.weight_refetch) == (
        "weights_outer", 2, 1000, 0)


def test_once_when_weights_fit_or_input_is_on_chip():
    kw = dict(input_bytes=3000, channels=4, rows=4, act_buf=100)
    assert plan_tiling("c", weight_bytes=1000, input_offchip=3000, weight_buf=1000,
                       **kw).order == "once"
    assert plan_tiling("c", weight_bytes=9000, input_offchip=0, weight_buf=1000,
                       **kw).order == "once"


def test_split_reduction_when_the_partial_sums_fit():
    # a batch-1 FC: 40 B of partial sums fit the 100 B share, so input channels and weight
    # slices are cut together and every byte crosses once
    t = plan_tiling("fc", weight_bytes=8000, input_offchip=2000, input_bytes=2000, channels=10,
                    rows=1, weight_buf=1000, act_buf=100, psum_bytes=40)
    assert (t.order, t.weight_tiles, t.weight_refetch, t.act_reread) == (
        "reduction_outer", 8, 0, 0)


def test_smallest_tile_that_fits_nothing_is_an_error_naming_the_op():
    # one output channel is 500 B (> 400 B of weight SRAM), one output row of input 750 B
    # (> 700 B of activation share)
    with pytest.raises(TileError, match=r"op conv7: .*need 500 B.*400 B.*needs 750 B.*"
                                        r"700 B"):
        plan_tiling("conv7", weight_bytes=2000, input_offchip=3000, input_bytes=3000,
                    channels=4, rows=4, weight_buf=400, act_buf=700)


def test_simulated_weights_outer_rereads_the_input():
    # tiny: 1000 B weight SRAM + 1 KiB activation share; the network input (4000 B, op 0) is
    # read from the off-chip arena. Weights 2000 B over K=4 (500 B/channel): 2 tiles of 2.
    # Input over P=4 rows, 1000 B/row: 1 row per 1024 B stripe, 4 stripes. Partial sums of
    # the 300 B output at 32 bits (1200 B) do not fit 1024 B.
    #   weights outer: (2 - 1) x 4000 = 4000 B re-read; input outer: (4 - 1) x 2000 = 6000 B
    # -> weights outer: act_dram = 2 x 4000 (input) + 300 (output) = 8300 B, weights 2000 B.
    r = simulate(tiny_config(sram=1000), _one_conv(2000, 4000, 300), per_layer=True)
    row = r.rows[0]
    assert (row.weight_dram_bytes, row.weight_refetch_bytes) == (2000, 0)
    assert (row.act_dram_bytes, row.act_reread_bytes) == (8300, 4000)
    assert r.layer_rows[0].tiling == "weights_outer/2"


def test_simulated_input_outer_refetches_the_weights():
    # as above with a 500 B weight SRAM (1 channel per tile, 4 tiles) and 1500 B of input
    # (375 B/row: 2 rows per 1024 B stripe, 2 stripes):
    #   weights outer: (4 - 1) x 1500 = 4500 B re-read; input outer: (2 - 1) x 2000 = 2000 B
    # -> input outer: weights cross twice, 4000 B, of which 2000 B re-fetched; the input once.
    r = simulate(tiny_config(sram=500), _one_conv(2000, 1500, 300), per_layer=True)
    row = r.rows[0]
    assert (row.weight_dram_bytes, row.weight_refetch_bytes) == (4000, 2000)
    assert (row.act_dram_bytes, row.act_reread_bytes) == (1500 + 300, 0)
    assert r.layer_rows[0].tiling == "input_outer/2"
    assert r.layer_rows[0].weight_refetch_bytes == 2000


def test_refetched_weights_are_the_same_with_the_memo_and_without(passes):
    # the case above, three inputs: the memo's run (with the compiled timeline where built,
    # ``_kernel.run``, which adds the re-fetches itself) gives the rows of the run event by
    # event, 4000 B crossing per input of which 2000 B re-fetched
    w = _one_conv(2000, 1500, 300).with_sequence([0, 0, 0])
    on = simulate(tiny_config(sram=500), w).rows
    assert on == simulate(tiny_config(sram=500), w, memo=False).rows
    assert [(r.weight_dram_bytes, r.weight_refetch_bytes) for r in on] == [(4000, 2000)] * 3


def test_cli_names_the_op_whose_tile_does_not_fit(capsys):
    # a 16 B SRAM (12 B for weights, 4 B for activations) holds neither one output channel of
    # the user model's first conv (3 x 3 x 3 int8 weights + a 32-bit bias + 4 B of scale = 35 B)
    # nor one output row of its 3 x 16 x 16 input (48 B): one line, exit 2
    code = main(["run", NPU, "--model", "usermodels:tiny_net", "--set", "sram.size=16B",
                 "--inputs", "1"])
    raw = capsys.readouterr().err
    assert "Traceback" not in raw, raw
    err = "\n".join(stderr_lines(raw))     # the stage lines of a first trace set aside
    assert code == 2
    assert "\n" not in err, err
    assert err.startswith("edgesim: error: op 0 (conv): its smallest tile"), err
    for part in ("need 35 B", "needs 48 B", "sram.size"):
        assert part in err, err


# ---------------------------------------------------------------------------------------------
# laws
# ---------------------------------------------------------------------------------------------

@st.composite
def ops(draw):
    """An op's weights, input and tile units, and a pair of SRAM buffers."""
    channels = draw(st.integers(1, 64))
    rows = draw(st.integers(1, 64))
    return dict(weight_bytes=draw(st.integers(1, 50_000)),
                input_bytes=(inb := draw(st.integers(1, 50_000))),
                input_offchip=draw(st.integers(0, inb)), channels=channels, rows=rows)


@FAST
@given(op=ops(), wb=st.lists(st.integers(0, 60_000), min_size=2, max_size=4),
       ab=st.lists(st.integers(0, 60_000), min_size=2, max_size=4))
def test_extra_bytes_never_rise_as_buffers_grow(op, wb, ab):
    # along a chain of growing (weight, activation) buffers, an op that can be tiled stays
    # tileable and its extra bytes never rise; the extra bytes are never negative (never
    # below once-only traffic) and zero whenever the weights fit or the input is on chip
    last = None
    for w, a in zip(sorted(wb), sorted(ab), strict=False):
        try:
            t = plan_tiling("op", weight_buf=w, act_buf=a, **op)
        except TileError:
            assert last is None, "a larger SRAM cannot run what a smaller one ran"
            continue
        extra = t.weight_refetch + t.act_reread
        assert extra >= 0
        if op["weight_bytes"] <= w or op["input_offchip"] == 0:
            assert t.order == "once"
            assert extra == 0
        if last is not None:
            assert extra <= last
        last = extra


def _runs(sram: int, w: Workload, policy: str):
    hw = tiny_config(sram=sram, overrides=["sram.activation_reserve=25%"])
    try:
        return simulate(hw, w, policy=policy)
    except TileError:
        return None


@FAST
@given(w=conv_chains(), sizes=st.lists(st.integers(0, 80_000), min_size=2, max_size=4))
def test_bytes_and_latency_never_rise_as_sram_grows(w, sizes):
    # all else fixed (a quarter of SRAM for activations), a larger SRAM never moves more
    # weight or activation bytes, nor takes longer, in any inference of the stream. Under
    # belady: lru with blocks of different sizes can keep a big block and lose two small ones
    # at a larger size (an anomaly of the residency policy, not of the tiling)
    runs = [_runs(s, w, "belady") for s in sorted(sizes)]
    ok = [r is not None for r in runs]
    assert ok == sorted(ok), ok
    runs = [r for r in runs if r is not None]
    for a, b in itertools.pairwise(runs):
        for ra, rb in zip(a.rows, b.rows, strict=True):
            assert rb.weight_dram_bytes + rb.act_dram_bytes <= (ra.weight_dram_bytes
                                                                + ra.act_dram_bytes)
            assert rb.latency_s <= ra.latency_s


def test_a_separate_accumulator_ram_never_shrinks_the_block():
    # The U85 keeps accumulators in their own RAM (regor s_EthosU85Configs: 16 KiB IFM RAM,
    # 64 KiB ACC RAM): the input window alone must fit the 16 KiB, so every block that fits
    # the shared buffer fits too and the search's best (fewest elements fetched per output)
    # is never worse. By hand, a 1x1 conv 12x12x64 from 32 channels, micro-block 2x2x16:
    # shared, a 6x6x64 block needs 2 x 36 x 64 x 4 B = 18 KiB of accumulators alone (> 16
    # KiB); in 64 KiB of ACC RAM a 6x12x64 block (2 x 18 KiB) fits beside a 6x12x32 input.
    from edgesim.sim.tiling import BlockBuffer, output_block
    base = dict(buffer=16384, bank=1024, ifm_granule=1, acc_granule=1,
                acc_bytes=4, ublock=(2, 2, 16), max=(128, 128, 1024), split_depth=16,
                ifm_depth=16)
    shared, split = BlockBuffer(**base), BlockBuffer(**base, acc_buffer=65536)
    big = output_block(split, P=12, Q=12, K=64, C=32, R=1, S=1)
    assert (big.h, big.w, big.d) == (6, 12, 64)

    def cost(b, p, q, k, c, r):   # elements fetched per output element (output_block's)
        return (b.ih * b.iw * c * (p / b.h) * (q / b.w) * -(-k // b.d)
                + r * r * c * -(-p // b.h) * -(-q // b.w) * k) / (p * q * k)

    for p, k, c, r in itertools.product((5, 12, 48), (8, 64, 256), (1, 16, 128), (1, 3)):
        a = output_block(shared, P=p, Q=p, K=k, C=c, R=r, S=r)
        b = output_block(split, P=p, Q=p, K=k, C=c, R=r, S=r)
        assert cost(b, p, p, k, c, r) <= cost(a, p, p, k, c, r) + 1e-9, (p, k, c, r)


def test_a_u85_depthwise_block_holds_one_block_of_accumulators():
    # regor sizes a depthwise conv's block by area fit on the pools' 2x4x16 micro-block with ONE
    # block's accumulators in the 64 KiB ACC RAM (FindDepthwiseConfig / AreaFit); a conv's
    # search keeps two. KWS's 3x3 depthwise conv, 25x5x64: the OFM rounded to the micro-block
    # is 26x8x64, accumulators 26 x 8 x 64 x 4 B = 52 KiB (<= 64; two would be 104 KiB), input
    # window (26 - 1 + 3 = 28) x (8 - 1 + 3 = 10 -> 12) x 16 B = 5.25 KiB, double-buffered 12
    # of 16 banks: one block, Vela 5.2.0's choice (--enable-debug-db: 26x8x64). Counting two
    # blocks of accumulators, the 2x2x16 search takes 32 channels at a time.
    from edgesim.sim.tiling import BlockBuffer, output_block
    u85 = BlockBuffer(16384, 1024, 1, 1, 4, (2, 2, 16), (128, 128, 1024), 16, 16,
                      acc_buffer=65536)
    dw = output_block(u85, P=25, Q=5, K=64, C=1, R=3, S=3, depthwise=(2, 4, 16))
    assert (dw.h, dw.w, dw.d) == (26, 8, 64)
    conv = output_block(u85, P=25, Q=5, K=64, C=1, R=3, S=3)
    assert conv.d == 32
    # without a separate accumulator RAM (U55/U65) the micro-block is ignored
    shared = BlockBuffer(16384, 1024, 1, 1, 4, (2, 2, 16), (128, 128, 1024), 16, 16)
    assert (output_block(shared, P=25, Q=5, K=64, C=1, R=3, S=3, depthwise=(2, 4, 16))
            == output_block(shared, P=25, Q=5, K=64, C=1, R=3, S=3))
