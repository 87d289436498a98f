"""``edgesim plot KIND DIR``: draw a sweep (or a run's timeline or roofline) as PNG and SVG.

Public names: ``add_parser``, ``main``. The figures themselves are ``edgesim.plot``'s.
"""

from __future__ import annotations

from edgesim.cli._common import MAX_INPUTS, bounded_int

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``plot`` to an argparse subparsers object."""
    from edgesim.plot import KINDS
    s = subparsers.add_parser("plot", help="draw a sweep, or a run's timeline or roofline "
                              "(PNG and SVG)")
    s.add_argument("kind", choices=KINDS)
    s.add_argument("source", metavar="DIR",
                   help="sweep results folder; for timeline and roofline, the CSV of `run "
                   "--timeline` or the JSON of `run --per-layer --format json`")
    s.add_argument("--x", help="x column (pareto: latency_s_steady; bytes-vs-sram: sram_bytes)")
    s.add_argument("--y", help="y column (pareto: energy_j_steady, or e.g. "
                   "weight_dram_bytes_steady; top1 of a sweep run with --eval; a metric "
                   "without _cold/_steady is its steady state)")
    s.add_argument("--out", help="output file name (.png and .svg are written)")
    s.add_argument("--input", type=bounded_int(0, MAX_INPUTS - 1), dest="input_index",
                   help="timeline: which inference, 0.. (default: the last; at most "
                   f"{MAX_INPUTS - 1:,})")
    s.add_argument("--config", help="timeline and roofline of an event-log CSV: the run's "
                   "hardware config (a run's JSON document names its own)")


def main(a) -> int:
    """Handler of ``edgesim plot``: draws, then prints where the files went."""
    from edgesim.plot import plot
    paths = plot(a.kind, a.source, x=a.x, y=a.y, out=a.out, input_index=a.input_index,
                 config=a.config)
    print("edgesim: wrote " + ", ".join(str(p) for p in paths))
    return 0
