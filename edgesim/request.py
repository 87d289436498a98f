"""A model request: what the user asked to simulate, parsed and checked once.

Public names: ``ModelRequest``, ``model_request``, ``check_data``, ``parse_input_shape``,
``FILE_FORMATS``, ``MAX_INPUT_ELEMENTS``.

``model_request`` turns what the command line or the API was given (a model name or file, a
nested level, weights, seed, input shape, data, evaluate) into one frozen ``ModelRequest``:
``name@K`` is split once, the input shape parsed once, every path checked once (a regular file,
or for ``--data`` a folder of images) before any work. The front-ends
(``edgesim.frontends``) turn a request into a Workload.

>>> r = model_request("nested_r50@2", input_shape="3x32x32")
>>> r.name, r.level, r.input_shape, r.format
('nested_r50', 2, (3, 32, 32), 'torch')
>>> parse_input_shape("1x49x10")
(1, 49, 10)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgesim.errors import DataError, ModelError
from edgesim.outputs import input_file

__all__ = ["FILE_FORMATS", "MAX_INPUT_ELEMENTS", "ModelRequest", "check_data", "model_request",
           "parse_input_shape"]

#: Model files by suffix: the front-end that reads each.
FILE_FORMATS = {".tflite": "tflite", ".onnx": "onnx"}
#: The most elements one input may have (64 Mi: a 3x4096x4096 image is 48 Mi).
MAX_INPUT_ELEMENTS = 1 << 26
#: The most dimensions an input shape may have.
MAX_INPUT_DIMS = 6

_LABELLED = ("labelled data: a .pt of {'x': inputs, 'y': labels}, an .npz, x.npy with y.npy, "
             "or a folder of class sub-folders")


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One model as asked for: ``name`` (a registry name, ``package.module:factory`` or the
    path of a ``.tflite`` / ``.onnx`` file), the nested ``level``, a ``weights`` checkpoint,
    the ``seed`` of seeded weights and synthetic inputs, the ``input_shape`` to trace at
    (without the batch; None: the model's own), the ``data`` it routes or is evaluated on,
    and whether it is ``evaluate``d."""

    name: str
    level: int | None = None
    weights: str | None = None
    seed: int = 0
    input_shape: tuple[int, ...] | None = None
    data: str | None = None
    evaluate: bool = False
    #: a ``torch.nn.Module`` object asked for as it is (``name`` is then its class name)
    module: Any = field(default=None, compare=False, repr=False)

    @property
    def format(self) -> str:
        """``tflite`` or ``onnx`` for a model file, ``torch`` for a registry or PyTorch model."""
        return FILE_FORMATS.get(Path(self.name).suffix.lower(), "torch") if self.is_file \
            else "torch"

    @property
    def is_file(self) -> bool:
        """True when the model is a file to import (named by its suffix)."""
        return self.module is None and Path(self.name).suffix.lower() in FILE_FORMATS \
            and ":" not in self.name


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3x32x32"`` (or a sequence of ints) as a tuple of positive dimensions, the batch left
    out; anything else is one ``ModelError`` line naming ``--input-shape``."""
    if isinstance(text, str):
        parts = text.lower().replace(",", "x").replace("*", "x").split("x")
        try:
            dims = tuple(int(p) for p in parts if len(p) <= 9)
        except ValueError:
            dims = ()
        if len(dims) != len(parts):
            dims = ()
        shown = text if len(text) <= 40 else text[:37] + "..."
    else:
        dims = tuple(int(d) for d in text) if all(
            isinstance(d, int) and not isinstance(d, bool) for d in text) else ()
        shown = str(tuple(text))[:40]
    if not dims or len(dims) > MAX_INPUT_DIMS or any(d < 1 for d in dims):
        raise ModelError(f"--input-shape {shown}: expected positive sizes joined by x, without "
                         f"the batch (3x32x32 for a 32x32 RGB image), at most {MAX_INPUT_DIMS}")
    if math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise ModelError(f"--input-shape {shown}: {math.prod(dims):,} elements per input; at "
                         f"most {MAX_INPUT_ELEMENTS:,}")
    return dims


def _split_level(name: str, level: int | None) -> tuple[str, int | None]:
    """``nested_r50@2`` -> ``("nested_r50", 2)``, agreeing with ``level`` when both are given."""
    if "@" in name and ":" not in name.split("@", 1)[1]:
        base, _, text = name.rpartition("@")
        try:
            k = int(text) if len(text) <= 9 else None
        except ValueError:
            k = None
        if k is None:
            raise ModelError(f"model {name!r}: the part after '@' must be a whole level number, "
                             f"got {text!r}")
        if k < 1:
            raise ModelError(f"model {name!r}: level must be >= 1, got {k}")
        if level is not None and level != k:
            raise ModelError(f"model {name!r}: level {k} in the name and model.level={level} "
                             "disagree")
        return base, k
    return name, level


def model_request(model: Any, *, level: int | None = None, weights: str | None = None,
                  seed: int = 0, input_shape: str | Sequence[int] | None = None,
                  data: str | None = None, evaluate: bool = False) -> ModelRequest:
    """The checked ``ModelRequest`` for ``model`` (see the module docstring): a name or file,
    or a ``torch.nn.Module`` object, traced as it is at ``input_shape`` (default: its
    ``input_shape`` attribute) with the seeded random input of ``seed``; such an object holds
    its own weights, so ``weights``, ``level``, ``data`` and ``evaluate`` do not apply to it.

    Checked here, before any work: the level, the input shape, that a model file is a
    regular file and takes no ``--weights``/``--level``/``--eval`` (it holds its weights, as
    deployed), that ``weights`` is a file, and that ``--eval`` has ``data``. Whether a model
    reads ``data`` is the front-end's question, asked before ``check_data``."""
    if _is_module(model):
        return _module_request(model, level=level, weights=weights, seed=seed,
                               input_shape=input_shape, data=data, evaluate=evaluate)
    if not isinstance(model, str) or not model:
        what = repr(model) if isinstance(model, str) else f"a {type(model).__name__} object"
        raise ModelError(f"model {what}: expected a registry name, package.module:factory, "
                         "or a .tflite/.onnx file")
    name, level = _split_level(model, level)
    shape = None if input_shape is None else parse_input_shape(input_shape)
    req = ModelRequest(name, level, None if weights is None else os.fspath(weights), int(seed),
                       shape, None if data is None else os.fspath(data), bool(evaluate))
    if req.is_file:
        input_file(name, "--model", ModelError)
        for flag, given in (("--weights", weights is not None), ("--eval", evaluate),
                            ("model.level", level is not None)):
            if given:
                raise ModelError(f"{flag}: model {name} is a {req.format} file, which holds "
                                 f"its weights as deployed; drop {flag}")
    if evaluate and data is None:
        raise DataError(f"--eval needs --data LABELLED: {_LABELLED}")
    if weights is not None:
        if Path(weights).is_dir():
            raise ModelError(f"--weights {weights}: is a folder; expected a checkpoint file")
        if not Path(weights).exists():
            raise ModelError(f"--weights {weights}: no such checkpoint file")
        input_file(weights, "--weights", ModelError)
    return req


