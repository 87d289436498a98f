"""The Python API: the same verbs as the command line, returning DataFrames.

Public names: ``workload``, ``run``, ``sweep``, ``plot``, ``evaluate``, ``finetune``,
``models``, ``configs``, ``model_info``, ``module_workload``, ``Run``, ``parse_model_name``.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesim import cache
from edgesim.encodings import resolve
from edgesim.errors import DataError, ModelError
from edgesim.progress import Progress, as_progress
from edgesim.request import ModelRequest, model_request
from edgesim.sim import InferenceRow, LayerRow, Result, simulate
from edgesim.workload import Workload

__all__ = ["Run", "configs", "evaluate", "finetune", "model_info", "models", "module_workload",
           "parse_model_name", "plot", "run", "sweep", "workload"]

DEFAULT_INPUTS = 8


def parse_model_name(name: str) -> tuple[str, int | None]:
    """Split ``nested_r50@2`` into ``("nested_r50", 2)``; no suffix gives ``(name, None)``."""
    r = model_request(name) if "@" in name else None
    return (r.name, r.level) if r is not None else (name, None)


def _request(model: str | ModelRequest) -> ModelRequest:
    """``model`` as a checked ``ModelRequest`` (one given is taken as it is)."""
    return model if isinstance(model, ModelRequest) else model_request(model)


def workload(model: str | ModelRequest, *, precision: str = "int8",
             act_bits: int | None = None, formats: Sequence[str] | None = None,
             inputs: int = 1, use_cache: bool = True,
             progress: Progress | Callable[[str], None] | None = None) -> Workload:
    """The Workload of a model on an input stream: a registry name, ``name@K``,
    ``package.module:factory`` or a ``.tflite`` / ``.onnx`` file, or a ``ModelRequest``
    (``edgesim.model_request``: weights, seed, input shape, data) that says all of it.

    The model is traced (or its file imported) once, with its weights measured under every
    encoding it may use and activations at 8 bits; ``formats`` (the weight encodings a
    hardware decodes) and ``act_bits`` then give it as that hardware stores it
    (``edgesim.encodings.as_stored``; None: as traced). Routed models route ``inputs`` inputs
    (the request's ``data``: a .pt/.npy file or an image folder; default: a seeded clustered
    synthetic stream); other models repeat their one path ``inputs`` times. ``progress`` (a
    ``Progress`` or a ``say(line)``) hears of each stage that does work and of inputs routed.
    """
    from edgesim.encodings import as_stored
    from edgesim.frontends import files, pytorch
    req = _request(model)
    progress = as_progress(progress)
    if req.module is not None:
        w = module_workload(req.module, input_shape=req.input_shape, precision=precision,
                            seed=req.seed)
        return as_stored(w.with_inputs(inputs), formats, act_bits)
    if req.is_file:
        if req.data is not None:
            raise DataError(f"--data {req.data}: model {req.name} does not use input data "
                            "(an imported file has one path: every input moves the same "
                            "weights); drop --data")
        _, cat = files.catalogue(req, use_cache=use_cache, progress=progress)
        return as_stored(cat.with_inputs(inputs), formats, act_bits)
    spec = pytorch.spec_of(req)
    key, cat = pytorch.catalogue(req, spec, precision=precision, use_cache=use_cache,
                                 progress=progress)
    shape = {"input_shape": list(spec.input_shape)}
    if len(cat.paths) == 1:
        return as_stored(cat.with_sequence(np.zeros(inputs, dtype=np.int32), shape),
                         formats, act_bits)
    seq = pytorch.routes(req, spec, key, cat, inputs=inputs, use_cache=use_cache,
                         progress=progress)
    return as_stored(cat.with_sequence(seq, {**shape, "input": {
        "inputs": inputs, "data": req.data, "seed": req.seed}}), formats, act_bits)


def workload_key(spec, **kwargs: Any) -> str:
    """``edgesim.frontends.pytorch.workload_key``: the cache key of a traced Workload."""
    from edgesim.frontends.pytorch import workload_key as key
    return key(spec, **kwargs)


def route_key(workload_key: str, data_fp: str | None, seed: int, batch: int) -> str:
    """``edgesim.frontends.pytorch.route_key``: the cache key of one routing batch."""
    from edgesim.frontends.pytorch import route_key as key
    return key(workload_key, data_fp, seed, batch)


def spec_encodings(spec, formats: Sequence[str] | None) -> list[str]:
    """``edgesim.frontends.pytorch.spec_encodings``: the model's encodings a hardware decodes."""
    from edgesim.frontends.pytorch import spec_encodings as encodings
    return encodings(spec, formats)


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


