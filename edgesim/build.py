"""From a model spec to a Workload: build the nn.Module, prepare it as deployed, trace it.

Public names: ``build_workload``, ``trace_routed``, ``route``, ``route_batches``, ``evaluate``,
``example_input``, ``built_model``.

This is the one module of the pipeline that runs PyTorch; ``edgesim.api`` imports it only when a
Workload is not in the cache. It knows no model family: it calls the hooks of the spec's family
(``edgesim.zoo.family.Family``: build, routed, select_level, annotate, save_built / load_built).
Dense models are traced once. Routed models expose ``num_paths``, ``path_names()``,
``forward_path(x, i)`` and ``route(x)``: each path is traced once (the path catalogue) and inputs
are routed in one batched pass. ``evaluate`` counts the top-1 of the same built model on
labelled data, each input through the path its routers choose (nested models at their level).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgesim.errors import ConfigError, DataError, ModelError, TraceError
from edgesim.workload import Path, Workload

__all__ = ["build_workload", "built_model", "evaluate", "example_input", "route", "route_batches",
           "trace_routed"]

#: Inputs routed per batch when routing a stream.
ROUTE_BATCH = 64
#: Inputs per forward pass while routing: a routing batch runs as ROUTE_BATCH / ROUTE_PASS
#: passes, always the same split, so a batch's routes depend on its inputs only. Measured on
#: sigmab_r50 (512 inputs, one thread, heap_buffers): 11.4 images/s and 731 MiB peak RSS in
#: passes of 16 against 11.0/s and 2,363 MiB in passes of 64, the same paths.
ROUTE_PASS = 16
#: Inputs per forward pass when evaluating.
EVAL_BATCH = 64

#: Environment variable: torch threads for tracing, routing and evaluating (default 1). A
#: batch-1 trace gains nothing from more, and idle OpenMP threads spin: with the other core
#: busy the default two threads made a cold ResNet-50 run 2.7x slower (issue 12).
THREADS_ENV = "EDGESIM_TORCH_THREADS"


#: The most torch threads ``EDGESIM_TORCH_THREADS`` may ask for (OpenMP aborts the process,
#: with no message of ours, when asked for a billion).
MAX_THREADS = 1024

#: What each torch step is, in the line that says torch is missing (``edgesim.extras``).
_STEPS = {"build_workload": "tracing a PyTorch model",
          "route": "routing inputs through a routed tree beyond its shipped routes",
          "evaluate": "--eval (top-1 of the built model)"}


def torch_threads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with ``EDGESIM_TORCH_THREADS`` torch threads (default 1, at most
    ``MAX_THREADS``), then restore; without torch, one line naming the step
    (``edgesim.extras.require_torch``)."""
    step = _STEPS.get(fn.__name__, f"{fn.__name__.replace('_', ' ')}")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from edgesim.extras import require_torch
        raw = os.environ.get(THREADS_ENV, "1")
        try:
            n = int(raw) if len(raw) <= 12 else 0
        except ValueError:
            n = 0
        if not 1 <= n <= MAX_THREADS:
            shown = raw if len(raw) <= 30 else raw[:27] + "..."
            raise ConfigError(f"{THREADS_ENV}={shown!r}: expected a whole number of threads "
                              f"in 1..{MAX_THREADS}")
        torch = require_torch(step)
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(old)
    return wrapper


def _kind(spec) -> str:
    """``points`` for a ``(N, 3)`` input, else ``image`` (what ``edgesim.zoo.data`` reads)."""
    return "points" if spec.input_shape[-1] == 3 and len(spec.input_shape) == 2 else "image"


def example_input(spec, seed: int = 0):
    """One seeded random input of the model's shape, batch of one."""
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.randn((1, *spec.input_shape), generator=g)


#: Built routed models of this process, by (name, factory, kwargs, weights, seed): at most one.
_BUILT: dict[str, object] = {}


