"""SRAM energy that scales with the SRAM's size (``technology.sram_energy``, ``sram.energy_model``).

The model: per-byte access energy ~ sqrt(size) (wire length of a square, H-tree-fed array),
leakage ~ size (every cell leaks), both from a reference SRAM quoted at a reference node; access
energies are taken to the chip's node by ``technology.energy_scale``.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from edgesim.errors import ConfigError
from edgesim.technology import SRAM_ENERGY_EXPONENT, energy_scale, sram_energy
from edgesim.testing import tiny_config

KIB = 1024
MIB = 1024 * KIB

#: The shipped reference point, one source: Horowitz ISSCC'14 8 KB SRAM, 10 pJ per 64-bit access
#: at 45 nm / 0.9 V (REFERENCE.md B1) = 1.25 pJ/B, a read and a write alike (one figure per
#: access). No leakage is cited, so the shipped configs set 0; the leakage laws below use a
#: figure a user might bring (1 mW per 8 KiB, a test value).
SQRT = ["sram.energy_model=sqrt", "sram.reference_size=8KiB", "sram.reference_node_nm=45",
        "sram.reference_vdd_v=0.9", "sram.read_energy=1.25pJ/B", "sram.write_energy=1.25pJ/B",
        "sram.leakage=0W", "technology.node_nm=45", "technology.vdd_v=0.9"]
LEAK = ("sram.leakage=1mW",)

SIZES = [32 * KIB * 2**k for k in range(11)]   # 32 KiB .. 32 MiB


def _hw(size: int, extra: tuple[str, ...] = ()):
    return tiny_config(overrides=[*SQRT, f"sram.size={size}B", "sram.activation_reserve=0B",
                                  *extra])


def test_reference_point_reproduces_the_cited_figure():
    # at its own size and node the model is the quoted figure, exactly: 10 pJ / 8 B = 1.25
    hw = _hw(8 * KIB)
    assert (hw.sram_read_pj_per_byte, hw.sram_write_pj_per_byte) == (1.25, 1.25)
    assert hw.sram_leak_w == 0


def test_horowitz_32kb_point_follows_from_the_8kb_one():
    # 4x the capacity -> sqrt(4) = 2x the energy: 2.5 pJ/B = Horowitz's 32 KB, 20 pJ per 64 bits
    assert _hw(32 * KIB).sram_read_pj_per_byte == pytest.approx(20 / 8, rel=1e-12)


def test_energy_per_byte_grows_with_size_over_the_sweep():
    # law: over 32 KiB .. 32 MiB every doubling charges more per access, by sqrt(2) exactly
    hws = [_hw(s) for s in SIZES]
    reads = [h.sram_read_pj_per_byte for h in hws]
    writes = [h.sram_write_pj_per_byte for h in hws]
    assert all(b > a for a, b in pairwise(reads))
    assert all(b > a for a, b in pairwise(writes))
    for a, b in pairwise(reads):
        assert b / a == pytest.approx(2**SRAM_ENERGY_EXPONENT, rel=1e-12)
    # closed form at the ends: 1.25 x sqrt(4) = 2.5 and 1.25 x sqrt(4096) = 80 pJ/B
    assert (reads[0], reads[-1]) == pytest.approx((2.5, 80.0), rel=1e-12)


def test_leakage_is_proportional_to_size():
    # closed form for a user's figure of 1 mW per 8 KiB: 128 mW per MiB, at every size
    for size in SIZES:
        assert _hw(size, LEAK).sram_leak_w == pytest.approx(128e-3 * size / MIB, rel=1e-12)


def test_other_node_follows_technology():
    # the same 512 KiB SRAM at 28 nm / 0.9 V and 16 nm / 0.8 V: access energy x energy_scale,
    # leakage unscaled (the Stillmaker-Baas factors are for switching energy)
    at45 = _hw(512 * KIB, LEAK)
    for node, vdd in ((28, 0.9), (16, 0.8)):
        hw = _hw(512 * KIB, (*LEAK, f"technology.node_nm={node}", f"technology.vdd_v={vdd}"))
        k = energy_scale(45, 0.9, node, vdd)
        assert hw.sram_read_pj_per_byte == pytest.approx(at45.sram_read_pj_per_byte * k)
        assert hw.sram_write_pj_per_byte == pytest.approx(at45.sram_write_pj_per_byte * k)
        assert hw.sram_leak_w == at45.sram_leak_w


def test_fixed_model_takes_the_energies_as_written():
    # a user with CACTI numbers for their macro: no size or node scaling at all
    for size in (32 * KIB, 32 * MIB):
        hw = tiny_config(overrides=[f"sram.size={size}B", "sram.read_energy=0.7pJ/B",
                                    "sram.write_energy=0.9pJ/B", "sram.leakage=2mW",
                                    "technology.node_nm=16", "technology.vdd_v=0.8"])
        assert hw.sram_energy_model == "fixed"
        assert (hw.sram_read_pj_per_byte, hw.sram_write_pj_per_byte, hw.sram_leak_w) == (
            0.7, 0.9, 0.002)


def test_shipped_configs_charge_a_larger_sram_more_per_access():
    # the shipped npu_small, swept 32 KiB -> 32 MiB with --set sram.size=...
    from edgesim.config import load_config
    reads = [load_config("npu_small", [f"sram.size={s}B"]).sram_read_pj_per_byte
             for s in (32 * KIB, 512 * KIB, 32 * MIB)]
    assert reads[0] < reads[1] < reads[2]
    # 512 KiB: 1.25 x sqrt(64) x energy_scale(45, 0.9, 28, 0.9)
    assert reads[1] == pytest.approx(1.25 * 8 * energy_scale(45, 0.9, 28, 0.9), rel=1e-12)


def test_sram_energy_function_closed_form():
    read, write, leak = sram_energy(2.0, 3.0, 1e-3, size_bytes=9 * KIB, reference_bytes=KIB,
                                    reference=(45, 0.9), node=(45, 0.9))
    assert (read, write, leak) == (6.0, 9.0, pytest.approx(9e-3))   # sqrt(9) = 3, 9x
    with pytest.raises(ValueError, match="reference"):
        sram_energy(1, 1, 1, size_bytes=1, reference_bytes=0, reference=(45, 0.9),
                    node=(45, 0.9))


@pytest.mark.parametrize(("overrides", "names"), [
    (["sram.energy_model=sqrt"], "sram.reference_size"),
    (["sram.energy_model=sqrt", "sram.reference_size=8KiB"], "sram.reference_node_nm"),
    (["sram.energy_model=sqrt", "sram.reference_size=0B", "sram.reference_node_nm=45",
      "sram.reference_vdd_v=0.9"], "sram.reference_size"),
    (["sram.energy_model=cacti"], "sram.energy_model"),
    (["sram.reference_size=8 pJ"], "sram.reference_size"),
    (["energy.pe_register=1 mW"], "energy.pe_register"),
])
def test_malformed_energy_spec_is_one_line_naming_the_key(overrides, names):
    with pytest.raises(ConfigError) as err:
        tiny_config(overrides=overrides)
    msg = str(err.value)
    assert "\n" not in msg
    assert names in msg


def test_array_energy_on_the_tiny_workload():
    # PE registers: executed MACs x register bits per MAC / 8 x pJ/B, MAC ops only. The tiny
    # config is weight-stationary: 8 + 2 x 8 + 2 x 32 = 88 bits = 11 B per int8 MAC
    # (edgesim.sim.energy). The tiny workload's MAC ops execute 66000 MACs, so
    # array = 66000 x 11 B x 0.5 pJ/B = 363000 pJ = 363 nJ.
    from edgesim.sim import simulate
    from edgesim.testing import tiny_workload
    hw = tiny_config(overrides=["energy.pe_register=0.5pJ/B"])
    row = simulate(hw, tiny_workload()).rows[0]
    assert row.macs == 66000
    assert math.isclose(row.energy_array_j, 66000 * 11 * 0.5e-12, rel_tol=1e-12)
    no_regs = simulate(tiny_config(), tiny_workload()).rows[0]
    assert no_regs.energy_array_j == 0.0
    assert math.isclose(row.energy_j - no_regs.energy_j, row.energy_array_j, rel_tol=1e-9)