def _input_shape(w: Workload) -> list[int] | None:
    """The per-input shape a Workload was traced or imported at, when it says."""
    shape = w.meta.get("input_shape") or (w.meta.get("input") or {}).get("shape")
    return [int(d) for d in shape] if isinstance(shape, (list, tuple)) else None


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


def module_workload(model: Any, *, input_shape: Sequence[int] | str | None = None,
                    precision: str = "int8", seed: int = 0) -> Workload:
    """The one-path Workload of an ``nn.Module`` object, traced at ``input_shape`` (without
    the batch; default: the module's ``input_shape`` attribute) on one seeded random input,
    BatchNorm folded as deployed. Not cached (an object has no name to key it by): for a
    model traced once and reused, give ``package.module:factory`` instead."""
    from edgesim.errors import TraceError
    from edgesim.request import parse_input_shape
    name = type(model).__name__
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    if shape is None:
        raise ModelError(f"model (a {name} object): give its input shape without the batch, "
                         "run(..., input_shape=(3, 32, 32)), or set model.input_shape")
    shape = parse_input_shape(shape)
    import torch

    from edgesim.trace import record
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((1, *shape), generator=g)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            blocks, ops = record(model, x, precision=precision, act_bits=8,
                                 encodings=("dense",), fold_bn=True)
    except (TraceError, ModelError):
        raise
    except Exception as exc:  # a model that fails while being traced
        raise TraceError(f"tracing a {name} object at input {'x'.join(map(str, shape))} "
                         f"failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
                         ) from exc
    finally:
        model.train(was_training)
    return Workload.single_path(name, "dense", blocks, ops, 1, {
        "precision": precision, "act_bits": 8, "encodings": ["dense"], "seed": seed,
        "input_shape": list(shape)})


def run(config, model, *, inputs: int | None = None, policy: str = "lru",
        overrides: Sequence[str] = (), per_layer: bool = False,
        progress: Progress | Callable[[str], None] | None = None,
        rows: bool | Callable[[InferenceRow], None] = True) -> Run:
    """Simulate ``model`` on ``config``.

    ``config`` is a YAML path or a HardwareConfig; ``model`` a registry name, a
    ``package.module:factory``, a ``.tflite`` / ``.onnx`` file, a ``torch.nn.Module`` object
    (traced as it is at its ``input_shape`` attribute), a ``ModelRequest`` that says the rest
    (``edgesim.model_request``: weights, seed, the input shape, data, evaluate; for a module
    object its input shape and seed), or a Workload (its own stream unless ``inputs`` is
    given). ``inputs`` defaults to 8 for a named model or a module. ``overrides`` are
    ``--set`` strings; ``model.level=K`` selects a nested level, ``prefetch.mode=none`` (or
    ``next``, ``speculative``: the hardware's DMA) whether weights are fetched ahead.

    >>> import torch.nn as nn
    >>> from edgesim import model_request
    >>> net = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
    >>> r = run("npu_small", model_request(net, input_shape=(64,)))
    >>> int(r.inferences.weight_dram_bytes[0]), r.model["name"]
    (2304, 'Sequential')

    (64 x 32 int8 weights, 32 int32 biases and 32 fp32 per-channel scales: 2048 + 128 + 128.)

    A request with ``evaluate``: its ``data`` is labelled; the stream is its inputs (the first
    ``inputs`` when given, else all of them; a routed model routes them) and ``Run.accuracy``
    their top-1.

    ``per_layer`` also keeps one row per op of each distinct inference (``Run.layers``).
    ``rows``: True keeps every inference row (``Run.inferences``); False keeps none (the
    summary is built on the fly: a long stream in flat memory); a callable receives each row
    as it is produced and none is kept. ``progress`` (``edgesim.progress.Progress``, or a
    ``say(line)``) hears of each stage that does work and counts inputs routed and evaluated
    and inferences run. An inference whose situation repeats is taken from the engine's memo
    (the same rows; ``EDGESIM_NO_MEMO=1`` runs every one, ``edgesim.sim.engine.simulate``).
    """
    from edgesim.checked_configs import load as load_config  # a shipped config: no YAML read
    from edgesim.hardware import HardwareConfig
    progress = as_progress(progress)
    model_overrides = [o for o in overrides if o.startswith("model.")]
    hw_overrides = [o for o in overrides if not o.startswith("model.")]
    if isinstance(model, Workload):
        req = None
    else:   # flags that do nothing, and paths that cannot be read, before any work
        level = _model_level(model_overrides)
        req = _request(model)
        if level is not None:
            if req.module is not None:
                raise ModelError(f"model.level={level}: model (a {req.name} object) has no "
                                 "nested levels to select")
            req = model_request(req.name, level=req.level if req.level is not None else level,
                                weights=req.weights, seed=req.seed,
                                input_shape=req.input_shape, data=req.data,
                                evaluate=req.evaluate)
            if req.level != level:
                raise ModelError(f"model {model!r}: level {req.level} in the name and "
                                 f"model.level={level} disagree")
        if not req.is_file and req.module is None:
            from edgesim.frontends.pytorch import spec_of
            spec_of(req)
    if isinstance(config, HardwareConfig):
        hw = config
        if hw_overrides:
            raise ModelError("overrides need a config file path, not a HardwareConfig")
    else:
        hw = load_config(config, hw_overrides)
    accuracy = None
    if req is not None and req.evaluate:
        accuracy = _accuracy(req, inputs=inputs, progress=progress)
        inputs = accuracy["inputs"]
    if req is None:
        w = model if inputs is None or len(model.paths) > 1 else model.with_inputs(inputs)
    else:
        w = workload(req, precision=hw.precision,
                     inputs=DEFAULT_INPUTS if inputs is None else inputs, progress=progress)
    w = resolve(w, hw)   # as ``hw`` stores it: the model header reports these bytes
    res: Result = simulate(hw, w, policy=policy, prefetch=hw.prefetch_mode,
                           per_layer=per_layer, progress=progress.of("simulate"),
                           on_row=rows if callable(rows) else None, keep_rows=rows is True)
    return Run(res, model_info(w), hw.to_dict(),
               {"policy": policy, "prefetch": hw.prefetch_mode, "inputs": w.inputs,
                "seed": 0 if req is None else req.seed, "input_shape": _input_shape(w)},
               accuracy)