def built_model(spec, weights: str | None, seed: int, data: str | None = None):
    """The built nn.Module of ``spec``: for a routed model from this process, the on-disk cache
    or its family's ``build`` (slowest); other models are built afresh (their Workload is what
    is cached).

    Routed trees cost tens of seconds to calibrate; routing a new input stream reuses them. The
    returned routed model is shared with later calls: callers must not change it (tracing reads
    its weights, folding BatchNorm in the trace, and routing only runs it; ``finetune`` trains a
    copy). The disk entry is the family's plain-data format (``save_built`` / ``load_built``,
    no pickled code); a corrupt or foreign entry is a miss and is rebuilt.
    """
    from edgesim import cache
    from edgesim.zoo.registry import get_family

    family = get_family(spec.family)
    if not family.routed(spec):
        return family.build(spec, weights, seed, data)
    key = cache.make_key("model", spec.name, spec.factory, dict(spec.kwargs),
                         cache.file_fingerprint(weights), seed, cache.file_fingerprint(data))
    model = _BUILT.get(key)
    if model is None:
        models = cache.folder("model")     # None: not a private folder of ours, no cache
        path = None if models is None else models / f"{key}.pt"
        if path is not None and path.is_file():
            model = family.load_built(path)
        if model is None:
            model = family.build(spec, weights, seed, data)
            try:
                if path is None:
                    raise OSError("no private model cache folder")
                tmp = path.with_suffix(".tmp")
                if family.save_built(model, tmp):
                    os.chmod(tmp, 0o600)   # owner-only, like every other cache entry
                    tmp.replace(path)
            except OSError:
                pass
        _BUILT.clear()  # keep one model: they are large
        _BUILT[key] = model
    return model


def _build(spec, weights: str | None, seed: int, level: int | None, data: str | None = None):
    from edgesim.zoo.registry import get_family

    model = built_model(spec, weights, seed, data)
    return get_family(spec.family).select_level(spec, model, level).eval()


@torch_threads
def build_workload(spec, *, precision: str = "int8", act_bits: int = 8,
                   encodings: Sequence[str] = ("dense",), weights: str | None = None,
                   seed: int = 0, level: int | None = None,
                   calibration: str | None = None) -> Workload:
    """Trace ``spec`` into a Workload with one input (dense) or the path catalogue (routed).

    ``calibration`` is the data (``--data``) a family's transform calibrates on when it is
    applied to a user's checkpoint (``Family.build``'s ``data``)."""

    from edgesim.trace import record
    from edgesim.zoo.registry import get_family

    family = get_family(spec.family)
    model = _build(spec, weights, seed, level, calibration)   # factories may train: grads on
    x = example_input(spec, seed)
    meta = {"precision": precision, "act_bits": act_bits, "encodings": list(encodings),
            "params": dict(spec.kwargs), "seed": seed, "level": level}
    try:
        if not family.routed(spec):
            # as deployed: BatchNorm folded by the trace's own pass, the model left as built
            blocks, ops = record(model, x, precision=precision, act_bits=act_bits,
                                 encodings=encodings, fold_bn=True)
            blocks = family.annotate(blocks, model)
            return Workload.single_path(spec.name, spec.family, blocks, ops, 1, meta)
        return trace_routed(model, x, name=spec.name, family=spec.family, meta=meta,
                            precision=precision, act_bits=act_bits, encodings=encodings)
    except (TraceError, ModelError):
        raise
    except Exception as exc:  # a model that fails while being traced
        raise TraceError(f"tracing {spec.name} failed: {type(exc).__name__}: {exc}") from exc


