"""Tests for edgesim.config (loading, overrides, errors, immutability) and edgesim.technology."""

from __future__ import annotations

import dataclasses
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from edgesim import schema as schema_module
from edgesim.config import (
    HWCONFIG_DIR,
    apply_overrides,
    load_config,
    parse_override,
)
from edgesim.errors import ConfigError, UnitError
from edgesim.technology import TECH_NODES_NM, energy_factor, energy_scale
from edgesim.workload import PRECISIONS

NPU_SMALL = HWCONFIG_DIR / "npu_small.yaml"


def base_raw() -> dict[str, Any]:
    return yaml.safe_load(NPU_SMALL.read_text(encoding="utf-8"))


def write_config(tmp_path: Path, mutate: Callable[[dict[str, Any]], None] | None = None,
                 name: str = "hw.yaml") -> Path:
    """npu_small.yaml, changed by ``mutate``, written to ``tmp_path / name``."""
    raw = base_raw()
    if mutate is not None:
        mutate(raw)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def error_of(path: Path | str, overrides: tuple[str, ...] = (),
             kind: type[Exception] = ConfigError) -> str:
    with pytest.raises(kind) as info:
        load_config(path, overrides)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    return msg


# ----------------------------------------------------------------------------- loading

def test_npu_small_fields_in_si_units() -> None:
    hw = load_config(NPU_SMALL)
    assert hw.name == "npu_small"
    assert hw.clock_hz == 500e6
    assert hw.period_ps == 2000                 # 1 / 500 MHz = 2 ns
    assert hw.sram_bytes == 512 * 1024
    assert hw.act_reserve_bytes == 128 * 1024   # 25 % of 512 KiB
    assert hw.weight_sram_bytes == 384 * 1024
    assert hw.macs_per_cycle == {"int8": 256, "int4": 512, "fp16": 64, "binary": 1024}
    assert (hw.array_rows, hw.array_cols) == (16, 16)
    assert hw.offchip_kind == "dram"
    assert hw.offchip_bytes_per_s == 4e9
    assert hw.offchip_latency_s == pytest.approx(100e-9)
    assert hw.offchip_latency_ps == 100_000
    assert hw.offchip_burst_bytes == 64
    assert hw.offchip_read_pj_per_bit == 8.0
    # sqrt model (technology.sram_energy): 1.25 pJ/B at 8 KiB, 45 nm/0.9 V, x sqrt(512/8) = 8,
    # x energy_scale(45, 0.9, 28, 0.9) = 0.5066 -> 5.066 pJ/B, a write alike (one source);
    # no leakage figure is cited, so none is charged
    assert hw.sram_energy_model == "sqrt"
    assert hw.sram_read_pj_per_byte == pytest.approx(1.25 * 8 * energy_scale(45, 0.9, 28, 0.9))
    assert hw.sram_write_pj_per_byte == hw.sram_read_pj_per_byte
    assert hw.sram_leak_w == 0
    assert hw.prefetch_depth == 2
    assert hw.formats == ("dense", "bitmap", "csr", "csc", "rle", "nested", "signed_binary")
    # placement: the default (weights and arena in offchip) carries its own source
    assert set(hw.sources) == {"config", "technology", "compute", "sram", "offchip", "energy",
                               "prefetch", "placement"}


def test_mac_energy_is_scaled_from_reference_node() -> None:
    hw = load_config(NPU_SMALL)
    # mac_pj = (energy at 45 nm / 0.9 V as written) x energy_scale(45, 0.9, 28, 0.9)
    factor = energy_scale(45, 0.9, 28, 0.9)
    # Horowitz B1: int8 0.2 mult + 0.1 32b add; int4 0.05 + 0.1; fp16 1.1 + fp32 add 0.9;
    # binary one 32b add
    written = {"int8": 0.3, "int4": 0.15, "fp16": 2.0, "binary": 0.1}
    for precision, pj in written.items():
        assert hw.mac_pj[precision] == pytest.approx(pj * factor, rel=1e-12)
    assert factor == pytest.approx(0.5066, abs=1e-4)


