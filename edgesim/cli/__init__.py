"""The command line: a thin layer over ``edgesim.api``.

Public names: ``main``, ``build_parser``.

    python -m edgesim run CONFIG --model NAME [--inputs N] [--policy P] [--prefetch M]
                          [--set key=value ...] [--format table|csv|json] [--out FILE]
                          [--per-layer] [--data PATH] [--weights CKPT] [--seed S]
                          [--timeline FILE]
    python -m edgesim models [--model NAME ...] [--format ...]
    python -m edgesim configs [--format ...]
    python -m edgesim trace MODEL [--set ...] [--out FILE]

Bad input is one line on stderr, ``edgesim: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edgesim.errors import EdgesimError

__all__ = ["build_parser", "main"]


class _UsageError(EdgesimError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        raise _UsageError(f"{self.prog}: {message} (see --help)")


def _progress_printer(enabled: bool):
    if not enabled:
        return None

    def say(msg: str) -> None:
        print(f"edgesim: {msg}", file=sys.stderr, flush=True)
    return say


def _sim_progress(enabled: bool, total: int):
    if not enabled or total < 512:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=total, unit="inf", file=sys.stderr, leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)
    return update, bar


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edgesim", description="Off-chip weight traffic, latency and energy of "
                "neural networks on edge accelerators.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    def fmt(sp):
        sp.add_argument("--format", choices=("table", "csv", "json"), default="table")
        sp.add_argument("--out", help="write to this file instead of standard output")

    r = sub.add_parser("run", help="simulate a stream of inferences")
    r.add_argument("config", help="hardware config YAML (see `edgesim configs`)")
    r.add_argument("--model", required=True,
                   help="registry name (see `edgesim models`), NAME@LEVEL, "
                   "or package.module:factory")
    r.add_argument("--inputs", type=int, default=8, help="inferences in the stream (default 8)")
    r.add_argument("--policy", choices=("lru", "pinned", "belady"), default="lru")
    r.add_argument("--prefetch", choices=("next", "none", "speculative"), default="next")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. sram.size=2MiB; model.level=K")
    r.add_argument("--per-layer", action="store_true", help="one row per op and inference")
    r.add_argument("--data", help="inputs: a .pt/.npy tensor file or a folder of images")
    r.add_argument("--weights", help="a state_dict checkpoint for the model")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeline", help="write the per-op event log of the run to this CSV")
    r.add_argument("--no-memo", action="store_true",
                   help="simulate every inference even when an identical one was seen")
    fmt(r)

    m = sub.add_parser("models", help="list the registered models with params and bytes")
    m.add_argument("--model", nargs="*", help="only these models")
    fmt(m)

    c = sub.add_parser("configs", help="list the shipped hardware configs")
    fmt(c)

    t = sub.add_parser("trace", help="dump a model's Workload (blocks and ops) as JSON")
    t.add_argument("model")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--config", help="take precision and formats from this config")
    t.add_argument("--out")

    # sweep and plot: defined in their own modules (edgesim.sweep, edgesim.plot)
    from edgesim import finetune, plot, sweep
    sweep.register(sub)
    plot.register(sub)
    finetune.register(sub)
    return p


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text + "\n")
        return
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    except OSError as exc:
        raise EdgesimError(f"--out {out}: cannot write ({exc.strerror})") from None


def _cmd_run(a) -> int:
    from edgesim import api
    from edgesim.report import render, render_summary

    if a.inputs < 1:
        raise _UsageError(f"--inputs must be >= 1, got {a.inputs}")
    tty = sys.stderr.isatty()
    update, bar = _sim_progress(tty, a.inputs)
    try:
        res = api.run(a.config, a.model, inputs=a.inputs, policy=a.policy, prefetch=a.prefetch,
                      overrides=a.sets, per_layer=a.per_layer or bool(a.timeline), data=a.data,
                      seed=a.seed, weights=a.weights, memo=not a.no_memo,
                      progress=_progress_printer(tty), sim_progress=update)
    finally:
        if bar is not None:
            bar.close()
    from edgesim.engine import INFERENCE_COLUMNS, LAYER_COLUMNS
    r = res.result
    if a.timeline:
        _write(render(LAYER_COLUMNS, "csv", rows=r.layer_rows), a.timeline)
    if a.format == "json":
        _write(render(INFERENCE_COLUMNS, "json", json_obj=res.to_dict()), a.out)
        return 0
    columns, rows = ((LAYER_COLUMNS, r.layer_rows) if a.per_layer
                     else (INFERENCE_COLUMNS, r.rows))
    if a.format == "csv":
        _write(render(columns, "csv", rows=rows), a.out)
        return 0
    m = res.model
    head = (f"# {m['name']} ({m['family']}) on {res.hardware['name']}: "
            f"{m['total_params']:,} params stored, {m['active_params']:,} active per inference, "
            f"{m['stored_weight_bytes']:,} weight bytes stored; policy {a.policy}, "
            f"prefetch {a.prefetch}")
    text = "\n".join([head, render(columns, "table", rows=rows), "",
                      "# summary (cold = first inference; steady = the rest)",
                      render_summary(res.summary)])
    _write(text, a.out)
    return 0


def _cmd_models(a) -> int:
    from edgesim import api
    from edgesim.report import render
    df = api.models(names=a.model, progress=_progress_printer(sys.stderr.isatty()))
    _write(render(df, a.format), a.out)
    return 0


def _cmd_configs(a) -> int:
    from edgesim import api
    from edgesim.report import render
    _write(render(api.configs(), a.format), a.out)
    return 0


def _cmd_trace(a) -> int:
    from dataclasses import asdict

    from edgesim import api
    precision, act_bits, formats = "int8", 8, None
    if a.config:
        from edgesim.config import load_config
        hw = load_config(a.config, [s for s in a.sets if not s.startswith("model.")])
        precision, act_bits, formats = hw.precision, hw.act_bits, hw.formats
    level = api._model_level([s for s in a.sets if s.startswith("model.")])
    w = api.workload(a.model, precision=precision, act_bits=act_bits, formats=formats,
                     level=level, progress=_progress_printer(sys.stderr.isatty()))
    obj = {"model": api.model_info(w),
           "blocks": [asdict(b) for b in w.blocks.values()],
           "paths": [{"name": p.name, "ops": [asdict(op) for op in p.ops]} for p in w.paths]}
    _write(json.dumps(obj, indent=1, default=str), a.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        a = build_parser().parse_args(argv)
        handler = {"run": _cmd_run, "models": _cmd_models, "configs": _cmd_configs,
                   "trace": _cmd_trace}
        extra = _extra_commands()
        if a.command in extra:
            return extra[a.command](a)
        return handler[a.command](a)
    except EdgesimError as exc:
        message = " ".join(str(exc).split())  # always one line, whatever a library said
        print(f"edgesim: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgesim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _extra_commands() -> dict:
    """Commands that live in their own modules (sweep, plot), when present."""
    from edgesim import finetune, plot, sweep
    return {"sweep": sweep.cmd_sweep, "plot": plot.cmd_plot, "finetune": finetune.cmd_finetune}
