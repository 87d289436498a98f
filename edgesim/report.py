"""Rendering results: aligned text tables, CSV and JSON, deterministic to the byte.

Public names: ``FORMATS``, ``render_table``, ``render``, ``render_summary``.

>>> import pandas as pd
>>> print(render_table(pd.DataFrame({"input": [0, 1], "latency_s": [0.00125, 0.0005]})))
input  latency_s
    0    0.00125
    1     0.0005
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd

__all__ = ["FORMATS", "render", "render_summary", "render_table"]

FORMATS = ("table", "csv", "json")


def _cell(v: Any) -> str:
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
    if hasattr(v, "item"):
        return _cell(v.item())
    return str(v)


def render_table(df: pd.DataFrame) -> str:
    """Columns right-aligned for numbers, left for text; six significant digits for floats."""
    cols = list(df.columns)
    cells = [[_cell(v) for v in df[c].tolist()] for c in cols]
    widths = [max([len(str(c))] + [len(x) for x in col])
              for c, col in zip(cols, cells, strict=True)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in cols]
    rows = [[str(c) for c in cols]] + [[col[r] for col in cells] for r in range(len(df))]
    return "\n".join(
        "  ".join(x.rjust(w) if num else x.ljust(w)
                  for x, w, num in zip(row, widths, numeric, strict=True)).rstrip()
        for row in rows)


def render_summary(summary: dict[str, Any]) -> str:
    """The summary block: one line per metric with cold, steady-state mean, p50, p99."""
    rows = [{"metric": metric, **v} for metric, v in summary.items() if isinstance(v, dict)]
    if not rows:
        return ""
    return render_table(pd.DataFrame(rows))


def render(df: pd.DataFrame, fmt: str, *, json_obj: dict[str, Any] | None = None) -> str:
    """``df`` as a table or CSV, or ``json_obj`` (default: the rows) as indented JSON."""
    if fmt == "table":
        return render_table(df)
    if fmt == "csv":
        buf = io.StringIO()
        df.to_csv(buf, index=False, float_format="%.12g", lineterminator="\n")
        return buf.getvalue().rstrip("\n")
    if fmt == "json":
        obj = json_obj if json_obj is not None else df.to_dict(orient="records")
        return json.dumps(obj, indent=2, sort_keys=False, default=_json_default)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    if isinstance(v, (set, frozenset, tuple)):
        return list(v)
    return str(v)
