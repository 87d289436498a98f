"""The config schema is the one table of keys: unit kinds and HardwareConfig fields come from it."""

from __future__ import annotations

import dataclasses

import pytest

from edgesim.config import config_from_dict, load_config, read_config
from edgesim.hardware import DERIVED
from edgesim.schema import Attr, HardwareConfig, Unit, meta, schema_fields, unit_kind
from edgesim.units import KINDS, accepted_units


def _names() -> list[str]:
    out = []
    for _, info in schema_fields():
        unit, attr = meta(info, Unit), meta(info, Attr)
        if unit is not None and unit.attr is not None:
            out.append(unit.attr)
        elif attr is not None:
            out.append(attr.name)
    return out


@pytest.mark.parametrize("config", ["npu_small", "ethos_u85_edge", "stm32h7a3"])
def test_every_hardware_field_comes_from_exactly_one_schema_key(config):
    # HardwareConfig lists no field: a config's fields are the schema's names in its order
    # (the file name first, the sections' sources and the resolved config after), then the
    # SRAM energies derived from them (technology.sram_energy). So a new hardware field is one
    # schema line plus the YAMLs (README, "The config schema is its own module")
    assert not dataclasses.is_dataclass(HardwareConfig)
    assert HardwareConfig.__slots__ == ()
    names = _names()
    assert len(names) == len(set(names))
    hw = load_config(config)
    assert [f.name for f in dataclasses.fields(hw)] == ["file", *names, "sources", "resolved",
                                                        *DERIVED]
    # the stored form (edgesim.checked_configs) and a full read are one class
    raw, file = read_config(config)
    assert type(hw) is type(config_from_dict(raw, file=file))


def test_a_field_the_builder_gives_is_a_field():
    # what the builder passes is what the object has: no list to keep in step
    base = {"sram_bytes": 1024, "act_reserve_bytes": 0, "clock_hz": 1e9,
            "sram_energy_model": "fixed", "sram_quoted_read_pj_per_byte": 1.0,
            "sram_quoted_write_pj_per_byte": 2.0, "sram_quoted_leak_w": 0.0}
    hw = HardwareConfig(**base, new_field=3)
    assert (hw.new_field, hw.sram_write_pj_per_byte, hw.period_ps) == (3, 2.0, 1000)
    assert isinstance(hw, HardwareConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.new_field = 4  # type: ignore[misc]
    assert HardwareConfig(**base, new_field=3) == hw
    assert HardwareConfig(**base, new_field=5) != hw


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
