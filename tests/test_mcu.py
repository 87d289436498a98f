"""The Cortex-M kernel cost model (``edgesim.sim.mcu``): cycles by hand, sparse kernels that
pay for their indices, formats the hardware cannot decode, and the board-level energy."""

from __future__ import annotations

import math

import pytest

from edgesim.config import load_config
from edgesim.errors import ConfigError
from edgesim.sim import simulate
from edgesim.sim.mcu import Kernels, flash_stall_cycles, line_refill_cycles, op_cycles
from edgesim.sim.plan import Machine, compile_paths
from edgesim.testing import tiny_config
from edgesim.workload import LayerOp, WeightBlock, Workload

K = Kernels(cpi=0.5, conv=1.25, pointwise=1.375, depthwise=2.5, fc=1.875, im2col_element=2.75,
            im2col_run=12, requant=14, eltwise=24, pool=2, act=1, softmax=40,
            sparse_nonzero=4.1, op_overhead=300, dcache=16384, cache_line=32,
            flash_wait_states=6, flash_word=16, bus_latency_cycles=4, weight_pass_pixels=2)


def _conv(k, c, r, p, *, groups=1, executed=None):
    shape = (("N", 1), ("K", k), ("C", c), ("R", r), ("S", r), ("P", p), ("Q", p))
    macs = k * c * r * r * p * p
    out = k * p * p
    return LayerOp("c", "conv", ("w",), 0, out, out, macs,
                   macs if executed is None else executed, "int8", shape, {"groups": groups})


def test_a_3x3_conv_by_hand():
    # 3x3 conv, C 16 -> K 32 over 16 x 16 outputs: 1,179,648 MACs
    op = _conv(32, 16, 3, 16)
    macs = 32 * 16 * 9 * 256
    # inner loop 1.25 x 1,179,648 = 1,474,560; im2col 2.75 x 256 px x 144 = 101,376 and
    # 12 x 256 px x 9 runs = 27,648; requant 14 x 8,192 outputs = 114,688
    instr = 1.25 * macs + 2.75 * 256 * 144 + 12 * 256 * 9 + 14 * 32 * 256
    assert instr == 1_718_272
    # weights 4,608 B fit the 16 KiB cache: 144 lines x (4 + 7 x 2) = 2,592 cycles of flash
    assert line_refill_cycles(K) == 18
    assert flash_stall_cycles(K, op, 4608) == 144 * 18
    # 300 + 0.5 x 1,718,272 + 2,592
    assert op_cycles(K, op, macs, 4608, 8) == 300 + 859_136 + 2_592


def test_weights_larger_than_the_cache_are_read_per_two_pixels():
    # 3x3 conv C 64 -> K 64 over 8 x 8: 36,864 B of weights > 16 KiB: 32 passes (64 px / 2)
    op = _conv(64, 64, 3, 8)
    assert flash_stall_cycles(K, op, 36864) == 32 * 1152 * 18
    # a 1x1 conv keeps its weights in the outer loop: one pass, however large
    pw = _conv(256, 256, 1, 3)
    assert flash_stall_cycles(K, pw, 65536) == 2048 * 18


def test_depthwise_and_pointwise_rates():
    dw = _conv(32, 1, 3, 12, groups=32)         # depthwise 3x3: 41,472 MACs, 4,608 outputs
    assert op_cycles(K, dw, dw.macs, 0, 8) == 300 + math.ceil(0.5 * (2.5 * 41472 + 14 * 4608))
    pw = _conv(64, 32, 1, 12)                   # 1x1: no im2col
    assert op_cycles(K, pw, pw.macs, 0, 8) == 300 + math.ceil(
        0.5 * (1.375 * pw.macs + 14 * 64 * 144))


def test_a_sparse_kernel_pays_for_its_indices():
    # the same conv at 87.5 % sparsity, walked by a sparse kernel: each of the 147,456
    # nonzero MACs costs 4.1 instructions (value, index, gathered input, scalar MAC); the
    # im2col, requantisation and overhead do not shrink
    dense = _conv(32, 16, 3, 16)
    nnz = dense.macs // 8
    sparse = _conv(32, 16, 3, 16, executed=nnz)
    fixed = 2.75 * 256 * 144 + 12 * 256 * 9 + 14 * 32 * 256
    want = 300 + math.ceil(0.5 * (4.1 * nnz + fixed))
    assert op_cycles(K, sparse, nnz, 0, 8) == want
    speedup = op_cycles(K, dense, dense.macs, 0, 8) / want
    # 1 / (d x 4.1 / (1.25 + f) + f / (1.25 + f)): 2.13x, near the published kernels' 2.1x
    # at 1:8, far below the 8x of skipping for free
    assert 1.9 < speedup < 2.4


