"""ONNX files -> ``Graph``: float, QDQ and QLinear networks, read without running anything.

Public names: ``load``, ``LIMIT_BYTES``.

``load(path)`` reads the file (a regular file of at most ``LIMIT_BYTES``), parses the protobuf,
orders the nodes by their dataflow and computes every activation shape itself from the graph
input's shape (a dynamic batch is 1; ``input_shape`` gives the other dims when the file leaves
them symbolic). It never reads external data and never evaluates the file's ops other than the
shape arithmetic on small constants (``Shape``, ``Gather``, ``Concat``, ...). Errors are one
``ModelError`` line naming the file and the node (index in the file, name, operator).

* **Weights** are in the tracer's layout (``edgesim.frontends.graph``; ONNX's conv layout is
  already ``(K, C / groups, R, S)``; a ``(K, N)`` MatMul/Gemm operand is transposed to
  ``(N, K)``; a ConvTranspose weight ``(C, K / groups, R, S)`` to ``(K, C / groups, R, S)``).
  A float weight is quantised as the PyTorch tracer does: ``quantize(w, "int8",
  channel_axis=0)`` and its bias ``quantize_bias(b)`` (int32). A quantised weight (the integer
  initialiser behind a ``DequantizeLinear``, or a ``QLinearConv`` / ``QLinearMatMul`` /
  ``QGemm`` operand) is kept as stored, int8 or uint8, with its scales and zero points; its
  int32 bias likewise.
* **Folding as a deployed runtime does**: a ``BatchNormalization`` whose input is a float
  conv / Gemm / MatMul output read by it alone is folded into that op's weight and bias (the
  tracer's ``fold_bn`` arithmetic, in float32); any other BN is a ``norm`` op. A ``MatMul`` read
  only by an ``Add`` of a constant per-output-channel vector takes it as its bias (how
  ``nn.Linear`` on tokens exports). Activation ``QuantizeLinear`` / ``DequantizeLinear`` are
  views (``Graph.aliases``), not ops: an int8 runtime keeps the tensor in int8 and fuses the
  rescale into the op that produces it.
* **Kinds**: Conv / ConvTranspose / QLinearConv ``conv`` (a ConvTranspose's loop nest runs over
  its *input* pixels, ``P Q`` = input size, so MACs are exact); Gemm, MatMul with a constant
  operand, QLinearMatMul, QGemm ``linear``; MatMul of two activations ``matmul``; Gather from a
  constant table ``embedding``; pools and reductions ``pool``; Add, Mul, Concat, ... and the
  QLinear ones ``eltwise``; activations and Softmax ``act``; norms ``norm``; Pad, Resize ...
  ``other``. Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Slice, Split, Expand, Identity,
  Dropout, Cast are views.

>>> import onnx, tempfile, os
>>> from onnx import helper as h, TensorProto as T, numpy_helper as nh
>>> w = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
>>> g = h.make_graph([h.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
...                  [h.make_tensor_value_info("x", T.FLOAT, ["n", 3, 8, 8])],
...                  [h.make_tensor_value_info("y", T.FLOAT, None)], [w])
>>> path = os.path.join(tempfile.mkdtemp(), "conv.onnx")
>>> onnx.save(h.make_model(g), path)
>>> node = load(path).nodes[0]
>>> node.kind, node.macs, node.shape      # 4 * 3*3*3 * 8*8
('conv', 6912, (('N', 1), ('K', 4), ('C', 3), ('R', 3), ('S', 3), ('P', 8), ('Q', 8)))
"""

from __future__ import annotations

import heapq
import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto, NodeProto, TensorProto

from edgesim.errors import ModelError
from edgesim.frontends.graph import Graph, Node, Tensor, Weights
from edgesim.outputs import read_regular
from edgesim.trace.weights import quantize, quantize_bias

__all__ = ["LIMIT_BYTES", "load"]

#: The largest ONNX file ``load`` reads (2 GiB: protobuf stops there).
LIMIT_BYTES = 2 << 30
#: Elements the arithmetic on constants may add beyond its inputs, in all (a file cannot grow
#: a constant without bound by concatenating it with itself; a same-size result is free).
FOLD_ELEMENTS = 1 << 22
#: The most elements an activation tensor may claim.
MAX_ELEMENTS = 1 << 40

_DTYPES: dict[int, np.dtype] = {
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

_DEFAULT = ("", "ai.onnx")
_MS = "com.microsoft"

_ACT = frozenset({
    "Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Softmax",
    "LogSoftmax", "Elu", "Selu", "Celu", "Gelu", "Mish", "Softplus", "Softsign", "PRelu", "Exp",
    "Sqrt", "Erf", "Reciprocal", "Log", "ThresholdedRelu", "Hardmax", "Swish", "FastGelu",
    "QuickGelu"})
_ELTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
    "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Not", "Neg", "Abs", "Floor", "Ceil",
    "Round", "Sign", "Mod", "BitShift"})
_POOLS = frozenset({"MaxPool", "AveragePool", "LpPool"})
_GLOBAL = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_REDUCE = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd",
                     "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"})
_NORMS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization", "LRN",
                    "LpNormalization", "SimplifiedLayerNormalization"})
#: com.microsoft QLinear ops that are not MAC ops: kind, activation input positions.
_QLINEAR = {"QLinearAdd": ("eltwise", (0, 3)), "QLinearMul": ("eltwise", (0, 3)),
            "QLinearAveragePool": ("pool", (0,)), "QLinearGlobalAveragePool": ("pool", (0,)),
            "QLinearSigmoid": ("act", (0,)), "QLinearLeakyRelu": ("act", (0,)),
            "QLinearSoftmax": ("act", (0,))}


class _Bad(Exception):
    """A node is malformed; ``_Import.run`` names the node and the file."""


@dataclass(slots=True)
class _Const:
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
class _Op:
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


def load(path: str | os.PathLike, *, name: str | None = None,
         input_shape: Sequence[int] | None = None) -> Graph:
    """The ``Graph`` of the ONNX file ``path`` (``name``: default the file's stem).

    ``input_shape`` replaces the non-batch dims of the first graph input (needed when the file
    leaves them symbolic). Raises ``ModelError`` (one line) for an unreadable, oversized,
    malformed or unsupported file.
    """
    file = os.fspath(path)
    model = _parse(file)
    stem = os.path.splitext(os.path.basename(file))[0]
    return _Import(model, file, input_shape).run(name or stem)


def _parse(file: str) -> ModelProto:
    try:
        data = read_regular(file, LIMIT_BYTES)
    except OSError as exc:
        raise ModelError(f"{file}: cannot read the ONNX file: {exc.strerror or exc}") from None
    if len(data) > LIMIT_BYTES:
        raise ModelError(f"{file}: larger than the {LIMIT_BYTES} bytes an ONNX file may be")
    try:
        model = ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{file}: not an ONNX model (the protobuf does not parse: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'truncated or garbage'})"
                         ) from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelError(f"{file}: not an ONNX model (no graph, or a graph without nodes)")
    if not any(o.domain in _DEFAULT for o in model.opset_import):
        raise ModelError(f"{file}: not an ONNX model (no opset of the default domain)")
    return model


