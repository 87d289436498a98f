"""Figures of sweeps and runs (matplotlib, Agg): each written as PNG and SVG.

Public names: ``KINDS``, ``HIGHER_IS_BETTER``, ``STYLES``, ``plot``, ``column``,
``pareto_front``, ``plot_pareto``, ``plot_bytes_vs_sram``, ``plot_energy_breakdown``,
``plot_timeline``, ``plot_roofline``, ``read_run`` (the command is ``edgesim.cli.plot``).
``edgesim.plot(...)``, the module called, is ``plot``.

* ``pareto``: every (point, model, policy) of a sweep as x = steady-state latency, y =
  steady-state energy per inference (or any two columns, e.g. ``top1`` of a sweep run with
  ``--data LABELLED --eval`` against ``weight_dram_bytes_steady``); the non-dominated points of
  each model joined as its front, the overall front highlighted, each front point labelled
  with its grid values. Columns of ``HIGHER_IS_BETTER`` (accuracy) are maximised, every other
  one minimised.
* ``bytes-vs-sram``: steady-state off-chip weight bytes per inference (or ``--y``) against
  SRAM size (log x), one curve per model, and per value of every other swept key (never an
  average of configurations: a point is one configuration).
* ``energy-breakdown``: stacked bars per model of the energy components (MAC, SRAM, off-chip,
  index decode, leakage), at up to four grid points (the title says how many there are).
* ``timeline``: one inference of a ``edgesim run ... --timeline FILE`` event log (or of a run's
  ``--per-layer --format json`` document, which names the model and config) as a Gantt chart:
  off-chip transfers, compute coloured by bound with the longest ops named, and stalls.
* ``roofline``: the ops of one inference as points, arithmetic intensity (MACs per off-chip
  byte) against achieved MAC/s, under the config's compute roof (peak MACs/cycle x clock) and
  bandwidth roof (bytes/s x intensity); from a run's JSON document, or an event log with
  ``--config``.

Curves and point sets take their (colour, marker) from ``STYLES``: 20 colours x 8 markers,
so 160 series are told apart, the first 20 by colour alone, and consecutive ones always differ
in colour.

``pareto_front`` is the one piece of logic here (axes minimised unless named in ``maximize``;
ties kept):

>>> import pandas as pd
>>> df = pd.DataFrame({"x": [1, 2, 3, 2], "y": [3, 1, 2, 3]})
>>> pareto_front(df, "x", "y").tolist()
[True, True, False, False]
>>> acc = pd.DataFrame({"bytes": [1, 2, 3, 2], "top1": [0.1, 0.3, 0.2, 0.3]})
>>> pareto_front(acc, "bytes", "top1", maximize=("top1",)).tolist()
[True, True, False, True]
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim import _callable_module
from edgesim.errors import DataError, EdgesimError
from edgesim.units import shown

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HIGHER_IS_BETTER", "KINDS", "STYLES", "column", "pareto_front", "plot",
           "plot_bytes_vs_sram", "plot_energy_breakdown", "plot_pareto", "plot_roofline",
           "plot_timeline", "read_run"]

KINDS = ("pareto", "bytes-vs-sram", "energy-breakdown", "timeline", "roofline")
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf",          # matplotlib's tab10, then the dark
            "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",   # rows of tab20b/tab20c
            "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: (colour, marker) of series k: colour k mod 20, marker k div 20 (160 distinct pairs).
STYLES = tuple((c, m) for m in _MARKERS for c in _COLOURS)
#: Colour of each bound (``edgesim.sim.bound.BOUNDS``) in the timeline and the roofline.
BOUND_COLOURS = {"compute": "#1f77b4", "vector": "#2ca02c", "sram_port": "#9467bd",
                 "weights": "#ff7f0e", "activations": "#d62728", "none": "#7f7f7f"}
#: The timeline's off-chip transfers and stalls: neither a bound's colour.
TRANSFER_COLOUR, STALL_COLOUR = "#c49c94", "#444444"
#: Columns where more is better (a Pareto front maximises them).
HIGHER_IS_BETTER = ("top1",)
ENERGY_PARTS = (("energy_mac_j", "MAC"), ("energy_array_j", "PE registers"),
                ("energy_sram_j", "SRAM"),
                ("energy_offchip_j", "off-chip"), ("energy_decode_j", "index decode"),
                ("energy_leak_j", "leakage"))
_NICE = {
    "latency_s": "latency per inference", "energy_j": "energy per inference",
    "weight_dram_bytes": "off-chip weight bytes per inference",
    "act_dram_bytes": "off-chip activation bytes per inference",
    "sram_bytes": "SRAM size", "weight_sram_bytes": "SRAM for weights",
    "offchip_bytes_per_s": "off-chip bandwidth", "clock_hz": "clock",
    "stall_cycles": "stall cycles per inference", "top1": "top-1 accuracy",
    "act_reread_bytes": "activation re-read bytes per inference",
    "weight_refetch_bytes": "weight re-fetch bytes per inference",
    "spec_wasted_bytes": "wasted speculative bytes per inference",
}
_STAT = {"cold": "cold", "steady": "steady-state", "p50": "median", "p99": "p99"}


# --------------------------------------------------------------------------- labels and units

def _unit(col: str, values: Sequence[float]) -> tuple[float, str]:
    """(divisor, unit) so that the largest value reads between 1 and 1000."""
    top = max((abs(float(v)) for v in values), default=0.0)
    base = col.rsplit("_", 1)[0] if col.rsplit("_", 1)[-1] in _STAT else col
    if base in HIGHER_IS_BETTER:   # a fraction 0..1, shown in percent
        return 0.01, "%"
    if base.endswith("_s") and not base.endswith("bytes_per_s"):
        table = [(1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")]
    elif base.endswith("_j"):
        table = [(1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ"), (1e-9, "nJ"), (1e-12, "pJ")]
    elif base.endswith("bytes_per_s"):
        table = [(1e9, "GB/s"), (1e6, "MB/s"), (1e3, "KB/s"), (1.0, "B/s")]
    elif base.endswith("bytes"):
        table = [(2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB"), (1.0, "B")]
    elif base.endswith("_hz"):
        table = [(1e9, "GHz"), (1e6, "MHz"), (1e3, "kHz"), (1.0, "Hz")]
    else:
        return 1.0, ""
    for div, unit in table:
        if top >= div:
            return div, unit
    return table[-1]


def _label(col: str, unit: str) -> str:
    head, _, stat = col.rpartition("_")
    if stat in _STAT and head:
        text = f"{_STAT[stat]} {_NICE.get(head, head.replace('_', ' '))}"
    else:
        text = _NICE.get(col, col.replace("_", " "))
    return f"{text} ({unit})" if unit else text


def column(df: pd.DataFrame, col: str) -> str:
    """``col``, or for a metric named without its statistic (``weight_dram_bytes``) its
    steady-state column (``weight_dram_bytes_steady``) when the table has that one."""
    if col not in df.columns and f"{col}_steady" in df.columns:
        return f"{col}_steady"
    return col


def _scaled(df: pd.DataFrame, col: str) -> tuple[Any, str]:
    import pandas as pd
    if col not in df.columns:
        hint = ("; run the sweep with --data LABELLED --eval for top1"
                if col in HIGHER_IS_BETTER else "")
        raise DataError(f"column {shown(col)} is not in the table{hint}; "
                        f"{_did_you_mean(col, [str(c) for c in df.columns])}")
    if not pd.api.types.is_numeric_dtype(df[col]):
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        raise DataError(f"column {col!r} holds text (e.g. {str(df[col].iloc[0])[:40]!r}); an "
                        f"axis needs a numeric column such as {', '.join(numeric[:6])}")
    div, unit = _unit(col, df[col].tolist())
    return df[col] / div, _label(col, unit)


def _did_you_mean(col: str, columns: list[str], n: int = 4) -> str:
    """"did you mean a, b?" with the columns closest to ``col``: those that contain it
    (``energy`` -> ``energy_j_steady``, steady ones first), else the nearest spellings."""
    import difflib
    word = col.lower()
    close = sorted((c for c in columns if word and word in c.lower()),
                   key=lambda c: (not c.endswith("_steady"), len(c), c))[:n]
    close = close or difflib.get_close_matches(col, columns, n=n, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}(`edgesim columns` explains the {len(columns)} columns of a sweep table)"


def _figure(width: float = 7.5, height: float = 5.0):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11,
                         "legend.fontsize": 9, "svg.hashsalt": "edgesim",
                         "svg.fonttype": "none"})
    return plt, plt.figure(figsize=(width, height), dpi=120)


#: The files a figure is written as (``png_only`` leaves out the SVG).
_SUFFIXES: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "suffixes", default=(".png", ".svg"))


@contextlib.contextmanager
def png_only():
    """Within it, figures are written as PNG alone (the HTML report embeds the PNG)."""
    token = _SUFFIXES.set((".png",))
    try:
        yield
    finally:
        _SUFFIXES.reset(token)


def _save(plt, fig, out: Path) -> list[Path]:
    """The figure as ``out.png`` and ``out.svg``, each checked (a new name or a regular file)
    before anything is drawn and written atomically (``edgesim.outputs``)."""
    import io

    from edgesim.outputs import output_path, write_atomically
    paths = [out.with_suffix(s) for s in _SUFFIXES.get()]
    for p in paths:
        output_path(p, "--out")
    try:
        fig.tight_layout()
        for p in paths:
            meta = {"metadata": {"Date": None}} if p.suffix == ".svg" else {}
            buf = io.BytesIO()
            fig.savefig(buf, format=p.suffix[1:], bbox_inches="tight", **meta)
            write_atomically(p, buf.getvalue(), "--out")
    finally:
        plt.close(fig)
    return paths


def _series_keys(df: pd.DataFrame) -> list[str]:
    """Columns that make a line: the model, and the policy / config when those vary."""
    return ["model"] + [extra for extra in ("policy", "config")
                        if extra in df.columns and df[extra].nunique() > 1]


def _series(df: pd.DataFrame, extra: Sequence[str] = ()) -> list[tuple[str, pd.DataFrame]]:
    """Groups to draw as one line: per model, and per policy / config when those vary, and per
    value of the ``extra`` columns (labelled ``key=value``)."""
    keys = _series_keys(df)
    out = []
    for name, g in df.groupby(keys + list(extra), sort=False, dropna=False):
        values = name if isinstance(name, tuple) else (name,)
        head = [str(v) for v in values[:len(keys)]]
        tail = [f"{k}={v}" for k, v in zip(extra, values[len(keys):], strict=True)]
        out.append((" · ".join(head + ([", ".join(tail)] if tail else [])), g))
    return out


def _swept(df: pd.DataFrame) -> list[str]:
    """The grid's keys (``_param_columns``) that take more than one value in ``df``."""
    return [p for p in _param_columns(df) if df[p].nunique(dropna=False) > 1]


