"""Tests for edgesim.units: every unit of every kind, exactness, and errors that name the key."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.errors import ConfigError, UnitError
from edgesim.units import KINDS, accepted_units, format_quantity, parse_quantity

W = "npu_small.yaml: offchip.bandwidth"

# (text, kind, value in the base unit). Each row is the unit's definition: KB = 10**3 B,
# KiB = 2**10 B, MHz = 10**6 Hz, ns = 10**-9 s, pJ = 10**-12 J, mW = 10**-3 W.
CASES = [
    ("512 B", "size", 512),
    ("2 KB", "size", 2_000),
    ("2 kB", "size", 2_000),
    ("3 MB", "size", 3_000_000),
    ("1 GB", "size", 1_000_000_000),
    ("512 KiB", "size", 524_288),
    ("2 MiB", "size", 2_097_152),
    ("1 GiB", "size", 1_073_741_824),
    ("1 B/s", "bandwidth", 1.0),
    ("1 KB/s", "bandwidth", 1e3),
    ("1 kB/s", "bandwidth", 1e3),
    ("1 MB/s", "bandwidth", 1e6),
    ("4 GB/s", "bandwidth", 4e9),
    ("1 KiB/s", "bandwidth", 1024.0),
    ("1 MiB/s", "bandwidth", 1024.0**2),
    ("1 GiB/s", "bandwidth", 1024.0**3),
    ("50 Hz", "frequency", 50.0),
    ("32 kHz", "frequency", 32e3),
    ("500 MHz", "frequency", 500e6),
    ("1.2 GHz", "frequency", 1.2e9),
    ("2 s", "time", 2.0),
    ("3 ms", "time", 3e-3),
    ("4 us", "time", 4e-6),
    ("4 µs", "time", 4e-6),   # micro sign U+00B5
    ("4 μs", "time", 4e-6),   # Greek mu U+03BC
    ("100 ns", "time", 1e-7),
    ("250 ps", "time", 2.5e-10),
    ("0.2 pJ", "energy", 2e-13),
    ("3 fJ", "energy", 3e-15),
    ("1.3 nJ", "energy", 1.3e-9),
    ("5 uJ", "energy", 5e-6),
    ("5 µJ", "energy", 5e-6),
    ("1.64 mJ", "energy", 1.64e-3),
    ("2 J", "energy", 2.0),
    ("8 pJ/bit", "energy_per_bit", 8e-12),
    ("8 pJ/b", "energy_per_bit", 8e-12),
    ("1 nJ/bit", "energy_per_bit", 1e-9),
    ("1 nJ/b", "energy_per_bit", 1e-9),
    ("30 fJ/bit", "energy_per_bit", 3e-14),
    ("30 fJ/b", "energy_per_bit", 3e-14),
    ("0.5 pJ/B", "energy_per_byte", 5e-13),
    ("2 nJ/B", "energy_per_byte", 2e-9),
    ("40 fJ/B", "energy_per_byte", 4e-14),
    ("7 uW", "power", 7e-6),
    ("7 µW", "power", 7e-6),
    ("7 μW", "power", 7e-6),
    ("3 mW", "power", 3e-3),
    ("2 W", "power", 2.0),
]


@pytest.mark.parametrize(("text", "kind", "expected"), CASES)
def test_every_unit_parses_to_its_definition(text: str, kind: str, expected: float) -> None:
    assert parse_quantity(text, kind, where=W) == pytest.approx(expected, rel=1e-15)


def test_cases_cover_every_accepted_unit() -> None:
    covered = {(kind, text.split(" ", 1)[1]) for text, kind, _ in CASES}
    declared = {(kind, unit) for kind in KINDS for unit in accepted_units(kind)}
    # J/bit and J/B exist for completeness; every other unit has a row above.
    assert declared - covered <= {("energy_per_bit", "J/bit"), ("energy_per_byte", "J/B")}


@pytest.mark.parametrize("text", ["512KiB", "512 KiB", " 512  KiB ", "524288 B", "0.5 MiB"])
def test_whitespace_is_optional_and_forms_agree(text: str) -> None:
    # 0.5 MiB = 2**19 = 524288 = 512 * 1024
    assert parse_quantity(text, "size", where=W) == 524_288


def test_sizes_are_exact_ints() -> None:
    value = parse_quantity("1.1 KB", "size", where=W)
    assert value == 1100  # exact decimal arithmetic; 1.1 * 1000 in floats is 1100.0000000000002
    assert isinstance(value, int)
    assert parse_quantity("4096B", "size", where=W) == 4096


def test_fractional_bytes_are_an_error() -> None:
    with pytest.raises(UnitError, match="whole number of bytes"):
        parse_quantity("1.5 B", "size", where=W)


def test_to_converts_exactly() -> None:
    # 0.5 pJ/B expressed in pJ/B is exactly 0.5 (no round trip through 5e-13)
    assert parse_quantity("0.5 pJ/B", "energy_per_byte", where=W, to="pJ/B") == 0.5
    assert parse_quantity("1 nJ/bit", "energy_per_bit", where=W, to="pJ/bit") == 1000.0
    assert parse_quantity("2 KiB", "size", where=W, to="KiB") == 2.0
    with pytest.raises(ValueError, match="not a energy unit"):
        parse_quantity("1 pJ", "energy", where=W, to="pJ/B")


def test_wrong_unit_names_key_value_and_accepted_units() -> None:
    with pytest.raises(UnitError) as info:
        parse_quantity("4 GB", "bandwidth", where=W)
    msg = str(info.value)
    assert msg.startswith("npu_small.yaml: offchip.bandwidth")
    assert "'4 GB'" in msg
    assert "GB/s" in msg
    assert "MiB/s" in msg
    assert "\n" not in msg
    assert isinstance(info.value, ConfigError)  # UnitError is a ConfigError


@pytest.mark.parametrize(("text", "kind"), [
    ("8 pJ/B", "energy_per_bit"),   # per byte where per bit is expected
    ("8 pJ/bit", "energy_per_byte"),
    ("3 Mhz", "frequency"),         # case matters
    ("1 Mb", "size"),
    ("5 furlongs", "time"),
    ("0.2 pJ", "power"),
])
def test_unit_of_another_kind_is_rejected(text: str, kind: str) -> None:
    with pytest.raises(UnitError, match=re.escape(W)):
        parse_quantity(text, kind, where=W)


@pytest.mark.parametrize("value", ["", "KiB", "fast", "1.2.3 B", "nan", "inf B", None, True,
                                   [1], float("nan"), float("inf")])
def test_non_quantities_are_rejected(value: object) -> None:
    with pytest.raises(UnitError, match=re.escape(W)):
        parse_quantity(value, "size", where=W)  # type: ignore[arg-type]


def test_bare_number_needs_a_unit_except_zero() -> None:
    # a size is no exception: `sram.size=2` meant 2 MiB, not 2 bytes, and failed far away
    assert parse_quantity(0, "energy", where=W) == 0.0
    assert parse_quantity("0", "time", where=W) == 0.0
    assert parse_quantity("0", "size", where=W) == 0
    with pytest.raises(UnitError, match=re.escape(f"{W}: '2' has no unit; give one, e.g. 2MiB")):
        parse_quantity("2", "size", where=W)
    with pytest.raises(UnitError, match=r"has no unit; give one, e\.g\. 4096MiB"):
        parse_quantity(4096, "size", where=W)        # a YAML integer too
    with pytest.raises(UnitError, match=r"has no unit; give one, e\.g\. 500MHz"):
        parse_quantity("500", "frequency", where=W)
    with pytest.raises(UnitError, match="has no unit"):
        parse_quantity("0.2", "energy", where=W)
    with pytest.raises(UnitError, match="has no unit"):
        parse_quantity(4e9, "bandwidth", where=W)


def test_negative_is_always_an_error_and_zero_when_positive() -> None:
    with pytest.raises(UnitError, match=re.escape(f"{W}: '-4 GB/s'")):
        parse_quantity("-4 GB/s", "bandwidth", where=W)
    assert parse_quantity("0 GB/s", "bandwidth", where=W) == 0.0
    with pytest.raises(UnitError, match="must be a positive bandwidth"):
        parse_quantity("0 GB/s", "bandwidth", where=W, positive=True)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown quantity kind"):
        parse_quantity("1 B", "volume", where=W)


@pytest.mark.parametrize(("value", "kind", "text"), [
    (524_288, "size", "512 KiB"),
    (2_000_000, "size", "2 MB"),
    (1500, "size", "1500 B"),
    (0, "size", "0 B"),
    (4e9, "bandwidth", "4 GB/s"),
    (3.75e9, "bandwidth", "3.75 GB/s"),
    (500e6, "frequency", "500 MHz"),
    (1e-7, "time", "100 ns"),
    (2.3e-13, "energy", "0.23 pJ"),   # energies never go below pJ
    (0.0, "energy", "0 pJ"),
    (8e-12, "energy_per_bit", "8 pJ/bit"),
    (1.27e-12, "energy_per_byte", "1.27 pJ/B"),
    (3e-3, "power", "3 mW"),
])
def test_format_quantity(value: float, kind: str, text: str) -> None:
    assert format_quantity(value, kind) == text


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(KINDS),
       value=st.floats(min_value=1e-15, max_value=1e12, allow_nan=False, allow_infinity=False))
def test_format_then_parse_round_trips(kind: str, value: float) -> None:
    if kind == "size":
        n = int(value)
        assert parse_quantity(format_quantity(n, kind), kind, where=W) == n
        return
    back = parse_quantity(format_quantity(value, kind), kind, where=W)
    assert math.isclose(back, value, rel_tol=1e-5)  # 6 significant digits are printed
