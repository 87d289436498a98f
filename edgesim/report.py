"""Rendering results: aligned text tables, CSV and JSON, deterministic to the byte.

Public names: ``FORMATS``, ``render_table``, ``render``, ``render_summary``, ``RowWriter``,
``write_json``, ``csv_safe``, ``distinct_inferences``, ``render_per_layer``, ``time_by``,
``render_where_time``.

Tables are columns plus rows of plain values; a pandas DataFrame is accepted wherever a table is
(this module itself never imports pandas, so printing a cached run stays fast).

>>> print(render_table(["input", "latency_s"], [(0, 0.00125), (1, 0.0005)]))
input  latency_s
    0    0.00125
    1     0.0005
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import shutil
from collections.abc import Mapping, Sequence
from typing import IO, Any

__all__ = ["FORMATS", "RowWriter", "csv_safe", "distinct_inferences", "render",
           "render_per_layer", "render_summary", "render_table", "render_where_time", "time_by",
           "write_json"]

FORMATS = ("table", "csv", "json", "jsonl")


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _cell(v: Any) -> str:
    v = _plain(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.6g}"
    return str(v)


def _table(table: Any, rows: Sequence[Sequence[Any]] | None) -> tuple[list[str], list[tuple]]:
    """(columns, rows) from a DataFrame, or from columns and rows given apart."""
    if rows is None:  # a DataFrame
        return [str(c) for c in table.columns], list(table.itertuples(index=False, name=None))
    return [str(c) for c in table], [tuple(r) for r in rows]


def _numeric(values: list[Any]) -> bool:
    present = [_plain(v) for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                 for v in present)


def render_table(table: Any, rows: Sequence[Sequence[Any]] | None = None) -> str:
    """Columns right-aligned for numbers, left for text; six significant digits for floats."""
    cols, data = _table(table, rows)
    cells = [[_cell(r[k]) for r in data] for k in range(len(cols))]
    numeric = [_numeric([r[k] for r in data]) for k in range(len(cols))]
    widths = [max([len(c)] + [len(x) for x in col]) for c, col in zip(cols, cells, strict=True)]
    lines = [cols] + [[col[r] for col in cells] for r in range(len(data))]
    return "\n".join(
        "  ".join(x.rjust(w) if num else x.ljust(w)
                  for x, w, num in zip(line, widths, numeric, strict=True)).rstrip()
        for line in lines)


def render_summary(summary: dict[str, Any]) -> str:
    """The summary block: one line per metric with cold, steady-state mean, p50, p99."""
    metrics = [(m, v) for m, v in summary.items() if isinstance(v, dict)]
    if not metrics:
        return ""
    keys = list(metrics[0][1])
    return render_table(["metric", *keys], [(m, *(v.get(k) for k in keys)) for m, v in metrics])


#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula.

    >>> csv_safe("=HYPERLINK(1)"), csv_safe("-1"), csv_safe(-1), csv_safe("dense_r50")
    ("'=HYPERLINK(1)", "'-1", -1, 'dense_r50')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_cell(v: Any) -> Any:
    v = _plain(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return format(v, ".12g")
    return v


def render(table: Any, fmt: str, *, rows: Sequence[Sequence[Any]] | None = None,
           json_obj: dict[str, Any] | None = None) -> str:
    """A table (DataFrame, or columns with ``rows``) as text or CSV, or ``json_obj`` (default:
    the rows as records) as indented JSON."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "json" and json_obj is not None:
        return json.dumps(json_obj, indent=2, default=_json_default)
    cols, data = _table(table, rows)
    if fmt == "jsonl":
        return "\n".join(_jsonl(cols, r) for r in data)
    if fmt == "table":
        return render_table(cols, data)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows([_csv_cell(v) for v in r] for r in data)
        return buf.getvalue().rstrip("\n")
    return json.dumps([dict(zip(cols, map(_plain, r), strict=True)) for r in data], indent=2,
                      default=_json_default)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return str(v)