def test_index_decode_is_scaled_and_defaults_to_zero(tmp_path: Path) -> None:
    def set_decode(raw: dict[str, Any]) -> None:
        raw["energy"]["index_decode"] = "1 pJ"
        raw["technology"]["node_nm"] = 7
        raw["energy"]["reference_vdd_v"] = 0.8
        raw["technology"]["vdd_v"] = 0.8

    hw = load_config(write_config(tmp_path, set_decode))
    assert hw.index_decode_pj == pytest.approx(energy_scale(45, 0.8, 7, 0.8))
    hw0 = load_config(write_config(tmp_path, lambda r: r["energy"].pop("index_decode")))
    assert hw0.index_decode_pj == 0.0


def test_optional_sections_default(tmp_path: Path) -> None:
    def drop(raw: dict[str, Any]) -> None:
        del raw["prefetch"], raw["formats"]

    hw = load_config(write_config(tmp_path, drop))
    assert hw.prefetch_depth == 2
    assert hw.formats == ("dense",)
    assert "assumption" in hw.sources["prefetch"]


def test_absolute_activation_reserve(tmp_path: Path) -> None:
    hw = load_config(write_config(
        tmp_path, lambda r: r["sram"].update(activation_reserve="100 KiB")))
    assert hw.act_reserve_bytes == 102_400
    zero = load_config(write_config(tmp_path, lambda r: r["sram"].update(activation_reserve=0)))
    assert zero.weight_sram_bytes == zero.sram_bytes


def test_percent_reserve_is_floored_to_whole_bytes(tmp_path: Path) -> None:
    hw = load_config(write_config(tmp_path), ["sram.size=1001 B", "sram.activation_reserve=10%"])
    assert hw.act_reserve_bytes == 100  # floor(1001 * 10 / 100) = floor(100.1)


def test_bare_name_finds_shipped_config() -> None:
    by_name, by_path = load_config("npu_small").to_dict(), load_config(NPU_SMALL).to_dict()
    # the same config; found by name it is labelled by its place in the package, not by where
    # the package happens to be installed
    assert by_name.pop("file") == "edgesim/hwconfigs/npu_small.yaml"
    assert by_path.pop("file") == str(NPU_SMALL)
    assert by_name == by_path
    assert load_config("npu_small.yaml").to_dict()["file"] == "edgesim/hwconfigs/npu_small.yaml"


def test_precision_literal_matches_the_ir() -> None:
    assert get_args(schema_module._Precision) == PRECISIONS


# ----------------------------------------------------------------------------- immutability

