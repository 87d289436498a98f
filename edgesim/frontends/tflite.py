"""TFLite flatbuffers -> ``edgesim.frontends.graph.Graph``, without TensorFlow or torch.

Public names: ``load``, ``MAX_FILE_BYTES``, ``MAX_ELEMENTS``, ``KINDS``.

``load(path)`` reads the file (a regular file of at most ``MAX_FILE_BYTES``) with the ``tflite``
package's generated accessors and returns the main subgraph as a ``Graph``: activation tensors
in the tracer's layout (NHWC -> NCHW), operators in the file's execution order, and each
weight exactly as stored (int8 values with their per-channel scales and zero points,
transposed from OHWI / 1HW(C*M) to ``(K, C / groups, R, S)``). A float model's weights are
quantised per output channel as the PyTorch tracer does (``trace.weights.quantize``, biases
``quantize_bias``).

* MAC ops: ``CONV_2D`` (``N K C R S P Q``, C per group; groups = input channels / the filter's),
  ``DEPTHWISE_CONV_2D`` (C = 1, K = channels x depth multiplier, groups = input channels),
  ``TRANSPOSE_CONV`` (every input pixel scatters an ``R x S x K`` patch: the nest's P Q are the
  input's, ``meta["output"]`` the output's), ``FULLY_CONNECTED`` (``M N K``; with a weight
  that is an activation it is a ``matmul`` without weights). P Q are the output tensor's and
  are checked against the padding arithmetic; ``meta["pads"]`` is (top, left, bottom, right):
  TF's 'SAME' puts the odd pixel at the bottom/right.
* The other operators have 0 MACs and the kind of ``KINDS``; ``RESHAPE``, ``SQUEEZE`` and
  ``EXPAND_DIMS`` are views (``Graph.aliases``), not ops. A ``fused_activation_function`` is the
  node's ``activation``. ``DEQUANTIZE`` of a constant (float16 weights) is a constant. Constant
  operands of non-MAC ops (shapes, paddings, axes) are not blocks. A 2-D pool records its
  window: ``meta["kernel"]`` (R, S), ``"strides"``, ``"padding"``, ``"input"`` (H, W, C) and
  ``"output"`` (P, Q) (``LayerOp.window``).
* Errors: an operator not in ``KINDS`` (nor a view), a truncated or malformed flatbuffer, a
  tensor whose shape claims more than its buffer holds or more than ``MAX_ELEMENTS``, a buffer
  index or offset out of the file, a tensor read before any operator writes it: one
  ``ModelError`` line naming the file (and the operator and its index). Every size is checked
  against the file before anything is allocated; nothing in the file is run.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import struct
import sys
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from edgesim.errors import ModelError
from edgesim.frontends.graph import Graph, Node, Tensor, Weights
from edgesim.outputs import read_regular
from edgesim.trace.weights import quantize, quantize_bias

__all__ = ["KINDS", "MAX_ELEMENTS", "MAX_FILE_BYTES", "load"]

#: The largest file read (bytes); a larger one is refused before it is parsed.
MAX_FILE_BYTES = 512 * 2**20
#: The most elements one activation tensor may claim (2 GiB at 8 bits).
MAX_ELEMENTS = 2**31
_MAX_RANK = 8

_MACS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED")
_VIEWS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
_NAMES: dict[str, tuple[str, ...]] = {
    "act": ("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "TANH", "LOGISTIC", "SOFTMAX",
            "LOG_SOFTMAX", "HARD_SWISH", "LEAKY_RELU", "PRELU", "ELU", "GELU", "EXP", "SQRT",
            "RSQRT"),
    "eltwise": ("ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE",
                "CONCATENATION", "ADD_N", "PACK", "ABS", "NEG", "SQUARE"),
    "pool": ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D", "MEAN", "SUM", "REDUCE_MAX",
             "REDUCE_MIN", "REDUCE_PROD"),
    "sample": ("ARG_MAX", "ARG_MIN", "TOPK_V2"),
    "other": ("PAD", "PADV2", "MIRROR_PAD", "QUANTIZE", "DEQUANTIZE", "STRIDED_SLICE",
              "SLICE", "SPLIT", "SPLIT_V", "TRANSPOSE", "GATHER", "TILE", "BROADCAST_TO",
              "UNPACK", "CAST", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "DEPTH_TO_SPACE",
              "SPACE_TO_DEPTH"),
}
#: TFLite operator -> op kind of the operators ``load`` reads besides the MAC ops and views.
KINDS = MappingProxyType({name: kind for kind, names in _NAMES.items() for name in names})

#: ``ActivationFunctionType`` -> the fused activation's name (0: none; 5 SIGN_BIT is unused).
_FUSED = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: np.dtype("<i4"), 3: np.dtype("u1"),
           4: np.dtype("<i8"), 7: np.dtype("<i2"), 9: np.dtype("i1")}


class _Schema:
    """The ``tflite`` package's generated classes by name (``Model``, ``Conv2DOptions``, ...),
    each imported from its own module on first use."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(f"tflite.{name}"), name)


