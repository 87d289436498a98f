"""Human quantities (``512 KiB``, ``4 GB/s``, ``0.2 pJ``) parsed in one place.

Public names: ``KINDS``, ``parse_quantity``, ``format_quantity``, ``accepted_units``,
``unit_factor``.

Every kind has a SI base unit and a table of accepted unit spellings (case matters: ``MB`` is
10**6 bytes, ``Mb`` is not accepted). Whitespace between number and unit is optional.

==================  ===========  ======================================================
kind                base unit    accepted units
==================  ===========  ======================================================
size                B (int)      B, KB, MB, GB (10**3), KiB, MiB, GiB (2**10)
bandwidth           B/s          B/s, KB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s
frequency           Hz           Hz, kHz, MHz, GHz
time                s            s, ms, us, µs, ns, ps
energy              J            fJ, pJ, nJ, uJ, µJ, mJ, J
energy_per_bit      J/bit        fJ/bit, pJ/bit, nJ/bit (also ``/b``)
energy_per_byte     J/B          fJ/B, pJ/B, nJ/B
power               W            uW, µW, mW, W
==================  ===========  ======================================================

A bare number (no unit) is accepted only for zero: ``2`` is neither 2 bytes nor 2 MiB, and
the error says which unit to give (``give one, e.g. 2MiB``); a size in bytes is ``2 B``. Numbers
are parsed exactly (``fractions.Fraction``), so ``1.1 KB`` is 1100 bytes, not 1100.0000000000002.
Negative quantities are always an error; ``positive=True`` also rejects zero; ``lo``, ``hi``
(inclusive) and ``below`` (exclusive) bound the value in the kind's base unit. A number's exponent
is checked before any arithmetic (``1e999999999 B`` fails at once, it is not computed), values
past ``10**300`` base units are errors, and a value shown in an error is cut at ``SHOWN`` chars.

>>> parse_quantity("512 KiB", "size", where="npu.yaml: sram.size")
524288
>>> parse_quantity("4 GB/s", "bandwidth", where="x")
4000000000.0
>>> parse_quantity("0.5 pJ/B", "energy_per_byte", where="x", to="pJ/B")
0.5
>>> format_quantity(524288, "size")
'512 KiB'
"""

from __future__ import annotations

import re
from fractions import Fraction

from edgesim.errors import UnitError

__all__ = ["KINDS", "SHOWN", "accepted_units", "format_quantity", "parse_quantity", "shown",
           "unit_factor"]

#: Errors show at most this many characters of a value (``shown``).
SHOWN = 80
#: A number may have at most this many characters and an exponent of at most this magnitude;
#: anything larger is an error before any big-number arithmetic.
_MAX_NUMBER_CHARS, _MAX_EXPONENT = 100, 400
#: No quantity is this large (in base units): above it ``float`` would overflow.
_HUGE = Fraction(10**300)

_K, _KI = 1000, 1024
_PICO = Fraction(1, 10**12)

#: kind -> {unit spelling: factor to the base unit}; the first spelling of a factor is canonical.
_UNITS: dict[str, dict[str, Fraction]] = {
    "size": {"B": Fraction(1), "KB": Fraction(_K), "kB": Fraction(_K), "MB": Fraction(_K**2),
             "GB": Fraction(_K**3), "KiB": Fraction(_KI), "MiB": Fraction(_KI**2),
             "GiB": Fraction(_KI**3)},
    "bandwidth": {"B/s": Fraction(1), "KB/s": Fraction(_K), "kB/s": Fraction(_K),
                  "MB/s": Fraction(_K**2), "GB/s": Fraction(_K**3), "KiB/s": Fraction(_KI),
                  "MiB/s": Fraction(_KI**2), "GiB/s": Fraction(_KI**3)},
    "frequency": {"Hz": Fraction(1), "kHz": Fraction(_K), "MHz": Fraction(_K**2),
                  "GHz": Fraction(_K**3)},
    "time": {"s": Fraction(1), "ms": Fraction(1, _K), "us": Fraction(1, _K**2),
             "µs": Fraction(1, _K**2), "μs": Fraction(1, _K**2), "ns": Fraction(1, _K**3),
             "ps": _PICO},
    "energy": {"J": Fraction(1), "mJ": Fraction(1, _K), "uJ": Fraction(1, _K**2),
               "µJ": Fraction(1, _K**2), "nJ": Fraction(1, _K**3), "pJ": _PICO,
               "fJ": _PICO / 1000},
    "energy_per_bit": {"pJ/bit": _PICO, "pJ/b": _PICO, "fJ/bit": _PICO / 1000,
                       "fJ/b": _PICO / 1000, "nJ/bit": _PICO * 1000, "nJ/b": _PICO * 1000,
                       "J/bit": Fraction(1)},
    "energy_per_byte": {"pJ/B": _PICO, "fJ/B": _PICO / 1000, "nJ/B": _PICO * 1000,
                        "J/B": Fraction(1)},
    "power": {"W": Fraction(1), "mW": Fraction(1, _K), "uW": Fraction(1, _K**2),
              "µW": Fraction(1, _K**2), "μW": Fraction(1, _K**2)},
}

