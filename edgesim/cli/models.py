"""``edgesim models``: the registered models with their parameters and bytes.

Public names: ``add_parser``, ``main``.
"""

from __future__ import annotations

from edgesim.cli._common import add_format, progress_printer, write

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``models`` to an argparse subparsers object."""
    m = subparsers.add_parser("models", help="list the registered models with params and bytes")
    m.add_argument("--model", nargs="*", help="only these models")
    add_format(m)


def main(a) -> int:
    """Handler of ``edgesim models`` (traces the models that are not cached yet)."""
    from edgesim import api
    from edgesim.report import render
    df = api.models(names=a.model, progress=progress_printer())
    write(render(df, a.format), a.out)
    return 0