def _tfl() -> _Schema:
    return _Schema()


@contextmanager
def _schema_package():
    """While a file is parsed, the ``tflite`` package without its ``__init__``.

    That ``__init__`` imports all ~190 generated modules (about 55 ms, a tenth of a cold run);
    a parse needs about a dozen, and they import one another by module (``from
    tflite.SubGraph import SubGraph``). So, unless the package is already imported, a package
    object whose ``__init__`` has not run stands in ``sys.modules`` during the parse and is
    taken out afterwards: a later ``import tflite`` runs the real ``__init__``, which reuses
    the modules already loaded. Without the package, the import error is the usual one.
    """
    spec = None if "tflite" in sys.modules else importlib.util.find_spec("tflite")
    if spec is None:
        importlib.import_module("tflite")
        yield
        return
    package = importlib.util.module_from_spec(spec)
    sys.modules["tflite"] = package
    try:
        yield
    finally:
        if sys.modules.get("tflite") is package:
            del sys.modules["tflite"]


@dataclass(slots=True, eq=False)
class _T:
    """One tensor of the file: shape as stored (NHWC), element type, constant data if any."""

    index: int
    name: str
    shape: tuple[int, ...]
    type: int
    data: np.ndarray | None          # the constant's values (a view into the file), or None
    scales: np.ndarray
    zero_points: np.ndarray
    axis: int
    variable: bool

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


