"""The values the ONNX importer's modules pass each other, and the protobuf read into them.

Public names: ``Bad``, ``Const``, ``Op``, ``array``, ``attrs``, ``handler_table``, ``DTYPES``.

``Bad`` is a malformed node (``onnx.Import.run`` names the node and the file); ``Const`` a
constant, float or stored quantised; ``Op`` a node being built, whose float weights are quantised
as the tracer does when it becomes a ``Node``. ``array`` reads a ``TensorProto``'s values (its
claimed size checked against its bytes, no external data), ``attrs`` a node's attributes, and
``DTYPES`` maps ONNX data types to NumPy's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from onnx import AttributeProto, NodeProto, TensorProto

from edgesim.frontends.graph import Node, Weights
from edgesim.trace.weights import quantize, quantize_bias

__all__ = ["DTYPES", "Bad", "Const", "Op", "array", "attrs", "handler_table"]


class Bad(Exception):
    """A node is malformed; ``Import.run`` names the node and the file."""


@dataclass(slots=True)
class Const:
    """A constant: float values, or stored integers with scales / zero points (``axis`` the
    per-channel axis, None for one scale) when it is the output of a DequantizeLinear."""

    values: np.ndarray
    scales: np.ndarray | None = None
    zero_points: np.ndarray | None = None
    axis: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scales is not None

    def floats(self) -> np.ndarray:
        """The real values (dequantised when stored quantised)."""
        if self.scales is None:
            return self.values
        shape = [1] * self.values.ndim
        if self.axis is not None:
            shape[self.axis] = -1
        zp = self.zero_points.astype(np.float32).reshape(shape)
        return ((self.values.astype(np.float32) - zp) * self.scales.reshape(shape)
                ).astype(np.float32)


@dataclass(slots=True)
class Op:
    """A node being built: weights stay float (``np.ndarray``, layout done) until the end so
    that a BatchNorm can fold into them; quantised ones are ``Weights`` at once."""

    name: str
    kind: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shape: tuple[tuple[str, int], ...] = ()
    macs: int = 0
    weight: np.ndarray | Weights | None = None
    bias: np.ndarray | Weights | None = None
    groups: int = 1
    meta: dict[str, Any] = field(default_factory=dict)

    def node(self, memo: dict[int, Weights]) -> Node:
        """The Node; ``memo`` makes a float tensor two ops share one ``Weights`` (one block)."""
        return Node(self.name, self.kind, self.op, self.inputs, self.outputs, self.shape,
                    self.macs, _stored(self.weight, memo), _stored(self.bias, memo, bias=True),
                    self.groups, None, self.meta)


def _stored(w: np.ndarray | Weights | None, memo: dict[int, Weights], *,
            bias: bool = False) -> Weights | None:
    """A float weight quantised as the tracer does (int8 per output channel; bias int32)."""
    if w is None or isinstance(w, Weights):
        return w
    if id(w) not in memo:
        memo[id(w)] = _quantised(w, bias)
    return memo[id(w)]


def _quantised(w: np.ndarray, bias: bool) -> Weights:
    if bias:
        amax = float(np.abs(w).max()) if w.size else 0.0
        scale = np.array([amax / (2**31 - 1) if amax > 0 else 1.0], np.float32)
        return Weights(quantize_bias(w), scale, np.zeros(1, np.int32), bits=32)
    q, scales = quantize(w, "int8", channel_axis=0)
    return Weights(q, scales, np.zeros(scales.size, np.int8))


# -- tensors ------------------------------------------------------------------------------

#: ONNX data types -> the NumPy dtypes they are read as.
DTYPES: dict[int, np.dtype] = {
    TensorProto.FLOAT: np.dtype(np.float32), TensorProto.DOUBLE: np.dtype(np.float64),
    TensorProto.FLOAT16: np.dtype(np.float16), TensorProto.INT8: np.dtype(np.int8),
    TensorProto.UINT8: np.dtype(np.uint8), TensorProto.INT16: np.dtype(np.int16),
    TensorProto.UINT16: np.dtype(np.uint16), TensorProto.INT32: np.dtype(np.int32),
    TensorProto.INT64: np.dtype(np.int64), TensorProto.UINT32: np.dtype(np.uint32),
    TensorProto.UINT64: np.dtype(np.uint64), TensorProto.BOOL: np.dtype(np.bool_)}
#: The repeated field a tensor's values lie in when it has no raw_data.
_FIELDS: dict[int, str] = {
    TensorProto.FLOAT: "float_data", TensorProto.DOUBLE: "double_data",
    TensorProto.INT64: "int64_data", TensorProto.UINT32: "uint64_data",
    TensorProto.UINT64: "uint64_data"}


def array(t: TensorProto, what: str) -> np.ndarray:
    """A TensorProto's values, its claimed size checked against the bytes it carries before
    anything is allocated (no external data, ever)."""
    if t.data_location == TensorProto.EXTERNAL or t.external_data:
        raise Bad(f"{what} '{t.name}' keeps its data in an external file; only "
                   "self-contained ONNX files are read")
    dtype = DTYPES.get(t.data_type)
    if dtype is None:
        raise Bad(f"{what} '{t.name}' has data type {t.data_type}, which is not supported")
    dims = tuple(int(d) for d in t.dims)
    if any(d < 0 for d in dims):
        raise Bad(f"{what} '{t.name}' has a negative dimension {dims}")
    n = math.prod(dims)
    raw = t.raw_data
    if raw or t.HasField("raw_data"):
        if len(raw) != n * dtype.itemsize:
            raise Bad(f"{what} '{t.name}' claims {dims} = {n} values of {dtype.itemsize} "
                       f"bytes but carries {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(dims)
    src = getattr(t, _FIELDS.get(t.data_type, "int32_data"))
    if len(src) != n:
        raise Bad(f"{what} '{t.name}' claims {dims} = {n} values but carries {len(src)}")
    if dtype == np.float16:
        return np.asarray(src, dtype=np.uint16).view(np.float16).reshape(dims)
    return np.asarray(src).astype(dtype).reshape(dims)


def attrs(node: NodeProto) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type == AttributeProto.INT:
            out[a.name] = int(a.i)
        elif a.type == AttributeProto.FLOAT:
            out[a.name] = float(a.f)
        elif a.type == AttributeProto.INTS:
            out[a.name] = [int(v) for v in a.ints]
        elif a.type == AttributeProto.FLOATS:
            out[a.name] = [float(v) for v in a.floats]
        elif a.type == AttributeProto.STRING:
            out[a.name] = a.s.decode("utf-8", "replace")
        elif a.type == AttributeProto.TENSOR:
            out[a.name] = a.t
        else:
            out[a.name] = a      # graphs, sparse tensors: refused where read
    return out


def handler_table() -> tuple[dict[str, Any], Callable[..., Callable[[Any], Any]]]:
    """``(table, handles)``: an operator -> handler table and the decorator that fills it
    (``@handles("Conv", "QLinearConv")``); each handler module keeps its own table."""
    table: dict[str, Any] = {}

    def handles(*names: str) -> Callable[[Any], Any]:
        def reg(fn: Any) -> Any:
            for n in names:
                table[n] = fn
            return fn
        return reg
    return table, handles
