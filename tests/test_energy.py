"""The energy model of one inference: each part by its own formula, the total their sum."""

from __future__ import annotations

import math
from types import SimpleNamespace

from edgesim.sim import Energy, inference_energy
from edgesim.sim.energy import register_bits_per_mac

# distinct per-byte / per-bit figures, so a read charged at the write price (or a byte count
# taken for a bit count) shows
HW = SimpleNamespace(sram_read_pj_per_byte=1.5, sram_write_pj_per_byte=2.5,
                     offchip_read_pj_per_bit=7.0, offchip_write_pj_per_bit=11.0, sram_leak_w=0.003)


def test_each_part_has_its_own_formula():
    e = inference_energy(HW, mac_j=4e-12, array_j=6e-12, decode_j=5e-12, sram_read_bytes=100,
                         sram_write_bytes=10, offchip_read_bytes=20, offchip_write_bytes=3,
                         latency_s=2e-6)
    # sram: 100 B x 1.5 pJ + 10 B x 2.5 pJ = 175 pJ
    assert math.isclose(e.sram, 175e-12, rel_tol=1e-12)
    # off-chip: 20 B x 8 x 7 pJ + 3 B x 8 x 11 pJ = 1120 + 264 = 1384 pJ
    assert math.isclose(e.offchip, 1384e-12, rel_tol=1e-12)
    # leakage: 3 mW x 2 us = 6 nJ
    assert math.isclose(e.leak, 6e-9, rel_tol=1e-12)
    # MAC, array and decode energies are computed per op by the plan and passed through
    assert (e.mac, e.array, e.decode) == (4e-12, 6e-12, 5e-12)
    assert e.total == e.mac + e.array + e.sram + e.offchip + e.decode + e.leak


def test_nothing_moved_costs_only_leakage():
    e = inference_energy(HW, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=0,
                         sram_write_bytes=0, offchip_read_bytes=0, offchip_write_bytes=0,
                         latency_s=1.0)
    assert e == Energy(mac=0.0, array=0.0, sram=0.0, offchip=0.0, decode=0.0, leak=0.003)


def test_register_bits_per_mac():
    # weight bits + activation bits + one 32-bit accumulator, per MAC (edgesim.sim.energy)
    assert register_bits_per_mac("int8", act_bits=8) == 8 + 8 + 32
    assert register_bits_per_mac("binary", act_bits=8) == 1 + 8 + 32
    assert register_bits_per_mac("fp16", act_bits=16) == 16 + 16 + 32


def test_board_power_is_charged_for_the_latency():
    # a board-level config: 120 mW x 2 us = 240 nJ, inside the time-proportional part beside
    # the SRAM's leakage (3 mW x 2 us = 6 nJ); the per-access parts are unchanged
    board = SimpleNamespace(**vars(HW), board_w=0.12)
    e = inference_energy(board, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=100,
                         sram_write_bytes=10, offchip_read_bytes=20, offchip_write_bytes=3,
                         latency_s=2e-6)
    assert math.isclose(e.board, 240e-9, rel_tol=1e-12)
    assert math.isclose(e.leak, 246e-9, rel_tol=1e-12)
    assert math.isclose(e.sram, 175e-12, rel_tol=1e-12)
    assert e.total == e.mac + e.array + e.sram + e.offchip + e.decode + e.leak