class _Reader:
    """The parse of one file: tensors on demand, operators in order, the Graph."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.where = data, where
        tfl = _tfl()
        self.tfl = tfl
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ModelError(f"{where}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        self.model = tfl.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() < 1:
            raise ModelError(f"{where}: the model has no subgraph")
        self.sg = self.model.Subgraphs(0)
        self.n_tensors = self._count(self.sg.TensorsLength(), "tensors")
        self.n_buffers = self._count(self.model.BuffersLength(), "buffers")
        self.n_codes = self._count(self.model.OperatorCodesLength(), "operator codes")
        self._tensors: dict[int, _T] = {}
        self._weights: dict[tuple, Weights] = {}
        self.folded: dict[int, np.ndarray] = {}     # DEQUANTIZE of a constant

    # -- sizes and tensors ---------------------------------------------------------------------
    def _count(self, n: int, what: str) -> int:
        """A vector length, checked against the file (each entry takes at least 4 bytes)."""
        if n < 0 or 4 * n > len(self.data):
            raise ModelError(f"{self.where}: claims {n} {what}, more than the "
                             f"{len(self.data)}-byte file can hold")
        return n

    def _indices(self, get: Callable[[int], int], n: int, what: str) -> list[int]:
        return [int(get(j)) for j in range(self._count(n, what))]

    def tensor(self, i: int) -> _T:
        t = self._tensors.get(i)
        if t is None:
            t = self._tensors[i] = self._read_tensor(i)
        return t

    def _read_tensor(self, i: int) -> _T:
        if not 0 <= i < self.n_tensors:
            raise ModelError(f"{self.where}: tensor index {i} out of range (the subgraph has "
                             f"{self.n_tensors})")
        ft = self.sg.Tensors(i)
        name = (ft.Name() or b"").decode("utf-8", "replace")
        rank = ft.ShapeLength()
        if rank > _MAX_RANK:
            raise ModelError(f"{self.where}: tensor {i} '{name}' has {rank} dimensions; "
                             f"expected at most {_MAX_RANK}")
        shape = tuple(int(ft.Shape(j)) for j in range(rank))
        if shape and shape[0] == -1:        # a dynamic batch: one
            shape = (1, *shape[1:])
        if any(d < 0 or d > MAX_ELEMENTS for d in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise ModelError(f"{self.where}: tensor {i} '{name}' has shape {list(shape)}; "
                             f"expected dimensions >= 0 and at most {MAX_ELEMENTS} elements")
        data = self._data(i, name, ft, shape)
        scales, zps, axis = np.ones(0), np.zeros(0, dtype=np.int64), 0
        q = ft.Quantization()
        if q is not None and q.ScaleLength():
            n = self._count(q.ScaleLength(), "scales")
            scales = q.ScaleAsNumpy().astype(np.float64)
            zps = (q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength()
                   else np.zeros(n, dtype=np.int64))
            axis = int(q.QuantizedDimension())
            if zps.size not in (1, n) or (n > 1 and not (0 <= axis < len(shape)
                                                         and shape[axis] == n)):
                raise ModelError(f"{self.where}: tensor {i} '{name}' has {n} scales and "
                                 f"{zps.size} zero points for shape {list(shape)} (axis {axis})")
        return _T(i, name, shape, int(ft.Type()), data, scales, zps, axis, bool(ft.IsVariable()))

    def _data(self, i: int, name: str, ft, shape: tuple[int, ...]) -> np.ndarray | None:
        b = int(ft.Buffer())
        if not 0 <= b < self.n_buffers:
            raise ModelError(f"{self.where}: tensor {i} '{name}' names buffer {b}; the file "
                             f"has {self.n_buffers}")
        if b == 0:
            return None
        buf = self.model.Buffers(b)
        offset, size = int(buf.Offset()), int(buf.Size())
        if offset > 1:                      # data outside the flatbuffer, later in the file
            if offset + size > len(self.data):
                raise ModelError(f"{self.where}: buffer {b} of tensor {i} '{name}' lies at "
                                 f"bytes {offset}..{offset + size}, past the "
                                 f"{len(self.data)}-byte file")
            raw = np.frombuffer(self.data, np.uint8, size, offset)
        else:
            n = buf.DataLength()
            if n == 0:
                return None
            self._count(n // 4, "bytes of data")
            raw = buf.DataAsNumpy()
        dtype = _DTYPES.get(int(ft.Type()))
        need = math.prod(shape) * (dtype.itemsize if dtype is not None else 1)
        if dtype is None:
            raise ModelError(f"{self.where}: constant tensor {i} '{name}' has element type "
                             f"{int(ft.Type())}; expected float32/16, int8/16/32/64 or uint8")
        if raw.size != need:
            raise ModelError(f"{self.where}: tensor {i} '{name}' of shape {list(shape)} claims "
                             f"{need} bytes; its buffer {b} holds {raw.size}")
        return raw.view(dtype).reshape(shape)

    def const(self, i: int) -> np.ndarray | None:
        if i in self.folded:
            return self.folded[i]
        return self.tensor(i).data

    # -- weights -------------------------------------------------------------------------------
    def weights(self, i: int, role: str, layout: Callable[[np.ndarray], np.ndarray],
                axis: int) -> Weights:
        """Constant tensor ``i`` as stored, in the tracer's layout (``layout`` of the file's);
        ``axis`` is its output-channel axis in the file. One ``Weights`` per buffer and
        layout: a buffer the file shares is one block."""
        t = self.tensor(i)
        values = self.const(i)
        if values is None:
            raise ModelError(f"{self.where}: tensor {i} '{t.name}' is read as a {role} but "
                             "holds no data")
        key = (int(self.sg.Tensors(i).Buffer()) if i not in self.folded else -i - 1,
               role, t.shape, t.axis, t.scales.tobytes(), t.zero_points.tobytes())
        w = self._weights.get(key)
        if w is not None:
            return w
        if values.dtype.kind == "f":
            v = layout(values.astype(np.float32))
            if role == "bias":
                w = Weights(quantize_bias(v), np.zeros(1), np.zeros(1, dtype=np.int64), 32)
            else:
                q, scales = quantize(v, "int8", channel_axis=0)
                w = Weights(q, scales.astype(np.float64), np.zeros(1, dtype=np.int64), 8)
        elif role == "bias":
            w = Weights(layout(values), t.scales, t.zero_points, 8 * values.dtype.itemsize)
        elif values.dtype.itemsize == 1:
            zps = t.zero_points if t.zero_points.size else np.zeros(1, dtype=np.int64)
            if zps.size > 1 and t.axis != axis:
                raise ModelError(f"{self.where}: tensor {i} '{t.name}' is quantised along "
                                 f"axis {t.axis}; expected its output channels, axis {axis}")
            w = Weights(layout(values), t.scales, zps, 8)
        else:
            raise ModelError(f"{self.where}: weight tensor {i} '{t.name}' holds {values.dtype} "
                             "integers; expected int8 or uint8 (or float)")
        self._weights[key] = w
        return w


def _nchw(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else shape


def _opts(r: _Reader, op, cls_name: str):
    """The operator's builtin options as ``tflite.<cls_name>``, None when absent."""
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts = getattr(r.tfl, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    return opts


def _fused(opts) -> str | None:
    code = int(opts.FusedActivationFunction()) if opts is not None else 0
    return _FUSED.get(code) if code else None


def _window(where: str, size: int, k: int, stride: int, dil: int, same: bool,
            out: int) -> tuple[int, int]:
    """TF padding of one spatial axis: the (before, after) pads; ``out`` must be what TF gives.

    'SAME': out = ceil(size / stride), total = max((out - 1) * stride + (k - 1) * dil + 1 - size,
    0), before = total // 2 (the odd pixel after); 'VALID': out = ceil((size - (k-1)*dil) /
    stride), no pads."""
    if stride < 1 or dil < 1:
        raise ModelError(f"{where}: stride {stride} / dilation {dil}; expected >= 1")
    span = (k - 1) * dil + 1
    want = -(-size // stride) if same else -(-(size - span + 1) // stride)
    if want < 1 or out != want:
        raise ModelError(f"{where}: output size {out}, expected {want} for input {size}, kernel "
                         f"{k}, stride {stride}, dilation {dil}, "
                         f"{'SAME' if same else 'VALID'} padding")
    total = max((out - 1) * stride + span - size, 0) if same else 0
    return total // 2, total - total // 2


_CONV_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                 "TRANSPOSE_CONV": "TransposeConvOptions"}


def _conv(r: _Reader, i: int, opname: str, op, ins: list[int], outs: list[int]) -> Node:
    where = f"{r.where}: operator {i} ({opname})"
    depthwise, transposed = opname == "DEPTHWISE_CONV_2D", opname == "TRANSPOSE_CONV"
    if transposed:                      # output_shape, weights, input, [bias]
        x_i, w_i, b_i = ins[2], ins[1], (ins[3] if len(ins) > 3 else -1)
    else:
        x_i, w_i, b_i = ins[0], ins[1], (ins[2] if len(ins) > 2 else -1)
    x, w, y = r.tensor(x_i).shape, r.tensor(w_i).shape, r.tensor(outs[0]).shape
    if len(x) != 4 or len(w) != 4 or len(y) != 4:
        raise ModelError(f"{where}: input {list(x)}, filter {list(w)}, output {list(y)}; "
                         "expected 4-D NHWC tensors and a 4-D filter")
    n, h, wd, c = x
    opts = _opts(r, op, _CONV_OPTIONS[opname])
    same = opts is None or int(opts.Padding()) == 0
    sh, sw = (int(opts.StrideH()), int(opts.StrideW())) if opts is not None else (1, 1)
    dh, dw = ((int(opts.DilationHFactor()), int(opts.DilationWFactor()))
              if opts is not None and not transposed else (1, 1))
    meta = {"index": i, "strides": (sh, sw), "dilations": (dh, dw),
            "padding": "SAME" if same else "VALID"}
    if transposed:
        k, rr, ss, cw = w
        if cw != c or y[3] != k or y[0] != n:
            raise ModelError(f"{where}: input {list(x)}, filter {list(w)}, output {list(y)} "
                             "do not fit (filter OHWI: O = output channels, I = input's)")
        pt, pb = _window(where, y[1], rr, sh, 1, same, h)
        pl, pr = _window(where, y[2], ss, sw, 1, same, wd)
        meta.update(pads=(pt, pl, pb, pr), output=(y[1], y[2]))
        shape = (("N", n), ("K", k), ("C", c), ("R", rr), ("S", ss), ("P", h), ("Q", wd))
        weight = r.weights(w_i, "weight", lambda a: a.transpose(0, 3, 1, 2), 0)
        groups = 1
    else:
        if depthwise:
            _, rr, ss, k = w
            if w[0] != 1 or c < 1 or k % c:
                raise ModelError(f"{where}: filter {list(w)} for {c} input channels; expected "
                                 "1 x R x S x (channels x multiplier)")
            cg, groups = 1, c
            meta["depth_multiplier"] = k // c
            weight = r.weights(w_i, "weight", lambda a: a[0].transpose(2, 0, 1)[:, None], 3)
        else:
            k, rr, ss, cg = w
            if cg < 1 or c % cg:
                raise ModelError(f"{where}: filter {list(w)} for {c} input channels; expected "
                                 "OHWI with I dividing the input channels")
            groups = c // cg
            weight = r.weights(w_i, "weight", lambda a: a.transpose(0, 3, 1, 2), 0)
        if y[3] != k or y[0] != n:
            raise ModelError(f"{where}: output {list(y)} for input {list(x)} and filter "
                             f"{list(w)}; expected {k} channels")
        pt, pb = _window(where, h, rr, sh, dh, same, y[1])
        pl, pr = _window(where, wd, ss, sw, dw, same, y[2])
        meta["pads"] = (pt, pl, pb, pr)
        shape = (("N", n), ("K", k), ("C", cg), ("R", rr), ("S", ss), ("P", y[1]), ("Q", y[2]))
    bias = r.weights(b_i, "bias", lambda a: a, 0) if b_i >= 0 else None
    macs = math.prod(v for _, v in shape)
    return Node(f"{opname.lower()}_{i}", "conv", opname, (f"t{x_i}",), (f"t{outs[0]}",), shape,
                macs, weight, bias, groups, _fused(opts), meta)


def _fc(r: _Reader, i: int, opname: str, op, ins: list[int], outs: list[int]) -> Node:
    where = f"{r.where}: operator {i} ({opname})"
    x_i, w_i, b_i = ins[0], ins[1], (ins[2] if len(ins) > 2 else -1)
    x, w, y = r.tensor(x_i), r.tensor(w_i), r.tensor(outs[0])
    if len(w.shape) != 2 or w.shape[1] < 1 or x.elements % w.shape[1]:
        raise ModelError(f"{where}: weight {list(w.shape)} for input {list(x.shape)}; expected "
                         "N x K with K dividing the input's elements")
    nn_, kk = w.shape
    m = x.elements // kk
    if y.elements != m * nn_:
        raise ModelError(f"{where}: output {list(y.shape)}, expected {m} x {nn_} elements")
    opts = _opts(r, op, "FullyConnectedOptions")
    shape = (("M", m), ("N", nn_), ("K", kk))
    meta = {"index": i}
    if r.const(w_i) is None:            # activation x activation: a matmul without weights
        return Node(f"{opname.lower()}_{i}", "matmul", opname, (f"t{x_i}", f"t{w_i}"),
                    (f"t{outs[0]}",), shape, m * nn_ * kk, activation=_fused(opts), meta=meta)
    weight = r.weights(w_i, "weight", lambda a: a, 0)
    bias = r.weights(b_i, "bias", lambda a: a, 0) if b_i >= 0 else None
    return Node(f"{opname.lower()}_{i}", "linear", opname, (f"t{x_i}",), (f"t{outs[0]}",),
                shape, m * nn_ * kk, weight, bias, 1, _fused(opts), meta)


_OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions",
            "CONCATENATION": "ConcatenationOptions", "AVERAGE_POOL_2D": "Pool2DOptions",
            "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions"}


