"""The energy model of one inference: each part by its own formula, the total their sum."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgesim.config import load_config
from edgesim.sim import Energy, inference_energy, simulate
from edgesim.sim.energy import (
    ACCUMULATOR_BITS,
    REGISTER_ACCESSES,
    compute_energy,
    energy_parts,
    register_bits_per_mac,
)
from edgesim.testing import tiny_config, tiny_workload

ROOT = Path(__file__).resolve().parent.parent

# distinct per-byte / per-bit figures, so a read charged at the write price (or a byte count
# taken for a bit count) shows
HW = SimpleNamespace(sram_read_pj_per_byte=1.5, sram_write_pj_per_byte=2.5, sram_leak_w=0.003)
DRAM = SimpleNamespace(read_pj_per_bit=7.0, write_pj_per_bit=11.0)


def test_each_part_has_its_own_formula():
    e = inference_energy(HW, mac_j=4e-12, array_j=6e-12, decode_j=5e-12, sram_read_bytes=100,
                         sram_write_bytes=10, latency_s=2e-6, memories=[(20, 3, DRAM)])
    # sram: 100 B x 1.5 pJ + 10 B x 2.5 pJ = 175 pJ
    assert math.isclose(e.sram, 175e-12, rel_tol=1e-12)
    # off-chip: 20 B x 8 x 7 pJ + 3 B x 8 x 11 pJ = 1120 + 264 = 1384 pJ
    assert math.isclose(e.offchip, 1384e-12, rel_tol=1e-12)
    # leakage: 3 mW x 2 us = 6 nJ
    assert math.isclose(e.leak, 6e-9, rel_tol=1e-12)
    # MAC, array and decode energies come from compute_energy and are passed through
    assert (e.mac, e.array, e.decode) == (4e-12, 6e-12, 5e-12)
    assert e.total == e.mac + e.array + e.sram + e.offchip + e.decode + e.leak


def test_nothing_moved_costs_only_leakage():
    e = inference_energy(HW, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=0,
                         sram_write_bytes=0, latency_s=1.0)
    assert e == Energy(mac=0.0, array=0.0, sram=0.0, offchip=0.0, decode=0.0, leak=0.003)


def test_compute_energy_prices_each_count():
    m = SimpleNamespace(mac_pj={"int8": 0.3, "fp16": 2.0}, register_pj_per_byte=0.1,
                        index_decode_pj=0.03)
    mac, array, decode = compute_energy(m, macs={"int8": 1000, "fp16": 10}, register_bits=8800,
                                        decoded=7)
    # mac: 1000 x 0.3 + 10 x 2.0 = 320 pJ; array: 8800 bits = 1100 B x 0.1 = 110 pJ;
    # decode: 7 x 0.03 = 0.21 pJ
    assert mac == pytest.approx(320e-12, rel=1e-12)
    assert array == pytest.approx(110e-12, rel=1e-12)
    assert decode == pytest.approx(0.21e-12, rel=1e-12)


def test_register_bits_per_mac_by_dataflow():
    # accesses per MAC of (weight, activation, partial sum), by hand (edgesim.sim.energy):
    # weight-stationary: weight read 1; activation latched from the left + read 2; partial sum
    # read from above + new sum latched 2. int8, 8-bit activations: 8 + 16 + 64 = 88 bits
    assert register_bits_per_mac("int8", act_bits=8, dataflow="weight_stationary") == 88
    # output-stationary: weight and activation each latched + read (2 + 2), the accumulator
    # read + written (2): 16 + 16 + 64 = 96 bits
    assert register_bits_per_mac("int8", act_bits=8, dataflow="output_stationary") == 96
    # row-stationary (Eyeriss RF): 3 reads + 1 write: 8 + 8 + 2 x 32 = 80 bits
    assert register_bits_per_mac("int8", act_bits=8, dataflow="row_stationary") == 80
    # other precisions change only the weight's share
    assert register_bits_per_mac("binary", act_bits=8, dataflow="weight_stationary") == 1 + 16 + 64
    assert register_bits_per_mac("fp16", act_bits=16, dataflow="output_stationary") == (
        32 + 32 + 64)
    assert ACCUMULATOR_BITS == 32
    # law: a stationary operand is read once, a moving one written and read; the partial sum
    # is read and written in every dataflow
    for w, a, p in REGISTER_ACCESSES.values():
        assert {w, a} <= {1, 2}
        assert p == 2


def test_unknown_dataflow_is_named():
    with pytest.raises(ValueError, match="'diagonal'"):
        register_bits_per_mac("int8", act_bits=8, dataflow="diagonal")


@pytest.mark.parametrize(("dataflow", "bytes_per_mac"),
                         [("weight_stationary", 11), ("output_stationary", 12)])
def test_tiny_workload_parts_in_closed_form(dataflow, bytes_per_mac):
    # tiny_config at 45 nm/0.9 V (no scaling): int8 MAC 0.2 pJ, SRAM 1 pJ/B read and write,
    # off-chip 10 pJ/bit, leakage 1 mW; register 0.1 pJ/B set here
    hw = tiny_config(overrides=["energy.pe_register=0.1 pJ/B",
                                f"compute.array.dataflow={dataflow}"])
    row = simulate(hw, tiny_workload()).inferences.iloc[0]
    # MACs: conv a 64,000 + linear b 2,000 = 66,000 (relu has none)
    assert row.macs == 66_000
    # mac = 66,000 x 0.2 pJ = 13,200 pJ
    assert row.energy_mac_j == pytest.approx(13_200e-12, rel=1e-12)
    # array = 66,000 MACs x 11 B (WS: 88 bits) or 12 B (OS: 96 bits) x 0.1 pJ/B
    assert row.energy_array_j == pytest.approx(66_000 * bytes_per_mac * 0.1e-12, rel=1e-12)
    # sram = (bytes read + bytes written) x 1 pJ/B
    assert row.energy_sram_j == pytest.approx(
        (row.sram_read_bytes + row.sram_write_bytes) * 1e-12, rel=1e-12)
    # off-chip: the 3000 weight bytes and the 100-byte input read, the 10-byte output
    # written: (3000 + 100 + 10) B x 8 x 10 pJ/bit = 248,800 pJ
    assert (row.weight_dram_bytes, row.act_dram_bytes) == (3000, 110)
    assert row.energy_offchip_j == pytest.approx(248_800e-12, rel=1e-12)
    assert row.energy_decode_j == 0            # dense blocks: nothing to decode
    assert row.energy_leak_j == pytest.approx(1e-3 * row.latency_s, rel=1e-12)
    assert row.energy_j == pytest.approx(
        row.energy_mac_j + row.energy_array_j + row.energy_sram_j + row.energy_offchip_j
        + row.energy_decode_j + row.energy_leak_j, rel=1e-12)


def test_shipped_npu_configs_charge_no_unsourced_leakage():
    # no leakage figure is cited for any node (REFERENCE.md): every shipped NPU config sets 0;
    # the board-level MCU config states its whole board power instead (energy.board_power)
    for name in ("npu_small", "edgetpu", "nvdla_small", "ethos_u55", "ethos_u65",
                 "ethos_u65_384k", "ethos_u65_edge", "ethos_u85_edge", "stm32h7", "stm32h7a3"):
        hw = load_config(name)
        assert hw.sram_leak_w == 0, name
        # one SRAM source (Horowitz ISSCC'14): one figure per access, read and write alike
        assert hw.sram_write_pj_per_byte == hw.sram_read_pj_per_byte, name


def test_board_power_is_charged_for_the_latency():
    # a board-level config: 120 mW x 2 us = 240 nJ, inside the time-proportional part beside
    # the SRAM's leakage (3 mW x 2 us = 6 nJ); the per-access parts are unchanged
    board = SimpleNamespace(**vars(HW), board_w=0.12)
    e = inference_energy(board, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=100,
                         sram_write_bytes=10, latency_s=2e-6, memories=[(20, 3, DRAM)])
    assert math.isclose(e.board, 240e-9, rel_tol=1e-12)
    assert math.isclose(e.leak, 246e-9, rel_tol=1e-12)
    assert math.isclose(e.sram, 175e-12, rel_tol=1e-12)
    assert e.total == e.mac + e.array + e.sram + e.offchip + e.decode + e.leak
    # the engine's rows take the same parts as a tuple (``energy_parts``), total first, to
    # the bit
    parts = energy_parts(board, 1e-9, 2e-9, 3e-9, 100, 10, 2e-6, [(20, 3, DRAM)])
    e = inference_energy(board, mac_j=1e-9, array_j=2e-9, decode_j=3e-9, sram_read_bytes=100,
                         sram_write_bytes=10, latency_s=2e-6, memories=[(20, 3, DRAM)])
    assert parts == (e.total, e.mac, e.array, e.sram, e.offchip, e.decode, e.leak, e.board)


@pytest.mark.slow
def test_readme_peers_table_is_what_the_script_prints():
    # the README's energy table against nn-dataflow and ZigZag comes from running code
    spec = importlib.util.spec_from_file_location("energy_peers",
                                                  ROOT / "benchmarks" / "energy_peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.table("dense_r50") in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("config", "model", "prefetch"), [
    ("tiny", None, "next"),                       # leakage over time, the off-chip arena
    ("tiny-spill", None, "next"),                 # activations spilled and read back
    ("ethos_u55", "dense_pn2", "next"),           # flash weights, SRAM port, vector ops
    ("stm32h7", "dense_pn2", "next"),             # board power over each op's time
    ("npu_small", "sigmab_pn2", "speculative"),   # routed, wrong guesses' bytes
])
def test_per_op_energies_add_up_to_the_inference_energy(config, model, prefetch):
    from edgesim import api
    if model is None:
        sets = ["sram.activation_reserve=0B"] if config == "tiny-spill" else []
        r = api.run(tiny_config(sram=1500, overrides=sets), tiny_workload(inputs=3),
                    per_layer=True)
    else:
        r = api.run(config, model, inputs=6, overrides=[f"prefetch.mode={prefetch}"],
                    per_layer=True)
    for inf in r.result.rows:
        ops = [op.energy_j for op in r.result.layer_rows if op.input == inf.input]
        assert math.fsum(ops) == pytest.approx(inf.energy_j, rel=1e-12)
        assert min(ops) >= 0
    if prefetch == "speculative":
        assert any(inf.spec_wasted_bytes for inf in r.result.rows)
