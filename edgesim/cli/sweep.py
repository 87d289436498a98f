"""``edgesim sweep``: a grid of hardware points x models x policies into a results folder.

Public names: ``add_parser``, ``main``.

    edgesim sweep CONFIG --model NAME [NAME ...] [--set KEY=SPEC ...] [--policy P ...]
                  [--prefetch M] [--inputs N] --out DIR [--executor process|dask|serial]
                  [--scheduler ADDR] [--workers N] [--seed S] [--detail]
                  [--data PATH [--eval]]

The work is ``edgesim.sweep.sweep``; this module parses the flags, shows progress on stderr
(stage lines; a bar per counted step on a terminal, piped a line every few seconds: models
traced and routed, tasks done of the total with the time and rate) and prints where the table
went (``DIR/sweep.csv``, ``DIR/results.sqlite``). When some points failed in the engine, the
others are still in the table, and the command ends with one line naming the failed points
(exit code 2); rerunning it retries them. ``--data LABELLED --eval`` adds each model's ``top1``
over the labelled inputs (which become every model's stream) to every row. ``--prefetch M`` is
the config's ``prefetch.mode`` at every point (``--set prefetch.mode=none,next`` sweeps it);
``--seed``, ``--data`` and ``--eval`` make each model's ``edgesim.model_request``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgesim.cli._common import (
    INPUTS,
    SEED,
    CliProgress,
    add_eval,
    add_prefetch,
    bounded_int,
    policies,
    with_prefetch,
)
from edgesim.errors import EdgesimError
from edgesim.sweep.executors import EXECUTORS
from edgesim.sweep.store import CSV_FILE, RESULTS_FILE

__all__ = ["MAX_WORKERS", "add_parser", "main"]

#: ``--workers`` at most this many processes (each holds the sweep's workloads).
MAX_WORKERS = 1024


def add_parser(subparsers) -> None:
    """Add ``sweep`` to an argparse subparsers object."""
    s = subparsers.add_parser("sweep", help="simulate a grid of hardware points x models")
    s.add_argument("config", help="hardware config YAML or shipped name (see `edgesim configs`)")
    s.add_argument("--model", nargs="+", required=True, help="registry names (NAME@LEVEL too)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=SPEC",
                   help="a swept key: a value, a list a,b,c, start..stop:xFACTOR or "
                   "start..stop:+STEP (e.g. sram.size=32KiB..32MiB:x2)")
    s.add_argument("--policy", nargs="+", choices=policies(), default=["lru"])
    add_prefetch(s)
    s.add_argument("--inputs", type=INPUTS, default=None,
                   help="inferences per stream (1000; with --eval all of --data; at most "
                   "10,000,000)")
    s.add_argument("--out", required=True, help="results folder (results.sqlite, sweep.csv)")
    s.add_argument("--executor", choices=EXECUTORS, default="process")
    s.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    s.add_argument("--workers", type=bounded_int(1, MAX_WORKERS),
                   help=f"worker processes (default: all cores; at most {MAX_WORKERS})")
    s.add_argument("--seed", type=SEED, default=0)
    s.add_argument("--detail", action="store_true",
                   help="also keep every inference's row (detail.csv)")
    s.add_argument("--data", help="inputs routed models route: a .pt/.npy tensor file or a "
                   "folder of images (with --eval: labelled)")
    add_eval(s)


def main(a) -> int:
    """Handler of ``edgesim sweep``: runs the sweep, prints where the table went."""
    from edgesim.request import model_request
    from edgesim.sweep import sweep
    from edgesim.sweep.executors import ExecutorSpec
    from edgesim.sweep.grid import base_config
    from edgesim.sweep.run import failed_points
    if a.scheduler and a.executor != "dask":
        raise EdgesimError("--scheduler needs --executor dask")
    how = ExecutorSpec(a.executor, a.scheduler, a.workers)
    # --prefetch M is prefetch.mode=M at every point: not an axis, so no column of its own
    fixed = with_prefetch(a.sets, a.prefetch)[len(a.sets):]
    shown = CliProgress(sys.stderr.isatty(), None)
    try:
        models = [model_request(m, seed=a.seed, data=a.data, evaluate=a.evaluate)
                  for m in a.model]
        config = base_config(a.config, fixed) if fixed else a.config
        df = sweep(config, models, a.sets, policies=a.policy, inputs=a.inputs,
                   out_dir=a.out, executor=how, detail=a.detail, progress=shown.progress)
    finally:
        shown.close()
    print(f"edgesim: {len(df)} rows -> {Path(a.out) / CSV_FILE} "
          f"({Path(a.out) / RESULTS_FILE})")
    failed = failed_points(df)
    if failed is not None:
        raise EdgesimError(f"{failed} (status/error columns of {Path(a.out) / CSV_FILE}; the "
                           "other rows are stored, and a rerun retries the failed ones)")
    return 0