def _simple(r: _Reader, i: int, opname: str, op, ins: list[int], outs: list[int]) -> Node:
    """A 0-MAC operator of ``KINDS``: its activation inputs (constants are not inputs)."""
    acts = tuple(dict.fromkeys(f"t{t}" for t in ins if r.const(t) is None))
    if not acts:
        raise ModelError(f"{r.where}: operator {i} ({opname}) reads no activation tensor")
    cls = _OPTIONS.get(opname)
    opts = _opts(r, op, cls) if cls is not None else None
    meta: dict[str, object] = {"index": i}
    if cls == "Pool2DOptions" and opts is not None:
        x_i = next(t for t in ins if r.const(t) is None)
        x, y = r.tensor(x_i).shape, r.tensor(outs[0]).shape
        if len(x) == 4 and len(y) == 4:      # NHWC: the window a pool runs on (LayerOp.window)
            meta.update(kernel=(int(opts.FilterHeight()), int(opts.FilterWidth())),
                        strides=(int(opts.StrideH()), int(opts.StrideW())),
                        padding="SAME" if int(opts.Padding()) == 0 else "VALID",
                        input=(int(x[1]), int(x[2]), int(x[3])), output=(int(y[1]), int(y[2])))
    return Node(f"{opname.lower()}_{i}", KINDS[opname], opname, acts,
                tuple(f"t{t}" for t in outs), activation=_fused(opts), meta=meta)


