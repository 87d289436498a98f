"""Tables a person reads: human units with the unit in the header, at most ~100 columns.

Public names (for the modules of ``edgesim.cli`` only): ``WIDTH``, ``Col``, ``BRIEF``,
``scaled``, ``align``, ``brief_table``, ``human_summary``, ``comment``, ``count``.

A column of numbers is shown in one unit, the one that puts its largest value in 1..999
(bytes: B, kB, MB, GB; seconds: s, ms, us, ns; joules: J, mJ, uJ, nJ), with the unit in the
header (``latency ms``), the same decimals down the column and no e-notation. Machine formats
(CSV, JSON) keep the base units of ``edgesim columns``; this is the text table only.

>>> scaled([0.0321602, 0.0055], "s")
('ms', ['32.16', '5.50'])
>>> scaled([0, 0], "B")
('MB', ['0', '0'])
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

__all__ = ["BRIEF", "WIDTH", "Col", "align", "brief_table", "comment", "count",
           "human_summary", "scaled"]

#: The widest line a default table prints.
WIDTH = 100

#: kind -> units, largest first, with their factor; the default unit for an all-zero column.
_UNITS: dict[str, tuple[tuple[str, float], ...]] = {
    "B": (("GB", 1e9), ("MB", 1e6), ("kB", 1e3), ("B", 1.0)),
    "s": (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)),
    "J": (("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6), ("nJ", 1e-9)),
    "cycles": (("Gcycles", 1e9), ("Mcycles", 1e6), ("kcycles", 1e3), ("cycles", 1.0)),
    "%": (("%", 0.01),),
}
_ZERO_UNIT = {"B": "MB", "s": "ms", "J": "mJ", "cycles": "cycles", "%": "%"}


def scaled(values: Sequence[float | None], kind: str) -> tuple[str, list[str]]:
    """``(unit, cells)``: ``values`` (in the base unit of ``kind``) in the unit that puts the
    largest in 1..999, four significant digits for the largest, the same decimals for all."""
    present = [abs(float(v)) for v in values if v is not None and not _nan(v)]
    top = max(present, default=0.0)
    units = _UNITS[kind]
    if top == 0:
        unit = _ZERO_UNIT[kind]
        factor = dict(units)[unit]
    else:
        unit, factor = next(((u, f) for u, f in units if top / f >= 1), units[-1])
    big = top / factor
    decimals = 0 if big == 0 else max(0, 3 - math.floor(math.log10(big)))
    if unit in ("B", "cycles"):
        decimals = 0
    elif kind == "%":
        decimals = 1
    cells = ["-" if v is None or _nan(v) else
             ("0" if v == 0 else f"{float(v) / factor:,.{decimals}f}") for v in values]
    return unit, cells


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


class Col(NamedTuple):
    """A column of the default table: its header word, the kind of its unit (None: text or a
    plain count) and how to get its value from a row (a field name, or a function)."""

    label: str
    kind: str | None
    value: str | Callable[[Any], Any]


def _stall(row: Any) -> float | None:
    return row.stall_cycles / row.cycles if row.cycles else None


#: The default ``run`` table: what an architect reads first. ``--wide`` prints every column.
#: A column whose field the rows lack (``bound``, once the engine reports one) is left out.
BRIEF: tuple[Col, ...] = (
    Col("input", None, "input"),
    Col("path", None, "path"),
    Col("weight", "B", "weight_dram_bytes"),
    Col("act", "B", "act_dram_bytes"),
    Col("latency", "s", "latency_s"),
    Col("stall", "%", _stall),
    Col("energy", "J", "energy_j"),
    Col("off-chip", "J", "energy_offchip_j"),
    Col("bound", None, "bound"),
)

#: Text cells longer than this are cut (a long path name).
_CELL = 24


def _cut(text: str) -> str:
    return text if len(text) <= _CELL else text[: _CELL - 3] + "..."


def brief_table(fields: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The default table of inference rows (NamedTuples with ``fields``)."""
    cols = [c for c in BRIEF if callable(c.value) or c.value in fields]
    header, cells, numeric = [], [], []
    for c in cols:
        raw = [c.value(r) if callable(c.value) else getattr(r, c.value) for r in rows]
        if c.kind is None:
            header.append(c.label)
            num = all(isinstance(v, (int, float)) for v in raw)
            cells.append([f"{v:,}" if num and isinstance(v, int) else _cut(str(v))
                          for v in raw])
        else:
            unit, col = scaled(raw, c.kind)
            header.append(f"{c.label} {unit}")
            cells.append(col)
            num = True
        numeric.append(num)
    return align(header, cells, numeric)


def align(header: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    """Columns of cells under ``header``, numbers right-aligned, text left; two spaces apart."""
    widths = [max([len(h)] + [len(x) for x in col]) for h, col in zip(header, cells, strict=True)]
    lines = [header] + [[col[i] for col in cells] for i in range(len(cells[0]) if cells else 0)]
    return "\n".join(
        "  ".join(x.rjust(w) if num else x.ljust(w)
                  for x, w, num in zip(line, widths, numeric, strict=True)).rstrip()
        for line in lines)


#: The unit kind of a summary metric, from its name.
def _kind(metric: str) -> str | None:
    if metric.endswith("_bytes"):
        return "B"
    if metric.endswith("_s"):
        return "s"
    if metric.endswith("_j"):
        return "J"
    if metric.endswith("_cycles"):
        return "cycles"
    return None


def human_summary(summary: dict[str, Any]) -> str:
    """The summary block in human units: one line per metric (its unit beside it), cold,
    steady-state mean, p50, p99; each line in the unit of its largest value."""
    metrics = [(m, v) for m, v in summary.items() if isinstance(v, dict)]
    if not metrics:
        return ""
    keys = ["cold", "steady_mean", "p50", "p99"]
    names, units, cells = [], [], [[] for _ in keys]
    for m, v in metrics:
        values = [v.get(k) for k in keys]
        kind = _kind(m)
        if kind is None:
            unit, shown = "", [str(x) for x in values]
        else:
            unit, shown = scaled(values, kind)
        names.append(m)
        units.append(unit)
        for col, x in zip(cells, shown, strict=True):
            col.append(x)
    return align(["metric", "unit", "cold", "steady mean", "p50", "p99"],
                  [names, units, *cells], [False, False, True, True, True, True])


def comment(text: str) -> list[str]:
    """``text`` as ``# `` lines of at most ``WIDTH`` characters (long names are broken)."""
    return ["# " + line for line in textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False)]


def count(n: float) -> str:
    """A count in human units: 25.53 M, 3.02 G, 812 (no e-notation).

    >>> count(25_527_941), count(812), count(3_025_800_725)
    ('25.53 M', '812', '3.03 G')
    """
    for unit, factor in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:.3g}"
