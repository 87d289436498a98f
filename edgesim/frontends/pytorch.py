"""The PyTorch front-end: registry models and ``package.module:factory`` models.

Public names: ``spec_of``, ``catalogue``, ``routes``, ``workload_key``, ``route_key``,
``spec_encodings``.

A registry model is built from its factory with seeded weights (or the user's ``--weights``),
transformed by its family, and traced once (``edgesim.build``); the traced path catalogue is
cached by ``workload_key``, and the registry models ship theirs inside the package, so their
first run imports no torch. A routed model routes its inputs in batches (``routes``), each
batch cached by ``route_key``.

The input shape a model is traced at: ``--input-shape`` when given; else, with ``--data`` of
the model's rank, the data's shape; else the factory's ``input_shape`` attribute (a user
model) or the registered shape.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgesim import cache
from edgesim.errors import DataError, ModelError
from edgesim.progress import Progress
from edgesim.request import ModelRequest, check_data
from edgesim.workload import Workload

__all__ = ["catalogue", "route_key", "routes", "spec_encodings", "spec_of", "workload_key"]


def spec_of(req: ModelRequest):
    """The ``ModelSpec`` of ``req``: the registered one, or an ad-hoc spec for a factory, at
    the input shape the request means (see the module docstring). Refuses ``--data`` for a
    model that does not read it."""
    from edgesim.zoo.registry import get_spec
    spec = get_spec(req.name)
    if req.data is not None and not spec.dynamic and not req.evaluate and req.weights is None:
        raise DataError(f"--data {req.data}: model '{spec.name}' does not use input data (only "
                        "routed models route their inputs; every input of a "
                        f"{spec.family} model moves the same weights); drop --data, add "
                        "--eval to measure its top-1 on labelled data, or give --weights "
                        "to transform your checkpoint calibrated on it")
    check_data(req)
    _check_level(spec, req.level)
    shape = req.input_shape
    if shape is None and req.data is not None:
        shape = _data_shape(req.data, len(spec.input_shape))
    if shape is not None and tuple(shape) != tuple(spec.input_shape):
        spec = dataclasses.replace(spec, input_shape=tuple(shape))
    return spec


def _check_level(spec, level: int | None) -> None:
    """A nested level the registry already says is out of range is refused before the model is
    built (the build itself checks factories, whose levels are known only once built)."""
    from edgesim.zoo.registry import REGISTRY
    if level is None or REGISTRY.get(spec.name) is not spec:
        return
    if spec.family != "nested":
        raise ModelError(f"model {spec.name} has no nesting levels; model.level={level} "
                         "applies to nested models only")
    n = spec.kwargs.get("levels")
    if isinstance(n, int) and level > n:
        raise ModelError(f"model {spec.name}: level {level} out of range 1..{n}")


def _data_shape(data: str, rank: int) -> tuple[int, ...] | None:
    """The per-input shape of a data file holding a batch of the model's ``rank`` (read from
    the array header of a ``.npy`` / ``.npz`` without loading it; a ``.pt`` is loaded), or
    None (a folder of images, or another rank: the loader checks it)."""
    from pathlib import Path
    p = Path(data)
    if p.is_dir():
        return None
    try:
        if p.suffix == ".npy":
            with p.open("rb") as fh:
                shape = _npy_shape(fh)
        elif p.suffix == ".npz":
            import zipfile
            with zipfile.ZipFile(p) as zf, zf.open("x.npy") as fh:
                shape = _npy_shape(fh)
        else:
            return None     # .pt: the loader reads it (torch), shape checked there
    except Exception:       # unreadable: the loader says why, in one line
        return None
    return tuple(int(d) for d in shape[1:]) if len(shape) == rank + 1 else None


def _npy_shape(fh) -> tuple[int, ...]:
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    return read(fh)[0]


def workload_key(spec, *, precision: str = "int8", weights: str | None = None, seed: int = 0,
                 level: int | None = None, calibration: str | None = None) -> str:
    """The cache key of ``spec``'s traced Workload (path catalogue): by model, factory and
    kwargs, precision, candidate encodings, seed, level, the content of the checkpoint and
    calibration data files, and the input shape where it is not the registered one."""
    from edgesim.zoo.registry import REGISTRY
    parts = {"model": spec.name, "factory": spec.factory, "kwargs": dict(spec.kwargs),
             "precision": precision, "candidates": tuple(spec_encodings(spec)),
             "weights": cache.file_fingerprint(weights), "seed": seed, "level": level}
    if calibration is not None:
        parts["calibration"] = cache.file_fingerprint(calibration)
    source = _user_source(spec)
    if source is not None:
        parts["source"] = source
    registered = REGISTRY.get(spec.name)
    if registered is None or tuple(registered.input_shape) != tuple(spec.input_shape):
        parts["input_shape"] = list(spec.input_shape)
    return cache.make_key("workload", parts)


def spec_encodings(spec, formats: Sequence[str] | None = None) -> list[str]:
    """The model's preferred encodings (``spec.encodings``; dense when it names none), limited
    to ``formats`` (what a hardware decodes; None: all) with the dense fallback of
    ``edgesim.encodings.decodable``."""
    from edgesim.encodings import decodable
    return decodable(list(getattr(spec, "encodings", ()) or ("dense",)), formats)


def _user_source(spec) -> str | None:
    """For a user model (``package.module:factory``, not in the registry), the content
    fingerprint of its factory's module file, so a model edited in place is traced afresh
    (the module is already imported: ``get_spec`` read its ``input_shape``). Modules it
    imports in turn are not fingerprinted."""
    from edgesim.zoo.registry import REGISTRY
    if spec.name in REGISTRY:
        return None
    module = sys.modules.get(spec.factory.partition(":")[0])
    path = getattr(module, "__file__", None)
    return cache.file_fingerprint(path) if path else None


def catalogue(req: ModelRequest, spec, *, precision: str, use_cache: bool,
              progress: Progress) -> tuple[str, Workload]:
    """``(key, Workload)``: the traced path catalogue of ``spec`` (one input), from the cache
    (or the shipped traces) or traced now."""
    # a user's checkpoint is transformed (pruned, nested, binarised, made a tree) calibrated
    # on --data when given (``Family.build``)
    calibration = req.data if req.weights is not None else None
    key = workload_key(spec, precision=precision, weights=req.weights, seed=req.seed,
                       level=req.level, calibration=calibration)

    def trace() -> Workload:
        progress.stage(f"building and tracing {spec.name} (once; cached afterwards)")
        from edgesim import build
        t0 = time.perf_counter()
        cat = build.build_workload(spec, precision=precision, act_bits=8,
                                   encodings=tuple(spec_encodings(spec)), weights=req.weights,
                                   seed=req.seed, level=req.level, calibration=calibration)
        n = len(cat.paths)
        progress.stage(f"traced {spec.name} in {time.perf_counter() - t0:.1f} s "
                       f"({n} path{'s' if n > 1 else ''})")
        return cat

    return key, cache.cached("workload", key, trace, use_cache=use_cache,
                             valid=lambda w: isinstance(w, Workload))


def route_key(workload_key: str, data_fp: str | None, seed: int, batch: int) -> str:
    """The cache key of routing batch ``batch`` (``build.route_batches``) of a stream: by the
    Workload's key, the data's fingerprint (None: the seeded synthetic stream) and seed."""
    return cache.make_key("route", workload_key, data_fp, seed, "batch", batch)


def routes(req: ModelRequest, spec, key: str, cat: Workload, *, inputs: int, use_cache: bool,
           progress: Progress) -> np.ndarray:
    """The path of each of ``inputs`` inputs of a routed model, cached per routing batch
    (``build.route_batches``): a stream reuses every batch an earlier stream of the same data
    and seed routed, whatever its length. A cached batch shorter than needed is routed again
    to the length needed."""
    from edgesim.build import route_batches
    data_fp = cache.file_fingerprint(req.data)
    plan = route_batches(inputs)
    keys = [route_key(key, data_fp, req.seed, b) for b, _ in plan]
    parts: list[np.ndarray | None] = []
    for k, (_, n) in zip(keys, plan, strict=True):
        got = cache.load("route", k) if use_cache else None
        parts.append(got[:n].astype(np.int32) if _valid_route(got, n, len(cat.paths)) else None)
    missing = [(i, plan[i]) for i, p in enumerate(parts) if p is None]
    if missing:
        todo = sum(n for _, (_, n) in missing)
        progress.stage(f"routing {todo} inputs through {spec.name} (once; cached afterwards)")
        from edgesim import build
        t0 = time.perf_counter()
        routed = build.route(spec, batches=[b for _, b in missing], data=req.data,
                             seed=req.seed, weights=req.weights, catalogue=cat,
                             progress=progress.of("route"))
        for (i, _), seq in zip(missing, routed, strict=True):
            parts[i] = seq
            if use_cache:
                cache.save("route", keys[i], seq)
        dt = time.perf_counter() - t0
        progress.stage(f"routed {todo} inputs in {dt:.1f} s ({todo / max(dt, 1e-9):.1f} "
                       "inputs/s)")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _valid_route(got: Any, n: int, paths: int) -> bool:
    return (isinstance(got, np.ndarray) and got.ndim == 1 and got.dtype.kind in "iu"
            and len(got) >= n and 0 <= got[:n].min() and got[:n].max() < paths)
