"""``edgesim configs [NAME]``: the hardware configs shipped in the package (``edgesim/hwconfigs``).

Public names: ``add_parser``, ``main``.

Each is addressable by name from any directory: ``edgesim run npu_small`` (or
``npu_small.yaml``); a path to one's own YAML works too. The listing fits 100 columns (name,
clock, MACs, SRAM, off-chip memory and bandwidth); ``--wide`` adds each file and its source,
and ``edgesim configs NAME`` shows one config: its description, its numbers and the source of
every section. ``--format csv|json`` has every column.
"""

from __future__ import annotations

from edgesim.cli._common import add_format, write

__all__ = ["add_parser", "main"]

#: The default listing: (column of ``config.config_table``, header).
_BRIEF = (("name", "name"), ("clock", "clock"), ("int8_macs_per_cycle", "int8 MACs/cycle"),
          ("sram", "SRAM"), ("offchip", "off-chip"), ("offchip_bandwidth", "bandwidth"))


def add_parser(subparsers) -> None:
    """Add ``configs`` to an argparse subparsers object."""
    c = subparsers.add_parser("configs", help="list the shipped hardware configs")
    c.add_argument("name", nargs="?", metavar="NAME",
                   help="show this config (a shipped name or a YAML path): its description, "
                   "numbers and the source of every section")
    c.add_argument("--wide", action="store_true", help="also each config's file and source")
    add_format(c)


def main(a) -> int:
    """Handler of ``edgesim configs``."""
    from edgesim.report import render, render_table
    if a.name is not None:
        write(_one(a.name), a.out)
        return 0
    from edgesim.config import config_table
    rows = config_table()
    if a.format != "table" or a.wide:
        cols = list(rows[0]) if rows else []
        write(render(cols, a.format, rows=[[r[c] for c in cols] for r in rows]), a.out)
        return 0
    table = render_table([h for _, h in _BRIEF], [[r[c] for c, _ in _BRIEF] for r in rows])
    write(table + "\n\n`edgesim configs NAME` shows one with its sources; `--wide` lists "
          "every source.", a.out)
    return 0


def _one(name: str) -> str:
    """One config as ``key: value`` lines and its sources, wrapped to 100 columns."""
    import textwrap

    from edgesim.config import load_config
    from edgesim.units import format_quantity
    hw = load_config(name)
    lines = [*textwrap.wrap(f"{hw.name}: {hw.description}", 100, break_on_hyphens=False), ""]
    facts = [("clock", format_quantity(hw.clock_hz, "frequency")),
             ("MACs per cycle", ", ".join(f"{p} {n}" for p, n in hw.macs_per_cycle.items())),
             ("SRAM", format_quantity(hw.sram_bytes, "size")),
             ("off-chip", f"{hw.offchip_kind}, "
                          f"{format_quantity(hw.offchip_bytes_per_s, 'bandwidth')}")]
    lines += [f"{k:<15} {v}" for k, v in facts]
    lines += ["", "sources:"]
    for section, text in hw.sources.items():
        lines += textwrap.wrap(" ".join(text.split()), 100, initial_indent=f"  {section}: ",
                               subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join(lines)
