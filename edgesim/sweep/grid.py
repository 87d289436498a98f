"""Sweep grids: ``--set key=spec`` ranges, expanded and checked before any work.

Public names: ``Axis``, ``Base``, ``base_config``, ``parse_axis``, ``parse_grid``,
``grid_points``, ``iter_points``, ``grid_size``, ``MAX_VALUES``, ``MAX_POINTS``.

A spec is one of

* a single value: ``sram.size=2MiB`` (a YAML flow list such as ``formats=[dense,csr]`` is one
  value too);
* a list: ``dram.bandwidth=1GB/s,4GB/s`` (values in the order given; commas inside brackets do
  not split, so ``formats=[dense],[dense,csr]`` is two values);
* a geometric range ``start..stop:xFACTOR``: start, start*F, start*F^2, ... up to stop
  (inclusive, sizes rounded to whole bytes);
* an arithmetic range ``start..stop:+STEP``: start, start+STEP, ... up to stop (inclusive).

Range ends are parsed in the unit kind the config schema gives the key
(``edgesim.schema.unit_kind``; plain numbers for counts such as ``prefetch.depth``). The config
file is read and parsed once (``base_config``: a ``Base``, whose ``build(overrides)`` is
``load_config(config, overrides)`` without reading the file again), and every produced value is
applied to it once, so a value the config rejects fails here, with one line naming the offending
``--set``: checking a grid costs one build per axis value, not per point. The grid is the product
of the axes, first axis slowest (``iter_points`` yields it lazily, ``grid_size`` counts it). An
axis has at most ``MAX_VALUES`` values and a grid at most ``MAX_POINTS`` points (checked before
any value is applied to the config).

>>> axis = parse_axis("sram.size=32KiB..256KiB:x2", "npu_small")
>>> axis.values
('32 KiB', '64 KiB', '128 KiB', '256 KiB')
>>> parse_axis("prefetch.depth=0..4:+2", "npu_small").values
('0', '2', '4')
>>> pts = grid_points(parse_grid("npu_small", ["sram.size=1MiB,2MiB", "dram.bandwidth=1GB/s"]))
>>> pts[1]
{'sram.size': '2MiB', 'offchip.bandwidth': '1GB/s'}
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from edgesim.errors import ConfigError, EdgesimError
from edgesim.schema import canonical_path, unit_kind
from edgesim.units import format_quantity, parse_quantity, shown

if TYPE_CHECKING:
    from edgesim.config import HardwareConfig

__all__ = ["MAX_POINTS", "MAX_VALUES", "Axis", "Base", "base_config", "grid_points", "grid_size",
           "iter_points", "parse_axis", "parse_grid"]

_PLAIN = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
#: A range may produce at most this many values (a typo like ``x1.0001`` is an error, not a hang).
MAX_VALUES = 10_000
#: A grid may have at most this many points (the product of its axes).
MAX_POINTS = 100_000


@dataclass(frozen=True)
class Axis:
    """One swept key: its canonical dotted name, the values (config text) and the ``--set``."""

    key: str
    values: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Base:
    """The config a grid varies, read once: the YAML's mapping, the name errors give it, and
    ``--set`` strings every point applies first (not an axis: no column of the table)."""

    raw: Any
    file: str
    overrides: tuple[str, ...] = ()

    def build(self, overrides: Sequence[str] = ()) -> HardwareConfig:
        """The config with ``overrides`` applied: ``load_config(file, overrides)``, unread."""
        from edgesim.config import config_from_dict
        return config_from_dict(self.raw, overrides=[*self.overrides, *overrides],
                                file=self.file)


def base_config(config: Any, overrides: Sequence[str] = ()) -> Base:
    """``config`` (a YAML path, a shipped config name, the YAML's mapping or a ``Base``) read
    and parsed once, with ``overrides`` (``--set`` strings, e.g. ``prefetch.mode=none``) for
    every point; a file's problems, or an override's, are one ``ConfigError`` line."""
    from edgesim.config import HardwareConfig, read_config
    if isinstance(config, Base):
        base = config
    elif isinstance(config, HardwareConfig):
        raise ConfigError("sweep needs a config file path (or its YAML mapping), not a "
                          "HardwareConfig, so that --set can change it")
    elif isinstance(config, Mapping):
        base = Base(dict(config), "<config>")
    else:
        base = Base(*read_config(config))
    if overrides:
        base = Base(base.raw, base.file, (*base.overrides, *overrides))
        base.build()   # a bad override fails here, before any grid value
    return base


def _fail(text: str, why: str) -> ConfigError:
    return ConfigError(" ".join(f"--set {text}: {why}".split()))


def _canonical_key(key: str) -> str:
    return ".".join(canonical_path(key))


def _split_list(spec: str) -> list[str]:
    """Split on commas outside brackets (``[dense,csr]`` stays one value)."""
    out, depth, cur = [], 0, []
    for ch in spec:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _number(value: str, what: str, text: str) -> Fraction:
    value = value.strip()
    if not _PLAIN.match(value) or len(value) > 100:
        raise _fail(text, f"{what} {shown(value)} is not a number")
    exponent = value.lower().partition("e")[2]
    if exponent and abs(int(exponent)) > 300:   # checked before Fraction computes 10**exponent
        raise _fail(text, f"{what} {shown(value)} is out of range")
    return Fraction(value)


def _end(value: str, kind: str | None, what: str, text: str) -> Fraction:
    """A range end as an exact number in the key's base unit."""
    if kind is None:
        return _number(value, what, text)
    try:
        q = parse_quantity(value, kind, where=f"{what} {value!r}")
    except EdgesimError as exc:
        raise _fail(text, str(exc)) from None
    return Fraction(q) if isinstance(q, int) else Fraction(repr(q))


def _format(value: Fraction, kind: str | None, integral: bool) -> str:
    if kind == "size":
        return format_quantity(round(value), "size")
    if kind is not None:
        return format_quantity(float(value), kind)
    if integral:
        return str(round(value))
    return f"{float(value):.12g}"


def _expand_range(start_t: str, stop_t: str, step_t: str | None, kind: str | None,
                  text: str) -> list[str]:
    if not start_t or not stop_t:
        raise _fail(text, "empty range end; expected start..stop:xFACTOR or start..stop:+STEP")
    if step_t is None or not step_t.strip():
        raise _fail(text, "a range needs a step: start..stop:xFACTOR (geometric) or "
                    "start..stop:+STEP (arithmetic)")
    start = _end(start_t, kind, "range start", text)
    stop = _end(stop_t, kind, "range stop", text)
    if stop < start:
        raise _fail(text, f"range stop {stop_t!r} is below its start {start_t!r}")
    step_t = step_t.strip()
    integral = kind is None and all(_PLAIN.match(t.strip()) and "." not in t and "e" not in
                                    t.lower() for t in (start_t, stop_t))
    values: list[Fraction] = []
    if step_t[0] in "xX*":
        factor = _number(step_t[1:], "factor", text)
        if factor <= 1:
            raise _fail(text, f"factor {step_t[1:]!r} must be > 1")
        if start <= 0:
            raise _fail(text, f"a geometric range needs a start above 0, got {start_t!r}")
        try:
            count = math.floor(math.log(stop / start) / math.log(factor) + 1e-9) + 1
        except (OverflowError, ValueError):
            raise _fail(text, "the range is too wide") from None
        if count > MAX_VALUES:
            raise _fail(text, f"the range has {count} values; at most {MAX_VALUES}")
        values = [start * factor**k for k in range(count)]
        values = [v for v in values if v <= stop * (1 + Fraction(1, 10**9))]
    elif step_t[0] == "+":
        step_part = step_t[1:].strip()
        step = _end(step_part, kind, "step", text)
        if step <= 0:
            raise _fail(text, f"step {step_part!r} must be > 0")
        integral = integral and step.denominator == 1
        count = math.floor((stop - start) / step) + 1   # exact: Fractions
        if count > MAX_VALUES:
            raise _fail(text, f"the range has {count} values; at most {MAX_VALUES}")
        values = [start + k * step for k in range(count)]
    else:
        raise _fail(text, f"step {step_t!r} must be xFACTOR (geometric) or +STEP (arithmetic)")
    out = list(dict.fromkeys(_format(v, kind, integral) for v in values))
    if not out:
        raise _fail(text, "the range is empty")
    return out


def _check_values(base: Base, key: str, values: Sequence[str], text: str) -> None:
    """Apply each value to the config; the first one it rejects fails the whole grid."""
    for v in values:
        try:
            base.build([f"{key}={v}"])
        except EdgesimError as exc:
            raise _fail(text, str(exc)) from None


def parse_axis(text: str, config: Any, *, check: bool = True) -> Axis:
    """One ``key=spec`` as an Axis, every value checked against ``config`` (path, mapping or
    ``Base``) unless ``check`` is False."""
    key, sep, spec = text.partition("=")
    if not sep or not key.strip():
        raise _fail(text, "expected key=spec, e.g. sram.size=32KiB..32MiB:x2")
    key = _canonical_key(key)
    if key.startswith("model."):
        raise _fail(text, "model settings are not swept; name nested levels as models "
                    "(e.g. --model nested_r50@1 nested_r50@2)")
    spec = spec.strip()
    if not spec:
        raise _fail(text, "empty value; expected a value, a list a,b,c or a range")
    kind = unit_kind(key)
    values = []
    parts = _split_list(spec)
    if len(parts) > MAX_VALUES:
        raise _fail(text, f"the list has {len(parts)} values; at most {MAX_VALUES}")
    for part in parts:
        if not part:
            raise _fail(text, "empty list entry; expected values separated by single commas")
        if ".." not in part or part.startswith(("[", "{")):
            values.append(part)
            continue
        start, _, rest = part.partition("..")
        stop, colon, step = rest.partition(":")
        if ".." in stop:
            raise _fail(text, f"{part!r} is not start..stop:xFACTOR or start..stop:+STEP")
        values.extend(_expand_range(start.strip(), stop.strip(), step if colon else None,
                                    kind, text))
    values = list(dict.fromkeys(values))
    if len(values) > MAX_VALUES:
        raise _fail(text, f"the axis has {len(values)} values; at most {MAX_VALUES}")
    if check:
        _check_values(base_config(config), key, values, text)
    return Axis(key, tuple(values), text)


def parse_grid(config: Any, sets: Sequence[str], *,
               say: Callable[[str], None] | None = None) -> list[Axis]:
    """The axes of ``sets`` in order; a key given twice is an error.

    The grid's size is checked before any value is applied to the config; then the config is
    read once (``base_config``) and each value applied to it once. ``say``: a progress line
    before the values are checked.
    """
    axes: list[Axis] = []
    seen: dict[str, str] = {}
    points = 1
    for text in sets:
        axis = parse_axis(text, config, check=False)
        if axis.key in seen:
            raise _fail(text, f"{axis.key} is already swept by --set {seen[axis.key]}")
        seen[axis.key] = text
        axes.append(axis)
        points *= len(axis.values)
        if points > MAX_POINTS:
            raise _fail(text, f"the grid has {points:,} points with this axis; at most "
                        f"{MAX_POINTS:,} (sweep fewer values, or in parts)")
    if not axes:
        return axes
    base = base_config(config)
    if say is not None:
        say(f"grid: {' x '.join(str(len(a.values)) for a in axes)} = {points:,} points; "
            f"checking each of its {sum(len(a.values) for a in axes):,} values against "
            f"{base.file}")
    for axis in axes:
        _check_values(base, axis.key, axis.values, axis.text)
    return axes


def grid_size(axes: Sequence[Axis]) -> int:
    """The number of points of the grid: the product of the axes' lengths (1 without axes)."""
    return math.prod(len(a.values) for a in axes)


def iter_points(axes: Sequence[Axis]) -> Iterator[dict[str, str]]:
    """The product of the axes as ``{key: value}`` dicts (first axis varies slowest), one at a
    time: a grid of any size costs the memory of one point."""
    keys = [a.key for a in axes]
    for combo in itertools.product(*(a.values for a in axes)):
        yield dict(zip(keys, combo, strict=True))


def grid_points(axes: Sequence[Axis]) -> list[dict[str, str]]:
    """Every point of ``iter_points``, as a list."""
    return list(iter_points(axes))
