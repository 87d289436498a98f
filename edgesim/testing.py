"""Small, fully specified hardware configs and workloads for tests, doctests and examples.

Public names: ``tiny_config``, ``tiny_workload``, ``TINY_CONFIG``, ``stderr_lines``,
``error_line``, ``registry_model``.

``tiny_config()`` is a 1 GHz array of 8x8 int8 MACs (64 MACs/cycle) with 1 GB/s off-chip, 0 ns
latency and 1-byte bursts, so closed-form cases are easy to derive: a MAC takes 1/64 ns, a byte
1 ns. ``tiny_workload()`` is two weight ops (a 1000-byte and a 2000-byte block) around an
activation.

>>> hw = tiny_config(sram="64 KiB")
>>> hw.weight_sram_bytes, hw.macs_per_cycle["int8"]
(65536, 64)
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from edgesim.workload import LayerOp, WeightBlock, Workload

__all__ = ["TINY_CONFIG", "error_line", "stderr_lines", "tiny_config", "tiny_workload",
           "under_thread_counts"]

TINY_CONFIG: dict[str, Any] = {
    "name": "tiny",
    "description": "a test accelerator with round numbers",
    "source": "edgesim tests: round numbers chosen for closed-form checks, not a real part",
    "clock": "1 GHz",
    "technology": {"node_nm": 45, "vdd_v": 0.9, "source": "test value"},
    "compute": {
        "precision": "int8", "activation_bits": 8,
        "macs_per_cycle": {"int8": 64, "int4": 128, "fp16": 16, "binary": 256},
        "array": {"rows": 8, "cols": 8}, "skip_zero_weights": False, "source": "test value",
    },
    "sram": {"size": "1 MiB", "activation_reserve": "1 KiB", "read_energy": "1 pJ/B",
             "write_energy": "1 pJ/B", "leakage": "1 mW", "source": "test value"},
    "offchip": {"kind": "dram", "bandwidth": "1 GB/s", "latency": "0 ns", "burst": "1 B",
                "read_energy": "10 pJ/bit", "write_energy": "10 pJ/bit", "source": "test value"},
    "energy": {"reference_node_nm": 45, "reference_vdd_v": 0.9,
               "mac": {"int8": "0.2 pJ", "int4": "0.1 pJ", "fp16": "1 pJ", "binary": "0.03 pJ"},
               "index_decode": "0 pJ", "source": "Horowitz ISSCC 2014 (docs/references.md B1)"},
    "prefetch": {"depth": 2, "source": "test value"},
    "formats": ["dense", "bitmap", "csr", "csc", "rle", "signed_binary", "nested"],
}


def tiny_config(*, sram: str | int = "1 MiB", overrides: Sequence[str] = (), **sections: Any):
    """The tiny HardwareConfig with ``sram`` for weights (plus 1 KiB for activations).

    Extra keyword arguments replace whole keys of the raw config (e.g. ``clock="500 MHz"``).
    """
    from edgesim.config import config_from_dict
    raw = copy.deepcopy(TINY_CONFIG)
    from edgesim.units import parse_quantity
    size = (parse_quantity(sram, "size", where="tiny_config: sram") if isinstance(sram, str)
            else sram)
    raw["sram"]["size"] = f"{size + 1024} B"
    raw.update(sections)
    return config_from_dict(raw, overrides=overrides, file="tiny.yaml")


def tiny_workload(inputs: int = 1) -> Workload:
    """conv ``a`` (1000 weight bytes, 64,000 MACs) -> relu -> linear ``b`` (2000 bytes, 2,000 MACs).

    Activations: 100 bytes in, 100 between, 10 out (int8).
    """
    blocks = [
        WeightBlock("a.weight", 1000, 1000, 8, "dense", 1000, 1000),
        WeightBlock("b.weight", 2000, 2000, 8, "dense", 2000, 2000),
    ]
    ops = [
        LayerOp("a", "conv", ("a.weight",), 100, 100, 200, 64_000, 64_000, "int8",
                (("N", 1), ("K", 8), ("C", 8), ("R", 1), ("S", 1), ("P", 10), ("Q", 100))),
        LayerOp("relu", "act", (), 100, 100, 200, 0, 0, "int8"),
        LayerOp("b", "linear", ("b.weight",), 100, 10, 110, 2_000, 2_000, "int8",
                (("M", 1), ("N", 8), ("K", 250))),
    ]
    return Workload.single_path("tiny", "dense", blocks, ops, inputs, {"precision": "int8"})


def stderr_lines(err: str) -> list[str]:
    """The lines of a command's stderr that are not progress: the CLI prints one
    ``edgesim: <stage>`` line per stage that does work (building, tracing, routing), before
    any error (``edgesim: error: ...``).

    >>> stderr_lines("edgesim: tracing m\\nedgesim: error: bad\\n")
    ['edgesim: error: bad']
    """
    return [ln for ln in err.strip().splitlines()
            if ln.startswith("edgesim: error:") or not ln.startswith("edgesim: ")]


def error_line(err: str) -> str:
    """The one line a failed command printed on stderr besides its stage lines; an
    ``AssertionError`` when there is a traceback or more than one such line.

    >>> error_line("edgesim: tracing m\\nedgesim: error: bad\\n")
    'edgesim: error: bad'
    """
    assert "Traceback" not in err, err
    lines = stderr_lines(err)
    assert len(lines) == 1, err
    return lines[0]


_MODELS: dict[tuple, Any] = {}


def under_thread_counts(make: Callable[[], Any], counts: Sequence[int] = (1, 2)) -> list[Any]:
    """``make()`` once per thread count in ``counts``: torch's intra-op threads and, where
    threadpoolctl is installed, the BLAS libraries' limit; torch's count is restored after.
    A test of a decision that must not hang on how BLAS splits its sums compares the results."""
    import contextlib

    import torch
    try:
        limits = __import__("threadpoolctl").threadpool_limits
    except ImportError:
        limits = None
    threads = torch.get_num_threads()
    out = []
    try:
        for n in counts:
            torch.set_num_threads(n)
            with limits(limits=n) if limits is not None else contextlib.nullcontext():
                out.append(make())
    finally:
        torch.set_num_threads(threads)
    return out


def registry_model(spec, weights: str | None = None, seed: int = 0, level: int | None = None,
                   data: str | None = None):
    """``build._build``'s model for registry ``spec`` (a ModelSpec or its name), built once per
    test session: the full-size factories (Mix-and-Match pruning of ResNet-50 and Swin-Tiny,
    the trees) take 30-70 s each, and several test files check the same model. Only for models
    that tracing and routing leave unchanged (``build`` traces in eval mode and never trains a
    built model); a test that mutates one must build its own."""
    from edgesim.build import built_model
    from edgesim.zoo.registry import get_family, get_spec

    spec = get_spec(spec) if isinstance(spec, str) else spec
    key = (repr(spec), weights, seed, level, data)
    if key not in _MODELS:       # as build._build (which tests may replace by this function)
        model = built_model(spec, weights, seed, data)
        _MODELS[key] = get_family(spec.family).select_level(spec, model, level).eval()
    return _MODELS[key]
