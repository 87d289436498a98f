"""The Python API: the same verbs as the command line, returning DataFrames.

Public names: ``workload``, ``run``, ``evaluate``, ``models``, ``configs``, ``model_info``,
``Run``, ``parse_model_name``.

>>> from edgesim.testing import tiny_config, tiny_workload
>>> r = run(tiny_config(sram="1 MiB"), tiny_workload(inputs=2))
>>> list(r.inferences.weight_dram_bytes)
[3000, 0]

Tracing happens once per model and precision and is cached on disk (``edgesim.cache``); the
encodings and activation bytes a hardware uses are decided when simulating
(``edgesim.encodings.resolve``). With a cached Workload, ``run`` does not import torch; the
registry models ship traced inside the package (``edgesim.ship``), so their first run does
not either.

``evaluate`` (and ``run(..., evaluate=True)``) gives the top-1 accuracy of the built model on
labelled data (``edgesim.build.evaluate``), cached by model, weights, data, seed, level and
input count, so a repeated evaluation is a file read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesim import cache
from edgesim.encodings import resolve
from edgesim.errors import DataError, ModelError
from edgesim.outputs import input_file
from edgesim.sim import InferenceRow, LayerRow, Result, simulate
from edgesim.workload import Workload

__all__ = ["Run", "configs", "evaluate", "model_info", "models", "parse_model_name", "run",
           "workload"]

DEFAULT_INPUTS = 8


def parse_model_name(name: str) -> tuple[str, int | None]:
    """Split ``nested_r50@2`` into ``("nested_r50", 2)``; no suffix gives ``(name, None)``."""
    if "@" in name and ":" not in name.split("@", 1)[1]:
        base, _, level = name.rpartition("@")
        try:
            k = int(level)
        except ValueError:
            raise ModelError(f"model {name!r}: the part after '@' must be a whole level number, "
                             f"got {level!r}") from None
        if k < 1:
            raise ModelError(f"model {name!r}: level must be >= 1, got {k}")
        return base, k
    return name, None


def _spec(name: str):
    from edgesim.zoo.registry import get_spec
    return get_spec(name)


def workload(model: str, *, precision: str = "int8", act_bits: int | None = None,
             formats: Sequence[str] | None = None, inputs: int = 1, data: str | None = None,
             seed: int = 0, weights: str | None = None, level: int | None = None,
             use_cache: bool = True, progress: Callable[[str], None] | None = None,
             evaluate: bool = False,
             route_progress: Callable[[int, int], None] | None = None) -> Workload:
    """The Workload of a registered (or ``package.module:factory``) model on an input stream.

    The model is traced once per precision (and weights, seed, level) with its weights measured
    under every encoding it prefers and activations at 8 bits; ``formats`` (the weight encodings
    a hardware decodes) and ``act_bits`` then give it as that hardware stores it
    (``edgesim.encodings.as_stored``; None: as traced, the model's own preference at 8 bits).
    ``level`` selects a nested sub-network (also written ``name@K``). Routed models route
    ``inputs`` inputs (``data``: a .pt/.npy file or an image folder; default: a seeded clustered
    synthetic stream); other models repeat their one path ``inputs`` times. ``evaluate``: the
    ``data`` is labelled data being evaluated (``evaluate``), so any model may be given it.
    Routes are cached per routing batch (``_routes``); ``route_progress(done, total)`` reports
    inputs routed while routing runs, ``progress(msg)`` each stage that does work.
    """
    from edgesim.encodings import as_stored
    spec, level = _spec_level(model, level)
    check_inputs(spec, data=data, weights=weights, evaluate=evaluate)
    candidates = tuple(spec_encodings(spec, None))
    # a user's checkpoint is transformed (pruned, nested, binarised, made a tree) calibrated
    # on --data when given (``Family.build``)
    calibration = data if weights is not None else None
    key = workload_key(spec, precision=precision, weights=weights, seed=seed, level=level,
                       calibration=calibration)
    cat = cache.load("workload", key) if use_cache else None
    if cat is None:
        if progress:
            progress(f"building and tracing {spec.name} (once; cached afterwards)")
        from edgesim import build
        t0 = time.perf_counter()
        cat = build.build_workload(spec, precision=precision, act_bits=8, encodings=candidates,
                                   weights=weights, seed=seed, level=level,
                                   calibration=calibration)
        if progress:
            progress(f"traced {spec.name} in {time.perf_counter() - t0:.1f} s "
                     f"({len(cat.paths)} path{'s' if len(cat.paths) > 1 else ''})")
        if use_cache:
            cache.save("workload", key, cat)
    if len(cat.paths) == 1:
        return as_stored(cat.with_inputs(inputs), formats, act_bits)
    seq = _routes(spec, key, cat, inputs=inputs, data=data, seed=seed, weights=weights,
                  use_cache=use_cache, progress=progress, route_progress=route_progress)
    return as_stored(cat.with_sequence(seq, {"input": {"inputs": inputs, "data": data,
                                                       "seed": seed}}), formats, act_bits)


def workload_key(spec, *, precision: str = "int8", weights: str | None = None, seed: int = 0,
                 level: int | None = None, calibration: str | None = None) -> str:
    """The cache key of ``spec``'s traced Workload (path catalogue): by model, factory and
    kwargs, precision, candidate encodings, seed, level and the content of the checkpoint and
    calibration data files."""
    parts = {"model": spec.name, "factory": spec.factory, "kwargs": dict(spec.kwargs),
             "precision": precision, "candidates": tuple(spec_encodings(spec, None)),
             "weights": cache.file_fingerprint(weights), "seed": seed, "level": level}
    if calibration is not None:
        parts["calibration"] = cache.file_fingerprint(calibration)
    source = _user_source(spec)
    if source is not None:
        parts["source"] = source
    return cache.make_key("workload", parts)


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


def route_key(workload_key: str, data_fp: str | None, seed: int, batch: int) -> str:
    """The cache key of routing batch ``batch`` (``build.route_batches``) of a stream: by the
    Workload's key, the data's fingerprint (None: the seeded synthetic stream) and seed."""
    return cache.make_key("route", workload_key, data_fp, seed, "batch", batch)


def _routes(spec, key: str, cat: Workload, *, inputs: int, data: str | None, seed: int,
            weights: str | None, use_cache: bool, progress: Callable[[str], None] | None,
            route_progress: Callable[[int, int], None] | None) -> np.ndarray:
    """The path of each of ``inputs`` inputs of a routed model, cached per routing batch
    (``build.route_batches``): a stream reuses every batch an earlier stream of the same data
    and seed routed, whatever its length. A cached batch shorter than needed is routed again
    to the length needed."""
    from edgesim.build import route_batches
    data_fp = cache.file_fingerprint(data)
    plan = route_batches(inputs)
    keys = [route_key(key, data_fp, seed, b) for b, _ in plan]
    parts: list[np.ndarray | None] = []
    for k, (_, n) in zip(keys, plan, strict=True):
        got = cache.load("route", k) if use_cache else None
        ok = (isinstance(got, np.ndarray) and got.ndim == 1 and got.dtype.kind in "iu"
              and len(got) >= n and 0 <= got[:n].min() and got[:n].max() < len(cat.paths))
        parts.append(got[:n].astype(np.int32) if ok else None)
    missing = [(i, plan[i]) for i, p in enumerate(parts) if p is None]
    if missing:
        todo = sum(n for _, (_, n) in missing)
        if progress:
            progress(f"routing {todo} inputs through {spec.name} (once; cached afterwards)")
        from edgesim import build
        t0 = time.perf_counter()
        routed = build.route(spec, batches=[b for _, b in missing], data=data, seed=seed,
                             weights=weights, catalogue=cat, progress=route_progress)
        for (i, _), seq in zip(missing, routed, strict=True):
            parts[i] = seq
            if use_cache:
                cache.save("route", keys[i], seq)
        if progress:
            dt = time.perf_counter() - t0
            progress(f"routed {todo} inputs in {dt:.1f} s ({todo / max(dt, 1e-9):.1f} inputs/s)")
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _spec_level(model: str, level: int | None):
    """(spec, level) of a model name, ``name@K`` agreeing with ``level`` when both are given."""
    base, suffix_level = parse_model_name(model)
    if suffix_level is not None:
        if level is not None and level != suffix_level:
            raise ModelError(f"model {model!r}: level {suffix_level} in the name and "
                             f"model.level={level} disagree")
        level = suffix_level
    return _spec(base), level


def check_inputs(spec, *, data: str | None, weights: str | None,
                 evaluate: bool = False) -> None:
    """Refuse, before any work, ``--data`` for a model that does not read it and paths that
    cannot be what they are given as: ``data`` must exist (a file, or a folder of images),
    ``weights`` must be a file (a folder is refused without being walked). With ``evaluate``
    every model reads ``data`` (its labelled inputs), and ``data`` is required."""
    if evaluate and data is None:
        raise DataError("--eval needs --data LABELLED: a .pt of {'x': inputs, 'y': labels}, an "
                        ".npz, x.npy with y.npy, or an image folder with one sub-folder per class")
    if data is not None:
        if not spec.dynamic and not evaluate and weights is None:
            raise DataError(f"--data {data}: model '{spec.name}' does not use input data (only "
                            "routed models route their inputs; every input of a "
                            f"{spec.family} model moves the same weights); drop --data, add "
                            "--eval to measure its top-1 on labelled data, or give --weights "
                            "to transform your checkpoint calibrated on it")
        if not Path(data).exists():
            expected = ("labelled data: a .pt of {'x': inputs, 'y': labels}, an .npz, x.npy "
                        "with y.npy, or a folder of class sub-folders" if evaluate else
                        "a .pt/.npy tensor file or a folder of images")
            raise DataError(f"--data {data}: no such file or folder (expected {expected})")
        if not Path(data).is_dir():   # a FIFO or device: refused before anything opens it
            input_file(data, "--data")
    if weights is not None:
        p = Path(weights)
        if p.is_dir():
            raise ModelError(f"--weights {weights}: is a folder; expected a checkpoint file")
        if not p.is_file():
            raise ModelError(f"--weights {weights}: no such checkpoint file")


def spec_encodings(spec, formats: Sequence[str] | None) -> list[str]:
    """The model's preferred encodings (``spec.encodings``) limited to what the hardware
    decodes, with the dense fallback of ``edgesim.encodings.decodable``."""
    from edgesim.encodings import decodable
    return decodable(list(getattr(spec, "encodings", ()) or ("dense",)), formats)


def spec_family(spec) -> str:
    """The family a spec names (``dense`` for an object without one)."""
    return getattr(spec, "family", "dense")


def model_info(w: Workload) -> dict[str, Any]:
    """The model fields of a report: name, family, params, active params, stored and dense bytes.

    Stored bytes are those of ``w`` as given: pass the resolved Workload
    (``edgesim.encodings.resolve``) for what a hardware stores."""
    blocks = list(w.blocks.values())
    elements = sum(b.elements for b in blocks)
    nonzeros = sum(b.nonzeros for b in blocks)
    return {
        "name": w.name,
        "family": w.family,
        "total_params": w.total_params,
        "active_params": round(w.mean_path_params),
        "active_fraction": round(w.mean_path_params / w.total_params, 4) if w.total_params else 0,
        "paths": len(w.paths),
        "stored_weight_bytes": w.stored_bytes,
        "dense_weight_bytes": w.dense_bytes,
        "weight_sparsity": round(1 - nonzeros / elements, 4) if elements else 0.0,
        "precision": w.meta.get("precision"),
    }


@dataclass(frozen=True)
class Run:
    """One simulated stream: rows per inference (and per op), a summary, model and hardware.

    ``inferences`` and ``layers`` are DataFrames; ``result.rows`` the same rows as tuples.
    """

    result: Result
    model: dict[str, Any]
    hardware: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    #: ``evaluate``'s answer (top1, correct, inputs, data) when the run evaluated, else None.
    accuracy: dict[str, Any] | None = None

    @property
    def inferences(self):
        return self.result.inferences

    @property
    def layers(self):
        return self.result.layers

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.summary

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: ``model``, ``hardware``, ``inferences``, ``summary``, ``run``, and
        ``accuracy`` when the run evaluated (``top1``, ``correct``, ``inputs``, ``data``)."""
        out = {"model": self.model, "hardware": self.hardware,
               "inferences": _records(self.result.rows),
               "summary": self.summary, "run": self.meta}
        if self.accuracy is not None:
            out["accuracy"] = dict(self.accuracy)
        if self.result.layer_rows is not None:
            out["layers"] = _records(self.result.layer_rows)
        return out


def _records(rows: Sequence[InferenceRow | LayerRow]) -> list[dict[str, Any]]:
    def plain(v: Any) -> Any:
        v = v.item() if hasattr(v, "item") else v
        return None if isinstance(v, float) and v != v else v   # NaN -> null
    return [{c: plain(v) for c, v in zip(r._fields, r, strict=True)} for r in rows]


def run(config, model, *, inputs: int | None = None, policy: str = "lru",
        prefetch: str = "next", overrides: Sequence[str] = (), per_layer: bool = False,
        data: str | None = None, seed: int = 0, weights: str | None = None,
        memo: bool = True, progress: Callable[[str], None] | None = None,
        sim_progress: Callable[[int], None] | None = None, evaluate: bool = False,
        eval_progress: Callable[[int, int], None] | None = None,
        on_row: Callable[[InferenceRow], None] | None = None, keep_rows: bool = True,
        route_progress: Callable[[int, int], None] | None = None) -> Run:
    """Simulate ``model`` on ``config``.

    ``config`` is a YAML path or a HardwareConfig; ``model`` a registry name, a
    ``package.module:factory`` or a Workload (its own stream unless ``inputs`` is given).
    ``inputs`` defaults to 8 for a named model. ``overrides`` are ``--set``
    strings; ``model.level=K`` selects a nested level.

    ``evaluate``: ``data`` is labelled; the stream is its inputs (the first ``inputs`` when
    given, else all of them; a routed model routes them) and ``Run.accuracy`` their top-1
    (``evaluate``; ``eval_progress(done, total)`` while it runs).

    ``on_row`` receives each inference row as it is produced and ``keep_rows=False`` keeps
    none (``Run.inferences`` is then empty; the summary is built on the fly): a long stream in
    flat memory. ``progress(msg)`` gets a line per stage that does work (building, tracing,
    routing) and ``route_progress(done, total)`` the inputs routed so far.
    """
    from edgesim.config import HardwareConfig, load_config
    if isinstance(model, Workload):
        if data is not None or weights is not None or evaluate:
            flag = "--eval" if evaluate else "--data" if data is not None else "--weights"
            raise ModelError(f"{flag}: model {model.name!r} is given as a traced Workload, "
                             f"which {flag} cannot change; drop {flag}")
    else:   # flags that do nothing, and paths that cannot be read, before any work
        check_inputs(_spec(parse_model_name(model)[0]), data=data, weights=weights,
                     evaluate=evaluate)
    model_overrides = [o for o in overrides if o.startswith("model.")]
    hw_overrides = [o for o in overrides if not o.startswith("model.")]
    if isinstance(config, HardwareConfig):
        hw = config
        if hw_overrides:
            raise ModelError("overrides need a config file path, not a HardwareConfig")
    else:
        hw = load_config(config, hw_overrides)
    level = _model_level(model_overrides)
    accuracy = None
    if evaluate:
        accuracy = _accuracy(model, data=data, weights=weights, seed=seed, level=level,
                             inputs=inputs, progress=progress, eval_progress=eval_progress)
        inputs = accuracy["inputs"]
    if isinstance(model, Workload):
        w = model if inputs is None or len(model.paths) > 1 else model.with_inputs(inputs)
    else:
        w = workload(model, precision=hw.precision,
                     inputs=DEFAULT_INPUTS if inputs is None else inputs, data=data,
                     seed=seed, weights=weights, level=level, progress=progress,
                     evaluate=evaluate, route_progress=route_progress)
    w = resolve(w, hw)   # as ``hw`` stores it: the model header reports these bytes
    res: Result = simulate(hw, w, policy=policy, prefetch=prefetch, per_layer=per_layer,
                           memo=memo, progress=sim_progress, on_row=on_row,
                           keep_rows=keep_rows)
    return Run(res, model_info(w), hw.to_dict(),
               {"policy": policy, "prefetch": prefetch, "inputs": w.inputs, "seed": seed},
               accuracy)


#: Evaluations of this process, by cache key (a repeated call does not re-read the file).
_EVALS: dict[str, dict[str, Any]] = {}


def evaluate(model: str, *, data: str, weights: str | None = None, seed: int = 0,
             level: int | None = None, inputs: int | None = None, use_cache: bool = True,
             progress: Callable[[str], None] | None = None,
             eval_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Top-1 of ``model`` (a registry name, ``name@K`` or ``package.module:factory``) on the
    labelled ``data`` (``edgesim.zoo.data.load_labelled``: a .pt/.npz/.npy pair or a folder of
    class folders), over its first ``inputs`` inputs (None: all).

    The model is built as the trace builds it (``edgesim.build.evaluate``: routed models run
    each input through its one path, nested ones at ``level``). The answer is cached on disk
    by model, weights, data (content fingerprint), seed, level and ``inputs``: a repeated call
    does not import torch. Returns ``{"top1", "correct", "inputs", "data"}``; registry models
    without ``weights`` have seeded random weights, so their top-1 is chance level.
    """
    return _accuracy(model, data=data, weights=weights, seed=seed, level=level, inputs=inputs,
                     use_cache=use_cache, progress=progress, eval_progress=eval_progress)


def _accuracy(model: str, *, data: str, weights: str | None, seed: int, level: int | None,
              inputs: int | None, use_cache: bool = True,
              progress: Callable[[str], None] | None = None,
              eval_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """``evaluate`` (``run``'s ``evaluate`` argument hides the name there)."""
    spec, level = _spec_level(model, level)
    check_inputs(spec, data=data, weights=weights, evaluate=True)
    key = cache.make_key("eval", {"model": spec.name, "factory": spec.factory,
                                  "kwargs": dict(spec.kwargs),
                                  "weights": cache.file_fingerprint(weights),
                                  "data": cache.file_fingerprint(data), "seed": seed,
                                  "level": level, "inputs": inputs})
    got = _EVALS.get(key) if use_cache else None
    if got is None and use_cache:
        got = _cached_eval(key)
    if got is None:
        if progress:
            progress(f"evaluating {spec.name} on {data} (once; cached afterwards)")
        from edgesim import build
        got = build.evaluate(spec, data=data, weights=weights, seed=seed, level=level,
                             inputs=inputs, progress=eval_progress)
        got = {"top1": float(got["top1"]), "correct": int(got["correct"]),
               "inputs": int(got["inputs"])}
        if use_cache:
            cache.save("eval", key, got)
    if use_cache:
        _EVALS[key] = got
    return {**got, "data": str(data)}


def _cached_eval(key: str) -> dict[str, Any] | None:
    """A cached evaluation that is what ``evaluate`` writes, else None (a miss)."""
    got = cache.load("eval", key)
    if not isinstance(got, dict):
        return None
    n, c = got.get("inputs"), got.get("correct")
    if type(n) is not int or type(c) is not int or not 0 <= c <= n or n < 1:
        return None
    return {"top1": c / n, "correct": c, "inputs": n}


def _model_level(overrides: Sequence[str]) -> int | None:
    level = None
    for o in overrides:
        key, _, value = o.partition("=")
        if key != "model.level":
            raise ModelError(f"--set {o}: the only model setting is model.level=K")
        try:
            level = int(value)
        except ValueError:
            raise ModelError(f"--set {o}: model.level must be a whole number") from None
        if level < 1:
            raise ModelError(f"--set {o}: model.level must be >= 1")
    return level


def models(*, names: Sequence[str] | None = None,
           progress: Callable[[str], None] | None = None):
    """One row per registered model with its parameters and bytes (traces what is not cached)."""
    import pandas as pd

    from edgesim.zoo.registry import REGISTRY
    rows = []
    for name in names or list(REGISTRY):
        w = workload(name, progress=progress)
        rows.append(model_info(w))
    return pd.DataFrame(rows)


def configs():
    """One row per shipped hardware config (a DataFrame)."""
    import pandas as pd

    from edgesim.config import config_table
    return pd.DataFrame(config_table())