def _jsonl(cols: Sequence[str], row: Sequence[Any]) -> str:
    return json.dumps(dict(zip(cols, map(_plain, row), strict=True)), default=_json_default)


class RowWriter:
    """Rows written as they are produced, as CSV (header first) or JSON lines, to ``stream``:
    byte for byte what ``render`` gives for the same rows, without holding them. ``"json"``
    writes the rows as the items of an array of records (NaN as null) nested in an object as
    ``write_json`` places them, the items alone: ``write_json`` adds the brackets. ``safe``:
    CSV text cells a spreadsheet would run as a formula are escaped (``csv_safe``).

    ``many(rows)`` writes a chunk of rows at once, the same bytes as one call per row: a
    stream repeats a few situations (a memo hit is the same row under a new input number, its
    other cells the very same objects), so the text of a row's cells after the first is kept
    for the last ``MEMO_ROWS`` distinct tails and reused when every cell is the same object.

    >>> import io
    >>> one, many = io.StringIO(), io.StringIO()
    >>> rows = [(0, "a", 1.5), (1, "a", 1.5), (2, "=b", float("nan"))]
    >>> w = RowWriter(["i", "p", "x"], "csv", one, safe=True)
    >>> for r in rows:
    ...     w(r)
    >>> RowWriter(["i", "p", "x"], "csv", many, safe=True).many(rows)
    >>> one.getvalue() == many.getvalue() == "i,p,x\\n0,a,1.5\\n1,a,1.5\\n2,'=b,\\n"
    True
    """

    #: Distinct row tails whose text ``many`` keeps (then it starts over).
    MEMO_ROWS = 1024

    def __init__(self, cols: Sequence[str], fmt: str, stream: Any, *, safe: bool = False
                 ) -> None:
        if fmt not in ("csv", "jsonl", "json"):
            raise ValueError(f"rows stream as csv, jsonl or json, not {fmt!r}")
        self.cols, self.fmt, self.stream = list(cols), fmt, stream
        self.safe = safe and fmt == "csv"
        self.rows = 0
        self._csv = csv.writer(stream, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(self.cols)
        self._tails: dict[tuple, tuple[tuple, str]] = {}
        self._known: dict[int, tuple[Sequence[Any], str]] = {}   # by id of a row (``numbered``)
        self._buf = io.StringIO()
        self._line = csv.writer(self._buf, lineterminator="\n") if fmt == "csv" else None

    def __call__(self, row: Sequence[Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([_csv_cell(csv_safe(v) if self.safe else v) for v in row])
        elif self.fmt == "jsonl":
            self.stream.write(_jsonl(self.cols, row) + "\n")
        else:
            record = dict(zip(self.cols, map(_record_value, row), strict=True))
            text = json.dumps(record, indent=2, default=_json_default)
            self.stream.write((",\n    " if self.rows else "    ")
                              + text.replace("\n", "\n    "))
        self.rows += 1

    def many(self, rows: Sequence[Sequence[Any]]) -> None:
        """Write ``rows``: the bytes of ``self(row)`` for each, in one write."""
        if self.fmt == "json" or len(self.cols) < 2:
            for r in rows:
                self(r)
            return
        self.numbered([(r[0], r) for r in rows])

    def numbered(self, pairs: Sequence[tuple[Any, Sequence[Any]]]) -> None:
        """Write each (first cell, row) of ``pairs`` as ``row`` with that first cell: the
        bytes of ``many`` of those rows. A row written under another first cell than its
        own (a memo hit's row under another input number, ``simulate``'s ``renumbered``) is
        remembered by identity: met again, it reuses the text of its other cells without
        comparing them."""
        if self.fmt == "json" or len(self.cols) < 2:
            for first, r in pairs:
                self((first, *r[1:]))
            return
        text = self._csv_text if self._csv is not None else self._jsonl_text
        head, sep = ("", ",") if self._csv is not None else (
            "{" + json.dumps(self.cols[0]) + ": ", ", ")
        known, tails, is_ = self._known, self._tails, operator.is_
        lines = []
        for first, r in pairs:
            hit = known.get(id(r))   # (an entry keeps its row alive: no other has its id)
            if hit is None:
                tail = tuple(r[1:])
                same = tails.get(tail)
                if same is None or not all(map(is_, same[0], tail)):
                    if len(tails) >= self.MEMO_ROWS:
                        tails.clear()
                    same = tails[tail] = (tail, text(tail, 1))
                hit = (r, same[1])
                # kept by identity: a row that cannot change, written under another first
                # cell than its own (a memo hit's row: it comes again; a new row is not kept)
                if isinstance(r, tuple) and first != r[0]:
                    if len(known) >= self.MEMO_ROWS:
                        known.clear()
                    known[id(r)] = hit
            if type(first) is int:        # the input number: str(int) in both formats
                lines.append(f"{head}{first}{sep}{hit[1]}")
            else:
                lines.append(text((first,), 0) + hit[1])
        self.stream.write("".join(lines))
        self.rows += len(pairs)

    def _csv_text(self, cells: Sequence[Any], start: int) -> str:
        """CSV of ``cells`` (the row's cells from ``start``): its first cell's text with its
        comma after it, or the rest of the row with its newline."""
        out = [_csv_cell(csv_safe(v) if self.safe else v) for v in cells]
        if out == [""]:      # alone, csv writes an empty field as "" (in a row, as nothing)
            line = "\n"
        else:
            buf = self._buf
            buf.seek(0)
            buf.truncate()
            self._line.writerow(out)
            line = buf.getvalue()
        return line[:-1] + "," if start == 0 else line

    def _jsonl_text(self, cells: Sequence[Any], start: int) -> str:
        """JSON of ``cells`` (the row's cells from ``start``) as ``_jsonl`` writes them:
        ``{"first": v, `` or ``"k": v, ...}`` and the newline."""
        text = _jsonl(self.cols[start:start + len(cells)], cells)
        return text[:-1] + ", " if start == 0 else text[1:] + "\n"


def _record_value(v: Any) -> Any:
    v = _plain(v)
    return None if isinstance(v, float) and v != v else v    # NaN -> null


def write_json(stream: IO[str], obj: Mapping[str, Any], items: Mapping[str, IO[str]]) -> None:
    """``obj`` as ``render(..., json_obj=obj)`` gives it, and a newline, written to ``stream``;
    each key of ``items`` holds an array whose items are read from that file (written by a
    ``RowWriter(cols, "json", file)``, copied from its start), so an array of any length is
    never held in memory.

    >>> import io
    >>> rows = io.StringIO()
    >>> w = RowWriter(["a"], "json", rows)
    >>> w((1,))
    >>> out = io.StringIO()
    >>> write_json(out, {"n": 1, "rows": []}, {"rows": rows})
    >>> out.getvalue().rstrip() == render(None, "json", json_obj={"n": 1, "rows": [{"a": 1}]})
    True
    """
    stream.write("{")
    for k, (key, value) in enumerate(obj.items()):
        stream.write(("," if k else "") + "\n  " + json.dumps(key) + ": ")
        spool = items.get(key)
        if spool is None:
            text = json.dumps(value, indent=2, default=_json_default)
            stream.write(text.replace("\n", "\n  "))
        elif spool.tell() == 0:
            stream.write("[]")
        else:
            spool.seek(0)
            stream.write("[\n")
            shutil.copyfileobj(spool, stream)
            stream.write("\n  ]")
    stream.write("\n}\n" if obj else "}\n")


# ---------------------------------------------------------------------------------------------
# per-op rows: one block per distinct inference, and where the time went
# ---------------------------------------------------------------------------------------------

def _ranges(numbers: Sequence[int]) -> str:
    """``0, 2-7``: sorted integers as runs.

    >>> _ranges([0, 2, 3, 4, 9])
    '0, 2-4, 9'
    """
    out: list[str] = []
    start = prev = None
    for n in [*numbers, None]:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = n
    return ", ".join(out)


def distinct_inferences(rows: Sequence[Sequence[Any]]) -> list[tuple[list[int], list[Any]]]:
    """Per-op rows (``LayerRow``s: the input number first) grouped by inference, inferences
    whose rows are equal but for that number taken together: ``[(inputs, rows of the first
    of them)]`` in order of first appearance. A dense model's steady state is one block; a
    routed model's, one block per distinct path and residency state.

    >>> rows = [(0, "a", 5), (1, "a", 1), (2, "a", 1)]
    >>> [(inputs, len(r)) for inputs, r in distinct_inferences(rows)]
    [([0], 1), ([1, 2], 1)]
    """
    per_input: dict[int, list[Any]] = {}
    for r in rows:
        per_input.setdefault(r[0], []).append(r)
    groups: dict[tuple, tuple[list[int], list[Any]]] = {}
    for i, ops in per_input.items():
        key = tuple(op[1:] for op in ops)
        if key in groups:
            groups[key][0].append(i)
        else:
            groups[key] = ([i], ops)
    return list(groups.values())


def render_per_layer(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The per-op table of ``run --per-layer``: one block per distinct inference
    (``distinct_inferences``), each headed by the inputs it stands for and its path."""
    blocks = distinct_inferences(rows)
    total = sum(len(inputs) for inputs, _ in blocks)
    out = []
    for inputs, ops in blocks:
        path = ops[0][list(cols).index("path")] if ops else ""
        out.append(f"# input {_ranges(inputs)} ({len(inputs):,} of {total:,} inferences, "
                   f"path {path}{', cold' if inputs[0] == 0 else ''}): each op")
        out.append(render_table(cols, ops))
    if not blocks:
        out.append(render_table(cols, []))
    return "\n".join(out)


def time_by(rows: Sequence[Any], key: str) -> list[tuple]:
    """Where the time and energy of per-op rows went, grouped by ``key`` (``bound`` or
    ``kind``): per group, ops per inference, mean time per inference (µs; an op's time is its
    end less the previous op's end), its share of the latency, mean energy (µJ; an op's
    ``energy_j``) and its share of the energy, MACs and off-chip bytes (weights, activations)
    per inference; largest time first, then by name."""
    inputs = {r.input for r in rows}
    n = max(1, len(inputs))
    acc: dict[str, list[float]] = {}
    for r in rows:
        a = acc.setdefault(getattr(r, key), [0, 0.0, 0.0, 0, 0, 0])
        a[0] += 1
        a[1] += r.compute_end_s - r.compute_start_s
        a[2] += r.energy_j
        a[3] += r.macs
        a[4] += r.weight_dram_bytes
        a[5] += r.act_dram_bytes
    time = math.fsum(a[1] for a in acc.values()) or 1.0
    energy = math.fsum(a[2] for a in acc.values()) or 1.0
    table = [(name, round(a[0] / n, 2), round(a[1] / n * 1e6, 3), round(100 * a[1] / time, 1),
              round(a[2] / n * 1e6, 3), round(100 * a[2] / energy, 1), round(a[3] / n),
              round(a[4] / n), round(a[5] / n))
             for name, a in acc.items()]
    return sorted(table, key=lambda t: (-t[2], t[0]))


#: Columns of a ``time_by`` table after the group's name.
TIME_COLUMNS = ("ops", "time_us", "time_%", "energy_uj", "energy_%", "macs",
                "weight_dram_bytes", "act_dram_bytes")


def render_where_time(rows: Sequence[Any]) -> str:
    """Two tables of mean time per inference: by bound (what held each op) and by op class."""
    if not rows:
        return ""
    return "\n".join([
        "# where the time and energy go, by bound (per inference, mean over the stream)",
        render_table(["bound", *TIME_COLUMNS], time_by(rows, "bound")), "",
        "# by op class", render_table(["kind", *TIME_COLUMNS], time_by(rows, "kind"))])