def _grid_label(row: pd.Series, keys: Sequence[str]) -> str:
    """``sram.size=64KiB, offchip.bandwidth=1GB/s``: a row's values of the swept ``keys``."""
    return ", ".join(f"{k}={row[k]}" for k in keys)


# --------------------------------------------------------------------------- pareto

def pareto_front(df: pd.DataFrame, x: str, y: str, *, maximize: Sequence[str] = ()):
    """Boolean Series: rows no other row beats in both ``x`` and ``y`` (lower is better, higher
    for the columns named in ``maximize``)."""
    import numpy as np
    import pandas as pd
    xs, ys = df[x].to_numpy(dtype=float), df[y].to_numpy(dtype=float)
    xs, ys = (-xs if x in maximize else xs), (-ys if y in maximize else ys)
    keep = np.ones(len(df), dtype=bool)
    for i in range(len(df)):
        better = (xs <= xs[i]) & (ys <= ys[i]) & ((xs < xs[i]) | (ys < ys[i]))
        keep[i] = not better.any()
    return pd.Series(keep, index=df.index)


def _place_labels(ax, labels: Sequence[tuple[float, float, str, Any]], *,
                  skip_crowded: bool = False) -> None:
    """Each (x, y, text, colour) written beside its point, at the first of six offsets whose
    box (text size estimated at 7 pt) does not cover a label already placed; where all six
    do, at the first (or, ``skip_crowded``, not at all)."""
    fig = ax.figure
    fig.canvas.draw()                   # the data -> pixel transform of the final limits
    to_px = ax.transData.transform
    dpi = fig.dpi / 72                  # pixels per point
    boxes: list[tuple[float, float, float, float]] = []
    offsets = ((4, 5), (4, -12), (-4, 5), (-4, -12), (4, 16), (4, -23))
    for x, y, text, colour in labels:
        px, py = to_px((x, y))
        w, h = len(text) * 4.1 * dpi, 9 * dpi
        chosen = offsets[0]
        for dx, dy in offsets:
            left = px + dx * dpi - (w if dx < 0 else 0)
            bottom = py + dy * dpi
            box = (left, bottom, left + w, bottom + h)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3]
                       for b in boxes):
                chosen = (dx, dy)
                break
        else:
            if skip_crowded:
                continue
            left, bottom = px + 4 * dpi, py + 5 * dpi
            box = (left, bottom, left + w, bottom + h)
        boxes.append(box)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=chosen, fontsize=7,
                    color=colour, ha="right" if chosen[0] < 0 else "left")