def check_data(req: ModelRequest) -> None:
    """``req.data`` is a regular file or a folder (a FIFO or a device is refused before
    anything opens it). A front-end calls it once it has said whether its model reads data."""
    if req.data is None:
        return
    p = Path(req.data)
    if not p.exists():
        expected = _LABELLED if req.evaluate else "a .pt/.npy tensor file or a folder of images"
        raise DataError(f"--data {req.data}: no such file or folder (expected {expected})")
    if not p.is_dir():
        input_file(p, "--data")


def _is_module(model: Any) -> bool:
    """Whether ``model`` is a ``torch.nn.Module`` (without importing torch when it is not)."""
    import sys
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _module_request(model: Any, *, level, weights, seed, input_shape, data,
                    evaluate) -> ModelRequest:
    """The request of an ``nn.Module`` object: its class name, its shape, nothing to load."""
    name = type(model).__name__
    for what, given in (("weights", weights is not None), ("level", level is not None),
                        ("data", data is not None), ("evaluate", evaluate)):
        if given:
            raise ModelError(f"model (a {name} object): {what}= is for a named model; an "
                             "object is traced as it is (load its weights before passing it, "
                             "or give package.module:factory)")
    shape = None if input_shape is None else parse_input_shape(input_shape)
    return ModelRequest(name, None, None, int(seed), shape, None, False, model)