# -- tensors ------------------------------------------------------------------------------

def _array(t: TensorProto, what: str) -> np.ndarray:
    """A TensorProto's values, its claimed size checked against the bytes it carries before
    anything is allocated (no external data, ever)."""
    if t.data_location == TensorProto.EXTERNAL or t.external_data:
        raise _Bad(f"{what} '{t.name}' keeps its data in an external file; only "
                   "self-contained ONNX files are read")
    dtype = _DTYPES.get(t.data_type)
    if dtype is None:
        raise _Bad(f"{what} '{t.name}' has data type {t.data_type}, which is not supported")
    dims = tuple(int(d) for d in t.dims)
    if any(d < 0 for d in dims):
        raise _Bad(f"{what} '{t.name}' has a negative dimension {dims}")
    n = math.prod(dims)
    raw = t.raw_data
    if raw or t.HasField("raw_data"):
        if len(raw) != n * dtype.itemsize:
            raise _Bad(f"{what} '{t.name}' claims {dims} = {n} values of {dtype.itemsize} "
                       f"bytes but carries {len(raw)} bytes")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(dims)
    src = getattr(t, _FIELDS.get(t.data_type, "int32_data"))
    if len(src) != n:
        raise _Bad(f"{what} '{t.name}' claims {dims} = {n} values but carries {len(src)}")
    if dtype == np.float16:
        return np.asarray(src, dtype=np.uint16).view(np.float16).reshape(dims)
    return np.asarray(src).astype(dtype).reshape(dims)


def _attrs(node: NodeProto) -> dict[str, Any]:
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


