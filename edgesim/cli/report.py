"""``edgesim report``: one self-contained HTML file of a run or of a sweep folder.

Public names: ``add_parser``, ``main``.

    edgesim report CONFIG --model M [--out report.html] [--inputs N] [--policy P] ...
    edgesim report SWEEP_FOLDER [--out FILE]        (default FILE: SWEEP_FOLDER/report.html)

The page itself is ``edgesim.html_report``'s.
"""

from __future__ import annotations

from pathlib import Path

from edgesim.cli._common import (
    INPUTS,
    MAX_INPUTS,
    SEED,
    UsageError,
    add_prefetch,
    policies,
    with_prefetch,
)

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``report`` to an argparse subparsers object."""
    r = subparsers.add_parser("report", help="one self-contained HTML report of a run or of a "
                              "sweep folder")
    r.add_argument("source", metavar="CONFIG|FOLDER",
                   help="hardware config (with --model), or a sweep results folder")
    r.add_argument("--model", help="model of the run (see `edgesim models`)")
    r.add_argument("--inputs", type=INPUTS, default=None,
                   help=f"inferences (default 8; at most {MAX_INPUTS:,})")
    r.add_argument("--policy", choices=policies(), default="lru")
    add_prefetch(r)
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. sram.size=2MiB")
    r.add_argument("--seed", type=SEED, default=0)
    r.add_argument("--out", help="the HTML file (default report.html; for a sweep folder, "
                   "report.html in it)")


def main(a) -> int:
    """Handler of ``edgesim report``: writes the file, prints where it went."""
    from edgesim import html_report
    from edgesim.cli._common import progress_printer, write
    from edgesim.outputs import output_path
    folder = Path(a.source)
    if folder.is_dir():
        if a.model or a.sets:
            raise UsageError(f"report: {a.source} is a sweep folder; --model and --set belong "
                             "to a run's report (report CONFIG --model M)")
        out = a.out or str(folder / "report.html")
        output_path(out, "--out")            # refused before any work: a device, a folder
        text = html_report.sweep_html(folder)
    else:
        if not a.model:
            raise UsageError("report: a run's report needs --model M (or give a sweep folder)")
        out = a.out or "report.html"
        output_path(out, "--out")
        from edgesim import api
        from edgesim.request import model_request
        run = api.run(a.source, model_request(a.model, seed=a.seed), inputs=a.inputs,
                      policy=a.policy, overrides=with_prefetch(a.sets, a.prefetch), per_layer=True,
                      progress=progress_printer())
        text = html_report.run_html(run, overrides=a.sets, config=a.source)
    write(text.rstrip("\n"), out)
    print(f"edgesim: wrote {out}")
    return 0
