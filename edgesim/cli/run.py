"""``edgesim run CONFIG --model NAME``: simulate a stream of inferences and print the rows.

Public names: ``add_parser``, ``main``.

Prints a header line naming the model, the hardware and the policy, one row per inference (or per
op and inference with ``--per-layer``) and the cold/steady summary; ``--format csv|json|jsonl``
prints the rows alone (JSON: the whole ``Run``). No row is kept: CSV and JSON lines are
written as they are produced, the rows of a JSON document go to a temporary file and are
copied into it at the end, the per-op ``--timeline`` is written as it is produced, and a table
of more than ``TABLE_ROWS`` inferences shows the summary alone, so a stream of a million inputs
runs in flat memory in every format. With ``--eval``
the labelled ``--data`` is the stream and its top-1 follows the summary (JSON: ``accuracy``).
torch and pandas are imported only when the model is not yet traced (a cached run imports
neither).
"""

from __future__ import annotations

import os
import sys

from edgesim.cli._common import (
    INPUTS,
    MAX_INPUTS,
    SEED,
    CliProgress,
    accuracy_line,
    add_eval,
    add_format,
    add_input_shape,
    add_prefetch,
    columns,
    policies,
    with_prefetch,
    write,
)
from edgesim.errors import EdgesimError
from edgesim.outputs import end_atomically, open_atomically, output_path

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
                   help="inferences in the stream (default 8; with --eval all of --data; at "
                   f"most {MAX_INPUTS:,})")
    r.add_argument("--policy", choices=policies(), default="lru")
    add_prefetch(r)
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. sram.size=2MiB; model.level=K")
    r.add_argument("--per-layer", action="store_true", help="one row per op and inference")
    r.add_argument("--wide", action="store_true",
                   help="the table with every column, in base units (bytes, cycles, s, J); "
                   "default: the main ones in human units, at most 100 characters wide "
                   "(CSV and JSON always have every column: see `edgesim columns`)")
    r.add_argument("--data", help="inputs: a .pt/.npy tensor file or a folder of images "
                   "(with --eval: labelled, see --eval)")
    r.add_argument("--weights", help="a state_dict checkpoint for the model")
    r.add_argument("--seed", type=SEED, default=0)
    add_input_shape(r)
    r.add_argument("--timeline", help="write the per-op event log of the run to this CSV (a "
                   ".json name: Chrome/Perfetto trace events)")
    r.add_argument("--no-memo", action="store_true",
                   help="simulate every inference even when an identical one was seen")
    add_eval(r)
    add_format(r)


def main(a) -> int:
    """Handler of ``edgesim run``."""
    from edgesim import api
    from edgesim.cli._human import brief_table, comment, human_summary
    from edgesim.report import render, render_per_layer, render_summary, render_where_time
    from edgesim.request import model_request

    total = a.inputs if a.inputs is not None or a.evaluate else 8
    many = (a.format == "table" and not a.per_layer and total is not None
            and total > TABLE_ROWS)
    if a.out is not None:       # refused before any work: a device, FIFO or folder
        output_path(a.out, "--out")
    if a.timeline:
        output_path(a.timeline, "--timeline")
    if a.no_memo:   # the engine's switch (edgesim.sim.engine.simulate), for this process
        os.environ["EDGESIM_NO_MEMO"] = "1"
    sink = _Sink(a, many)
    shown = CliProgress(sys.stderr.isatty(), total)
    ok = False
    try:
        model = model_request(a.model, weights=a.weights, seed=a.seed,
                              input_shape=a.input_shape, data=a.data, evaluate=a.evaluate)
        res = api.run(a.config, model, inputs=a.inputs, policy=a.policy,
                      overrides=with_prefetch(a.sets, a.prefetch),
                      per_layer=a.per_layer or bool(a.timeline),
                      progress=shown.progress, rows=sink.on_row)
        ok = True
    finally:
        shown.close()
        if not ok:
            sink.abort()
    sink.finish(res)
    if a.format != "table":
        return 0
    cols = sink.columns[bool(a.per_layer)]
    if many:
        table = (f"# {total:,} inferences: too many rows for a table (--format csv or jsonl "
                 "streams them)")
    elif a.per_layer:
        table = render_per_layer(cols, sink.table)
    elif a.wide:
        table = render(cols, "table", rows=sink.table)
    else:
        table = brief_table(cols, sink.table)
    summary = render_summary(res.summary) if a.wide else human_summary(res.summary)
    lines = [*_header(a, res), table, "",
             "# summary (cold = first inference; steady = the rest)", summary]
    if a.per_layer:
        lines += ["", render_where_time(sink.table)]
    if res.accuracy is not None:
        registry = ":" not in a.model
        line = accuracy_line(res.accuracy, random_weights=registry and not a.weights)
        lines += ["", *comment(line.removeprefix("# "))]
    write("\n".join(lines), a.out)
    return 0


