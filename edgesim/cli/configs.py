"""``edgesim configs``: the hardware configs shipped in the package (``edgesim/hwconfigs``).

Public names: ``add_parser``, ``main``.

Each is addressable by name from any directory: ``edgesim run npu_small`` (or
``npu_small.yaml``); a path to one's own YAML works too.
"""

from __future__ import annotations

from edgesim.cli._common import add_format, write

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``configs`` to an argparse subparsers object."""
    c = subparsers.add_parser("configs", help="list the shipped hardware configs")
    add_format(c)


def main(a) -> int:
    """Handler of ``edgesim configs``."""
    from edgesim import api
    from edgesim.report import render
    write(render(api.configs(), a.format), a.out)
    return 0
