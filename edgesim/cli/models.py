"""``edgesim models``: the registered models with their parameters and bytes.

Public names: ``add_parser``, ``main``.

The table fits 100 columns: parameters in millions, bytes in MB (10**6), sparsity in percent;
``--wide`` (and ``--format csv|json``) gives every field of ``api.model_info`` exactly
(precision, active fraction, integers).
"""

from __future__ import annotations

from edgesim.cli._common import add_format, progress_printer, write

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``models`` to an argparse subparsers object."""
    m = subparsers.add_parser("models", help="list the registered models with params and bytes")
    m.add_argument("--model", nargs="*", help="only these models")
    m.add_argument("--wide", action="store_true",
                   help="every field, exact (params and bytes as integers)")
    add_format(m)


def main(a) -> int:
    """Handler of ``edgesim models`` (traces the models that are not cached yet)."""
    from edgesim import api
    from edgesim.report import render
    df = api.models(names=a.model, progress=progress_printer())
    if a.format != "table" or a.wide:
        write(render(df, a.format), a.out)
        return 0
    from edgesim.cli._human import align
    rows = list(df.itertuples(index=False))
    cols = [("name", False, lambda r: r.name), ("family", False, lambda r: r.family),
            ("params M", True, lambda r: f"{r.total_params / 1e6:.2f}"),
            ("active M", True, lambda r: f"{r.active_params / 1e6:.2f}"),
            ("stored MB", True, lambda r: f"{r.stored_weight_bytes / 1e6:.2f}"),
            ("dense MB", True, lambda r: f"{r.dense_weight_bytes / 1e6:.2f}"),
            ("sparsity %", True, lambda r: f"{100 * r.weight_sparsity:.1f}"),
            ("paths", True, lambda r: str(r.paths))]
    write(align([c[0] for c in cols], [[f(r) for r in rows] for _, _, f in cols],
                [num for _, num, _ in cols]), a.out)
    return 0