def _nested_fc(encoding: str) -> Workload:
    block = WeightBlock("w", 6400, 640, 8, encoding, 1000, 6400, {"level": 1})
    op = LayerOp("fc", "linear", ("w",), 800, 8, 808, 6400, 640, "int8",
                 (("M", 1), ("N", 8), ("K", 800)))
    return Workload.single_path("n", "nested", [block], [op], 1)


def test_a_format_the_hardware_cannot_decode_never_skips_a_mac():
    # tiny_config decodes nested (formats) but lists no skip_formats: every MAC runs
    hw = tiny_config()
    assert hw.skip_formats == ()
    assert simulate(hw, _nested_fc("nested")).rows[0].macs == 6400
    # where the config says its compute walks the nested layout, the nonzeros only
    skip = tiny_config(overrides=["compute.skip_formats=[nested]"])
    assert simulate(skip, _nested_fc("nested")).rows[0].macs == 640
    # a weight in another layout on that hardware still runs dense
    assert simulate(skip, _nested_fc("csr")).rows[0].macs == 6400


@pytest.mark.parametrize("name", ["ethos_u55", "ethos_u65", "ethos_u85_edge", "npu_small"])
def test_npus_skip_no_format(name):
    hw = load_config(name)
    assert hw.skip_formats == ()
    assert not hw.skip_zero_weights


def test_a_skip_format_must_be_decoded_and_sparse():
    with pytest.raises(ConfigError, match=r"compute\.skip_formats"):
        tiny_config(overrides=["formats=[dense]", "compute.skip_formats=[csr]"])
    # a layout that hands the array every weight (encodings.CAPABILITIES: not sparse) has no
    # zero MAC to skip, even where the hardware decodes it
    with pytest.raises(ConfigError, match=r"compute\.skip_formats.*'dense' is not sparse"):
        tiny_config(overrides=["compute.skip_formats=[dense]"])


def test_an_mcu_needs_its_kernels():
    with pytest.raises(ConfigError, match=r"compute\.kernels"):
        tiny_config(overrides=["compute.array.kind=mcu"])


def test_nested_on_the_mcu_pays_index_cycles():
    # the MCU's nested kernels walk 640 nonzeros at sparse_nonzero instructions each
    hw = load_config("stm32h7a3")
    k = Machine.from_config(hw).array.kernels
    w = _nested_fc("nested")
    plan, = compile_paths(Machine.from_config(hw), w)
    # 300 + ceil(cpi x (4.1 x 640 + 14 x 8 outputs)) + 1000 B of stream = 32 lines, one pass
    want = (k.op_overhead + math.ceil(k.cpi * (k.sparse_nonzero * 640 + k.requant * 8) - 1e-9)
            + 32 * line_refill_cycles(k))
    assert int(plan.cycles[0]) == want
    assert plan.macs == 640


def test_board_energy_parts_match_their_formulas():
    hw = load_config("stm32h7a3")
    w = _nested_fc("nested")
    row = simulate(hw, w).rows[0]
    # the time-proportional part: board power x latency (the SRAM's leakage is 0 here)
    assert hw.sram_leak_w == 0
    assert math.isclose(row.energy_leak_j, hw.board_w * row.latency_s, rel_tol=1e-12)
    # the per-access parts: SRAM bytes at their per-byte energies, flash bits at its per-bit
    assert math.isclose(row.energy_sram_j, (row.sram_read_bytes * hw.sram_read_pj_per_byte
                                            + row.sram_write_bytes * hw.sram_write_pj_per_byte)
                        * 1e-12, rel_tol=1e-12)
    assert math.isclose(row.energy_offchip_j,
                        row.weight_dram_bytes * 8 * hw.offchip_read_pj_per_bit * 1e-12,
                        rel_tol=1e-12)
    # the core's work is inside the board power: MACs and decoding cost nothing apart
    assert row.energy_mac_j == row.energy_decode_j == row.energy_array_j == 0
    assert math.isclose(row.energy_j, row.energy_leak_j + row.energy_sram_j
                        + row.energy_offchip_j, rel_tol=1e-12)