def _opname(r: _Reader, op) -> str:
    code_i = int(op.OpcodeIndex())
    if not 0 <= code_i < r.n_codes:
        return f"opcode index {code_i}"
    oc = r.model.OperatorCodes(code_i)
    code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
    if code == 32:                      # CUSTOM
        return f"CUSTOM '{(oc.CustomCode() or b'').decode('utf-8', 'replace')}'"
    from tflite.utils import BUILTIN_OPCODE2NAME
    return BUILTIN_OPCODE2NAME.get(code, f"builtin operator {code}")


def _graph(r: _Reader, name: str, path: str) -> Graph:
    sg = r.sg
    inputs = [t for t in r._indices(sg.Inputs, sg.InputsLength(), "graph inputs")
              if r.const(t) is None]
    outputs = r._indices(sg.Outputs, sg.OutputsLength(), "graph outputs")
    if not inputs:
        raise ModelError(f"{r.where}: the model has no input tensor")
    written = set(inputs)
    tensors: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    nodes: list[Node] = []

    def keep(t: int) -> str:
        tt = r.tensor(t)
        key = f"t{t}"
        tensors.setdefault(key, Tensor(key, _nchw(tt.shape)))
        return key

    for t in inputs:
        keep(t)
    for i in range(r._count(sg.OperatorsLength(), "operators")):
        op = sg.Operators(i)
        opname = _opname(r, op)
        ins = r._indices(op.Inputs, op.InputsLength(), "operator inputs")
        outs = r._indices(op.Outputs, op.OutputsLength(), "operator outputs")
        ins = [t for t in ins if t >= 0]
        if not outs or any(t < 0 for t in outs):
            raise ModelError(f"{r.where}: operator {i} ({opname}) has outputs {outs}")
        if opname not in KINDS and opname not in _MACS and opname not in _VIEWS:
            raise ModelError(f"{r.where}: operator {i} is {opname}, which edgesim cannot "
                             "import (not a known TFLite operator kind)")
        for t in ins:
            tt = r.tensor(t)
            if r.const(t) is None and t not in written and not tt.variable:
                raise ModelError(f"{r.where}: operator {i} ({opname}) reads tensor {t} "
                                 f"'{tt.name}' before any operator writes it")
        for t in outs:
            if t in written or r.const(t) is not None:
                raise ModelError(f"{r.where}: operator {i} ({opname}) writes tensor {t} "
                                 f"'{r.tensor(t).name}', which is already written or constant")
        if opname == "DEQUANTIZE" and ins and r.const(ins[0]) is not None:
            src = r.tensor(ins[0])
            vals = r.const(ins[0]).astype(np.float32)
            if src.scales.size and vals.dtype.kind != "f" and src.data is not None:
                shape = [1] * vals.ndim
                if src.scales.size > 1:
                    shape[src.axis] = -1
                vals = ((vals - src.zero_points.reshape(shape)) * src.scales.reshape(shape))
            if r.tensor(outs[0]).shape != vals.shape:
                raise ModelError(f"{r.where}: operator {i} (DEQUANTIZE) turns shape "
                                 f"{list(vals.shape)} into {list(r.tensor(outs[0]).shape)}")
            r.folded[outs[0]] = vals.astype(np.float32)
            continue
        if opname in _VIEWS:
            src = next((t for t in ins if r.const(t) is None), None)
            if src is None or r.tensor(src).elements != r.tensor(outs[0]).elements:
                raise ModelError(f"{r.where}: operator {i} ({opname}) views no activation of "
                                 "as many elements as its output")
            aliases[keep(outs[0])] = f"t{src}"
            written.add(outs[0])
            continue
        if opname in _MACS:
            node = (_fc if opname == "FULLY_CONNECTED" else _conv)(r, i, opname, op, ins, outs)
        else:
            node = _simple(r, i, opname, op, ins, outs)
        for t in (*ins, *outs):
            if r.const(t) is None:
                keep(t)
        node.meta["tensor"] = r.tensor(outs[0]).name
        nodes.append(node)
        written.update(outs)
    for t in outputs:
        if t not in written and t not in inputs:
            raise ModelError(f"{r.where}: graph output tensor {t} is never written")
    return Graph(name, tensors, tuple(nodes), tuple(f"t{t}" for t in inputs),
                 tuple(f"t{t}" for t in outputs), aliases, "tflite", path)


def load(path: str | os.PathLike, *, name: str | None = None) -> Graph:
    """The ``Graph`` of the TFLite file ``path`` (named ``name``, default the file's stem).

    Raises ``ModelError`` (one line naming the file) for a file that cannot be read, is larger
    than ``MAX_FILE_BYTES``, is not a well-formed TFLite flatbuffer, or holds an operator or a
    tensor ``load`` does not import (see the module docstring).
    """
    where = os.fspath(path)
    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except OSError as exc:
        raise ModelError(f"{where}: cannot read the TFLite file: "
                         f"{exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ModelError(f"{where}: larger than {MAX_FILE_BYTES} bytes; not imported")
    try:
        with _schema_package():
            r = _Reader(data, where)
            return _graph(r, name or Path(where).stem, where)
    except ModelError:
        raise
    except (IndexError, KeyError, struct.error, ValueError, TypeError, OverflowError,
            AttributeError, UnicodeError, MemoryError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ModelError(f"{where}: malformed or truncated TFLite flatbuffer "
                         f"({type(exc).__name__}: {detail})") from None