def test_hardware_config_is_immutable_hashable_and_picklable() -> None:
    hw = load_config(NPU_SMALL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        hw.sram_bytes = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        hw.mac_pj["int8"] = 0.0  # type: ignore[index]
    with pytest.raises(TypeError):
        hw.resolved["sram"]["size"] = "1 B"  # type: ignore[index]
    with pytest.raises(TypeError):
        hw.sources.update(x="y")  # type: ignore[attr-defined]
    assert not hasattr(hw, "__dict__")  # slots
    assert hash(hw) == hash(load_config(NPU_SMALL))
    again = pickle.loads(pickle.dumps(hw))
    assert again == hw
    with pytest.raises(TypeError):
        again.macs_per_cycle["int8"] = 1  # type: ignore[index]


def test_to_dict_is_plain_json() -> None:
    hw = load_config(NPU_SMALL)
    d = hw.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["weight_sram_bytes"] == hw.weight_sram_bytes
    assert d["period_ps"] == 2000
    assert type(d["mac_pj"]) is dict
    assert d["formats"][0] == "dense"
    assert set(d) >= {f.name for f in dataclasses.fields(hw)}


# ----------------------------------------------------------------------------- overrides

def test_parse_override() -> None:
    assert parse_override("sram.size=2MiB") == (("sram", "size"), "2MiB")
    assert parse_override(" compute.array.rows = 8 ") == (("compute", "array", "rows"), "8")
    assert parse_override("energy.mac.int8=0.2 pJ") == (("energy", "mac", "int8"), "0.2 pJ")


@pytest.mark.parametrize("text", ["sram.size", "=2MiB", "sram..size=1", "sram.=1"])
def test_parse_override_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(text)


def test_overrides_nested_alias_bool_and_list() -> None:
    hw = load_config(NPU_SMALL, [
        "sram.size=2MiB",
        "compute.macs_per_cycle.int8=512",
        "dram.bandwidth=8 GB/s",                 # alias of offchip.
        "compute.skip_zero_weights=true",         # YAML scalar -> bool
        "formats=[dense]",                        # YAML flow list
        "energy.mac.int8=0.5 pJ",
        "clock=1GHz",
    ])
    assert hw.sram_bytes == 2 * 1024 * 1024
    assert hw.act_reserve_bytes == 512 * 1024   # 25 % follows the new size
    assert hw.macs_per_cycle["int8"] == 512
    assert hw.offchip_bytes_per_s == 8e9
    assert hw.skip_zero_weights is True
    assert hw.formats == ("dense",)
    assert hw.mac_pj["int8"] == pytest.approx(0.5 * energy_scale(45, 0.9, 28, 0.9))
    assert hw.period_ps == 1000
    assert "sram.size=2MiB set on the command line" in hw.sources["sram"]
    assert "offchip.bandwidth=8 GB/s set on the command line" in hw.sources["offchip"]
    assert "clock=1GHz set on the command line" in hw.sources["config"]


def test_sram_sweep_values_load_with_a_percentage_reserve() -> None:
    # the sweep case: sizes below the 128 KiB that 25 % of 512 KiB would be
    for kib in (1, 32, 64, 128, 4096):
        hw = load_config(NPU_SMALL, [f"sram.size={kib}KiB"])
        assert hw.weight_sram_bytes == kib * 1024 * 3 // 4


def test_later_override_wins() -> None:
    hw = load_config(NPU_SMALL, ["sram.size=1MiB", "sram.size=2MiB"])
    assert hw.sram_bytes == 2 * 1024 * 1024


def test_override_creates_optional_section_with_a_source(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda r: r.pop("prefetch"))
    hw = load_config(path, ["prefetch.depth=4"])
    assert hw.prefetch_depth == 4
    assert hw.sources["prefetch"] == "prefetch.depth=4 set on the command line"


def test_apply_overrides_does_not_mutate_its_input() -> None:
    raw = base_raw()
    before = json.dumps(raw, sort_keys=True)
    out = apply_overrides(raw, ["sram.size=1MiB", "dram.latency=1 us"], "npu_small.yaml")
    assert json.dumps(raw, sort_keys=True) == before
    assert out["sram"]["size"] == "1MiB"
    assert out["offchip"]["latency"] == "1 us"
    assert "dram" not in out


def test_unknown_override_key_lists_known_keys_of_its_section() -> None:
    msg = error_of(NPU_SMALL, ("sram.sise=1MiB",))
    assert "'sram.sise'" in msg
    assert "known keys of sram: size, activation_reserve," in msg
    assert "read_energy" in msg


def test_unknown_top_level_override_key() -> None:
    msg = error_of(NPU_SMALL, ("dramm.bandwidth=1 GB/s",))
    assert "'dramm'" in msg
    assert "known keys of the top level: name," in msg


def test_override_below_a_value_is_an_error() -> None:
    msg = error_of(NPU_SMALL, ("clock.hz=5",))
    assert "clock is a value" in msg


def test_override_with_bad_unit_says_it_came_from_set() -> None:
    msg = error_of(NPU_SMALL, ("sram.size=2 furlongs",), kind=UnitError)
    assert "sram.size (from --set)" in msg
    assert "'2 furlongs'" in msg


def test_override_with_bad_type_says_it_came_from_set() -> None:
    msg = error_of(NPU_SMALL, ("compute.array.rows=many",))
    assert "compute.array.rows (from --set)" in msg


def test_override_with_invalid_yaml_value() -> None:
    msg = error_of(NPU_SMALL, ("formats=[dense",))
    assert "--set formats=[dense" in msg
    assert "not valid YAML" in msg


def test_dram_alias_reports_the_canonical_key() -> None:
    msg = error_of(NPU_SMALL, ("dram.bandwidth=4 GB",), kind=UnitError)
    assert "offchip.bandwidth (from --set)" in msg


# ----------------------------------------------------------------------------- error cases

def _set(section: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw[section][key] = value
    return mutate


def _drop(section: str, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        del raw[section][key]
    return mutate


def _set_top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw[key] = value
    return mutate


# (mutation of npu_small, the key the message must name, a phrase it must contain)
ERROR_CASES = [
    (_set("sram", "sise", "1 MiB"), "sram.sise", "unknown key; known keys of sram: size,"),
    (_set_top("dram", {"bandwidth": "4 GB/s"}), "dram", "unknown key; known keys of the top"),
    (_drop("offchip", "bandwidth"), "offchip.bandwidth", "missing"),
    (_drop("compute", "skip_zero_weights"), "compute.skip_zero_weights", "missing"),
    (lambda r: r.pop("energy"), "energy", "missing"),
    (_set("offchip", "bandwidth", "4 GB"), "offchip.bandwidth", "expected a bandwidth"),
    (_set("sram", "read_energy", "0.5 pJ/bit"), "sram.read_energy", "energy per byte"),
    (_set("sram", "size", "0 B"), "sram.size", "must be a positive size"),
    (_set("sram", "size", "-1 KiB"), "sram.size", "must be a positive size"),
    (_set("sram", "size", True), "sram.size", "expected a number with a unit"),
    (_set("offchip", "burst", "0 B"), "offchip.burst", "positive"),
    (_set("offchip", "latency", "-1 ns"), "offchip.latency", "non-negative"),
    (_set("sram", "activation_reserve", "513 KiB"), "sram.activation_reserve",
     "must not exceed sram.size"),
    (_set("sram", "activation_reserve", "100%"), "sram.activation_reserve", "< 100%"),
    (_set("sram", "activation_reserve", "x%"), "sram.activation_reserve", "percentage"),
    (_set("compute", "precision", "int2"), "compute.precision", "'int2'"),
    (_set("offchip", "kind", "hbm"), "offchip.kind", "'hbm'"),
    (lambda r: r["compute"]["macs_per_cycle"].pop("fp16"), "compute.macs_per_cycle.fp16",
     "missing"),
    (lambda r: r["compute"]["macs_per_cycle"].update(int2=1), "compute.macs_per_cycle.int2",
     "unknown key"),
    (lambda r: r["compute"]["macs_per_cycle"].update(int8=0), "compute.macs_per_cycle.int8",
     "greater than 0"),
    (lambda r: r["energy"]["mac"].update(int8="0.23 pJ/B"), "energy.mac.int8",
     "expected a energy"),
    (_set("technology", "node_nm", 0), "technology.node_nm", "greater than or equal to 1"),
    (_set("sram", "source", "  "), "sram.source", "at least 1 character"),
    (_drop("offchip", "source"), "offchip.source", "missing"),
    (_set_top("source", ""), "source", "at least 1 character"),
    (_set_top("clock", "500 MB/s"), "clock", "expected a frequency"),
    (_set_top("clock", "0 Hz"), "clock", "positive"),
    (_set_top("formats", ["no_such_encoding"]), "formats", "unknown weight encoding"),
    (_set_top("formats", ["dense", "dense"]), "formats", "distinct"),
    (_set_top("formats", []), "formats", "non-empty"),
    (_set_top("prefetch", {"depth": -1, "source": "x"}), "prefetch.depth", "greater than or"),
    (_set_top("sram", 5), "sram", "valid dictionary"),
]


@pytest.mark.parametrize(("mutate", "key", "phrase"), ERROR_CASES)
def test_config_errors_name_file_and_key(tmp_path: Path, mutate: Callable[[dict[str, Any]], None],
                                         key: str, phrase: str) -> None:
    path = write_config(tmp_path, mutate)
    msg = error_of(path)
    assert f"{key}:" in msg or f"{key} " in msg
    assert phrase in msg


def test_missing_file_lists_shipped_configs(tmp_path: Path) -> None:
    msg = error_of(tmp_path / "nope.yaml")
    assert "no such hardware config file" in msg
    assert "npu_small" in msg


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nclock: 500 MHz\nsram: {size: 1 KiB\n", encoding="utf-8")
    msg = error_of(path)
    assert "invalid YAML" in msg
    assert "line 4" in msg  # the unclosed flow mapping is detected at end of input (line 4)


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    text = NPU_SMALL.read_text(encoding="utf-8") + "clock: 1 GHz\n"
    path.write_text(text, encoding="utf-8")
    msg = error_of(path)
    assert "duplicate key 'clock'" in msg
    assert f"line {text.count(chr(10))}" in msg  # the appended last line


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    assert "expected a mapping" in error_of(path)


def test_several_structural_errors_are_reported_on_one_line(tmp_path: Path) -> None:
    def two(raw: dict[str, Any]) -> None:
        del raw["offchip"]["latency"]
        raw["compute"]["precision"] = "int3"

    msg = error_of(write_config(tmp_path, two))
    assert "offchip.latency: missing" in msg
    assert "compute.precision" in msg


# ----------------------------------------------------------------------------- technology

# REFERENCE.md B6 [D]: energy relative to 45 nm at Vdd = 0.8 V.
B6_TABLE = {130: 3.07, 90: 1.90, 65: 1.24, 45: 1.00, 32: 0.66, 20: 0.22, 16: 0.17, 14: 0.14,
            10: 0.12, 7: 0.094}


@pytest.mark.parametrize(("node", "relative"), sorted(B6_TABLE.items()))
def test_energy_scale_matches_reference_table(node: int, relative: float) -> None:
    assert energy_scale(45, 0.8, node, 0.8) == pytest.approx(relative, abs=0.006)


def test_energy_scale_identity_and_inverse() -> None:
    for node in (7, 28, 45, 130, 180):
        assert energy_scale(node, 0.9, node, 0.9) == 1.0
    there = energy_scale(45, 0.9, 16, 0.75)
    back = energy_scale(16, 0.75, 45, 0.9)
    assert there * back == pytest.approx(1.0, rel=1e-12)


def test_energy_falls_with_node_and_rises_with_vdd() -> None:
    factors = [energy_factor(n, 0.8) for n in TECH_NODES_NM]  # largest node first
    assert factors == sorted(factors, reverse=True)
    assert energy_factor(28, 1.0) > energy_factor(28, 0.8)


def test_between_nodes_interpolates_linearly_in_nm() -> None:
    # 28 nm lies between 32 and 20 nm: t = (28 - 20) / (32 - 20) = 2/3 of the way to 32 nm
    f20, f32 = energy_factor(20, 0.9), energy_factor(32, 0.9)
    assert energy_factor(28, 0.9) == pytest.approx(f20 + (2 / 3) * (f32 - f20), rel=1e-12)


def test_outside_the_table_uses_the_square_root_rule() -> None:
    # clamp to the nearest tabulated node and multiply by (node / end) ** 0.5
    assert energy_factor(180, 0.9) == pytest.approx(energy_factor(130, 0.9) * (180 / 130) ** 0.5)
    assert energy_factor(5, 0.9) == pytest.approx(energy_factor(7, 0.9) * (5 / 7) ** 0.5)


def test_energy_factor_rejects_nonpositive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        energy_factor(0, 0.9)


def test_prefetch_mode_literal_matches_the_engine() -> None:
    from edgesim.sim import PREFETCH_MODES
    assert get_args(schema_module._PrefetchMode) == tuple(PREFETCH_MODES)