def trace_routed(model, x, *, name: str, family: str, meta: dict | None = None,
                 precision: str = "int8", act_bits: int = 8,
                 encodings: Sequence[str] = ("dense",),
                 sequence: np.ndarray | None = None) -> Workload:
    """The path catalogue of a routed ``model`` (``num_paths``, ``path_names()``,
    ``forward_path``): each path traced once on ``x`` with BatchNorm folded (by the trace,
    ``model`` is neither changed nor copied), blocks shared between paths kept once in
    first-use order, the tree's own parameter counts as deployed (BN folded, its pairs found by
    structure: ``deploy.find_bn_pairs``) in ``meta["tree"]``; ``sequence`` is the path per
    input (default: none yet)."""
    from edgesim.trace import record
    from edgesim.zoo.deploy import find_bn_pairs, skeleton

    catalogue: dict[str, object] = {}
    paths = []
    names = model.path_names()
    for i in range(model.num_paths):
        def forward(inp, i=i):
            return model.forward_path(inp, i)
        blocks, ops = record(model, x, forward=forward, precision=precision,
                             act_bits=act_bits, encodings=encodings, fold_bn=True)
        for b in blocks:
            catalogue.setdefault(b.id, b)
        paths.append(Path(str(names[i]), tuple(ops), {"index": i}))
    meta = {"precision": precision, "act_bits": act_bits, "encodings": list(encodings),
            **(meta or {})}
    meta["tree"] = {k: v for k, v in skeleton(model, find_bn_pairs(model)).param_counts().items()
                    if k != "nodes"} if hasattr(model, "param_counts") else {}
    seq = np.zeros(0, dtype=np.int32) if sequence is None else sequence
    return Workload(name, family, catalogue, tuple(paths), seq, meta)


