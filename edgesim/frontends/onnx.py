"""ONNX files -> ``Graph``: float, QDQ and QLinear networks, read without running anything.

Public names: ``load``, ``LIMIT_BYTES``; ``Import``, the walk below, is what the operator
handlers receive. The importer's other modules: ``onnx_values`` (the values they pass each
other, the protobuf read into NumPy), ``onnx_shapes`` (shape arithmetic), ``onnx_consts``
(bounded constant folding), ``onnx_macs`` (conv / linear / matmul and the folds into them),
``onnx_ops`` (every other operator, and the views).

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
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError
from onnx import ModelProto, NodeProto

from edgesim.errors import ModelError
from edgesim.frontends import onnx_macs, onnx_ops
from edgesim.frontends.graph import Graph, Tensor, Weights
from edgesim.frontends.onnx_consts import FOLDS, Budget
from edgesim.frontends.onnx_shapes import count
from edgesim.frontends.onnx_values import Bad, Const, Op, array, attrs
from edgesim.outputs import read_regular

__all__ = ["LIMIT_BYTES", "load"]

#: The largest ONNX file ``load`` reads (2 GiB: protobuf stops there).
LIMIT_BYTES = 2 << 30
#: The most elements an activation tensor may claim.
MAX_ELEMENTS = 1 << 40

_DEFAULT = ("", "ai.onnx")
_MS = "com.microsoft"
#: Operator -> handler (``onnx_macs``: the MAC ops and the folds into them; ``onnx_ops``: the rest).
_HANDLERS = {**onnx_macs.HANDLERS, **onnx_ops.HANDLERS}


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
    return Import(model, file, input_shape).run(name or stem)


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


# -- the importer -------------------------------------------------------------------------

class Import:
    """One pass over the nodes in dataflow order: constants folded, views aliased, ops built."""

    def __init__(self, model: ModelProto, file: str, input_shape: Sequence[int] | None):
        self.model, self.file, self.graph = model, file, model.graph
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.consts: dict[str, Const] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.aliases: dict[str, str] = {}
        self.ops: list[Op] = []
        self.producer: dict[str, int] = {}      # activation tensor -> index in self.ops
        self.names: set[str] = set()
        self.budget = Budget()      # charged by the arithmetic on constants
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
            except Bad as exc:
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
            if count(shape) > MAX_ELEMENTS:
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
    def const(self, t: str) -> Const | None:
        if t in self.consts:
            return self.consts[t]
        if t in self.inits:
            self.consts[t] = Const(array(self.inits[t], "initialiser"))
            return self.consts[t]
        return None

    def act(self, t: str) -> tuple[int, ...]:
        if t not in self.shapes:
            raise Bad(f"'{t}' must be an activation, not a constant")
        return self.shapes[t]

    def ints(self, t: str, what: str) -> list[int] | None:
        """A small constant integer input (axes, pads, shape), None when absent."""
        if not t:
            return None
        c = self.const(t)
        if c is None:
            raise Bad(f"{what} '{t}' must be a constant")
        if c.values.size > 64:
            raise Bad(f"{what} '{t}' has {c.values.size} values")
        return [int(v) for v in c.values.reshape(-1)]

    def shape_of(self, t: str) -> tuple[int, ...]:
        c = self.const(t)
        return tuple(c.values.shape) if c is not None else self.act(t)

    def set_shape(self, t: str, shape: Sequence[int]) -> None:
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape) or count(shape) > MAX_ELEMENTS:
            raise Bad(f"output '{t}' would have shape {shape}")
        self.shapes[t] = shape

    def fold(self, t: str, values: np.ndarray) -> None:
        self.consts[t] = Const(np.asarray(values))

    # -- one node -----------------------------------------------------------------------------
    def _node(self, index: int, node: NodeProto) -> None:
        op, a = node.op_type, attrs(node)
        ins = list(node.input)
        if node.domain not in (*_DEFAULT, _MS):
            raise Bad(f"operator {node.domain}.{op} is not supported by the ONNX importer")
        if all(self.const(t) is not None for t in ins if t) and op not in (
                "Shape", "Size") and (ins or op in ("Constant", "ConstantOfShape")):
            return self._constant(node, op, a, ins)
        handler = _HANDLERS.get(op)
        if handler is None:
            raise Bad(f"operator {(node.domain + '.') if node.domain else ''}{op} is not "
                       "supported by the ONNX importer")
        handler(self, index, node, op, a, ins)

    def add(self, index: int, node: NodeProto, kind: str, ins: Sequence[str],
            outs: dict[str, Sequence[int]], **kw: Any) -> Op:
        for t, s in outs.items():
            self.set_shape(t, s)
        name = node.name or f"{node.op_type}_{index}"
        while name in self.names:
            name = f"{name}_{index}"
        self.names.add(name)
        kw.setdefault("meta", {})["index"] = index
        op = Op(name, kind, node.op_type, tuple(dict.fromkeys(t for t in ins if t in self.shapes)),
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
        fn = FOLDS.get(op)
        if fn is None:
            raise Bad(f"operator {op} computes on constants only, which the importer does "
                       "not evaluate")
        outs = fn(self.budget, a, [self.const(t) if t else None for t in ins])
        for t, c in zip(node.output, outs, strict=False):
            if t:
                if isinstance(c, Const):
                    self.consts[t] = c
                else:
                    self.fold(t, c)

    # -- weights ------------------------------------------------------------------------------
    def weight(self, c: Const, out_axis: int, layout: Callable[[np.ndarray], np.ndarray],
               what: str, groups: int = 1) -> np.ndarray | Weights:
        """A weight operand in the tracer's layout: float (quantised at the end) or as stored;
        the same object each time ``c`` is read the same way (a shared tensor is one block)."""
        key = (id(c), out_axis, groups)
        if key not in self.shared:
            self.shared[key] = self._weight(c, out_axis, layout, what, groups)
        return self.shared[key]

    def _weight(self, c: Const, out_axis: int, layout: Callable[[np.ndarray], np.ndarray],
                what: str, groups: int) -> np.ndarray | Weights:
        if not c.quantized:
            return layout(np.asarray(c.values, dtype=np.float32))
        if c.values.dtype not in (np.int8, np.uint8):
            raise Bad(f"{what} is stored as {c.values.dtype}; int8 or uint8 expected")
        scales, zps = c.scales.reshape(-1), c.zero_points.reshape(-1)
        if c.axis is not None and c.axis != out_axis and c.values.shape[c.axis] > 1:
            raise Bad(f"{what} is quantised along axis {c.axis}, not its output-channel "
                       f"axis {out_axis}")
        if scales.size > 1 and groups > 1:
            scales, zps = np.tile(scales, groups), np.tile(zps, groups)
        return Weights(layout(c.values), scales.astype(np.float32), zps)

    def operand(self, t: str, what: str) -> Const | None:
        """The constant input ``t`` (None when the node leaves it out)."""
        if not t:
            return None
        c = self.const(t)
        if c is None:
            raise Bad(f"{what} '{t}' must be a constant")
        return c

    def bias(self, c: Const | None, n: int, what: str) -> np.ndarray | Weights | None:
        """A bias of ``n`` outputs: float (quantised at the end) or int32 as stored."""
        if c is None:
            return None
        if c.values.size not in (1, n):
            raise Bad(f"{what} has {c.values.size} values for {n} output channels")
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