def sweep(config, models: Sequence[Any], grid: Sequence[str] = (), **options: Any):
    """``edgesim.sweep.sweep``: every (grid point, model, policy), resumable, as a DataFrame
    (also ``out_dir/sweep.csv``). ``models``: names, files, Workloads or ``model_request``s
    (a model's seed, weights, data, evaluate). ``grid`` are ``--set`` specs
    (``prefetch.mode=none,next`` sweeps the prefetch mode); ``options`` are that function's
    named arguments (``out_dir`` required; ``policies``, ``inputs``, ``executor``: "process",
    "serial", "dask", a Dask scheduler address or an ``ExecutorSpec`` with workers;
    ``detail``, ``progress``). From a script, no ``if __name__ == "__main__":`` guard is
    needed: the worker processes never re-run it.

    >>> import tempfile
    >>> from edgesim.testing import TINY_CONFIG, tiny_workload
    >>> df = sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
    ...            out_dir=tempfile.mkdtemp(), executor="serial")
    >>> df["weight_dram_bytes_steady"].tolist()   # 3000 B of weights: 4 KiB holds them all
    [2000.0, 0.0]
    """
    from edgesim.sweep.run import sweep as run_sweep
    return run_sweep(config, models, grid, **options)


def plot(kind: str, source, **options: Any):
    """``edgesim.plot.plot``: draw ``kind`` (``pareto``, ``bytes-vs-sram``,
    ``energy-breakdown`` of a sweep folder; ``timeline`` of a ``run --timeline`` CSV) as
    PNG and SVG; returns the two paths. ``options``: ``x``, ``y``, ``out``, ``input_index``."""
    from edgesim.plot import plot as draw
    return draw(kind, source, **options)


#: Evaluations of this process, by cache key (a repeated call does not re-read the file).
_EVALS: dict[str, dict[str, Any]] = {}


def evaluate(model: str | ModelRequest, data: str | None = None, *,
             inputs: int | None = None, use_cache: bool = True,
             progress: Progress | Callable[[str], None] | None = None) -> dict[str, Any]:
    """Top-1 of ``model`` (a registry name, ``name@K``, ``package.module:factory``, or a
    ``ModelRequest`` with its weights, seed and data) on the labelled ``data``
    (``edgesim.zoo.data.load_labelled``: a .pt/.npz/.npy pair or a folder of class folders),
    over its first ``inputs`` inputs (None: all).

    The model is built as the trace builds it (``edgesim.build.evaluate``: routed models run
    each input through its one path, nested ones at their level). The answer is cached on disk
    by model, weights, data (content fingerprint), seed, level and ``inputs``: a repeated call
    does not import torch. Returns ``{"top1", "correct", "inputs", "data"}``; registry models
    without weights have seeded random weights, so their top-1 is chance level.
    """
    if isinstance(model, ModelRequest):
        req = model if data is None and model.evaluate else model_request(
            model.name, level=model.level, weights=model.weights, seed=model.seed,
            input_shape=model.input_shape, data=model.data if data is None else data,
            evaluate=True)
    else:
        req = model_request(model, data=data, evaluate=True)
    return _accuracy(req, inputs=inputs, use_cache=use_cache, progress=as_progress(progress))