def _header(a, res) -> list[str]:
    """The run's identity as ``#`` lines of at most 100 characters: the model (input shape,
    params, stored bytes), the config and every ``--set``, the stream, policy and prefetch."""
    from edgesim.cli._human import comment, scaled
    m = res.model
    shape = res.meta.get("input_shape")
    shape = f", input {'x'.join(map(str, shape))}" if shape else ""
    hw = res.hardware["name"]
    unit, (stored,) = scaled([m["stored_weight_bytes"]], "B")
    model = (f"{m['name']} ({m['family']}{shape}) on {hw}: {m['total_params']:,} params "
             f"stored, {m['active_params']:,} active per inference, {stored} {unit} of "
             "weights stored")
    where = "" if a.config in (hw, f"{hw}.yaml") else f" from {a.config}"
    sets = [o for o in a.sets if not o.startswith("model.")]
    config = (f"config {hw}{where}"
              + (", --set " + ", --set ".join(sets) if sets else ", no --set overrides"))
    level = [o for o in a.sets if o.startswith("model.")]
    n = res.meta.get("inputs")
    stream = (f"{n:,} input{'s' if n != 1 else ''}, seed {a.seed}; policy {a.policy}, "
              f"prefetch {res.meta['prefetch']}" + "".join(f"; --set {o}" for o in level))
    return [*comment(model), *comment(config), *comment(stream)]


class _Rows:
    """Rows of one kind written out as they come (``report.RowWriter``) to ``out`` or stdout,
    in chunks of ``CHUNK`` rows (``RowWriter.many``: the bytes of one write per row); text
    cells a spreadsheet would run as a formula are escaped in CSV. A file ``out`` is
    written beside its target and renamed over it by ``close(True)`` (``open_atomically``);
    a run that fails leaves the previous file as it was. Opened at the first chunk, so an error
    before it writes nothing."""

    #: Rows gathered before they are written.
    CHUNK = 4096

    def __init__(self, cols, fmt: str, out: str | None, flag: str) -> None:
        self.cols, self.fmt, self.out, self.flag = cols, fmt, out, flag
        self.opened = None
        self.writer = None
        self.pending: list = []

    def __call__(self, row) -> None:
        self.pending.append((row[0], row))
        if len(self.pending) >= self.CHUNK:
            self.flush()

    def renumbered(self, i: int, row) -> None:
        """``row`` written as input i (``simulate``: a memo hit's row met before)."""
        self.pending.append((i, row))
        if len(self.pending) >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        try:
            if self.writer is None:
                self._open()
            self.writer.numbered(rows)
        except BrokenPipeError:           # a reader that stopped (| head): exit 0
            raise
        except OSError as exc:            # a full disk under --out / --timeline
            _cannot_write(self.flag, self.out, exc)

    def _open(self) -> None:
        from edgesim.report import RowWriter
        if self.out is None:
            file = sys.stdout
        else:
            self.opened = open_atomically(self.out, self.flag)
            file = self.opened.__enter__()
        self.writer = RowWriter(self.cols, self.fmt, file, safe=True)

    def close(self, ok: bool) -> None:
        if ok:
            try:
                self.flush()
            except Exception:
                self.close_file(False)
                raise
        elif self.out is None and self.pending:   # stdout shows the rows before a failure,
            try:                                   # as it did when written one by one
                self.flush()
            except (OSError, EdgesimError):        # the failure itself is what is reported
                pass
        self.close_file(ok)

    def close_file(self, ok: bool) -> None:
        self.pending = []
        if self.opened is not None:
            opened, self.opened = self.opened, None
            end_atomically(opened, ok)