def route_batches(inputs: int) -> list[tuple[int, int]]:
    """``(batch index, inputs in it)`` of a stream of ``inputs``: batches of ``ROUTE_BATCH``,
    the last one partial. Batch b is the same inputs in every stream that reaches it (a prefix
    when partial), so a route cache kept per batch serves any ``--inputs N``."""
    return [(b, min(ROUTE_BATCH, inputs - b * ROUTE_BATCH))
            for b in range(-(-inputs // ROUTE_BATCH))]


@torch_threads
def route(spec, *, batches: Sequence[tuple[int, int]], data: str | None, seed: int,
          weights: str | None, catalogue: Workload,
          progress: Callable[[int, int], None] | None = None) -> list[np.ndarray]:
    """Path index per input of each ``(batch index, count)`` of ``batches`` (``route_batches``):
    the first ``count`` inputs of batch b, from ``data`` (a file or folder: its inputs
    ``b * ROUTE_BATCH`` on) or a seeded clustered synthetic stream (batch b drawn whole with
    seed + 1 + b, then cut: memory stays bounded for long streams), in forward passes of
    ``ROUTE_PASS`` inputs. ``progress(done, total)`` after each pass."""
    import torch

    from edgesim.zoo import data as mdata
    from edgesim.zoo.memory import heap_buffers

    # a user's checkpoint is transformed calibrated on the same data (``api.workload``)
    model = _build(spec, weights, seed, None, data if weights is not None else None)
    kind = _kind(spec)
    x = None
    if data is not None:
        x = mdata.load_inputs(data, kind=kind, shape=tuple(spec.input_shape))
        need = max((b * ROUTE_BATCH + n for b, n in batches), default=0)
        if x.shape[0] < need:
            raise DataError(f"{data}: holds {x.shape[0]} inputs, --inputs asks for {need}")

    def batch(b: int, n: int):
        if x is not None:
            return x[b * ROUTE_BATCH:b * ROUTE_BATCH + n]
        if kind == "points":
            full = mdata.synthetic_points(ROUTE_BATCH, points=spec.input_shape[0],
                                          seed=seed + 1 + b)[0]
        else:
            full = mdata.synthetic_images(ROUTE_BATCH, shape=tuple(spec.input_shape),
                                          seed=seed + 1 + b)[0]
        return full[:n]

    out = []
    total = sum(n for _, n in batches)
    routed = 0
    # one heap scope over all the batches: each reuses the memory of the one before instead of
    # fresh mmaps faulted in page by page (sigmab_r50, 128 inputs: 0.16 M minor page faults,
    # 0.67 M with a scope per route() call, 5.0 M with none; benchmarks/bench_route.py)
    with torch.no_grad(), heap_buffers():
        for b, n in batches:
            xb = batch(b, n)
            passes = [np.zeros(0, dtype=np.int32)]
            for s in range(0, n, ROUTE_PASS):
                passes.append(model.route(xb[s:s + ROUTE_PASS]).cpu().numpy().reshape(-1))
                if progress:     # per pass: a few seconds each on a large model
                    progress(min(routed + s + ROUTE_PASS, routed + n), total)
            seq = np.concatenate(passes).astype(np.int32)
            if seq.shape != (n,):
                raise ModelError(f"{spec.name}: route() gave {seq.shape[0]} paths for a batch "
                                 f"of {n} inputs")
            if n and (seq.min() < 0 or seq.max() >= len(catalogue.paths)):
                raise ModelError(f"{spec.name}: routing gave path {seq.max()} but the "
                                 f"catalogue has {len(catalogue.paths)} paths")
            out.append(seq)
            routed += n
    return out


def _logits(spec, out, batch: int):
    """The ``(batch, classes)`` logits of a model output, or ``ModelError`` saying what it was."""
    import torch
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]   # (logits, extras...) as some models return
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"{spec.name}: the model gives {shape} for a batch of {batch}; "
                         "top-1 needs logits of shape (batch, classes)")
    return out


@torch_threads
def evaluate(spec, *, data: str, weights: str | None = None, seed: int = 0,
             level: int | None = None, inputs: int | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Top-1 of ``spec``'s built model over the labelled ``data`` (the first ``inputs`` of it).

    The model is the one the trace and the routing use (``built_model``, a user's checkpoint
    transformed calibrated on ``data``, nested ``level`` selected, eval mode). A routed model runs
    each input through its one path: ``route(x)``, then ``forward_path`` of the chosen path on
    the inputs that took it. Labels are checked against the model's output width before any
    input is counted. ``progress(done, total)`` is called after each batch of ``EVAL_BATCH``.
    Returns ``{"top1": correct / n, "correct": correct, "inputs": n}``.
    """
    import torch

    from edgesim.zoo import data as mdata
    from edgesim.zoo.registry import get_family

    x, y = mdata.load_labelled(data, kind=_kind(spec), shape=tuple(spec.input_shape))
    if inputs is not None:
        if x.shape[0] < inputs:
            raise DataError(f"{data}: holds {x.shape[0]} labelled inputs, --inputs asks for "
                            f"{inputs}")
        x, y = x[:inputs], y[:inputs]
    model = _build(spec, weights, seed, level, data if weights is not None else None)
    routed = get_family(spec.family).routed(spec)
    n, correct = int(x.shape[0]), 0

    def forward(xb):
        if not routed:
            return _logits(spec, model(xb), xb.shape[0])
        paths = model.route(xb).long().flatten()
        out = None
        for i in torch.unique(paths).tolist():
            rows = (paths == i).nonzero().flatten()
            part = _logits(spec, model.forward_path(xb[rows], int(i)), len(rows))
            if out is None:
                out = part.new_empty((xb.shape[0], part.shape[1]))
            out[rows] = part
        return out

    from edgesim.zoo.memory import heap_buffers
    try:   # one heap scope: each batch reuses the buffers of the one before (see ``route``)
        with torch.no_grad(), heap_buffers():
            for start in range(0, n, EVAL_BATCH):
                logits = forward(x[start:start + EVAL_BATCH])
                if start == 0:
                    mdata.check_classes(data, y, int(logits.shape[1]))
                yb = y[start:start + EVAL_BATCH]
                correct += int((logits.argmax(dim=1) == yb).sum())
                if progress is not None:
                    progress(min(start + EVAL_BATCH, n), n)
    except (DataError, ModelError):
        raise
    except Exception as exc:   # a model that fails on the data's inputs
        raise ModelError(f"evaluating {spec.name} on {data} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    return {"top1": correct / n, "correct": correct, "inputs": n}
