"""Each op class by its own mechanism: broadcast arrays, depthwise on the MAC engine, the IFM
depth granularity of a stem, op-class rates, softmax as a command chain, element-wise fusion."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.sim import simulate
from edgesim.sim.mapping import (
    SOFTMAX_LOWERINGS,
    Array,
    Pooling,
    Rates,
    broadcast_cycles,
    chained,
    mac_cycles,
    op_cycles,
)
from edgesim.sim.plan import Machine, compile_paths
from edgesim.testing import tiny_config
from edgesim.workload import LayerOp, WeightBlock, Workload

#: An Ethos-U55-128-like broadcast array: micro-block 2 pixels (both along Q) x 8 channels of
#: 8-wide dot products (peak 128), 4-cycle kernel steps, a 32-cycle write-back per slice.
U55 = Array(2, 8, "output_stationary", 4 / 3, 0, kind="broadcast", depthwise="array",
            ublock_width=2, step_cycles=4, writeback_cycles=32,
            rates=Rates(output=0.5, eltwise=1.5, lut=1.0, command=16, softmax=28))
PEAK = 128


def _conv(k, c, r, p, q=None, *, groups=1, name="c"):
    q = p if q is None else q
    shape = (("N", 1), ("K", k), ("C", c), ("R", r), ("S", r), ("P", p), ("Q", q))
    n = k * c * r * r * p * q
    return LayerOp(name, "conv", ("w",), 0, 0, 0, n, n, "int8", shape,
                   {"groups": groups} if groups > 1 else {})


def test_depthwise_on_a_broadcast_array_in_closed_form():
    # 3x3 depthwise, 64 channels, 25x5 out (KWS DS-CNN). Micro-blocks: 25 rows x ceil(5/2) = 75;
    # a step over a slice lasts max(32 write-back, 4 x 75) = 300 cycles; 9 taps take
    # ceil(9/4) = 3 steps (one channel per group: part-kernel); 64 / 8 = 8 slices:
    # dpu = 8 x 3 x 300 = 7200. Output stage 0.5 x 8000 = 4000 overlaps, its last slice's
    # 4000 / 8 = 500 does not: 7700 (Vela 5.2.0 gives this op 8124)
    op = _conv(64, 1, 3, 25, 5, groups=64)
    assert op_cycles(U55, op, PEAK, op.macs, 0, 8) == 8 * 3 * 300 + 4000 // 8 == 7700
    # 72,000 MACs in 7700 cycles at 128 MACs/cycle: 7.3 % of peak (9 of 12 tap slots, one of
    # eight dot-product lanes)
    assert 0.07 < op.macs / (7700 * PEAK) < 0.08
    # a 1x1 plane: one micro-block, 4 cycles a step, but the write-back holds each step of a
    # slice to 32: 2 slices x 3 steps x 32 + (0.5 x 16) / 2 = 196
    small = _conv(16, 1, 3, 1, groups=16)
    assert op_cycles(U55, small, PEAK, small.macs, 0, 8) == 2 * 3 * 32 + 4


def test_depthwise_stays_on_the_vector_unit_unless_the_config_says_array():
    op = _conv(64, 1, 3, 25, 5, groups=64)
    vector = Array(2, 8, "output_stationary", 4 / 3, 0, kind="broadcast", ublock_width=2,
                   step_cycles=4, writeback_cycles=32)
    # 72,000 MACs at 4/3 per cycle: 54,000 cycles (what edgesim charged before)
    assert op_cycles(vector, op, PEAK, op.macs, 0, 8) == 54_000


def test_a_three_channel_stem_pads_its_depth_to_the_dot_product():
    # 3x3 conv, C 3 -> K 16, 32x32 out (ResNet-8's stem). Depth-first: 9 taps x ceil(3/32) = 9
    # steps; part-kernel: ceil(9/4) x ceil(3/8) = 3 steps (each 8-channel brick holds 3 real
    # channels): 3. Micro-blocks 32 x 16 = 512, a step 4 x 512 = 2048 cycles; 2 slices:
    # dpu = 2 x 3 x 2048 = 12,288; output 0.5 x 16,384 = 8192, its last slice 4096 exposed
    op = _conv(16, 3, 3, 32)
    assert op_cycles(U55, op, PEAK, op.macs, 0, 8) == 12_288 + 4096 == 16_384
    # the same conv with 8 input channels costs the same: the brick was padded to 8 anyway
    wide = _conv(16, 8, 3, 32)
    assert op_cycles(U55, wide, PEAK, wide.macs, 0, 8) == 16_384
    # utilisation 442,368 / (16,384 x 128) = 21 % (Vela: 23 % for this op on U55-128)
    assert abs(op.macs / (16_384 * PEAK) - 0.211) < 0.001


def test_depth_first_when_channels_fill_the_steps():
    # 1x1 conv C 64 -> K 64, 25x5: one tap, depth-first ceil(64/32) = 2 steps (part-kernel
    # would take ceil(1/4) x 8 = 8); 8 slices x 2 x 300 = 4800, output 4000 / 8 exposed
    op = _conv(64, 64, 1, 25, 5)
    assert op_cycles(U55, op, PEAK, op.macs, 0, 8) == 4800 + 500


def test_batch_one_fc_is_write_back_bound_on_a_broadcast_array():
    # FC 64 -> 12 at batch 1: one micro-block, ceil(64/32) = 2 steps, ceil(12/8) = 2 slices,
    # each step held to the 32-cycle write-back: 128; output 0.5 x 12 = 6, 3 exposed
    assert broadcast_cycles(U55, {"M": 1, "N": 12, "K": 64}, PEAK, 768) == 128 + 3


_dims = st.fixed_dictionaries({
    "K": st.integers(1, 300), "C": st.integers(1, 300), "R": st.sampled_from([1, 3, 5, 7]),
    "P": st.integers(1, 60), "groups": st.sampled_from([1, 1, 2, 4])})


@settings(max_examples=200, deadline=None)
@given(d=_dims, rows=st.sampled_from([1, 2, 4]), cols=st.sampled_from([4, 8, 16, 32]),
       step=st.integers(1, 8), wb=st.integers(0, 64), out=st.floats(0, 2))
def test_broadcast_never_below_the_roofline(d, rows, cols, step, wb, out):
    a = Array(rows, cols, "output_stationary", 1, 0, kind="broadcast", depthwise="array",
              ublock_width=1 if rows == 1 else 2, step_cycles=step, writeback_cycles=wb,
              rates=Rates(output=out))
    peak = rows * cols * 8
    g = d["groups"]
    k, c = d["K"] * g, d["C"]
    dims = {"N": 1, "K": k, "C": c, "R": d["R"], "S": d["R"], "P": d["P"], "Q": d["P"], "G": g}
    macs = k * c * d["R"] ** 2 * d["P"] ** 2
    assert broadcast_cycles(a, dims, peak, macs) >= -(-macs // peak)


def test_op_class_rates_each_their_own():
    # ADD of two 1000-element tensors: 1.5 cycles per output element = 1500 (not the vector
    # unit over 2000 input elements); a 10-element ADD is held to one command, 16 cycles
    add = LayerOp("add", "eltwise", (), 2000, 1000, 3000, 0, 0, "int8")
    assert op_cycles(U55, add, PEAK, 0, 0, 8) == 1500
    tiny = LayerOp("add", "eltwise", (), 20, 10, 30, 0, 0, "int8")
    assert op_cycles(U55, tiny, PEAK, 0, 0, 8) == 16
    # a standalone sigmoid: 1.0 cycle per element through the LUT
    sig = LayerOp("s", "act", (), 1000, 1000, 2000, 0, 0, "int8", meta={"func": "LOGISTIC"})
    assert op_cycles(U55, sig, PEAK, 0, 0, 8) == 1000
    # a pool without its own rate stays on the vector unit: 1000 input elements at 4/3 = 750
    pool = LayerOp("p", "pool", (), 1000, 10, 1010, 0, 0, "int8")
    assert op_cycles(U55, pool, PEAK, 0, 0, 8) == 750


def test_a_fused_softmax_is_a_chain_of_commands_over_its_producer():
    fc = LayerOp("fc", "linear", ("w",), 64, 12, 76, 768, 768, "int8",
                 (("M", 1), ("N", 12), ("K", 64)))
    sm = LayerOp("sm", "act", (), 0, 0, 0, 0, 0, "int8", meta={"func": "SOFTMAX"}, fused=True)
    # 28 commands, each max(16, ceil(1.5 x 12 = 18)) = 18 cycles: 504
    assert op_cycles(U55, sm, PEAK, 0, 0, 8, fc) == 28 * 18
    # a fused ReLU stays free, and so does a softmax where the config states no chain
    relu = LayerOp("r", "act", (), 0, 0, 0, 0, 0, "int8", meta={"func": "relu"}, fused=True)
    assert op_cycles(U55, relu, PEAK, 0, 0, 8, fc) == 0
    plain = Array(2, 8, "output_stationary", 4 / 3, 0)
    assert op_cycles(plain, sm, PEAK, 0, 0, 8, fc) == 0


def test_a_lowered_softmax_pays_its_constants_read_latency_per_command():
    # Ethos-U55-like: SRAM latency 32, an 8-byte port, constants in a memory of latency 64
    # cycles and 1 B/cycle; int32 commands at 1.25 cycles per element over 16-element bricks,
    # OFM block 2 pixels x the elements rounded up to 8 channels.
    u55 = Array(2, 8, "output_stationary", 4 / 3, 8, kind="broadcast", ublock_width=2,
                step_cycles=4, writeback_cycles=32,
                rates=Rates(output=0.5, eltwise=1.5, lut=1.0, command=16, softmax=28,
                            int32=1.25, block=(2, 8), const_latency=64,
                            const_bytes_per_cycle=1.0),
                pooling=Pooling("array", block=(4, 8, 128), delay=2, latency=32,
                                max_output=0.25))
    fc = LayerOp("fc", "linear", ("w",), 64, 12, 76, 768, 768, "int8",
                 (("M", 1), ("N", 12), ("K", 64)))
    sm = LayerOp("sm", "act", (), 0, 0, 0, 0, 0, "int8", meta={"func": "SOFTMAX"}, fused=True)
    # Each element-wise command: max(ceil(rate E), ceil((B / block + rate) E / 4)), E = 16.
    # 12 logits: block 2 x 16 = 32, SRAM B = 32 + 48 // 8 = 38.
    #   sub (int8, LUT; rate max(1.5, 1.0)): max(24, ceil((38/32 + 1.5) x 4) = 11) = 24
    #   asr (scalar constant: B = 64 + 4 = 68): max(20, ceil((68/32 + 1.25) x 4) = 14) = 20
    #   scaled mul, out asr: max(20, 10) = 20 each; round add (12-element constant:
    #   B = 64 + 48 = 112): max(20, ceil((112/32 + 1.25) x 4) = 19) = 20
    # one element: block 2 x 8 = 16, SRAM B = 32; 11 without a constant: max(20, 13) = 20,
    #   10 with one (B = 68): max(20, ceil((68/16 + 1.25) x 4) = 22) = 22 -> 220 + 220
    # max over the 12 logits (a 1 x 12 max pool, pieces 8 + 4 taps, one micro-block):
    #   MAC (8 + 4) x 4 + 2 x 2 = 52, output 1, IFM 32 + 8 // 8 = 33, OFM 32;
    #   (4 x 52 + 53) // 4 + 32 + 33 = 130
    # sum of 12 int32: MAC 32 + 2 = 34, output 1, IFM 32 + 48 // 8 = 38, OFM 32;
    #   (4 x 34 + 35) // 4 + 32 + 38 = 112
    eltwise = 24 + 20 + 3 * 20 + 220 + 220
    assert op_cycles(u55, sm, PEAK, 0, 0, 8, fc) == 130 + 112 + eltwise == 786
    # a constant behind a slower memory costs exactly on the 12 commands that read one
    slow = replace(u55, rates=replace(u55.rates, const_latency=128))
    # 10 one-element ones: ceil(((128 + 4) / 16 + 1.25) x 4) = 38; asr: ceil((132/32 +
    # 1.25) x 4) = 22; round: ceil((176/32 + 1.25) x 4) = 27
    assert op_cycles(slow, sm, PEAK, 0, 0, 8, fc) - 786 == 10 * (38 - 22) + 2 + 7


def test_the_u85_chains_twelve_of_its_softmax_commands():
    # regor's rule on its 27-command lowering: SHL, the Add after the Mul, three of each
    # Newton step's five and the last ASR join the command before them (Vela's 12 rows of 0)
    u85 = chained(SOFTMAX_LOWERINGS[27], 4, 3, True)
    steps = {f"nr{i}.{n}" for i in range(3) for n in ("e", "xe", "4xe")}
    assert u85 == {"d", "nr0", "out"} | steps
    # no chaining without the capability, and scalars read from memory count as inputs
    assert chained(SOFTMAX_LOWERINGS[28], 1, 3, False) == set()
    assert len(chained(SOFTMAX_LOWERINGS[27], 4, 3, False)) < 12


def _residual(fuse: bool):
    blocks = [WeightBlock(f"{n}.w", 576, 576, 8, "dense", 576, 576) for n in "ab"]
    shape = (("N", 1), ("K", 8), ("C", 8), ("R", 3), ("S", 3), ("P", 8), ("Q", 8))
    a = LayerOp("a", "conv", ("a.w",), 512, 512, 1024, 36_864, 36_864, "int8", shape,
                readers=("b", "add"))
    b = LayerOp("b", "conv", ("b.w",), 512, 512, 1536, 36_864, 36_864, "int8", shape,
                readers=("add",))
    add = LayerOp("add", "eltwise", (), 1024, 512, 1536, 0, 0, "int8")
    w = Workload.single_path("res", "dense", blocks, [a, b, add])
    hw = tiny_config(overrides=[
        "compute.array.kind=broadcast", "compute.array.depthwise=array",
        "compute.ops.eltwise=1.5", f"compute.ops.fuse_eltwise={str(fuse).lower()}",
        "compute.ops.source=fusion on and off"])
    return hw, w, add


def test_fusion_removes_exactly_the_element_wise_ops_cycles():
    hw_off, w, add = _residual(False)
    hw_on, _, _ = _residual(True)
    off = simulate(hw_off, w)
    on = simulate(hw_on, w)
    # the ADD alone: 512 output elements x 1.5 = 768 cycles on its own
    assert op_cycles(Array(8, 8, "output_stationary", 8, 0, rates=Rates(eltwise=1.5)), add,
                     64, 0, 0, 8) == 768
    saved = int(off.inferences.compute_cycles[0]) - int(on.inferences.compute_cycles[0])
    assert saved == 768
    # and nothing else moved: the convs cost the same, only the ADD's row went to 0
    (plan_off,) = compile_paths(Machine.from_config(hw_off), w)
    (plan_on,) = compile_paths(Machine.from_config(hw_on), w)
    assert plan_off.cycles[:2].tolist() == plan_on.cycles[:2].tolist()
    assert plan_on.cycles[2] == 0
    assert plan_off.cycles[2] == 768


def test_an_add_that_does_not_read_the_op_before_it_is_not_fused():
    a = _conv(8, 8, 1, 4, name="a")
    a = LayerOp(a.name, a.kind, a.weights, 16, 16, 32, a.macs, a.macs, "int8", a.shape,
                readers=("x",))
    add = LayerOp("add", "eltwise", (), 32, 16, 48, 0, 0, "int8")
    fused = Array(2, 8, "output_stationary", 1, 0, rates=Rates(eltwise=1.0, fuse_eltwise=True))
    assert op_cycles(fused, add, PEAK, 0, 0, 8, a) == 16


def test_systolic_arrays_are_unchanged():
    # a config that does not opt in maps exactly as mac_cycles did
    ws = Array(8, 8, "weight_stationary", 8, 0)
    op = _conv(20, 16, 3, 7)
    assert op_cycles(ws, op, 64, op.macs, 0, 8) == mac_cycles(ws, op.dims, 64, op.macs)
