"""One self-contained HTML report of a run or of a sweep folder (``edgesim report``).

Public names: ``run_html``, ``sweep_html``.

A run's report: the header (model, hardware, settings with every ``--set``), the summary
(cold, steady-state mean, p50, p99), where the time goes (by bound and by op class), the
timeline and the roofline of the last inference, and the per-op table of each distinct
inference (``report.distinct_inferences``). A sweep's: the grid (keys and values), the Pareto
front with each front point labelled with its grid values, off-chip bytes against SRAM size
(when the SRAM was swept), the energy breakdown and the table of every point.

One file: figures are PNGs drawn by ``edgesim.plot`` and embedded as ``data:`` URIs, the style
sheet is inline, there is no script and no reference to anything outside the file (tested:
no ``http``/``https`` ``src`` or ``href``).
"""

from __future__ import annotations

import base64
import html
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgesim.report import _cell, _plain, _ranges, distinct_inferences, time_by

__all__ = ["run_html", "sweep_html"]

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em;
     border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 12px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; }
th { background: #f4f4f4; position: sticky; top: 0; }
td.t, th.t { text-align: left; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; }
dt { font-weight: 600; } dd { margin: 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #555; }
.scroll { max-height: 36em; overflow: auto; border: 1px solid #eee; }
"""

#: Per-op columns the report's tables show, in order (all of them are in the JSON and CSV).
OP_COLUMNS = ("op", "name", "kind", "bound", "weight_dram_bytes", "act_dram_bytes", "macs",
              "compute_cycles", "util", "time_us", "stall_us", "energy_uj", "tiling")


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _table(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned as ``report.render_table`` shows them."""
    def numeric(v: Any) -> bool:
        v = _plain(v)
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    text_cols = [not any(numeric(r[k]) for r in rows) for k in range(len(cols))]
    head = "".join(f"<th class=\"t\">{html.escape(c)}</th>" if t else
                   f"<th>{html.escape(c)}</th>" for c, t in zip(cols, text_cols, strict=True))
    body = []
    for r in rows:
        cells = "".join(f"<td class=\"t\">{html.escape(_cell(v))}</td>" if t else
                        f"<td>{html.escape(_cell(v))}</td>"
                        for v, t in zip(r, text_cols, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(draw: Callable[[Path], list[Path]], caption: str) -> str:
    """A figure drawn by ``draw(stem)`` (an ``edgesim.plot`` function) as an embedded PNG; a
    figure that cannot be drawn is a line saying why."""
    from edgesim.errors import EdgesimError
    from edgesim.plot import png_only
    with tempfile.TemporaryDirectory() as tmp, png_only():
        try:
            png = draw(Path(tmp) / "figure")[0].read_bytes()
        except EdgesimError as exc:
            return f"<p><em>{html.escape(caption)}: not drawn ({html.escape(str(exc))})</em></p>"
    data = base64.b64encode(png).decode("ascii")
    return (f"<figure><img alt=\"{html.escape(caption)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _dl(items: Sequence[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                            for k, v in items) + "</dl>"


def _si(value: float, unit: str) -> str:
    for div, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if abs(value) >= div:
            return f"{value / div:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def run_html(run, *, overrides: Sequence[str] = (), config: str = "") -> str:
    """The report of an ``api.Run`` made with ``per_layer=True``."""
    import pandas as pd

    from edgesim import __version__
    from edgesim.plot import plot_roofline, plot_timeline
    m, hw, meta = run.model, run.hardware, run.meta
    identity = f"{m['name']} on {hw['name']}"
    rows = run.result.layer_rows or []
    shape = meta.get("input_shape")
    header = _dl([
        ("model", f"{m['name']} ({m['family']}), {m['total_params']:,} parameters, "
                  f"{m['active_params']:,} active per inference, "
                  f"{m['stored_weight_bytes']:,} weight bytes stored"),
        ("input shape", "x".join(map(str, shape)) if shape else "-"),
        ("hardware", f"{hw['name']}{' (' + config + ')' if config else ''}: "
                     f"{hw.get('description', '')}"),
        ("clock, SRAM, off-chip", f"{_si(hw['clock_hz'], 'Hz')}, {hw['sram_bytes']:,} B SRAM, "
                                  f"{_si(hw['offchip_bytes_per_s'], 'B/s')} off-chip"),
        ("settings", f"policy {meta['policy']}, prefetch {meta['prefetch']}, "
                     f"{meta['inputs']:,} inferences, seed {meta.get('seed', 0)}"),
        ("--set", " ".join(overrides) if overrides else "none"),
        ("edgesim", __version__)])
    summary = [(k, *(v.get(s) for s in ("cold", "steady_mean", "p50", "p99")))
               for k, v in run.summary.items() if isinstance(v, dict)]
    body = [f"<h1>edgesim report: {html.escape(identity)}</h1>", header,
            "<h2>Summary</h2>",
            "<p>Per inference: cold is the first, steady the mean of the rest.</p>",
            _table(["metric", "cold", "steady_mean", "p50", "p99"], summary)]
    body.append("<h2>Where the time and energy go</h2>")
    if rows:
        from edgesim.report import TIME_COLUMNS
        body += ["<p>Mean per inference over the stream; an op's time is its end less the "
                 "previous op's end, and its bound what decided that end (compute, vector "
                 "unit, SRAM port, weight or activation transfer); an op's energy is its "
                 "share of the inference's (they add up).</p>",
                 "<h3>By bound</h3>", _table(["bound", *TIME_COLUMNS], time_by(rows, "bound")),
                 "<h3>By op class</h3>", _table(["kind", *TIME_COLUMNS], time_by(rows, "kind"))]
        layers = pd.DataFrame.from_records(rows, columns=list(rows[0]._fields))
        body += ["<h2>Timeline</h2>",
                 _figure(lambda p: plot_timeline(layers, p, identity=identity),
                         f"{identity}: the last inference, op by op"),
                 "<h2>Roofline</h2>",
                 _figure(lambda p: plot_roofline(layers, p, hw=hw, identity=identity),
                         f"{identity}: MAC ops of the last inference")]
        body.append("<h2>Per op</h2>")
        blocks = distinct_inferences(rows)
        total = sum(len(inputs) for inputs, _ in blocks)
        for inputs, ops in blocks:
            cold = ", cold" if inputs[0] == 0 else ""
            body.append(f"<h3>Input {_ranges(inputs)} ({len(inputs):,} of {total:,} "
                        f"inferences, path {html.escape(ops[0].path)}{cold})</h3>")
            table = [(o.op, o.name, o.kind, o.bound, o.weight_dram_bytes, o.act_dram_bytes,
                      o.macs, o.compute_cycles, round(o.util, 4),
                      round((o.compute_end_s - o.compute_start_s) * 1e6, 3),
                      round(o.stall_s * 1e6, 3), round(o.energy_j * 1e6, 4), o.tiling)
                     for o in ops]
            body.append(f"<div class=\"scroll\">{_table(OP_COLUMNS, table)}</div>")
    else:
        body.append("<p>No per-op rows.</p>")
    return _page(f"edgesim: {identity}", body)


def sweep_html(folder: str | Path) -> str:
    """The report of a sweep results folder (``sweep.csv``)."""
    from edgesim import __version__
    from edgesim.errors import DataError
    from edgesim.plot import _swept, plot_bytes_vs_sram, plot_energy_breakdown, plot_pareto
    from edgesim.sweep import load_results
    df = load_results(folder)
    if df.empty:
        raise DataError(f"{folder}: the sweep table is empty")
    keys = _swept(df)
    grid = [(k, ", ".join(map(str, dict.fromkeys(df[k].tolist())))) for k in keys]
    name = Path(folder).name
    body = [f"<h1>edgesim sweep report: {html.escape(name)}</h1>",
            _dl([("folder", str(folder)), ("rows", f"{len(df):,}"),
                 ("models", ", ".join(map(str, dict.fromkeys(df["model"].tolist())))),
                 ("policies", ", ".join(map(str, dict.fromkeys(df["policy"].tolist()))))
                 if "policy" in df.columns else ("policies", "-"),
                 *grid, ("edgesim", __version__)]),
            "<h2>Pareto front</h2>",
            _figure(lambda p: plot_pareto(df, p), "steady-state latency and energy per "
                    "inference; each front point labelled with its grid values")]
    if "sram_bytes" in df.columns and df["sram_bytes"].nunique() > 1:
        body += ["<h2>Off-chip weight bytes vs SRAM size</h2>",
                 _figure(lambda p: plot_bytes_vs_sram(df, p), "one line per model (and per "
                         "value of any other swept key)")]
    body += ["<h2>Energy by component</h2>",
             _figure(lambda p: plot_energy_breakdown(df, p), "steady-state energy per "
                     "inference by component")]
    cols = [c for c in ("point", *keys, "model", "policy", "latency_s_steady", "energy_j_steady",
                        "weight_dram_bytes_steady", "act_dram_bytes_steady", "status")
            if c in df.columns]
    body += ["<h2>Every point</h2>",
             "<div class=\"scroll\">"
             f"{_table(cols, list(df[cols].itertuples(index=False, name=None)))}</div>"]
    return _page(f"edgesim sweep: {name}", body)