def _accuracy(req: ModelRequest, *, inputs: int | None, use_cache: bool = True,
              progress: Progress) -> dict[str, Any]:
    """``evaluate`` of a checked request (``run``'s ``evaluate`` argument hides the name)."""
    from edgesim.frontends.pytorch import spec_of
    if req.is_file:
        raise ModelError(f"--eval: model {req.name} is a {req.format} file; top-1 is measured "
                         "on a PyTorch model (registry or package.module:factory)")
    spec = spec_of(req)
    data = req.data
    key = cache.make_key("eval", {"model": spec.name, "factory": spec.factory,
                                  "kwargs": dict(spec.kwargs),
                                  "weights": cache.file_fingerprint(req.weights),
                                  "data": cache.file_fingerprint(data), "seed": req.seed,
                                  "level": req.level, "inputs": inputs,
                                  **({"input_shape": list(spec.input_shape)}
                                     if req.input_shape is not None else {})})
    got = _EVALS.get(key) if use_cache else None
    if got is None:
        def measure() -> dict[str, Any]:
            progress.stage(f"evaluating {spec.name} on {data} (once; cached afterwards)")
            from edgesim import build
            r = build.evaluate(spec, data=data, weights=req.weights, seed=req.seed,
                               level=req.level, inputs=inputs, progress=progress.of("eval"))
            return {"top1": float(r["top1"]), "correct": int(r["correct"]),
                    "inputs": int(r["inputs"])}
        got = cache.cached("eval", key, measure, use_cache=use_cache, valid=_valid_eval)
        got = {"top1": got["correct"] / got["inputs"], "correct": got["correct"],
               "inputs": got["inputs"]}
    if use_cache:
        _EVALS[key] = got
    return {**got, "data": str(data)}


def _valid_eval(got: Any) -> bool:
    """A cached evaluation is what ``evaluate`` writes (whole counts, correct <= inputs)."""
    if not isinstance(got, dict):
        return False
    n, c = got.get("inputs"), got.get("correct")
    return type(n) is int and type(c) is int and 0 <= c <= n and n >= 1


def finetune(model: str | ModelRequest, checkpoint: str, *, epochs: int = 1,
             steps: int | None = None, lr: float = 1e-4, batch: int = 32, samples: int = 64,
             log: Callable[[Any], None] | None = None) -> list[float]:
    """Soft-routing fine-tuning of a routed tree (``edgesim.zoo.sigmab.train.finetune``), saved
    atomically to ``checkpoint`` after every epoch; returns the step losses.

    ``model`` is a registry name or a ``ModelRequest`` whose ``data`` (labelled; default: the
    model's seeded clustered synthetic inputs, ``samples`` of them), ``weights`` (a tree
    checkpoint to continue, or a dense state_dict made into the tree calibrated on ``data``)
    and ``seed`` say what to train. The tree trained is a copy of the built model the process
    caches (``edgesim.build.built_model``). ``log`` receives each step's record."""
    from edgesim.extras import require_torch
    require_torch("finetune (soft-routing training)")
    from edgesim.zoo.sigmab.train import finetune as train
    req = _request(model)
    return train(req.name, checkpoint=checkpoint, data=req.data, weights=req.weights,
                 epochs=epochs, steps=steps, lr=lr, batch=batch, samples=samples,
                 seed=req.seed, log=log, builder=_own_copy)


def _own_copy(spec, weights, seed, data):
    """A copy of the (cached) built tree: training changes it, the process cache keeps its own.
    A dense ``weights`` file becomes the tree calibrated on the training inputs."""
    import copy

    from edgesim.build import built_model
    return copy.deepcopy(built_model(spec, weights, seed, data if weights is not None else None))


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
    """One row per registered model with its parameters and bytes (traces what is not cached);
    a routed tree adds ``channel_coverage`` and ``weight_coverage`` (``SigmaTree.coverage``:
    the share of the dense channels, and of the dense conv/linear weight entries, some node
    stores), blank for the other models."""
    import pandas as pd

    from edgesim.zoo.registry import REGISTRY
    rows = []
    for name in names or list(REGISTRY):
        w = workload(name, progress=progress)
        row = model_info(w)
        cov = (w.meta.get("tree") or {}).get("coverage") or {}
        if cov:
            row["channel_coverage"] = cov.get("channel_coverage")
            row["weight_coverage"] = cov.get("weight_coverage")
        rows.append(row)
    return pd.DataFrame(rows)


def configs():
    """One row per shipped hardware config (a DataFrame)."""
    import pandas as pd

    from edgesim.config import config_table
    return pd.DataFrame(config_table())
