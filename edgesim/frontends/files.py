"""The model-file front-end: ``.tflite`` and ``.onnx`` files imported without torch.

Public names: ``catalogue``, ``file_key``, ``MAX_MODEL_BYTES``.

A file is imported once (``edgesim.frontends.tflite`` / ``onnx`` read it into a ``Graph``,
``graph.to_workload`` makes the Workload from the integers it stores) and cached by the
file's content hash, the importer's format version and the input shape: the same file under
another name or path is the same entry, and an edited file is imported afresh.
"""

from __future__ import annotations

import importlib
import time

from edgesim import cache
from edgesim.errors import ModelError
from edgesim.progress import Progress
from edgesim.request import ModelRequest
from edgesim.workload import Workload

__all__ = ["MAX_MODEL_BYTES", "catalogue", "file_key"]

#: The largest model file read (2 GiB: the flatbuffer and protobuf limit).
MAX_MODEL_BYTES = 2 << 30
#: Bump when what an importer makes of a file changes.
IMPORT_VERSION = 2


def file_key(req: ModelRequest) -> str:
    """The cache key of the Workload imported from ``req``'s file (a file states its own
    precision: the hardware's does not enter)."""
    return cache.make_key("workload", {"format": req.format, "version": IMPORT_VERSION,
                                       "file": cache.file_fingerprint(req.name),
                                       "input_shape": None if req.input_shape is None
                                       else list(req.input_shape)})


def _import(req: ModelRequest) -> Workload:
    from pathlib import Path

    from edgesim.frontends import graph
    reader = importlib.import_module(f"edgesim.frontends.{req.format}")
    if req.format == "onnx" and req.input_shape is not None:   # ONNX may leave dims symbolic
        g = reader.load(req.name, name=Path(req.name).stem, input_shape=req.input_shape)
    else:
        g = reader.load(req.name, name=Path(req.name).stem)
        if req.input_shape is not None and tuple(req.input_shape) != g.input_shape:
            raise ModelError(f"--input-shape {'x'.join(map(str, req.input_shape))}: "
                             f"{req.name} is a {req.format} file whose input is "
                             f"{'x'.join(map(str, g.input_shape))}; its shapes are fixed")
    return graph.to_workload(g, encodings=graph.IMPORT_ENCODINGS)


def catalogue(req: ModelRequest, *, use_cache: bool,
              progress: Progress) -> tuple[str, Workload]:
    """``(key, Workload)`` of the model file ``req.name`` (one path, one input)."""
    key = file_key(req)

    def make() -> Workload:
        progress.stage(f"importing {req.name} ({req.format}; once, cached afterwards)")
        t0 = time.perf_counter()
        w = _import(req)
        progress.stage(f"imported {req.name} in {time.perf_counter() - t0:.2f} s "
                       f"({len(w.paths[0].ops)} ops, {len(w.blocks)} weight tensors)")
        return w

    return key, cache.cached("workload", key, make, use_cache=use_cache,
                             valid=lambda w: isinstance(w, Workload))
