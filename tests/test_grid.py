"""Sweep grids: each --set form, each error as one line naming the --set, product order."""

from __future__ import annotations

import pytest

from edgesim.errors import ConfigError
from edgesim.sweep.grid import grid_points, parse_axis, parse_grid
from edgesim.testing import TINY_CONFIG

CFG = "npu_small"


def test_single_value_is_kept_as_written():
    assert parse_axis("sram.size=2MiB", CFG).values == ("2MiB",)


def test_list_keeps_order_and_drops_repeats():
    axis = parse_axis("dram.bandwidth=4GB/s,1GB/s,4GB/s", CFG)
    assert axis.key == "offchip.bandwidth"  # dram. is an alias of offchip.
    assert axis.values == ("4GB/s", "1GB/s")


def test_geometric_range_32k_to_32m_is_11_powers_of_two():
    # 32 KiB * 2^k <= 32 MiB  <=>  k <= log2(1024) = 10: eleven sizes, both ends included
    axis = parse_axis("sram.size=32KiB..32MiB:x2", CFG)
    assert len(axis.values) == 11
    assert axis.values[0] == "32 KiB"
    assert axis.values[-1] == "32 MiB"


def test_geometric_range_stops_below_stop_when_not_hit():
    # 1, 3, 9 MiB; 27 MiB > 10 MiB is left out
    assert parse_axis("sram.size=1MiB..10MiB:x3", CFG).values == ("1 MiB", "3 MiB", "9 MiB")


def test_arithmetic_range_with_units():
    axis = parse_axis("offchip.bandwidth=1GB/s..4GB/s:+1GB/s", CFG)
    assert axis.values == ("1 GB/s", "2 GB/s", "3 GB/s", "4 GB/s")


def test_arithmetic_range_of_plain_counts():
    assert parse_axis("prefetch.depth=0..4:+2", CFG).values == ("0", "2", "4")


def test_time_range_with_decimal_start():
    assert parse_axis("offchip.latency=0.5ns..2ns:x2", CFG).values == ("500 ps", "1 ns", "2 ns")


def test_flow_list_is_one_value():
    assert parse_axis("formats=[dense,csr]", CFG).values == ("[dense,csr]",)


def test_grid_is_product_first_axis_slowest():
    axes = parse_grid(CFG, ["sram.size=1MiB,2MiB", "dram.bandwidth=1GB/s,2GB/s"])
    pts = grid_points(axes)
    assert [(p["sram.size"], p["offchip.bandwidth"]) for p in pts] == [
        ("1MiB", "1GB/s"), ("1MiB", "2GB/s"), ("2MiB", "1GB/s"), ("2MiB", "2GB/s")]


def test_no_sets_is_one_empty_point():
    assert grid_points(parse_grid(CFG, [])) == [{}]


def test_config_mapping_is_accepted():
    assert parse_axis("sram.size=2KiB,4KiB", TINY_CONFIG).values == ("2KiB", "4KiB")


@pytest.mark.parametrize(("text", "words"), [
    ("sram.size=32KiB..32MiB", "needs a step"),              # .. without a factor
    ("sram.size=32KiB..32MiB:", "needs a step"),
    ("sram.size=1GB/s", "has unit 'GB/s'"),                  # unit not fitting the key
    ("sram.size=32KiB..1GB/s:x2", "has unit 'GB/s'"),
    ("sram.size=", "empty value"),                           # empty range / value
    ("sram.size=1MiB,,2MiB", "empty list entry"),
    ("sram.size=..1MiB:x2", "empty range end"),
    ("sram.size=1MiB..32KiB:x2", "below its start"),         # stop < start
    ("sram.size=1MiB..2MiB:x1", "must be > 1"),
    ("sram.size=1MiB..2MiB:+0B", "must be > 0"),
    ("sram.size=1MiB..2MiB:/2", "xFACTOR"),
    ("sram.size=0..2MiB:x2", "start above 0"),
    ("clock=1GHz,fast", "not a number with a unit"),
    ("sram.sise=1MiB", "unknown key"),
    ("model.level=1,2", "not swept"),
    ("sram.size", "expected key=spec"),
])
def test_bad_grid_is_one_line_naming_the_set(text, words):
    with pytest.raises(ConfigError) as info:
        parse_grid(CFG, [text])
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"--set {text}:")
    assert words in msg


def test_same_key_twice_is_an_error():
    with pytest.raises(ConfigError, match="already swept"):
        parse_grid(CFG, ["sram.size=1MiB", "sram.size=2MiB"])


def test_value_the_config_rejects_fails_in_the_grid():
    # activation reserve of npu_small is 25 %; 0 B SRAM is rejected by the config (positive)
    with pytest.raises(ConfigError, match=r"^--set sram.size=0B,1MiB: "):
        parse_grid(CFG, ["sram.size=0B,1MiB"])


def test_list_of_flow_lists_is_one_value_each():
    # commas inside brackets do not split: two format lists, in the order given
    assert parse_axis("formats=[dense],[dense,csr]", CFG).values == ("[dense]", "[dense,csr]")


def _unit_in_range(unit, accepted_units):
    """The first unit of the field's kind (after B for sizes) in which 1..4 lie in its range."""
    from edgesim.errors import UnitError
    from edgesim.units import parse_quantity
    for u in accepted_units(unit.kind)[1 if unit.kind == "size" else 0:]:
        try:
            for n in (1, 4):
                parse_quantity(f"{n} {u}", unit.kind, where="x", **unit.bounds())
        except UnitError:
            continue
        return u
    raise AssertionError(unit)


def _stating(section: tuple[str, ...]) -> str:
    """``CFG``, or the first shipped config whose YAML states ``section``."""
    import yaml

    from edgesim.config import shipped_configs
    for p in [f"{CFG}.yaml", *sorted(c.name for c in shipped_configs())]:
        path = next(c for c in shipped_configs() if c.name == p)
        raw = yaml.safe_load(path.read_text())
        for part in section:
            raw = raw.get(part) if isinstance(raw, dict) else None
        if raw is not None:
            return str(path)
    return CFG


def test_every_quantity_key_of_the_schema_takes_a_range_in_its_kind():
    # the unit kinds come from the config schema alone: a new quantity field is swept in its
    # unit with no change here. 1..4 of a unit, x2, is 1, 2 and 4 of it (3 values).
    from edgesim.schema import Unit, meta, schema_fields
    from edgesim.units import accepted_units
    for path, info in schema_fields():
        unit = meta(info, Unit)
        if unit is None:
            continue
        u = _unit_in_range(unit, accepted_units)
        key = ".".join(path)
        # a section npu_small does not state (compute.block, compute.kernels) needs its
        # required fields: a shipped config that states the section takes the axis
        axis = parse_axis(f"{key}=1{u}..4{u}:x2", _stating(path[:-1]))
        assert len(axis.values) == 3, key
        assert axis.values[0].endswith(" " + u) or unit.kind == "size", (key, axis.values)
