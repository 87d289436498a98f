"""The entries shipped inside the package: every registry model traced at its defaults.

    python -m edgesim.ship            # trace every registry model, write edgesim/shipped/
    python -m edgesim.ship --check    # trace them again and compare with what is shipped

Public names: ``expected``, ``build_entry``, ``main``, ``PRECISIONS``.

The registry's models are seeded, so their traced Workloads (and the routes of a routed model's
first routing batch of the default synthetic stream) are the same on every machine: shipped
inside the package (``edgesim.cache.SHIPPED``, about 150 KiB gzip-compressed), a first
``edgesim run npu_small --model sigmab_r50`` reads them like cache entries and imports no
torch. Shipped: seed 0, no checkpoint, no data, the default level, at each precision of
``PRECISIONS`` (what the shipped hardware configs compute in); anything else is traced on first
use as before. ``tests/test_shipped.py`` checks that every expected entry is shipped (keys
change with the cache format and the specs) and, marked slow, that each equals a fresh trace.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgesim import api, cache

__all__ = ["PRECISIONS", "build_entry", "expected", "main"]

#: Precisions shipped: every shipped hardware config computes in int8 (``edgesim/hwconfigs``).
PRECISIONS = ("int8",)


def expected() -> Iterator[tuple[str, str, str, str]]:
    """``(model, precision, kind, key)`` of every shipped entry: a ``workload`` per registry
    model and precision, and for a routed model the ``route`` of its routing batch 0 (the
    first ``build.ROUTE_BATCH`` inputs of the seeded synthetic stream). Needs no torch."""
    from edgesim.zoo.registry import REGISTRY
    for name, spec in REGISTRY.items():
        for precision in PRECISIONS:
            wkey = api.workload_key(spec, precision=precision)
            yield name, precision, "workload", wkey
            if spec.dynamic:
                yield name, precision, "route", api.route_key(wkey, None, 0, 0)


def build_entry(name: str, precision: str, kind: str, catalogue: Any = None) -> Any:
    """A fresh trace (``kind`` workload) or route of batch 0 (``kind`` route, of the traced
    ``catalogue``) of registry model ``name``, as ``api.workload`` makes it uncached."""
    from edgesim import build
    from edgesim.zoo.registry import get_spec
    spec = get_spec(name)
    if kind == "workload":
        return build.build_workload(spec, precision=precision, act_bits=8,
                                    encodings=tuple(api.spec_encodings(spec, None)), seed=0)
    if catalogue is None:
        catalogue = build_entry(name, precision, "workload")
    return build.route(spec, batches=[(0, build.ROUTE_BATCH)], data=None, seed=0,
                       weights=None, catalogue=catalogue)[0]


def same(kind: str, a: Any, b: Any) -> bool:
    """Whether two entries of ``kind`` are equal: Workloads by ``digest``, routes by value."""
    import numpy as np
    if kind == "workload":
        return a.digest() == b.digest()
    return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgesim.ship",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="compare fresh traces with the shipped entries; write nothing")
    ap.add_argument("--out", default=str(cache.SHIPPED),
                    help="folder to write (default: the package's edgesim/shipped)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    wanted = list(expected())
    keep = {out / kind / f"{key}.npz.gz" for _, _, kind, key in wanted}
    stale = [] if a.check else [p for p in out.glob("*/*.npz.gz") if p not in keep]
    bad = 0
    catalogue = None
    for name, precision, kind, key in wanted:
        t = time.perf_counter()
        value = build_entry(name, precision, kind, catalogue)
        catalogue = value if kind == "workload" else None
        if a.check:
            ok = same(kind, value, cache.shipped(kind, key))
            bad += not ok
            status = "same" if ok else "DIFFERS from the shipped entry"
        else:
            path = cache.ship(out, kind, key, value)
            status = f"{path.stat().st_size:,} bytes"
        print(f"{name} {precision} {kind}: {status} ({time.perf_counter() - t:.1f} s)",
              file=sys.stderr, flush=True)
    for p in stale:
        p.unlink()
        print(f"removed stale {p}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
