"""Figures of sweeps and runs (matplotlib, Agg): each written as PNG and SVG.

Public names: ``KINDS``, ``HIGHER_IS_BETTER``, ``plot``, ``column``, ``pareto_front``,
``plot_pareto``, ``plot_bytes_vs_sram``, ``plot_energy_breakdown``, ``plot_timeline`` (the
command is ``edgesim.cli.plot``). ``edgesim.plot(...)``, the module called, is ``plot``.

* ``pareto``: every (point, model, policy) of a sweep as x = steady-state latency, y =
  steady-state energy per inference (or any two columns, e.g. ``top1`` of a sweep run with
  ``--data LABELLED --eval`` against ``weight_dram_bytes_steady``); the non-dominated points of
  each model joined as its front, the overall front highlighted. Columns of
  ``HIGHER_IS_BETTER`` (accuracy) are maximised, every other one minimised.
* ``bytes-vs-sram``: steady-state off-chip weight bytes per inference against SRAM size (log x),
  one curve per model: where the knee sits.
* ``energy-breakdown``: stacked bars per model of the energy components (MAC, SRAM, off-chip,
  index decode, leakage), at up to four grid points.
* ``timeline``: one inference of a ``edgesim run ... --timeline FILE`` event log as a Gantt
  chart: off-chip transfers, compute and stalls.

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

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim import _callable_module
from edgesim.errors import DataError, EdgesimError
from edgesim.units import shown

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HIGHER_IS_BETTER", "KINDS", "column", "pareto_front", "plot", "plot_bytes_vs_sram",
           "plot_energy_breakdown", "plot_pareto", "plot_timeline"]

KINDS = ("pareto", "bytes-vs-sram", "energy-breakdown", "timeline")
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


def _save(plt, fig, out: Path) -> list[Path]:
    """The figure as ``out.png`` and ``out.svg``, each checked (a new name or a regular file)
    before anything is drawn and written atomically (``edgesim.outputs``)."""
    import io

    from edgesim.outputs import output_path, write_atomically
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        output_path(p, "--out")
    try:
        fig.tight_layout()
        for p, meta in zip(paths, ({}, {"metadata": {"Date": None}}), strict=True):
            buf = io.BytesIO()
            fig.savefig(buf, format=p.suffix[1:], bbox_inches="tight", **meta)
            write_atomically(p, buf.getvalue(), "--out")
    finally:
        plt.close(fig)
    return paths


def _series(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Groups to draw as one line: per model, and per policy / config when those vary."""
    keys = ["model"] + [extra for extra in ("policy", "config")
                        if extra in df.columns and df[extra].nunique() > 1]
    out = []
    for name, g in df.groupby(keys, sort=False):
        label = " · ".join(str(v) for v in (name if isinstance(name, tuple) else (name,)))
        out.append((label, g))
    return out


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
    plt, fig = _figure()
    ax = fig.add_subplot()
    colors = plt.get_cmap("tab10")
    for k, (label, g) in enumerate(_series(data)):
        c = colors(k % 10)
        ax.scatter(g["_x"], g["_y"], s=14, color=c, alpha=0.35, linewidths=0)
        front = g[pareto_front(g, "_x", "_y", maximize=up)].sort_values(["_x", "_y"])
        ax.plot(front["_x"], front["_y"], "-o", color=c, ms=4, lw=1.3, label=label)
    overall = data[pareto_front(data, "_x", "_y", maximize=up)].sort_values(["_x", "_y"])
    ax.plot(overall["_x"], overall["_y"], "-", color="black", lw=3, alpha=0.25, zorder=0,
            label="overall front")
    ax.scatter(overall["_x"], overall["_y"], s=70, facecolors="none", edgecolors="black",
               linewidths=1.2, zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    best = f"{'upper' if '_y' in up else 'lower'}-{'right' if '_x' in up else 'left'}"
    ax.set_title(f"Pareto front ({best} is better; dots: every point, lines: fronts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- bytes vs SRAM

def plot_bytes_vs_sram(df: pd.DataFrame, out: str | os.PathLike, *, x: str = "sram_bytes",
                       y: str = "weight_dram_bytes_steady") -> list[Path]:
    """One curve per model of ``y`` against SRAM size on a log2 axis."""
    from matplotlib.ticker import FixedLocator, NullLocator

    from edgesim.units import format_quantity
    x, y = column(df, x), column(df, y)
    plt, fig = _figure()
    ax = fig.add_subplot()
    ys, ylabel = _scaled(df, y)
    data = df.assign(_y=ys)
    for label, g in _series(data):
        g = g.groupby(x, as_index=False)["_y"].mean().sort_values(x)
        ax.plot(g[x], g["_y"], "-o", ms=4, lw=1.5, label=label)
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
    ax.set_title("Off-chip weight traffic vs SRAM size")
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
    """Stacked bars per model of the steady-state energy components, at up to 4 grid points."""
    import numpy as np
    points = sorted(df["point"].unique()) if "point" in df.columns else [None]
    if len(points) > 4:
        points = [points[round(i)] for i in np.linspace(0, len(points) - 1, 4)]
    params = _param_columns(df)
    parts = [(f"{c}_{stat}", name) for c, name in ENERGY_PARTS if f"{c}_{stat}" in df.columns]
    if not parts:
        raise DataError(f"no energy component columns (*_{stat}) in the table")
    total_col = f"energy_j_{stat}"
    div, unit = _unit(total_col, df[total_col].tolist() if total_col in df.columns else
                      df[parts[0][0]].tolist())
    plt, fig = _figure(width=max(6.5, 3.2 * len(points)), height=5.0)
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
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_title(_point_title(groups[0], params) if groups else "")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(f"{_STAT.get(stat, stat)} energy per inference ({unit})")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    fig.suptitle("Energy per inference by component")
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- timeline

def plot_timeline(layers: pd.DataFrame, out: str | os.PathLike, *,
                  input_index: int | None = None) -> list[Path]:
    """Gantt chart of one inference (default: the last, steady state) of a per-op event log."""
    import numpy as np
    need = {"input", "dma_start_s", "dma_end_s", "compute_start_s", "compute_end_s", "stall_s"}
    missing = sorted(need - set(layers.columns))
    if missing:
        raise DataError(f"timeline: the event log lacks columns {', '.join(missing)}; write it "
                        "with `edgesim run CONFIG --model M --timeline FILE`")
    inputs = sorted(layers["input"].unique())
    if not inputs:
        raise DataError("timeline: the event log is empty")
    i = inputs[-1] if input_index is None else input_index
    if i not in inputs:
        raise DataError(f"timeline: input {i} is not in the log (inputs {inputs[0]}..{inputs[-1]})")
    ops = layers[layers["input"] == i].sort_values("compute_start_s")
    end = float(np.nanmax(ops[["compute_end_s", "dma_end_s"]].to_numpy(dtype=float)))
    div, unit = _unit("t_s", [end])
    plt, fig = _figure(width=10, height=3.6)
    ax = fig.add_subplot()
    rows = {"off-chip transfer": 2, "compute": 1, "stall": 0}
    dma = ops.dropna(subset=["dma_start_s", "dma_end_s"])
    dma = dma[dma["dma_end_s"] > dma["dma_start_s"]]
    ax.broken_barh(list(zip(dma["dma_start_s"] / div,
                            (dma["dma_end_s"] - dma["dma_start_s"]) / div, strict=True)),
                   (rows["off-chip transfer"] - 0.35, 0.7), color="tab:orange")
    cs, ce = ops["compute_start_s"].to_numpy(float), ops["compute_end_s"].to_numpy(float)
    # stall_s = wait before the op starts + wait at its end for streamed bytes (engine.py)
    prev = np.concatenate([[0.0], ce[:-1]])
    before = np.clip(cs - prev, 0, None)
    tail = np.clip(ops["stall_s"].to_numpy(float) - before, 0, ce - cs)
    ax.broken_barh(list(zip(cs / div, (ce - cs - tail) / div, strict=True)),
                   (rows["compute"] - 0.35, 0.7), color="tab:blue", edgecolor="white",
                   linewidth=0.3)
    stalls = [(p, b) for p, b in zip(prev, before, strict=True) if b > 0]
    stalls += [(e - t, t) for e, t in zip(ce, tail, strict=True) if t > 0]
    ax.broken_barh([(s / div, w / div) for s, w in stalls], (rows["stall"] - 0.35, 0.7),
                   color="tab:red")
    ax.set_yticks(list(rows.values()))
    ax.set_yticklabels(list(rows))
    ax.set_xlim(0, end / div * 1.01)
    ax.set_ylim(-0.7, 2.7)
    ax.set_xlabel(f"time since the inference started ({unit})")
    total_stall = float(ops["stall_s"].sum()) / div
    ax.set_title(f"Inference {i}: {len(ops)} ops, {end / div:.4g} {unit}, "
                 f"stalled {total_stall:.3g} {unit}")
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, Path(out))


# --------------------------------------------------------------------------- one verb

def plot(kind: str, source: str | os.PathLike, *, x: str | None = None, y: str | None = None,
         out: str | os.PathLike | None = None, input_index: int | None = None) -> list[Path]:
    """Draw ``kind`` from a sweep folder (or, for ``timeline``, an event-log CSV).

    Writes ``out`` (default ``<folder>/<kind>``, or ``<log>_timeline``) as .png and .svg and
    returns both paths.
    """
    if kind not in KINDS:
        raise EdgesimError(f"unknown plot {kind!r}; expected one of {', '.join(KINDS)}")
    src = Path(source)
    if kind == "timeline":
        if not src.is_file():
            raise DataError(f"timeline: {src} is not a file; give the CSV of `edgesim run ... "
                            "--timeline FILE`")
        from edgesim.sweep.store import read_table
        layers = read_table(src, "an event log written by `edgesim run ... --timeline FILE`")
        target = Path(out) if out else src.with_name(f"{src.stem}_timeline")
        return plot_timeline(layers, target, input_index=input_index)
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