def plot_pareto(df: pd.DataFrame, out: str | os.PathLike, *, x: str = "latency_s_steady",
                y: str = "energy_j_steady") -> list[Path]:
    """Every row as a point; each model's front as a line; the overall front highlighted.

    Accuracy columns (``HIGHER_IS_BETTER``) are maximised; rows without a value on either axis
    (failed points) are left out. A metric named without its statistic is its steady state."""
    x, y = column(df, x), column(df, y)
    xs, xlabel = _scaled(df, x)
    ys, ylabel = _scaled(df, y)
    data = df.assign(_x=xs, _y=ys).dropna(subset=["_x", "_y"])
    if data.empty:
        raise DataError(f"pareto: no row has both {x} and {y}")
    up = tuple(a for a, col in (("_x", x), ("_y", y)) if col in HIGHER_IS_BETTER)
    swept = _swept(data)
    plt, fig = _figure()
    ax = fig.add_subplot()
    labels: list[tuple[float, float, str, Any]] = []
    for k, (label, g) in enumerate(_series(data)):
        c, marker = STYLES[k % len(STYLES)]
        ax.scatter(g["_x"], g["_y"], s=14, color=c, marker=marker, alpha=0.35, linewidths=0)
        front = g[pareto_front(g, "_x", "_y", maximize=up)].sort_values(["_x", "_y"])
        ax.plot(front["_x"], front["_y"], "-", marker=marker, color=c, ms=4, lw=1.3,
                label=label)
        for _, row in front.iterrows():      # each front point says which configuration it is
            text = _grid_label(row, swept)
            if text:
                labels.append((row["_x"], row["_y"], text, c))
    overall = data[pareto_front(data, "_x", "_y", maximize=up)].sort_values(["_x", "_y"])
    ax.plot(overall["_x"], overall["_y"], "-", color="black", lw=3, alpha=0.25, zorder=0,
            label="overall front")
    ax.scatter(overall["_x"], overall["_y"], s=70, facecolors="none", edgecolors="black",
               linewidths=1.2, zorder=3)
    _place_labels(ax, labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    best = f"{'upper' if '_y' in up else 'lower'}-{'right' if '_x' in up else 'left'}"
    ax.set_title(f"Pareto front ({best} is better; dots: every point, lines: fronts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- bytes vs SRAM

def sram_lines(data: pd.DataFrame, x: str) -> tuple[list[tuple[str, pd.DataFrame]], list[str]]:
    """The curves of ``bytes-vs-sram``: ``(label, rows)`` per model (policy, config) and per
    value of every other swept key that varies at one ``x``; and those keys. A curve's rows
    have distinct ``x``: rows no key tells apart are a ``DataError`` naming what differs."""
    if x not in data.columns:
        raise DataError(f"column {shown(x)} is not in the table; "
                        f"{_did_you_mean(x, [str(c) for c in data.columns])}")
    at_x = data.groupby([*_series_keys(data), x], dropna=False)
    others = [k for k in _swept(data) if k != x and at_x[k].nunique(dropna=False).max() > 1]
    lines = _series(data, others)
    for label, g in lines:
        if g[x].duplicated().any():
            shared = g[g[x].duplicated(keep=False)]
            apart = [c for c in ("prefetch", "inputs", "family", "status")
                     if c in shared.columns and shared[c].nunique(dropna=False) > 1]
            raise DataError(
                f"bytes-vs-sram: {label} has {len(shared)} rows at the same {x} "
                + (f"that differ in {', '.join(apart)}" if apart else
                   "that no swept key tells apart") + "; a point must be one configuration "
                "(plot one sweep per setting, or draw them with `plot pareto`)")
    return [(label, g.sort_values(x)) for label, g in lines], others


def plot_bytes_vs_sram(df: pd.DataFrame, out: str | os.PathLike, *, x: str = "sram_bytes",
                       y: str = "weight_dram_bytes_steady") -> list[Path]:
    """One curve per model of ``y`` against SRAM size on a log2 axis.

    Every other swept key that takes several values at one SRAM size gets one curve per value
    (``model · key=value``): each point is one configuration, never a mean of several. Rows
    that share an SRAM size and that no column tells apart are refused in one line."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from edgesim.units import format_quantity
    x, y = column(df, x), column(df, y)
    ys, ylabel = _scaled(df, y)
    lines, others = sram_lines(df.assign(_y=ys), x)
    plt, fig = _figure()
    ax = fig.add_subplot()
    for k, (label, g) in enumerate(lines):
        c, marker = STYLES[k % len(STYLES)]
        ax.plot(g[x], g["_y"], "-", marker=marker, color=c, ms=4, lw=1.5, label=label)
    ax.set_xscale("log", base=2)
    sizes = sorted(df[x].unique())
    step = max(1, len(sizes) // 8)
    ticks = sizes[::step]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    if x.endswith("bytes"):
        ax.set_xticklabels([format_quantity(int(t), "size") for t in ticks], rotation=30,
                           ha="right")
    ax.set_xlabel(_label(x, "log scale"))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    what = _label(y, "")
    title = f"{what[:1].upper()}{what[1:]} vs {_label(x, '')}"
    if others:
        title += f"\n(one line per {', '.join(others)})"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # many curves: the legend goes beside the axes, never over a curve
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- energy breakdown

def _point_title(row: pd.Series, params: Sequence[str]) -> str:
    parts = [f"{p}={row[p]}" for p in params]
    return ", ".join(parts) if parts else str(row.get("config", ""))


def _param_columns(df: pd.DataFrame) -> list[str]:
    cols = list(df.columns)
    if "point" in cols and "config" in cols:
        return cols[cols.index("point") + 1: cols.index("config")]
    return []


def plot_energy_breakdown(df: pd.DataFrame, out: str | os.PathLike, *,
                          stat: str = "steady") -> list[Path]:
    """Stacked bars per model of the steady-state energy components, at up to 4 grid points
    (evenly spread; the title says so when the sweep has more). Each panel is as wide as its
    bars need, and a bar's name is written along it when more than three share a panel, so no
    two names overlap."""
    import textwrap

    import numpy as np
    every = sorted(df["point"].unique()) if "point" in df.columns else [None]
    points = every
    if len(points) > 4:
        points = [points[round(i)] for i in np.linspace(0, len(points) - 1, 4)]
    params = _swept(df) or _param_columns(df)
    parts = [(f"{c}_{stat}", name) for c, name in ENERGY_PARTS if f"{c}_{stat}" in df.columns]
    if not parts:
        raise DataError(f"no energy component columns (*_{stat}) in the table")
    total_col = f"energy_j_{stat}"
    div, unit = _unit(total_col, df[total_col].tolist() if total_col in df.columns else
                      df[parts[0][0]].tolist())
    bars = max(len(_series(df if p is None else df[df["point"] == p])) for p in points)
    panel = max(2.6, 0.45 * bars + 1.0)
    plt, fig = _figure(width=max(6.5, panel * len(points) + 2.0), height=5.5)
    axes = fig.subplots(1, len(points), sharey=True, squeeze=False)[0]
    colors = plt.get_cmap("Set2")
    for ax, p in zip(axes, points, strict=True):
        sub = df if p is None else df[df["point"] == p]
        labels = [lab for lab, _ in _series(sub)]
        groups = [g.iloc[0] for _, g in _series(sub)]
        bottom = np.zeros(len(groups))
        for k, (col, name) in enumerate(parts):
            vals = np.array([float(g[col]) for g in groups]) / div
            ax.bar(range(len(groups)), vals, bottom=bottom, color=colors(k), label=name,
                   edgecolor="white", linewidth=0.5)
            bottom += vals
        ax.set_xticks(range(len(groups)))
        if len(groups) > 3:
            ax.set_xticklabels(labels, rotation=90, fontsize=8)
        else:
            ax.set_xticklabels(labels, rotation=30, ha="right")
        title = _point_title(groups[0], params) if groups else ""
        ax.set_title("\n".join(textwrap.wrap(title, width=max(12, int(panel * 9)))),
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"{_STAT.get(stat, stat)} energy per inference ({unit})")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    shown = (f" at {len(points)} of {len(every)} grid points (evenly spread)"
             if len(points) < len(every) else "")
    fig.suptitle(f"Energy per inference by component{shown}")
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- timeline

def _one_inference(layers: pd.DataFrame, input_index: int | None, what: str) -> tuple:
    """(input, its ops in time order) of a per-op table: ``input_index`` or the last input."""
    if "input" not in layers.columns:
        raise DataError(f"{what}: the event log lacks the column input; write it with "
                        "`edgesim run CONFIG --model M --timeline FILE`")
    inputs = sorted(layers["input"].unique())
    if not inputs:
        raise DataError(f"{what}: the event log is empty")
    i = inputs[-1] if input_index is None else input_index
    if i not in inputs:
        raise DataError(f"{what}: input {i} is not in the log (inputs {inputs[0]}..{inputs[-1]})")
    return i, layers[layers["input"] == i].sort_values("compute_start_s")


def plot_timeline(layers: pd.DataFrame, out: str | os.PathLike, *,
                  input_index: int | None = None, identity: str | None = None) -> list[Path]:
    """Gantt chart of one inference (default: the last, steady state) of a per-op event log.

    Compute bars are coloured by the op's bound (when the log has it) and the longest ops are
    named on their bars; ``identity`` (``model on config``) heads the title."""
    import numpy as np
    need = {"input", "dma_start_s", "dma_end_s", "compute_start_s", "compute_end_s", "stall_s"}
    missing = sorted(need - set(layers.columns))
    if missing:
        raise DataError(f"timeline: the event log lacks columns {', '.join(missing)}; write it "
                        "with `edgesim run CONFIG --model M --timeline FILE`")
    i, ops = _one_inference(layers, input_index, "timeline")
    end = float(np.nanmax(ops[["compute_end_s", "dma_end_s"]].to_numpy(dtype=float)))
    div, unit = _unit("t_s", [end])
    plt, fig = _figure(width=12, height=4.4)
    ax = fig.add_subplot()
    rows = {"off-chip transfer": 2, "compute": 1, "stall": 0}
    dma = ops.dropna(subset=["dma_start_s", "dma_end_s"])
    dma = dma[dma["dma_end_s"] > dma["dma_start_s"]]
    ax.broken_barh(list(zip(dma["dma_start_s"] / div,
                            (dma["dma_end_s"] - dma["dma_start_s"]) / div, strict=True)),
                   (rows["off-chip transfer"] - 0.35, 0.7), color=TRANSFER_COLOUR)
    cs, ce = ops["compute_start_s"].to_numpy(float), ops["compute_end_s"].to_numpy(float)
    # stall_s = wait before the op starts + wait at its end for streamed bytes (engine.py)
    prev = np.concatenate([[0.0], ce[:-1]])
    before = np.clip(cs - prev, 0, None)
    tail = np.clip(ops["stall_s"].to_numpy(float) - before, 0, ce - cs)
    bounds = (ops["bound"].astype(str).tolist() if "bound" in ops.columns
              else ["compute"] * len(ops))
    spans = list(zip(cs / div, (ce - cs - tail) / div, strict=True))
    for b in dict.fromkeys(bounds):
        mine = [sp for sp, ob in zip(spans, bounds, strict=True) if ob == b and sp[1] > 0]
        if not mine:
            continue
        ax.broken_barh(mine, (rows["compute"] - 0.35, 0.7), color=BOUND_COLOURS.get(b, "k"),
                       edgecolor="white", linewidth=0.3,
                       label=f"compute, bound: {b}" if "bound" in ops.columns else "compute")
    stalls = [(p, b) for p, b in zip(prev, before, strict=True) if b > 0]
    stalls += [(e - t, t) for e, t in zip(ce, tail, strict=True) if t > 0]
    ax.broken_barh([(s / div, w / div) for s, w in stalls], (rows["stall"] - 0.35, 0.7),
                   color=STALL_COLOUR)
    # name the ops wide enough to hold a label: at most 12, the longest first
    names = ops["name"].astype(str).tolist() if "name" in ops.columns else []
    width = ce - cs
    room = end / 40
    for k in sorted(range(len(names)), key=lambda k: -width[k])[:12]:
        if width[k] < room:
            break
        ax.annotate(names[k][-28:], ((cs[k] + width[k] / 2) / div, rows["compute"] + 0.42),
                    ha="left", va="bottom", fontsize=7, rotation=30)
    ax.set_yticks(list(rows.values()))
    ax.set_yticklabels(list(rows))
    ax.set_xlim(0, end / div * 1.01)
    ax.set_ylim(-0.7, 3.4)
    ax.set_xlabel(f"time since the inference started ({unit})")
    total_stall = float(ops["stall_s"].sum()) / div
    head = f"{identity}: inference {i}" if identity else f"Inference {i}"
    ax.set_title(f"{head}: {len(ops)} ops, {end / div:.4g} {unit}, "
                 f"stalled {total_stall:.3g} {unit}")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- roofline

def _roofs(hw: dict[str, Any], precisions: Sequence[str]) -> tuple[dict[str, float],
                                                                   dict[str, float]]:
    """Peak MAC/s per precision (MACs/cycle x clock) and bytes/s per off-chip memory."""
    try:
        peaks = {p: float(hw["macs_per_cycle"][p]) * float(hw["clock_hz"]) for p in precisions}
        mems = hw.get("memories") or {"offchip": {"bytes_per_s": hw["offchip_bytes_per_s"]}}
        bws = {name: float(m["bytes_per_s"]) for name, m in mems.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"roofline: the hardware lacks {exc} (macs_per_cycle, clock_hz and "
                        "the memories' bytes_per_s are needed)") from None
    return peaks, bws


def roofline_points(layers: pd.DataFrame, input_index: int | None = None) -> tuple:
    """(input, its MAC ops with time) of one inference, with ``_time_s`` (the op's end less the
    previous op's end), ``_achieved`` (MACs / time) and ``_intensity`` (MACs per off-chip
    byte, weights and activations; inf when it moved none)."""
    import numpy as np
    need = {"macs", "weight_dram_bytes", "act_dram_bytes", "compute_start_s", "compute_end_s"}
    missing = sorted(need - set(layers.columns))
    if missing:
        raise DataError(f"roofline: the per-op table lacks columns {', '.join(missing)}")
    i, ops = _one_inference(layers, input_index, "roofline")
    t = (ops["compute_end_s"] - ops["compute_start_s"]).to_numpy(float)
    macs = ops["macs"].to_numpy(float)
    keep = (macs > 0) & (t > 0)
    if not keep.any():
        raise DataError(f"roofline: inference {i} has no op with MACs and time")
    moved = (ops["weight_dram_bytes"] + ops["act_dram_bytes"]).to_numpy(float)
    with np.errstate(divide="ignore"):
        intensity = np.where(moved > 0, macs / np.where(moved > 0, moved, 1), np.inf)
    ops = ops.assign(_time_s=t, _achieved=macs / np.where(t > 0, t, 1), _intensity=intensity)
    return i, ops[keep]


def plot_roofline(layers: pd.DataFrame, out: str | os.PathLike, *, hw: dict[str, Any],
                  input_index: int | None = None, identity: str | None = None) -> list[Path]:
    """The MAC ops of one inference (default: the last) as points: arithmetic intensity (MACs
    per off-chip byte, weights and activations) against achieved MAC/s (MACs over the op's
    time, its end less the previous op's end), coloured by bound, under the compute roof of
    each precision (peak MACs/cycle x clock) and the bandwidth roof of each off-chip memory
    (bytes/s x intensity). An op that moved no off-chip byte has no finite intensity: it is
    drawn at the right edge as a triangle."""
    import numpy as np
    i, ops = roofline_points(layers, input_index)
    t, achieved = ops["_time_s"].to_numpy(), ops["_achieved"].to_numpy()
    intensity = ops["_intensity"].to_numpy()
    finite = np.isfinite(intensity)
    precisions = sorted(set(ops["precision"].astype(str))) if "precision" in ops else []
    peaks, bws = _roofs(hw, precisions or [str(hw.get("precision", "int8"))])
    top = max(peaks.values())
    ridge = [top / bw for bw in bws.values()]
    lo = min([*intensity[finite], *ridge, 1.0]) / 4 if finite.any() else min(ridge) / 4
    hi = max([*intensity[finite], *ridge]) * 4 if finite.any() else max(ridge) * 16
    edge = hi / 1.5                            # where ops without off-chip bytes are drawn
    xs = np.where(finite, intensity, edge)
    intensity = np.where(finite, intensity, np.nan)
    plt, fig = _figure(width=8.5, height=5.5)
    ax = fig.add_subplot()
    grid = np.geomspace(lo, hi, 200)
    for k, (name, bw) in enumerate(sorted(bws.items())):
        c = ("black", "dimgray", "gray")[k % 3]
        ax.plot(grid, np.minimum(bw * grid, top), "--", color=c, lw=1.2,
                label=f"bandwidth roof: {name}, {bw / 1e9:.3g} GB/s")
    for p, peak in sorted(peaks.items()):
        ax.axhline(peak, color="black", lw=1.5, alpha=0.8)
        ax.annotate(f"compute roof {p}: {peak / 1e9:.4g} GMAC/s", (lo, peak),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    bounds = (ops["bound"].astype(str).to_numpy() if "bound" in ops.columns
              else np.array(["compute"] * len(ops)))
    for b in dict.fromkeys(bounds.tolist()):
        sel = bounds == b
        for shape, part in (("o", sel & finite), ("^", sel & ~finite)):
            if part.any():
                ax.scatter(xs[part], achieved[part], s=28, marker=shape,
                           color=BOUND_COLOURS.get(b, "k"), alpha=0.8, linewidths=0,
                           label=f"bound: {b}" + ("" if shape == "o" else " (no off-chip byte)"))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    names = ops["name"].astype(str).tolist() if "name" in ops.columns else []
    longest = np.argsort(-t, kind="stable")[:8] if names else []    # the longest ops, named
    _place_labels(ax, [(xs[k], achieved[k], names[k][-24:], "black") for k in longest],
                  skip_crowded=True)
    ax.set_xlabel("arithmetic intensity (MACs per off-chip byte, log)")
    ax.set_ylabel("achieved MAC/s (log)")
    head = f"{identity}: " if identity else ""
    ax.set_title(f"{head}roofline of inference {i} ({len(ops)} MAC ops)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- sources

def read_run(src: Path, *, config: str | None = None) -> tuple[pd.DataFrame, str | None,
                                                               dict[str, Any] | None]:
    """(per-op table, ``model on config`` or None, hardware dict or None) of a run: its JSON
    document (``run --per-layer --format json``) or its event-log CSV (``run --timeline``;
    ``config``, a config name or YAML, gives the hardware)."""
    import pandas as pd
    if not src.is_file():
        raise DataError(f"{src} is not a file; give the CSV of `edgesim run ... --timeline "
                        "FILE` or the JSON of `edgesim run ... --per-layer --format json`")
    hw = None
    if src.suffix.lower() == ".json":
        import json
        try:
            doc = json.loads(src.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{src}: not a JSON document ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), list):
            raise DataError(f"{src}: no per-op 'layers'; write it with `edgesim run CONFIG "
                            "--model M --per-layer --format json --out FILE`")
        layers = pd.DataFrame(doc["layers"])
        hw = doc.get("hardware") if isinstance(doc.get("hardware"), dict) else None
        model = (doc.get("model") or {}).get("name", "?")
        identity = f"{model} on {(hw or {}).get('name', '?')}"
    else:
        from edgesim.sweep.store import read_table
        layers = read_table(src, "an event log written by `edgesim run ... --timeline FILE`")
        identity = None
    if config is not None:
        from edgesim.config import load_config
        hw = load_config(config).to_dict()
        identity = identity or f"{src.name} on {hw['name']}"
    return layers, identity, hw


# --------------------------------------------------------------------------- one verb

def plot(kind: str, source: str | os.PathLike, *, x: str | None = None, y: str | None = None,
         out: str | os.PathLike | None = None, input_index: int | None = None,
         config: str | None = None) -> list[Path]:
    """Draw ``kind`` from a sweep folder (or, for ``timeline`` and ``roofline``, a run: an
    event-log CSV or a ``--per-layer --format json`` document; ``config`` gives a CSV's
    hardware).

    Writes ``out`` (default ``<folder>/<kind>``, or ``<log>_<kind>``) as .png and .svg and
    returns both paths.
    """
    if kind not in KINDS:
        raise EdgesimError(f"unknown plot {kind!r}; expected one of {', '.join(KINDS)}")
    src = Path(source)
    if kind in ("timeline", "roofline"):
        layers, identity, hw = read_run(src, config=config)
        target = Path(out) if out else src.with_name(f"{src.stem}_{kind}")
        if kind == "timeline":
            return plot_timeline(layers, target, input_index=input_index, identity=identity)
        if hw is None:
            raise DataError(f"roofline: {src} does not say the hardware; give --config CONFIG "
                            "(or plot the run's --per-layer --format json document)")
        return plot_roofline(layers, target, hw=hw, input_index=input_index, identity=identity)
    from edgesim.sweep import load_results
    df = load_results(src)
    if df.empty:
        raise DataError(f"{src}: the sweep table is empty")
    target = Path(out) if out else src / kind
    if kind == "pareto":
        return plot_pareto(df, target, x=x or "latency_s_steady", y=y or "energy_j_steady")
    if kind == "bytes-vs-sram":
        return plot_bytes_vs_sram(df, target, x=x or "sram_bytes",
                                  y=y or "weight_dram_bytes_steady")
    return plot_energy_breakdown(df, target)


_callable_module(__name__, "plot")
