"""The config schema is the one table of keys: unit kinds and HardwareConfig fields come from it."""

from __future__ import annotations

import dataclasses

import pytest

from edgesim.config import load_config
from edgesim.schema import Attr, HardwareConfig, Unit, meta, schema_fields, unit_kind
from edgesim.units import KINDS, accepted_units

#: Fields that no schema key gives: the file name and what the builder derives from sections.
_DERIVED = {"file", "sources", "resolved",
            # the SRAM at its size and node, from the quoted figures (technology.sram_energy)
            "sram_read_pj_per_byte", "sram_write_pj_per_byte", "sram_leak_w"}


def _names() -> list[str]:
    out = []
    for _, info in schema_fields():
        unit, attr = meta(info, Unit), meta(info, Attr)
        if unit is not None and unit.attr is not None:
            out.append(unit.attr)
        elif attr is not None:
            out.append(attr.name)
    return out


def test_every_hardware_field_comes_from_exactly_one_schema_key():
    names = _names()
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(HardwareConfig)}
    assert set(names) == fields - _DERIVED


def test_every_quantity_key_has_a_known_kind_and_unit():
    quantities = [(".".join(p), meta(i, Unit)) for p, i in schema_fields() if meta(i, Unit)]
    assert len(quantities) >= 16  # clock, 5 sram, 5 offchip, 4 mac energies, index decode
    for key, unit in quantities:
        assert unit.kind in KINDS, key
        assert unit_kind(key) == unit.kind
        assert unit.to is None or unit.to in accepted_units(unit.kind), key


@pytest.mark.parametrize(("key", "kind"), [
    ("clock", "frequency"), ("sram.size", "size"), ("dram.bandwidth", "bandwidth"),
    ("offchip.latency", "time"), ("offchip.read_energy", "energy_per_bit"),
    ("sram.write_energy", "energy_per_byte"), ("sram.leakage", "power"),
    ("energy.index_decode", "energy"), (" sram . size ", "size"),
    ("prefetch.depth", None), ("compute.array.rows", None), ("formats", None), ("sram", None),
    ("no.such.key", None),
])
def test_unit_kind(key, kind):
    assert unit_kind(key) == kind


def _inside(text, unit):
    from edgesim.errors import UnitError
    from edgesim.units import parse_quantity
    try:
        parse_quantity(text, unit.kind, where="x", **unit.bounds())
    except UnitError:
        return False
    return True


def test_each_quantity_reaches_its_field_in_its_unit():
    # 3 of each quantity key's first accepted unit, set by --set, is read back as 3 x the unit's
    # factor in the field's unit (the activation reserve and the scaled energies excepted)
    from edgesim.units import unit_factor
    for path, info in schema_fields():
        unit = meta(info, Unit)
        if unit is None or unit.scaled or unit.attr in (None, "act_reserve_bytes"):
            continue
        u = next(u for u in accepted_units(unit.kind)[1 if unit.kind == "size" else 0:]
                 if _inside(f"3 {u}", unit))   # 3 s is no latency: 3 ms is
        hw = load_config("npu_small", [f"{'.'.join(path)}=3 {u}"])
        want = 3 * unit_factor(unit.kind, u) / (unit_factor(unit.kind, unit.to) if unit.to
                                                 else 1)
        assert getattr(hw, unit.attr) == pytest.approx(float(want), rel=1e-12), path