#: The quantity kinds ``parse_quantity`` understands.
KINDS = tuple(_UNITS)

#: The unit a unitless number is shown with in its error ("give one, e.g. 2MiB").
_EXAMPLE = {"size": "MiB", "bandwidth": "GB/s", "frequency": "MHz", "time": "ns",
            "energy": "pJ", "energy_per_bit": "pJ/bit", "energy_per_byte": "pJ/B",
            "power": "mW"}

#: Units ``format_quantity`` may print, largest first.
_DISPLAY: dict[str, tuple[str, ...]] = {
    "size": ("GiB", "MiB", "KiB", "B"),
    "bandwidth": ("GB/s", "MB/s", "KB/s", "B/s"),
    "frequency": ("GHz", "MHz", "kHz", "Hz"),
    "time": ("s", "ms", "us", "ns", "ps"),
    "energy": ("J", "mJ", "uJ", "nJ", "pJ"),
    "energy_per_bit": ("nJ/bit", "pJ/bit"),
    "energy_per_byte": ("nJ/B", "pJ/B"),
    "power": ("W", "mW", "uW"),
}

#: A number and its unit. Digits are ASCII only (``re.ASCII``): ``٣`` or ``３`` are not 3.
_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$", re.ASCII)


def shown(value: object, limit: int = SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters (``...`` and the full length when cut).

    >>> shown("x" * 100, 20)
    "'xxxxxxxxxxxxx... (102 chars)"
    >>> shown(2**20000)
    '<an integer of 20001 bits>'
    """
    if isinstance(value, int) and value.bit_length() > 1000:  # repr refuses > 4300 digits
        return f"<an integer of {value.bit_length()} bits>"
    if isinstance(value, str) and len(value) > limit:
        text = repr(value[:limit]) + "..."   # cut first: never a copy of a huge value
        return f"{text[: limit - 6]}... ({len(value) + 2} chars)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 6]}... ({len(text)} chars)"


def accepted_units(kind: str) -> tuple[str, ...]:
    """The unit spellings accepted for ``kind`` (e.g. ``("B", "KB", ...)`` for ``"size"``)."""
    return tuple(_units_of(kind))


def unit_factor(kind: str, unit: str) -> Fraction:
    """How many base units of ``kind`` one ``unit`` is, exactly.

    >>> unit_factor("energy", "pJ"), unit_factor("size", "KiB")
    (Fraction(1, 1000000000000), Fraction(1024, 1))
    """
    units = _units_of(kind)
    if unit not in units:
        raise ValueError(f"unit {unit!r} is not a {kind} unit; known: {', '.join(units)}")
    return units[unit]


def _units_of(kind: str) -> dict[str, Fraction]:
    try:
        return _UNITS[kind]
    except KeyError:
        raise ValueError(f"unknown quantity kind {kind!r}; known: {', '.join(KINDS)}") from None


def _exact(text_or_number: str | float, kind: str, where: str) -> Fraction:
    """The quantity as an exact Fraction in the base unit of ``kind``."""
    units = _units_of(kind)
    expected = f"expected a {kind.replace('_', ' ')} in {', '.join(units)}"
    if isinstance(text_or_number, bool) or not isinstance(text_or_number, (str, int, float)):
        raise UnitError(f"{where}: {shown(text_or_number)} is not a quantity; {expected}")
    if isinstance(text_or_number, int) and text_or_number.bit_length() > 1000:
        raise UnitError(f"{where}: {shown(text_or_number)} is far out of range; {expected}")
    if isinstance(text_or_number, (int, float)):
        number_text, unit = repr(text_or_number), ""
    else:
        match = _NUMBER.fullmatch(text_or_number) if len(text_or_number) <= 200 else None
        if match is None:
            raise UnitError(f"{where}: {shown(text_or_number)} is not a number with a unit; "
                            f"{expected}")
        number_text, unit = match.group(1), match.group(2)
    _check_size(number_text, text_or_number, where)
    try:
        value = Fraction(number_text)
    except (ValueError, ZeroDivisionError):  # inf, nan
        raise UnitError(f"{where}: {shown(text_or_number)} is not a finite number; {expected}"
                        ) from None
    if unit == "":
        if value == 0:
            return value
        example = f"{number_text}{_EXAMPLE[kind]}"
        raise UnitError(f"{where}: {shown(text_or_number)} has no unit; give one, e.g. "
                        f"{example} ({expected})")
    if unit not in units:
        raise UnitError(f"{where}: {shown(text_or_number)} has unit {shown(unit)}; {expected}")
    return value * units[unit]


def _check_size(number_text: str, value: object, where: str) -> None:
    """Refuse a number too long or with too large an exponent, before ``Fraction`` sees it."""
    exponent = number_text.lower().partition("e")[2]
    if len(number_text) > _MAX_NUMBER_CHARS or (
            exponent and abs(int(exponent)) > _MAX_EXPONENT):
        raise UnitError(f"{where}: {shown(value)} is out of range (numbers have at most "
                        f"{_MAX_NUMBER_CHARS} characters and exponents at most {_MAX_EXPONENT})")


def parse_quantity(text_or_number: str | float, kind: str, *, where: str,
                   positive: bool = False, to: str | None = None, lo: float | None = None,
                   hi: float | None = None, below: float | None = None) -> float | int:
    """Parse a human quantity of ``kind`` into its SI base unit (or into unit ``to``).

    ``where`` names the value in error messages (``"npu_small.yaml: offchip.bandwidth"``).
    Sizes return ``int`` bytes and must be whole bytes; every other kind returns ``float``.
    Raises ``UnitError`` for a wrong or missing unit, a negative value, zero when ``positive``
    is set, or a value outside ``lo <= value <= hi``, ``value < below`` (base units).

    >>> parse_quantity("100 ns", "time", where="x", to="ns")
    100.0
    >>> parse_quantity("2 MB", "size", where="x")
    2000000
    >>> parse_quantity("2 s", "time", where="x", below=1)
    Traceback (most recent call last):
    edgesim.errors.UnitError: x: '2 s' must be below 1 s
    """
    value = _exact(text_or_number, kind, where)
    if value < 0 or (positive and value == 0):
        need = "a positive" if positive else "a non-negative"
        raise UnitError(f"{where}: {shown(text_or_number)} must be {need} "
                        f"{kind.replace('_', ' ')}")
    for bound, ok, word in ((lo, lambda b: value >= b, "at least"),
                            (hi, lambda b: value <= b, "at most"),
                            (below, lambda b: value < b, "below")):
        if bound is not None and not ok(Fraction(bound)):
            raise UnitError(f"{where}: {shown(text_or_number)} must be {word} "
                            f"{format_quantity(bound, kind)}")
    if value > _HUGE:
        raise UnitError(f"{where}: {shown(text_or_number)} is far out of range")
    if to is not None:
        units = _units_of(kind)
        if to not in units:
            raise ValueError(f"unit {to!r} is not a {kind} unit; known: {', '.join(units)}")
        value = value / units[to]
    if kind == "size" and to is None:
        if value.denominator != 1:
            raise UnitError(f"{where}: {shown(text_or_number)} is not a whole number of bytes")
        return int(value)
    return float(value)


def _number(x: float) -> str:
    text = f"{x:.6g}"
    return text[:-2] if text.endswith(".0") else text


def format_quantity(value: float, kind: str) -> str:
    """A short human string for ``value`` given in the base unit of ``kind``.

    Sizes use the largest binary unit that divides them exactly (else a decimal unit that does,
    else bytes); other kinds use the largest unit that keeps the number >= 1 (energies at least
    pJ), at 6 significant digits. ``parse_quantity`` reads the result back (to 6 digits).

    >>> format_quantity(131072, "size"), format_quantity(2_000_000, "size")
    ('128 KiB', '2 MB')
    >>> format_quantity(3.75e9, "bandwidth"), format_quantity(2.3e-13, "energy")
    ('3.75 GB/s', '0.23 pJ')
    """
    units = _units_of(kind)
    if kind == "size" and float(value).is_integer():
        n = int(value)
        for unit in ("GiB", "MiB", "KiB", "GB", "MB", "KB"):
            factor = int(units[unit])
            if n != 0 and n % factor == 0:
                return f"{n // factor} {unit}"
        return f"{n} B"
    display = _DISPLAY[kind]
    if value == 0:
        return f"0 {display[-1]}"
    for unit in display:
        scaled = value / float(units[unit])
        if abs(scaled) >= 1:
            return f"{_number(scaled)} {unit}"
    return f"{_number(value / float(units[display[-1]]))} {display[-1]}"
