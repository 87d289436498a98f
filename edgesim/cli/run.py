"""``edgesim run CONFIG --model NAME``: simulate a stream of inferences and print the rows.

Public names: ``add_parser``, ``main``.

Prints a header line naming the model, the hardware and the policy, one row per inference (or per
op and inference with ``--per-layer``) and the cold/steady summary; ``--format csv|json|jsonl``
prints the rows alone (JSON: the whole ``Run``). CSV and JSON lines of inference rows are
written as they are produced and not kept, and a table of more than ``TABLE_ROWS`` inferences
shows the summary alone, so a stream of a million inputs runs in flat memory. With ``--eval``
the labelled ``--data`` is the stream and its top-1 follows the summary (JSON: ``accuracy``).
torch and pandas are imported only when the model is not yet traced (a cached run imports
neither).
"""

from __future__ import annotations

import sys

from edgesim.cli._common import (
    INPUTS,
    SEED,
    CliProgress,
    accuracy_line,
    add_eval,
    add_format,
    add_input_shape,
    columns,
    csv_rows,
    policies,
    prefetch_modes,
    write,
)
from edgesim.outputs import open_atomically, output_path

__all__ = ["TABLE_ROWS", "add_parser", "main"]

#: A text table shows at most this many inference rows (beyond: the summary; stream them with
#: ``--format csv`` or ``jsonl``).
TABLE_ROWS = 10_000


def add_parser(subparsers) -> None:
    """Add ``run`` to an argparse subparsers object."""
    r = subparsers.add_parser("run", help="simulate a stream of inferences")
    r.add_argument("config", help="hardware config YAML (see `edgesim configs`)")
    r.add_argument("--model", required=True,
                   help="registry name (see `edgesim models`), NAME@LEVEL, "
                   "package.module:factory (mymodel.py in the current folder is found), or a "
                   ".tflite / .onnx file")
    r.add_argument("--inputs", type=INPUTS, default=None,
                   help="inferences in the stream (default 8; with --eval all of --data)")
    r.add_argument("--policy", choices=policies(), default="lru")
    r.add_argument("--prefetch", choices=prefetch_modes(), default="next")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. sram.size=2MiB; model.level=K")
    r.add_argument("--per-layer", action="store_true", help="one row per op and inference")
    r.add_argument("--data", help="inputs: a .pt/.npy tensor file or a folder of images "
                   "(with --eval: labelled, see --eval)")
    r.add_argument("--weights", help="a state_dict checkpoint for the model")
    r.add_argument("--seed", type=SEED, default=0)
    add_input_shape(r)
    r.add_argument("--timeline", help="write the per-op event log of the run to this CSV")
    r.add_argument("--no-memo", action="store_true",
                   help="simulate every inference even when an identical one was seen")
    add_eval(r)
    add_format(r)


def main(a) -> int:
    """Handler of ``edgesim run``."""
    from edgesim import api
    from edgesim.report import render, render_summary

    total = a.inputs if a.inputs is not None or a.evaluate else 8
    inference_columns, layer_columns = columns()
    stream = a.format in ("csv", "jsonl") and not a.per_layer
    many = (a.format == "table" and not a.per_layer and total is not None
            and total > TABLE_ROWS)
    if a.out is not None:       # refused before any work: a device, FIFO or folder
        output_path(a.out, "--out")
    if a.timeline:
        output_path(a.timeline, "--timeline")
    sink = _RowSink(inference_columns, a.format, a.out) if stream else None
    shown = CliProgress(sys.stderr.isatty(), total)
    ok = False
    try:
        res = api.run(a.config, a.model, inputs=a.inputs, policy=a.policy, prefetch=a.prefetch,
                      overrides=a.sets, per_layer=a.per_layer or bool(a.timeline), data=a.data,
                      seed=a.seed, weights=a.weights, memo=not a.no_memo,
                      progress=shown.progress, evaluate=a.evaluate, on_row=sink,
                      keep_rows=not (stream or many), input_shape=a.input_shape)
        ok = True
    finally:
        shown.close()
        if sink is not None:
            sink.close(ok)
    r = res.result
    if a.timeline:
        write(render(layer_columns, "csv", rows=csv_rows(r.layer_rows)), a.timeline,
              "--timeline")
    if a.format == "json":
        write(render(inference_columns, "json", json_obj=res.to_dict()), a.out)
        return 0
    if stream:
        return 0
    cols, rows = ((layer_columns, r.layer_rows) if a.per_layer
                  else (inference_columns, r.rows))
    if a.format in ("csv", "jsonl"):   # op, path and encoding names come from the model
        write(render(cols, a.format, rows=csv_rows(rows) if a.format == "csv" else rows), a.out)
        return 0
    m = res.model
    shape = res.meta.get("input_shape")
    shape = f", input {'x'.join(map(str, shape))}" if shape else ""
    head = (f"# {m['name']} ({m['family']}{shape}) on {res.hardware['name']}: "
            f"{m['total_params']:,} params stored, {m['active_params']:,} active per inference, "
            f"{m['stored_weight_bytes']:,} weight bytes stored; policy {a.policy}, "
            f"prefetch {a.prefetch}")
    table = (f"# {total:,} inferences: too many rows for a table (--format csv or jsonl "
             "streams them)" if many else render(cols, "table", rows=rows))
    lines = [head, table, "", "# summary (cold = first inference; steady = the rest)",
             render_summary(res.summary)]
    if res.accuracy is not None:
        registry = ":" not in a.model
        lines += ["", accuracy_line(res.accuracy, random_weights=registry and not a.weights)]
    write("\n".join(lines), a.out)
    return 0


class _RowSink:
    """Inference rows written out as they come (``report.RowWriter``), to ``out`` or stdout;
    text cells a spreadsheet would run as a formula are escaped in CSV. A file ``out`` is
    written beside its target and renamed over it by ``close(True)`` (``open_atomically``);
    a run that fails leaves the previous file as it was."""

    def __init__(self, cols, fmt: str, out: str | None) -> None:
        self.cols, self.fmt, self.out = cols, fmt, out
        self.opened = None
        self.writer = None

    def __call__(self, row) -> None:
        if self.writer is None:     # opened at the first row: an error before it writes nothing
            from edgesim.report import RowWriter
            if self.out is None:
                file = sys.stdout
            else:
                self.opened = open_atomically(self.out, "--out")
                file = self.opened.__enter__()
            self.writer = RowWriter(self.cols, self.fmt, file)
        if self.fmt == "csv":
            row = csv_rows([row])[0]
        self.writer(row)

    def close(self, ok: bool) -> None:
        if self.opened is not None:
            opened, self.opened = self.opened, None
            if ok:
                opened.__exit__(None, None, None)
            else:
                opened.__exit__(RuntimeError, RuntimeError("run failed"), None)

