"""Experiment scripts: ``python experiments/NAME.py RESULTS [--quick]`` from the repository root.

Public names: ``QUICK_MODELS``, ``registered``, ``traceable``, ``arguments``.

Each script writes its tables and figures under the results folder named on its command line.
``--quick`` runs a small version (few sizes, few inputs, the cheapest models) that the test suite
executes. A model family that is not registered, or a model that fails to trace, is skipped with
a note on stderr; it never stops a script.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["QUICK_MODELS", "arguments", "registered", "traceable"]

#: The cheapest registered models (CIFAR-size inputs): used by --quick, when registered.
QUICK_MODELS = ("dense_r50_c100", "sigmab_r50_c100")


def arguments(description: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``RESULTS [--quick] [--inputs N] [--workers N] [--executor ...]``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("results", help="folder for the tables and figures")
    p.add_argument("--quick", action="store_true", help="small settings (the test suite's)")
    p.add_argument("--inputs", type=int, help="inferences per stream (1000; --quick: 16)")
    p.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    p.add_argument("--executor", choices=("process", "dask", "serial"), default="process")
    p.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    a = p.parse_args(argv)
    if a.inputs is None:
        a.inputs = 16 if a.quick else 1000
    return a


def registered(names: Sequence[str] | None = None, *, quick: bool = False) -> list[str]:
    """Registered model names, in registry order: ``names`` (or all, or the quick ones)."""
    from edgesim.zoo.registry import REGISTRY
    wanted = QUICK_MODELS if quick and names is None else names
    if wanted is None:
        return list(REGISTRY)
    missing = [n for n in wanted if n.split("@")[0] not in REGISTRY]
    for n in missing:
        print(f"note: model {n} is not registered; skipped", file=sys.stderr)
    return [n for n in wanted if n not in missing]


def traceable(names: Sequence[str], config: str, *, inputs: int, seed: int = 0) -> list[str]:
    """The models of ``names`` that trace on ``config`` (traced now, cached for the sweep)."""
    from edgesim import api
    from edgesim.config import load_config
    from edgesim.errors import EdgesimError
    from edgesim.request import model_request
    hw = load_config(config)
    ok = []
    for n in names:
        try:
            api.workload(model_request(n, seed=seed), precision=hw.precision,
                         act_bits=hw.act_bits, formats=hw.formats, inputs=inputs)
        except EdgesimError as exc:
            print(f"note: model {n} skipped: {exc}", file=sys.stderr)
            continue
        ok.append(n)
    return ok