def _count(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


# -- shape arithmetic, shared by constants and activations ----------------------------------

def _axis(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise _Bad(f"axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise _Bad(f"shapes {', '.join(map(str, shapes))} do not broadcast") from None


def _reshaped(shape: tuple[int, ...], target: Sequence[int], allowzero: int) -> tuple[int, ...]:
    out = [shape[i] if d == 0 and not allowzero and i < len(shape) else int(d)
           for i, d in enumerate(target)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise _Bad(f"reshape target {list(target)} is invalid")
    n, known = _count(shape), _count(d for d in out if d != -1)
    if -1 in out:
        if known == 0 or n % known:
            raise _Bad(f"cannot reshape {shape} to {list(target)}")
        out[out.index(-1)] = n // known
    if _count(out) != n:
        raise _Bad(f"cannot reshape {shape} ({n} elements) to {tuple(out)}")
    return tuple(out)


def _squeezed(shape: tuple[int, ...], axes: Sequence[int] | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {_axis(a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in drop):
        raise _Bad(f"cannot squeeze axes {list(axes)} of {shape}")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def _unsqueezed(shape: tuple[int, ...], axes: Sequence[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    add = sorted({_axis(a, rank) for a in axes})
    it = iter(shape)
    return tuple(1 if i in add else next(it) for i in range(rank))


def _sliced(shape: tuple[int, ...], starts: Sequence[int], ends: Sequence[int],
            axes: Sequence[int] | None, steps: Sequence[int] | None) -> tuple[int, ...]:
    out = list(shape)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise _Bad("Slice starts, ends, axes and steps differ in length")
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st == 0:
            raise _Bad("Slice step 0")
        a = _axis(int(a), len(shape))
        out[a] = len(range(*slice(int(s), int(e), int(st)).indices(shape[a])))
    return tuple(out)


def _window(size: int, k: int, stride: int, dil: int, pads: tuple[int, int],
            ceil: bool = False) -> int:
    span = dil * (k - 1) + 1
    room = size + pads[0] + pads[1] - span
    if room < 0:
        raise _Bad(f"window of {span} larger than the padded input {size + sum(pads)}")
    out = (-(-room // stride) if ceil else room // stride) + 1
    if ceil and (out - 1) * stride >= size + pads[0]:
        out -= 1      # the last window may not start in the end padding
    return out


def _spatial(a: dict[str, Any], size: Sequence[int], kernel: Sequence[int]
             ) -> tuple[list[int], list[int], list[int], list[int]]:
    """Output size, strides, dilations and pads (begins then ends) of a conv or pool window."""
    n = len(size)
    strides = a.get("strides", [1] * n)
    dils = a.get("dilations", [1] * n)
    pads = a.get("pads", [0] * (2 * n))
    auto = a.get("auto_pad", "NOTSET")
    if len(strides) != n or len(dils) != n or len(pads) != 2 * n:
        raise _Bad(f"strides {strides}, dilations {dils} or pads {pads} do not fit "
                   f"{n} spatial dims")
    if min(strides, default=1) < 1 or min(dils, default=1) < 1 or min(pads, default=0) < 0:
        raise _Bad(f"strides {strides}, dilations {dils} and pads {pads} must be positive")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            out = -(-size[i] // strides[i])
            total = max((out - 1) * strides[i] + dils[i] * (kernel[i] - 1) + 1 - size[i], 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise _Bad(f"auto_pad {auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    ceil = bool(a.get("ceil_mode", 0))
    out = [_window(size[i], kernel[i], strides[i], dils[i], (pads[i], pads[i + n]), ceil)
           for i in range(n)]
    return out, strides, dils, pads


def _nest(n: int, k: int, c: int, kernel: Sequence[int], pq: Sequence[int]
          ) -> tuple[tuple[str, int], ...]:
    """The tracer's conv loop nest: ``N K C R S P Q`` (1-D: R = P = 1; 3-D: T R S, D P Q)."""
    sp = len(kernel)
    rs = [1] * (2 - min(sp, 2)) + list(kernel)
    out = [1] * (2 - min(sp, 2)) + list(pq)
    names = ("R", "S") if sp <= 2 else ("T", "R", "S")
    pqn = ("P", "Q") if sp <= 2 else ("D", "P", "Q")
    return (("N", n), ("K", k), ("C", c), *zip(names, rs, strict=True),
            *zip(pqn, out, strict=True))


# -- the importer -------------------------------------------------------------------------

class _Import:
    """One pass over the nodes in dataflow order: constants folded, views aliased, ops built."""

    def __init__(self, model: ModelProto, file: str, input_shape: Sequence[int] | None):
        self.model, self.file, self.graph = model, file, model.graph
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.consts: dict[str, _Const] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.aliases: dict[str, str] = {}
        self.ops: list[_Op] = []
        self.producer: dict[str, int] = {}      # activation tensor -> index in self.ops
        self.names: set[str] = set()
        self.folded = 0
        self.shared: dict[tuple[int, int, int], np.ndarray | Weights] = {}
        self.readers = Counter(i for n in self.graph.node for i in n.input if i)
        self.readers.update(o.name for o in self.graph.output)

    # -- the walk ---------------------------------------------------------------------------
    def run(self, name: str) -> Graph:
        if self.graph.sparse_initializer:
            raise ModelError(f"{self.file}: sparse initialisers are not supported")
        inputs = self._inputs()
        for i in self._order():
            node = self.graph.node[i]
            label = f"node {i} '{node.name}' ({node.op_type})" if node.name else \
                f"node {i} ({node.op_type})"
            try:
                self._node(i, node)
            except _Bad as exc:
                raise ModelError(f"{self.file}: {label}: {exc}") from None
            except (ValueError, IndexError, KeyError, TypeError, OverflowError,
                    ZeroDivisionError, MemoryError) as exc:
                raise ModelError(f"{self.file}: {label}: malformed ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        outputs = tuple(o.name for o in self.graph.output)
        for o in outputs:
            if o not in self.shapes:
                raise ModelError(f"{self.file}: graph output '{o}' is not computed from the "
                                 "input (a constant or never produced)")
        tensors = {t: Tensor(t, s) for t, s in self.shapes.items()}
        memo: dict[int, Weights] = {}
        return Graph(name, tensors, tuple(op.node(memo) for op in self.ops), inputs, outputs,
                     dict(self.aliases), "onnx", self.file)

    def _inputs(self) -> tuple[str, ...]:
        names = []
        for k, vi in enumerate(v for v in self.graph.input if v.name not in self.inits):
            tt = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                    for d in tt.shape.dim] if tt.HasField("shape") else None
            if k == 0 and self.input_shape is not None:
                if dims is not None and len(dims) != len(self.input_shape) + 1:
                    raise ModelError(f"{self.file}: input shape {self.input_shape} does not fit "
                                     f"graph input '{vi.name}' of rank {len(dims)} (batch "
                                     "first, then the dims given)")
                dims = [dims[0] if dims else None, *self.input_shape]
            if dims is None or any(d is None for d in dims[1:]):
                raise ModelError(f"{self.file}: graph input '{vi.name}' has symbolic or unknown "
                                 f"dims {_show(tt)}; give them with --input-shape")
            if any(d < 1 for d in dims[1:]):
                raise ModelError(f"{self.file}: input shape {tuple(dims[1:])} must be positive")
            shape = (dims[0] or 1, *dims[1:]) if dims else ()
            if _count(shape) > MAX_ELEMENTS:
                raise ModelError(f"{self.file}: graph input '{vi.name}' claims {shape}")
            self.shapes[vi.name] = tuple(int(d) for d in shape)
            names.append(vi.name)
        if not names:
            raise ModelError(f"{self.file}: the graph has no input that is not a constant")
        return tuple(names)

    def _order(self) -> list[int]:
        """Node indices in dataflow order (file order among the ready ones)."""
        nodes = self.graph.node
        made: dict[str, int] = {}
        for i, n in enumerate(nodes):
            for o in n.output:
                if o and (o in made or o in self.inits or o in self.shapes):
                    raise ModelError(f"{self.file}: node {i} ({n.op_type}) writes '{o}', "
                                     "which another node, an initialiser or an input holds")
                if o:
                    made[o] = i
        wait, needs = [0] * len(nodes), [[] for _ in nodes]
        for i, n in enumerate(nodes):
            for t in set(n.input) - {""}:
                if t in made:
                    wait[i] += 1
                    needs[made[t]].append(i)
                elif t not in self.inits and t not in self.shapes:
                    raise ModelError(f"{self.file}: node {i} '{n.name}' ({n.op_type}) reads "
                                     f"'{t}', which no node, initialiser or input produces")
        ready = [i for i, w in enumerate(wait) if w == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for j in needs[i]:
                wait[j] -= 1
                if wait[j] == 0:
                    heapq.heappush(ready, j)
        if len(order) < len(nodes):
            stuck = min(set(range(len(nodes))) - set(order))
            raise ModelError(f"{self.file}: the graph has a cycle through node {stuck} "
                             f"'{nodes[stuck].name}' ({nodes[stuck].op_type})")
        return order

    # -- values -------------------------------------------------------------------------------
    def const(self, t: str) -> _Const | None:
        if t in self.consts:
            return self.consts[t]
        if t in self.inits:
            self.consts[t] = _Const(_array(self.inits[t], "initialiser"))
            return self.consts[t]
        return None

    def act(self, t: str) -> tuple[int, ...]:
        if t not in self.shapes:
            raise _Bad(f"'{t}' must be an activation, not a constant")
        return self.shapes[t]

    def ints(self, t: str, what: str) -> list[int] | None:
        """A small constant integer input (axes, pads, shape), None when absent."""
        if not t:
            return None
        c = self.const(t)
        if c is None:
            raise _Bad(f"{what} '{t}' must be a constant")
        if c.values.size > 64:
            raise _Bad(f"{what} '{t}' has {c.values.size} values")
        return [int(v) for v in c.values.reshape(-1)]

    def shape_of(self, t: str) -> tuple[int, ...]:
        c = self.const(t)
        return tuple(c.values.shape) if c is not None else self.act(t)

    def set_shape(self, t: str, shape: Sequence[int]) -> None:
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape) or _count(shape) > MAX_ELEMENTS:
            raise _Bad(f"output '{t}' would have shape {shape}")
        self.shapes[t] = shape

    def fold(self, t: str, values: np.ndarray) -> None:
        self.consts[t] = _Const(np.asarray(values))

    def budget(self, shape: Sequence[int], *inputs: np.ndarray) -> None:
        """Refuse a result that grows past ``FOLD_ELEMENTS`` added elements, before making it."""
        self.folded += max(_count(shape) - max((x.size for x in inputs), default=0), 0)
        if self.folded > FOLD_ELEMENTS:
            raise _Bad(f"constant arithmetic would make a {tuple(shape)} tensor (over "
                       f"{FOLD_ELEMENTS} elements added in all)")

    # -- one node -----------------------------------------------------------------------------
    def _node(self, index: int, node: NodeProto) -> None:
        op, a = node.op_type, _attrs(node)
        ins = list(node.input)
        if node.domain not in (*_DEFAULT, _MS):
            raise _Bad(f"operator {node.domain}.{op} is not supported by the ONNX importer")
        if all(self.const(t) is not None for t in ins if t) and op not in (
                "Shape", "Size") and (ins or op in ("Constant", "ConstantOfShape")):
            return self._constant(node, op, a, ins)
        handler = _HANDLERS.get(op)
        if handler is None:
            raise _Bad(f"operator {(node.domain + '.') if node.domain else ''}{op} is not "
                       "supported by the ONNX importer")
        handler(self, index, node, op, a, ins)

    def add(self, index: int, node: NodeProto, kind: str, ins: Sequence[str],
            outs: dict[str, Sequence[int]], **kw: Any) -> _Op:
        for t, s in outs.items():
            self.set_shape(t, s)
        name = node.name or f"{node.op_type}_{index}"
        while name in self.names:
            name = f"{name}_{index}"
        self.names.add(name)
        kw.setdefault("meta", {})["index"] = index
        op = _Op(name, kind, node.op_type, tuple(dict.fromkeys(t for t in ins if t in self.shapes)),
                 tuple(outs), **kw)
        for t in outs:
            self.producer[t] = len(self.ops)
        self.ops.append(op)
        return op

    def view(self, src: str, out: str, shape: Sequence[int]) -> None:
        self.set_shape(out, shape)
        self.aliases[out] = self.aliases.get(src, src)

    # -- constants ----------------------------------------------------------------------------
    def _constant(self, node: NodeProto, op: str, a: dict[str, Any], ins: list[str]) -> None:
        fn = _FOLDS.get(op)
        if fn is None:
            raise _Bad(f"operator {op} computes on constants only, which the importer does "
                       "not evaluate")
        outs = fn(self, a, [self.const(t) if t else None for t in ins])
        for t, c in zip(node.output, outs, strict=False):
            if t:
                if isinstance(c, _Const):
                    self.consts[t] = c
                else:
                    self.fold(t, c)

    # -- weights ------------------------------------------------------------------------------
    def weight(self, c: _Const, out_axis: int, layout: Callable[[np.ndarray], np.ndarray],
               what: str, groups: int = 1) -> np.ndarray | Weights:
        """A weight operand in the tracer's layout: float (quantised at the end) or as stored;
        the same object each time ``c`` is read the same way (a shared tensor is one block)."""
        key = (id(c), out_axis, groups)
        if key not in self.shared:
            self.shared[key] = self._weight(c, out_axis, layout, what, groups)
        return self.shared[key]

    def _weight(self, c: _Const, out_axis: int, layout: Callable[[np.ndarray], np.ndarray],
                what: str, groups: int) -> np.ndarray | Weights:
        if not c.quantized:
            return layout(np.asarray(c.values, dtype=np.float32))
        if c.values.dtype not in (np.int8, np.uint8):
            raise _Bad(f"{what} is stored as {c.values.dtype}; int8 or uint8 expected")
        scales, zps = c.scales.reshape(-1), c.zero_points.reshape(-1)
        if c.axis is not None and c.axis != out_axis and c.values.shape[c.axis] > 1:
            raise _Bad(f"{what} is quantised along axis {c.axis}, not its output-channel "
                       f"axis {out_axis}")
        if scales.size > 1 and groups > 1:
            scales, zps = np.tile(scales, groups), np.tile(zps, groups)
        return Weights(layout(c.values), scales.astype(np.float32), zps)

    def operand(self, t: str, what: str) -> _Const | None:
        """The constant input ``t`` (None when the node leaves it out)."""
        if not t:
            return None
        c = self.const(t)
        if c is None:
            raise _Bad(f"{what} '{t}' must be a constant")
        return c

    def bias(self, c: _Const | None, n: int, what: str) -> np.ndarray | Weights | None:
        """A bias of ``n`` outputs: float (quantised at the end) or int32 as stored."""
        if c is None:
            return None
        if c.values.size not in (1, n):
            raise _Bad(f"{what} has {c.values.size} values for {n} output channels")
        if c.quantized or c.values.dtype == np.int32:
            vals = np.broadcast_to(c.values.reshape(-1), (n,)).astype(np.int32)
            scales = np.ones(1, np.float32) if c.scales is None else \
                c.scales.reshape(-1).astype(np.float32)
            zps = np.zeros(1, np.int32) if c.zero_points is None else \
                c.zero_points.reshape(-1).astype(np.int32)
            return Weights(vals, scales, zps, bits=32)
        return np.broadcast_to(c.values.reshape(-1).astype(np.float32), (n,)).copy()


def _show(tt: Any) -> str:
    if not tt.HasField("shape"):
        return "(none)"
    return "(" + ", ".join(d.dim_param or str(d.dim_value) if d.dim_value or d.dim_param
                           else "?" for d in tt.shape.dim) + ")"


# -- constant folding (shape arithmetic) ----------------------------------------------------

def _one(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    return lambda imp, a, cs: [fn(imp, a, cs)]


def _c_constant(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    if "value" in a and isinstance(a["value"], TensorProto):
        return _array(a["value"], "Constant value")
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dt)
    raise _Bad("a Constant without a tensor, float(s) or int(s) value")


def _c_dequantize(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> list[_Const]:
    x, s = cs[0].values, cs[1].floats().astype(np.float32)
    zp = cs[2].values if len(cs) > 2 and cs[2] is not None else np.zeros(s.shape, x.dtype)
    if a.get("block_size"):
        raise _Bad("blocked quantisation (block_size) is not supported")
    if s.size > 1 and s.ndim == 1:
        axis = _axis(a.get("axis", 1), x.ndim)
        if x.shape[axis] != s.size or zp.size != s.size:
            raise _Bad(f"{s.size} scales / {zp.size} zero points do not fit axis {axis} "
                       f"of {x.shape}")
        return [_Const(x, s, zp.reshape(-1), axis)]
    if s.size != 1 or zp.size != 1:
        raise _Bad(f"scales of shape {s.shape} are neither one per tensor nor per axis")
    return [_Const(x, s.reshape(1), zp.reshape(1), None)]


def _c_quantize(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    """A float constant quantised as QuantizeLinear does (round half to even, saturate)."""
    x, s = cs[0].floats().astype(np.float32), cs[1].floats().astype(np.float32)
    zp = cs[2].values if len(cs) > 2 and cs[2] is not None else np.zeros(s.shape, np.uint8)
    if zp.dtype not in (np.int8, np.uint8):
        raise _Bad(f"QuantizeLinear to {zp.dtype}; int8 or uint8 expected")
    shape = [1] * x.ndim
    if s.size > 1:
        shape[_axis(a.get("axis", 1), x.ndim)] = -1
    info = np.iinfo(zp.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(x / s.reshape(shape)) + zp.astype(np.float32).reshape(shape)
    return np.clip(np.nan_to_num(q), info.min, info.max).astype(zp.dtype)


def _c_reshape(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    x = cs[0].values
    return x.reshape(_reshaped(x.shape, [int(v) for v in cs[1].values.reshape(-1)],
                               a.get("allowzero", 0)))


def _axes(a: dict[str, Any], cs: list[_Const | None], i: int) -> list[int] | None:
    if len(cs) > i and cs[i] is not None:
        return [int(v) for v in cs[i].values.reshape(-1)]
    return a.get("axes")


def _c_concat(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    arrs = [c.values for c in cs if c is not None]
    axis = _axis(a.get("axis", 0), arrs[0].ndim)
    imp.budget((sum(x.shape[axis] for x in arrs), *arrs[0].shape[:axis],
                *arrs[0].shape[axis + 1:]), *arrs)
    return np.concatenate(arrs, axis=axis)


def _c_gather(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    x, idx = cs[0].values, cs[1].values.astype(np.int64)
    axis = _axis(a.get("axis", 0), x.ndim)
    imp.budget((*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]), x)
    return np.take(x, idx, axis=axis)


def _c_slice(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    x = cs[0].values
    starts, ends = (a.get("starts"), a.get("ends")) if len(cs) < 3 else (
        cs[1].values.reshape(-1), cs[2].values.reshape(-1))
    axes = a.get("axes") if len(cs) < 4 or cs[3] is None else cs[3].values.reshape(-1)
    steps = None if len(cs) < 5 or cs[4] is None else cs[4].values.reshape(-1)
    axes = range(len(starts)) if axes is None else [_axis(int(v), x.ndim) for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if int(st) == 0:
            raise _Bad("Slice step 0")
        index[ax] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _c_math(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def go(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> list[np.ndarray]:
        arrs = [c.floats() for c in cs if c is not None]
        imp.budget(_broadcast(*(x.shape for x in arrs)), *arrs)
        with np.errstate(all="ignore"):
            return [np.asarray(fn(*arrs))]
    return go


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        return np.trunc(x / np.where(y == 0, 1, y)).astype(np.result_type(x, y))
    return x / y


def _c_cast(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    dtype = _DTYPES.get(a.get("to", 0))
    if dtype is None:
        raise _Bad(f"Cast to data type {a.get('to')} is not supported")
    with np.errstate(all="ignore"):
        return cs[0].floats().astype(dtype)


def _c_of_shape(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    shape = [int(v) for v in cs[0].values.reshape(-1)]
    if any(d < 0 for d in shape):
        raise _Bad(f"ConstantOfShape {shape}")
    imp.budget(shape)
    fill = _array(a["value"], "ConstantOfShape value").reshape(-1)[:1] if "value" in a else \
        np.zeros(1, np.float32)
    return np.full(shape, fill[0] if fill.size else 0, dtype=fill.dtype)


def _c_range(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    start, limit, delta = (c.values.reshape(-1)[0] for c in cs[:3])
    if delta == 0:
        raise _Bad("Range delta 0")
    imp.budget((max(math.ceil((float(limit) - float(start)) / float(delta)), 0),))
    return np.arange(start, limit, delta)


def _c_expand(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> np.ndarray:
    x, shape = cs[0].values, tuple(int(v) for v in cs[1].values.reshape(-1))
    out = _broadcast(x.shape, shape)
    imp.budget(out, x)
    return np.broadcast_to(x, out).copy()


def _c_transpose(imp: _Import, a: dict[str, Any], cs: list[_Const | None]) -> list[Any]:
    c = cs[0]
    perm = a.get("perm", list(range(c.values.ndim))[::-1])
    if sorted(perm) != list(range(c.values.ndim)):
        raise _Bad(f"perm {perm} does not permute {c.values.ndim} axes")
    if c.quantized:
        axis = None if c.axis is None else perm.index(c.axis)
        return [_Const(np.transpose(c.values, perm), c.scales, c.zero_points, axis)]
    return [np.transpose(c.values, perm)]


_FOLDS: dict[str, Callable[..., list[Any]]] = {
    "Constant": _one(_c_constant),
    "Identity": lambda imp, a, cs: [cs[0]],
    "Dropout": lambda imp, a, cs: [cs[0]],
    "DequantizeLinear": _c_dequantize,
    "QuantizeLinear": _one(_c_quantize),
    "Reshape": _one(_c_reshape),
    "Flatten": _one(lambda imp, a, cs: cs[0].values.reshape(
        _count(cs[0].values.shape[:_axis(a.get("axis", 1), cs[0].values.ndim + 1)]), -1)),
    "Squeeze": _one(lambda imp, a, cs: cs[0].values.reshape(
        _squeezed(cs[0].values.shape, _axes(a, cs, 1)))),
    "Unsqueeze": _one(lambda imp, a, cs: cs[0].values.reshape(
        _unsqueezed(cs[0].values.shape, _axes(a, cs, 1) or []))),
    "Transpose": _c_transpose,
    "Concat": _one(_c_concat),
    "Gather": _one(_c_gather),
    "Slice": _one(_c_slice),
    "Cast": _one(_c_cast),
    "ConstantOfShape": _one(_c_of_shape),
    "Range": _one(_c_range),
    "Expand": _one(_c_expand),
    "Add": _c_math(np.add), "Sub": _c_math(np.subtract), "Mul": _c_math(np.multiply),
    "Div": _c_math(_int_div), "Neg": _c_math(np.negative), "Abs": _c_math(np.abs),
    "Equal": _c_math(np.equal), "Where": _c_math(np.where), "Min": _c_math(np.minimum),
    "Max": _c_math(np.maximum), "Sqrt": _c_math(np.sqrt), "Floor": _c_math(np.floor),
    "Ceil": _c_math(np.ceil), "Pow": _c_math(np.power), "Reciprocal": _c_math(np.reciprocal),
}


# -- ops ------------------------------------------------------------------------------------

Handler = Callable[[_Import, int, NodeProto, str, dict[str, Any], list[str]], None]
_HANDLERS: dict[str, Handler] = {}


def _handles(*names: str) -> Callable[[Handler], Handler]:
    def reg(fn: Handler) -> Handler:
        for n in names:
            _HANDLERS[n] = fn
        return fn
    return reg


def _conv_common(imp: _Import, index: int, node: NodeProto, a: dict[str, Any], x: str,
                 wc: _Const | None, w_what: str, bc: _Const | None) -> _Op:
    xs = imp.act(x)
    if wc is None:
        raise _Bad(f"{w_what} must be a constant")
    w = wc.values
    sp = len(xs) - 2
    if not 1 <= sp <= 3 or w.ndim != sp + 2:
        raise _Bad(f"input {xs} and {w_what} {w.shape} are not a 1-, 2- or 3-D conv")
    g = int(a.get("group", 1))
    kernel = [int(d) for d in w.shape[2:]]
    if a.get("kernel_shape", kernel) != kernel:
        raise _Bad(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    if node.op_type == "ConvTranspose":
        return _deconv(imp, index, node, a, x, xs, wc, g, kernel, bc)
    k, cg = int(w.shape[0]), int(w.shape[1])
    if g < 1 or xs[1] % g or k % g or cg != xs[1] // g:
        raise _Bad(f"{w_what} {w.shape} with group {g} does not fit input channels {xs[1]}")
    pq, strides, dils, pads = _spatial(a, xs[2:], kernel)
    macs = xs[0] * k * cg * _count(kernel) * _count(pq)
    return imp.add(index, node, "conv", [x], {node.output[0]: (xs[0], k, *pq)},
                   shape=_nest(xs[0], k, cg, kernel, pq), macs=macs,
                   weight=imp.weight(wc, 0, lambda v: v, w_what),
                   bias=imp.bias(bc, k, "the bias"), groups=g,
                   meta={"strides": strides, "dilations": dils, "pads": pads})


def _deconv(imp: _Import, index: int, node: NodeProto, a: dict[str, Any], x: str,
            xs: tuple[int, ...], wc: _Const, g: int, kernel: list[int],
            bc: _Const | None) -> _Op:
    """ConvTranspose: weight ``(C, K / g, R, S)``; each input pixel meets K/g x R x S outputs."""
    w = wc.values
    c, kg = int(w.shape[0]), int(w.shape[1])
    if g < 1 or c != xs[1] or c % g:
        raise _Bad(f"weight {w.shape} with group {g} does not fit input channels {xs[1]}")
    k, n = kg * g, len(kernel)
    strides, dils = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    extra = a.get("output_padding", [0] * n)
    if len(strides) != n or len(dils) != n or len(extra) != n:
        raise _Bad(f"strides {strides}, dilations {dils} or output_padding {extra} do not "
                   f"fit {n} spatial dims")
    if "output_shape" in a or a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        out = a.get("output_shape", [xs[2 + i] * strides[i] for i in range(n)])[-n:]
    else:
        pads = [0] * (2 * n) if a.get("auto_pad") == "VALID" else a.get("pads", [0] * (2 * n))
        if len(pads) != 2 * n:
            raise _Bad(f"pads {pads} do not fit {n} spatial dims")
        out = [strides[i] * (xs[2 + i] - 1) + extra[i] + (kernel[i] - 1) * dils[i] + 1
               - pads[i] - pads[i + n] for i in range(n)]
    if len(out) != n or min(out) < 1:
        raise _Bad(f"output size {out} is not positive")

    def layout(v: np.ndarray) -> np.ndarray:
        v = v.reshape(g, c // g, kg, *kernel).swapaxes(1, 2)
        return np.ascontiguousarray(v.reshape(k, c // g, *kernel))

    macs = xs[0] * k * (c // g) * _count(kernel) * _count(xs[2:])
    return imp.add(index, node, "conv", [x], {node.output[0]: (xs[0], k, *out)},
                   shape=_nest(xs[0], k, c // g, kernel, xs[2:]), macs=macs,
                   weight=imp.weight(wc, 1, layout, "the weight", groups=g),
                   bias=imp.bias(bc, k, "the bias"), groups=g,
                   meta={"strides": strides, "transposed": True, "output": tuple(out)})


@_handles("Conv", "ConvTranspose")
def _conv(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if len(ins) < 2:
        raise _Bad(f"{op} has {len(ins)} inputs; 2 or 3 expected")
    _conv_common(imp, index, node, a, ins[0], imp.operand(ins[1], "weight"),
                 f"weight '{ins[1]}'", imp.operand(ins[2] if len(ins) > 2 else "", "bias"))


@_handles("QLinearConv")
def _qconv(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    if len(ins) < 8:
        raise _Bad(f"QLinearConv has {len(ins)} inputs; 8 or 9 expected")
    bias = _qbias(imp, ins[8], ins[1], ins[4]) if len(ins) > 8 and ins[8] else None
    _conv_common(imp, index, node, a, ins[0], _qconst(imp, ins[3], ins[4], ins[5], 0),
                 f"weight '{ins[3]}'", bias)


def _qconst(imp: _Import, w: str, s: str, zp: str, axis: int) -> _Const:
    """A QLinear operand as stored: integers, scales and zero points (per tensor or ``axis``)."""
    wc, sc = imp.const(w), imp.const(s)
    zc = imp.const(zp) if zp else None
    if wc is None or sc is None or (zp and zc is None):
        raise _Bad(f"weight '{w}', its scale and zero point must be constants")
    scales = sc.floats().reshape(-1).astype(np.float32)
    zps = zc.values.reshape(-1) if zc is not None else np.zeros(scales.size, wc.values.dtype)
    per = scales.size > 1
    if wc.values.ndim <= axis or zps.size != scales.size or (
            per and wc.values.shape[axis] != scales.size):
        raise _Bad(f"{scales.size} scales and {zps.size} zero points do not fit weight "
                   f"'{w}' of shape {wc.values.shape}")
    return _Const(wc.values, scales, zps, axis if per else None)


def _qbias(imp: _Import, b: str, x_scale: str, w_scale: str) -> _Const:
    """An int32 QLinear bias as stored; its scale is input scale x weight scale."""
    bc = imp.operand(b, "bias")
    xs, ws = imp.operand(x_scale, "input scale"), imp.operand(w_scale, "weight scale")
    if bc.values.dtype != np.int32:
        raise _Bad(f"bias '{b}' is {bc.values.dtype}; int32 expected")
    scale = (xs.floats().reshape(-1)[:1] * ws.floats().reshape(-1)).astype(np.float32)
    return _Const(bc.values, scale, np.zeros(scale.size, np.int32),
                  0 if scale.size > 1 else None)


def _linear(imp: _Import, index: int, node: NodeProto, x: str, wc: _Const | None,
            w_what: str, trans_b: bool, bc: _Const | None, alpha: float = 1.0,
            beta: float = 1.0, act_b: str = "") -> None:
    """``Y[.., M, N] = X[.., M, K] @ W`` with W ``(K, N)`` (``trans_b``: ``(N, K)``); without a
    constant W, a MatMul of the activations ``x`` and ``act_b``."""
    xs = imp.act(x)
    if wc is None:
        _matmul_acts(imp, index, node, x, xs, act_b)
        return
    w = wc.values
    if w.ndim != 2:
        raise _Bad(f"{w_what} has shape {w.shape}; a 2-D constant expected")
    k, n = (int(w.shape[1]), int(w.shape[0])) if trans_b else (int(w.shape[0]), int(w.shape[1]))
    if not xs or xs[-1] != k:
        raise _Bad(f"input {xs} does not end in the {k} features {w_what} {w.shape} reduces")
    m = _count(xs[:-1])
    weight = imp.weight(wc, 0 if trans_b else 1, (lambda v: v) if trans_b else
                        (lambda v: np.ascontiguousarray(v.T)), w_what)
    if alpha != 1.0:
        weight = weight * np.float32(alpha) if isinstance(weight, np.ndarray) else Weights(
            weight.values, weight.scales * np.float32(alpha), weight.zero_points)
    b = imp.bias(bc, n, "the bias")
    if isinstance(b, np.ndarray) and beta != 1.0:
        b = b * np.float32(beta)
    imp.add(index, node, "linear", [x], {node.output[0]: (*xs[:-1], n)},
            shape=(("M", m), ("N", n), ("K", k)), macs=m * n * k, weight=weight, bias=b)


def _matmul_acts(imp: _Import, index: int, node: NodeProto, x: str, xs: tuple[int, ...],
                 y: str) -> None:
    """Activation x activation (attention): ``matmul`` without weights, numpy's broadcasting."""
    ys = imp.act(y)
    if not xs or not ys:
        raise _Bad("MatMul of scalars")
    a2, b2 = (xs if len(xs) > 1 else (1, *xs)), (ys if len(ys) > 1 else (*ys, 1))
    if a2[-1] != b2[-2]:
        raise _Bad(f"MatMul of {xs} and {ys}: the reduced dims differ")
    k, n = a2[-1], b2[-1]
    out = (*_broadcast(a2[:-2], b2[:-2]), *xs[-2:-1], *(ys[-1:] if len(ys) > 1 else ()))
    m = _count(out) // n if n else 0
    imp.add(index, node, "matmul", [x, y], {node.output[0]: out},
            shape=(("M", m), ("N", n), ("K", k)), macs=m * n * k)


@_handles("Gemm")
def _gemm(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if len(ins) < 2 or a.get("transA", 0):
        raise _Bad("Gemm needs A and B, and transA=0 (a transposed activation is not supported)")
    if len(imp.act(ins[0])) != 2:
        raise _Bad(f"input {imp.act(ins[0])} is not 2-D")
    _linear(imp, index, node, ins[0], imp.const(ins[1]), f"B '{ins[1]}'",
            bool(a.get("transB", 0)), imp.operand(ins[2] if len(ins) > 2 else "", "C"),
            a.get("alpha", 1.0), a.get("beta", 1.0), act_b=ins[1])


@_handles("MatMul")
def _matmul(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    if len(ins) != 2 or imp.const(ins[0]) is not None:
        raise _Bad("a constant left operand is not supported (the weight must be on the right)")
    _linear(imp, index, node, ins[0], imp.const(ins[1]), f"B '{ins[1]}'", False, None,
            act_b=ins[1])


@_handles("QLinearMatMul")
def _qmatmul(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    if len(ins) < 8:
        raise _Bad(f"QLinearMatMul has {len(ins)} inputs; 8 expected")
    if imp.const(ins[0]) is not None:
        raise _Bad("a constant left operand is not supported (the weight must be on the right)")
    wc = _qconst(imp, ins[3], ins[4], ins[5], 1) if imp.const(ins[3]) is not None else None
    _linear(imp, index, node, ins[0], wc, f"B '{ins[3]}'", False, None, act_b=ins[3])


@_handles("QGemm")
def _qgemm(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    if len(ins) < 6 or a.get("transA", 0):
        raise _Bad("QGemm needs A, its scale and zero point, B, its scale and zero point, "
                   "and transA=0")
    trans = bool(a.get("transB", 0))
    bias = _qbias(imp, ins[6], ins[1], ins[4]) if len(ins) > 6 and ins[6] else None
    _linear(imp, index, node, ins[0], _qconst(imp, ins[3], ins[4], ins[5], 0 if trans else 1),
            f"B '{ins[3]}'", trans, bias, a.get("alpha", 1.0))


def _producer(imp: _Import, x: str, node: NodeProto) -> _Op | None:
    """The float conv/linear op whose output ``x`` only ``node`` reads (it may fold into it)."""
    i = imp.producer.get(x)
    if i is None or imp.readers[x] != 1 or x in imp.aliases:
        return None
    op = imp.ops[i]
    if op.kind not in ("conv", "linear") or not isinstance(op.weight, np.ndarray) or \
            isinstance(op.bias, Weights) or len(op.outputs) != 1:
        return None
    return op


def _retarget(imp: _Import, op: _Op, old: str, new: str, what: str) -> None:
    op.outputs = (new,)
    imp.shapes[new] = imp.shapes.pop(old)
    imp.producer[new] = imp.producer.pop(old)
    op.meta.setdefault("folded", []).append(what)


@_handles("BatchNormalization")
def _bn(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
        ins: list[str]) -> None:
    x = ins[0]
    xs = imp.act(x)
    params = [imp.const(t) for t in ins[1:5]]
    if len(xs) < 2 or len(params) != 4 or any(p is None for p in params) or any(
            p.values.size != xs[1] for p in params):
        raise _Bad(f"scale, bias, mean and var must be constants of {xs[1:2]} channels")
    if a.get("training_mode", 0) or any(o for o in node.output[1:]):
        raise _Bad("training mode (running statistics as outputs) is not supported")
    conv = _producer(imp, x, node)
    if conv is not None and conv.kind == "linear" and len(xs) != 2:
        conv = None      # BN's channels are axis 1, a linear's outputs the last axis
    if conv is None:
        imp.add(index, node, "norm", [x], {node.output[0]: xs}, meta={"unfolded": True})
        return
    gamma, beta, mean, var = (p.floats().astype(np.float32).reshape(-1) for p in params)
    eps = np.float32(a.get("epsilon", 1e-5))
    inv = gamma / np.sqrt(var + eps)
    w = conv.weight
    conv.weight = w * inv.reshape((-1,) + (1,) * (w.ndim - 1))
    old = conv.bias if conv.bias is not None else np.zeros_like(mean)
    conv.bias = ((old - mean) * inv + beta).astype(np.float32)
    _retarget(imp, conv, x, node.output[0], node.name or f"BatchNormalization_{index}")


def _bias_add(imp: _Import, ins: list[str], node: NodeProto) -> bool:
    """A MatMul output plus a constant vector of its N outputs: the MatMul's bias."""
    if len(ins) != 2:
        return False
    x, c = (ins[0], imp.const(ins[1])) if imp.const(ins[0]) is None else (
        ins[1], imp.const(ins[0]))
    op = _producer(imp, x, node) if c is not None and not c.quantized else None
    if op is None or op.op != "MatMul" or op.bias is not None:
        return False
    n = imp.shapes[x][-1]
    if c.values.size != n or c.values.ndim < 1 or c.values.shape[-1] != n:
        return False
    op.bias = c.values.reshape(-1).astype(np.float32)
    _retarget(imp, op, x, node.output[0], node.name or "Add")
    return True


@_handles(*_ELTWISE, "Concat")
def _eltwise(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    if op == "Add" and _bias_add(imp, ins, node):
        return
    shapes = [imp.shape_of(t) for t in ins if t]
    if op == "Concat":
        axis = _axis(a.get("axis", 0), len(shapes[0]))
        if any(len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] !=
               shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
            raise _Bad(f"inputs {shapes} do not concatenate along axis {axis}")
        out = (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])
    else:
        out = _broadcast(*shapes)
    imp.add(index, node, "eltwise", ins, {node.output[0]: out})


@_handles(*_ACT)
def _act(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
         ins: list[str]) -> None:
    meta = {k: v for k, v in a.items() if isinstance(v, (int, float))}
    if op == "Clip":
        lo, hi = (imp.const(t) if t else None for t in [*ins, "", ""][1:3])
        meta.update({k: float(c.floats().reshape(-1)[0]) for k, c in (("min", lo), ("max", hi))
                     if c is not None and c.values.size})
    imp.add(index, node, "act", ins[:1], {node.output[0]: imp.act(ins[0])}, meta=meta)


@_handles(*_NORMS)
def _norm(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    imp.add(index, node, "norm", ins[:1], {node.output[0]: imp.act(ins[0])})


@_handles(*_POOLS)
def _pool(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    xs = imp.act(ins[0])
    kernel = a.get("kernel_shape")
    if kernel is None or len(kernel) != len(xs) - 2 or min(kernel) < 1:
        raise _Bad(f"kernel_shape {kernel} does not fit input {xs}")
    pq, strides, _, pads = _spatial(a, xs[2:], kernel)
    if len(node.output) > 1 and node.output[1]:
        raise _Bad("MaxPool indices output is not supported")
    imp.add(index, node, "pool", ins[:1], {node.output[0]: (*xs[:2], *pq)},
            meta={"kernel": kernel, "strides": strides, "pads": pads})


@_handles(*_GLOBAL)
def _global(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    imp.add(index, node, "pool", ins[:1], {node.output[0]: (*xs[:2], *[1] * (len(xs) - 2))})


@_handles(*_REDUCE)
def _reduce(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axes = imp.ints(ins[1], "axes") if len(ins) > 1 else a.get("axes")
    if not axes:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(len(xs)))
    axes = {_axis(v, len(xs)) for v in axes}
    keep = a.get("keepdims", 1)
    out = tuple(1 if i in axes else d for i, d in enumerate(xs) if keep or i not in axes)
    imp.add(index, node, "pool", ins[:1], {node.output[0]: out})


@_handles("Pad")
def _pad(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
         ins: list[str]) -> None:
    xs = imp.act(ins[0])
    pads = imp.ints(ins[1], "pads") if len(ins) > 1 else a.get("pads")
    axes = imp.ints(ins[3], "axes") if len(ins) > 3 else None
    axes = list(range(len(xs))) if axes is None else [_axis(v, len(xs)) for v in axes]
    if pads is None or len(pads) != 2 * len(axes):
        raise _Bad(f"pads {pads} do not fit input {xs}")
    out = list(xs)
    for j, ax in enumerate(axes):
        out[ax] += pads[j] + pads[j + len(axes)]
    imp.add(index, node, "other", ins[:1], {node.output[0]: out}, meta={"pads": pads})


@_handles("Resize", "Upsample")
def _resize(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    sizes = imp.ints(ins[3], "sizes") if len(ins) > 3 and ins[3] else None
    if sizes is None:
        src = ins[2] if op == "Resize" and len(ins) > 2 else ins[1] if len(ins) > 1 else ""
        sc = imp.const(src) if src else None
        scales = sc.floats().reshape(-1) if sc is not None else a.get("scales")
        if scales is None or len(scales) != len(xs):
            raise _Bad(f"scales {scales} do not fit input {xs}")
        sizes = [math.floor(d * float(s)) for d, s in zip(xs, scales, strict=True)]
    if len(sizes) != len(xs):
        raise _Bad(f"sizes {sizes} do not fit input {xs}")
    imp.add(index, node, "other", ins[:1], {node.output[0]: sizes})


@_handles("DepthToSpace", "SpaceToDepth")
def _depth(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    n, c, h, w = imp.act(ins[0])
    b = int(a.get("blocksize", 1))
    if b < 1 or (op == "DepthToSpace" and c % (b * b)) or (op == "SpaceToDepth" and (h % b or
                                                                                    w % b)):
        raise _Bad(f"blocksize {b} does not fit {(n, c, h, w)}")
    out = (n, c // (b * b), h * b, w * b) if op == "DepthToSpace" else \
        (n, c * b * b, h // b, w // b)
    imp.add(index, node, "other", ins[:1], {node.output[0]: out})


@_handles("Gather")
def _gather(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    data, idx = imp.const(ins[0]), imp.const(ins[1])
    axis = a.get("axis", 0)
    if data is not None:     # a table read at activation indices: an embedding
        if data.values.ndim != 2 or axis != 0:
            raise _Bad(f"a table of shape {data.values.shape} gathered along axis {axis}")
        weight = imp.weight(data, 0, lambda v: v, f"table '{ins[0]}'")
        imp.add(index, node, "embedding", [ins[1]],
                {node.output[0]: (*imp.act(ins[1]), data.values.shape[1])}, weight=weight)
        return
    xs = imp.act(ins[0])
    axis = _axis(axis, len(xs))
    ishape = tuple(idx.values.shape) if idx is not None else imp.act(ins[1])
    imp.add(index, node, "group", ins[:2],
            {node.output[0]: (*xs[:axis], *ishape, *xs[axis + 1:])})


@_handles(*_QLINEAR)
def _qlinear(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    kind, pos = _QLINEAR[op]
    acts = [ins[p] for p in pos if p < len(ins) and ins[p] and imp.const(ins[p]) is None]
    xs = imp.act(ins[0]) if ins and imp.const(ins[0]) is None else imp.act(acts[0])
    if op == "QLinearGlobalAveragePool":
        out = (*xs[:2], *[1] * (len(xs) - 2)) if not a.get("channels_last") else \
            (xs[0], *[1] * (len(xs) - 2), xs[-1])
    elif op == "QLinearAveragePool":
        out = (*xs[:2], *_spatial(a, xs[2:], a.get("kernel_shape", []))[0])
    else:
        out = _broadcast(*(imp.shape_of(ins[p]) for p in pos if p < len(ins) and ins[p]))
    imp.add(index, node, kind, acts, {node.output[0]: out})


@_handles("QLinearConcat")
def _qconcat(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    xs = ins[2::3]
    shapes = [imp.shape_of(t) for t in xs]
    axis = _axis(a.get("axis", 0), len(shapes[0]))
    out = (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])
    imp.add(index, node, "eltwise", xs, {node.output[0]: out})


# -- views ----------------------------------------------------------------------------------

@_handles("Identity", "Dropout", "Cast", "QuantizeLinear", "DequantizeLinear")
def _same(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if any(o for o in node.output[1:]):
        raise _Bad("a second output (the dropout mask) is not supported")
    imp.view(ins[0], node.output[0], imp.act(ins[0]))


@_handles("Reshape")
def _reshape(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    target = imp.ints(ins[1], "shape") if len(ins) > 1 else a.get("shape")
    if target is None:
        raise _Bad("no target shape")
    imp.view(ins[0], node.output[0], _reshaped(imp.act(ins[0]), target, a.get("allowzero", 0)))


@_handles("Flatten")
def _flatten(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axis = _axis(a.get("axis", 1), len(xs) + 1)
    imp.view(ins[0], node.output[0], (_count(xs[:axis]), _count(xs[axis:])))


@_handles("Squeeze", "Unsqueeze")
def _squeeze(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    axes = imp.ints(ins[1], "axes") if len(ins) > 1 else a.get("axes")
    xs = imp.act(ins[0])
    imp.view(ins[0], node.output[0], _squeezed(xs, axes) if op == "Squeeze" else
             _unsqueezed(xs, axes or []))


@_handles("Transpose")
def _transpose(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
               ins: list[str]) -> None:
    xs = imp.act(ins[0])
    perm = a.get("perm", list(range(len(xs)))[::-1])
    if sorted(perm) != list(range(len(xs))):
        raise _Bad(f"perm {perm} does not permute the {len(xs)} axes of {xs}")
    imp.view(ins[0], node.output[0], [xs[p] for p in perm])


@_handles("Slice")
def _slice(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    xs = imp.act(ins[0])
    if len(ins) > 1:
        args = [imp.ints(t, "Slice bound") if t else None for t in (ins + [""] * 4)[1:5]]
    else:
        args = [a.get("starts"), a.get("ends"), a.get("axes"), None]
    if args[0] is None or args[1] is None:
        raise _Bad("Slice without starts and ends")
    imp.view(ins[0], node.output[0], _sliced(xs, *args))


@_handles("Split")
def _split(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axis = _axis(a.get("axis", 0), len(xs))
    parts = imp.ints(ins[1], "split") if len(ins) > 1 and ins[1] else a.get("split")
    outs = list(node.output)
    if parts is None:
        size = -(-xs[axis] // len(outs))
        parts = [min(size, xs[axis] - size * i) for i in range(len(outs))]
    if len(parts) != len(outs) or sum(parts) != xs[axis] or min(parts) < 0:
        raise _Bad(f"split {parts} does not cut axis {axis} of {xs} into {len(outs)}")
    for t, p in zip(outs, parts, strict=True):
        if t:
            imp.view(ins[0], t, (*xs[:axis], p, *xs[axis + 1:]))


@_handles("Expand")
def _expand(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    imp.view(ins[0], node.output[0],
             _broadcast(imp.act(ins[0]), tuple(imp.ints(ins[1], "shape") or ())))


@_handles("Shape", "Size")
def _shape(imp: _Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    shape = np.asarray(imp.shape_of(ins[0]), dtype=np.int64)
    if op == "Size":
        imp.fold(node.output[0], np.asarray(_count(shape), dtype=np.int64))
        return
    start, end = a.get("start", 0), a.get("end", len(shape))
    imp.fold(node.output[0], shape[start:end])
