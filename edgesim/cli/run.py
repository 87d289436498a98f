"""``edgesim run CONFIG --model NAME``: simulate a stream of inferences and print the rows.

Public names: ``add_parser``, ``main``.

Prints a header line naming the model, the hardware and the policy, one row per inference (or per
op and inference with ``--per-layer``) and the cold/steady summary; ``--format csv|json`` prints
the rows alone (JSON: the whole ``Run``). With ``--eval`` the labelled ``--data`` is the stream
and its top-1 follows the summary (JSON: ``accuracy``). torch and pandas are imported only when
the model is not yet traced (a cached run imports neither).
"""

from __future__ import annotations

import sys

from edgesim.cli._common import (
    INPUTS,
    SEED,
    accuracy_line,
    add_eval,
    add_format,
    columns,
    csv_rows,
    eval_progress,
    policies,
    prefetch_modes,
    progress_printer,
    sim_progress,
    write,
)

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``run`` to an argparse subparsers object."""
    r = subparsers.add_parser("run", help="simulate a stream of inferences")
    r.add_argument("config", help="hardware config YAML (see `edgesim configs`)")
    r.add_argument("--model", required=True,
                   help="registry name (see `edgesim models`), NAME@LEVEL, "
                   "or package.module:factory")
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
    r.add_argument("--timeline", help="write the per-op event log of the run to this CSV")
    r.add_argument("--no-memo", action="store_true",
                   help="simulate every inference even when an identical one was seen")
    add_eval(r)
    add_format(r)


def main(a) -> int:
    """Handler of ``edgesim run``."""
    from edgesim import api
    from edgesim.report import render, render_summary

    tty = sys.stderr.isatty()
    total = a.inputs if a.inputs is not None or a.evaluate else 8
    update, bar = sim_progress(tty, total)
    eval_update, eval_bar = eval_progress(tty and a.evaluate)
    try:
        res = api.run(a.config, a.model, inputs=a.inputs, policy=a.policy, prefetch=a.prefetch,
                      overrides=a.sets, per_layer=a.per_layer or bool(a.timeline), data=a.data,
                      seed=a.seed, weights=a.weights, memo=not a.no_memo,
                      progress=progress_printer(tty), sim_progress=update,
                      evaluate=a.evaluate, eval_progress=eval_update)
    finally:
        for b in (eval_bar, bar):
            if b is not None:
                b.close()
    r = res.result
    inference_columns, layer_columns = columns()
    if a.timeline:
        write(render(layer_columns, "csv", rows=csv_rows(r.layer_rows)), a.timeline)
    if a.format == "json":
        write(render(inference_columns, "json", json_obj=res.to_dict()), a.out)
        return 0
    cols, rows = ((layer_columns, r.layer_rows) if a.per_layer
                  else (inference_columns, r.rows))
    if a.format == "csv":   # op, path and encoding names come from the model: escaped
        write(render(cols, "csv", rows=csv_rows(rows)), a.out)
        return 0
    m = res.model
    head = (f"# {m['name']} ({m['family']}) on {res.hardware['name']}: "
            f"{m['total_params']:,} params stored, {m['active_params']:,} active per inference, "
            f"{m['stored_weight_bytes']:,} weight bytes stored; policy {a.policy}, "
            f"prefetch {a.prefetch}")
    lines = [head, render(cols, "table", rows=rows), "",
             "# summary (cold = first inference; steady = the rest)",
             render_summary(res.summary)]
    if res.accuracy is not None:
        registry = ":" not in a.model
        lines += ["", accuracy_line(res.accuracy, random_weights=registry and not a.weights)]
    write("\n".join(lines), a.out)
    return 0