class _Spool:
    """The items of a JSON array of rows (``RowWriter(cols, "json")``) in an unnamed
    temporary file, beside ``out`` when given: ``report.write_json`` copies them into the
    document once the run is over, so no row is held in memory."""

    def __init__(self, cols, out: str | None) -> None:
        import tempfile

        from edgesim.report import RowWriter
        folder = None if out is None else output_path(out, "--out").parent
        try:
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
            self.file = tempfile.TemporaryFile("w+", dir=folder, newline="")
        except OSError as exc:
            from edgesim.outputs import OutputError
            shown = "a temporary file" if out is None else f"a temporary file beside {out}"
            raise OutputError(f"--out: cannot write {shown} ({exc.strerror or exc})") from None
        self.write = RowWriter(cols, "json", self.file)

    def __call__(self, row) -> None:
        try:
            self.write(row)
        except OSError as exc:            # a full disk under the temporary file
            _cannot_write("--out", "a temporary file", exc)


def _cannot_write(flag: str, out: str | None, exc: OSError):
    from edgesim.outputs import OutputError
    where = "standard output" if out is None else out
    raise OutputError(f"{flag} {where}: cannot write ({exc.strerror or exc})") from None


class _Sink:
    """Where the rows of ``run`` go as the engine produces them (``simulate(on_row=...,
    keep_rows=False)``: no row is kept by the engine): CSV / JSON lines streamed to ``--out``
    or stdout, JSON items spooled to a temporary file, the per-op ``--timeline`` streamed to
    its file, and the rows of a text table (at most ``TABLE_ROWS`` inferences, or the per-op
    rows) kept for it. ``finish(run)`` completes every output; ``abort()`` drops the files."""

    def __init__(self, a, many: bool) -> None:
        from edgesim.sim import LayerRow
        self.columns = columns()
        self.layer_type = LayerRow
        self.table: list = []
        self.json = a.format == "json"
        self.spools: dict[str, _Spool] = {}
        self.streams: list[_Rows] = []
        main = self.table.append if a.format == "table" and not many else None
        if a.format in ("csv", "jsonl"):
            self.streams.append(_Rows(self.columns[bool(a.per_layer)], a.format, a.out, "--out"))
            main = self.streams[-1]
        inference_out = [] if a.per_layer else [main]
        layer_out = [main] if a.per_layer else []
        if self.json:
            self.spools["inferences"] = _Spool(self.columns[0], a.out)
            inference_out = [self.spools["inferences"]]
            if a.per_layer or a.timeline:
                self.spools["layers"] = _Spool(self.columns[1], a.out)
                layer_out = [self.spools["layers"]]
        if a.timeline and a.timeline.lower().endswith(".json"):   # Chrome / Perfetto
            from pathlib import Path

            from edgesim.trace_events import TraceWriter
            config = Path(a.config).stem if a.config.endswith((".yaml", ".yml")) else a.config
            self.streams.append(TraceWriter(a.timeline, f"{a.model} on {config}"))
            layer_out.append(self.streams[-1])
        elif a.timeline:
            self.streams.append(_Rows(self.columns[1], "csv", a.timeline, "--timeline"))
            layer_out.append(self.streams[-1])
        self.inference_out = [f for f in inference_out if f is not None]
        self.layer_out = [f for f in layer_out if f is not None]
        self.out = a.out
        # one output and no per-op rows (a CSV or JSON lines stream): rows go straight to it
        self.on_row = (self.inference_out[0] if len(self.inference_out) == 1
                       and not self.layer_out else self)

    def __call__(self, row) -> None:
        for f in self.layer_out if type(row) is self.layer_type else self.inference_out:
            f(row)

    def abort(self) -> None:
        for s in self.streams:
            s.close(False)
        for spool in self.spools.values():
            spool.file.close()

    def finish(self, run) -> None:
        """Every output completed (files renamed into place); the JSON document written."""
        try:
            for s in self.streams:
                s.close(True)
            if self.json:
                self._json(run)
        finally:
            self.abort()

    def _json(self, run) -> None:
        from edgesim.report import write_json
        items = {k: s.file for k, s in self.spools.items()}
        if self.out is None:
            write_json(sys.stdout, run.to_dict(), items)
            return
        with open_atomically(self.out, "--out") as fh:
            write_json(fh, run.to_dict(), items)
