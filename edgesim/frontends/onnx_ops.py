"""The ONNX operators without a multiply-accumulate, and the views.

Public names: ``HANDLERS``.

``HANDLERS`` maps each operator to its handler ``(imp, index, node, op, attributes, inputs)``,
which adds the op to the ``onnx.Import`` ``imp`` or makes its output a view: Add, Mul, Concat,
... and QLinearAdd, QLinearMul, QLinearConcat ``eltwise``; activations and Softmax ``act``;
norms ``norm``; pools and reductions ``pool``; Gather from a constant table ``embedding``, from
an activation ``group``; Pad, Resize, Upsample, DepthToSpace, SpaceToDepth ``other``. Identity,
Dropout, Cast, Quantize/DequantizeLinear, Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Slice, Split and Expand are views (``Import.view``); Shape and Size fold to constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import NodeProto

from edgesim.frontends.onnx_macs import bias_add
from edgesim.frontends.onnx_shapes import (
    axis_index,
    broadcast,
    count,
    reshaped,
    sliced,
    spatial,
    squeezed,
    unsqueezed,
)
from edgesim.frontends.onnx_values import Bad, handler_table

if TYPE_CHECKING:
    from edgesim.frontends.onnx import Import

    Handler = Callable[[Import, int, NodeProto, str, dict[str, Any], list[str]], None]

__all__ = ["HANDLERS"]

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

#: Operator -> handler, filled by ``_handles`` below.
HANDLERS, _handles = handler_table()


@_handles(*_ELTWISE, "Concat")
def _eltwise(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    if op == "Add" and bias_add(imp, ins, node):
        return
    shapes = [imp.shape_of(t) for t in ins if t]
    if op == "Concat":
        axis = axis_index(a.get("axis", 0), len(shapes[0]))
        if any(len(s) != len(shapes[0]) or s[:axis] + s[axis + 1:] !=
               shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
            raise Bad(f"inputs {shapes} do not concatenate along axis {axis}")
        out = (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])
    else:
        out = broadcast(*shapes)
    imp.add(index, node, "eltwise", ins, {node.output[0]: out})


@_handles(*_ACT)
def _act(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
         ins: list[str]) -> None:
    meta = {k: v for k, v in a.items() if isinstance(v, (int, float))}
    if op == "Clip":
        lo, hi = (imp.const(t) if t else None for t in [*ins, "", ""][1:3])
        meta.update({k: float(c.floats().reshape(-1)[0]) for k, c in (("min", lo), ("max", hi))
                     if c is not None and c.values.size})
    imp.add(index, node, "act", ins[:1], {node.output[0]: imp.act(ins[0])}, meta=meta)


@_handles(*_NORMS)
def _norm(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    imp.add(index, node, "norm", ins[:1], {node.output[0]: imp.act(ins[0])})


@_handles(*_POOLS)
def _pool(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    xs = imp.act(ins[0])
    kernel = a.get("kernel_shape")
    if kernel is None or len(kernel) != len(xs) - 2 or min(kernel) < 1:
        raise Bad(f"kernel_shape {kernel} does not fit input {xs}")
    pq, strides, _, pads = spatial(a, xs[2:], kernel)
    if len(node.output) > 1 and node.output[1]:
        raise Bad("MaxPool indices output is not supported")
    imp.add(index, node, "pool", ins[:1], {node.output[0]: (*xs[:2], *pq)},
            meta={"kernel": kernel, "strides": strides, "pads": pads})


@_handles(*_GLOBAL)
def _global(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    imp.add(index, node, "pool", ins[:1], {node.output[0]: (*xs[:2], *[1] * (len(xs) - 2))})


@_handles(*_REDUCE)
def _reduce(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axes = imp.ints(ins[1], "axes") if len(ins) > 1 else a.get("axes")
    if not axes:
        axes = [] if a.get("noop_with_empty_axes", 0) else list(range(len(xs)))
    axes = {axis_index(v, len(xs)) for v in axes}
    keep = a.get("keepdims", 1)
    out = tuple(1 if i in axes else d for i, d in enumerate(xs) if keep or i not in axes)
    imp.add(index, node, "pool", ins[:1], {node.output[0]: out})


@_handles("Pad")
def _pad(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
         ins: list[str]) -> None:
    xs = imp.act(ins[0])
    pads = imp.ints(ins[1], "pads") if len(ins) > 1 else a.get("pads")
    axes = imp.ints(ins[3], "axes") if len(ins) > 3 else None
    axes = list(range(len(xs))) if axes is None else [axis_index(v, len(xs)) for v in axes]
    if pads is None or len(pads) != 2 * len(axes):
        raise Bad(f"pads {pads} do not fit input {xs}")
    out = list(xs)
    for j, ax in enumerate(axes):
        out[ax] += pads[j] + pads[j + len(axes)]
    imp.add(index, node, "other", ins[:1], {node.output[0]: out}, meta={"pads": pads})


@_handles("Resize", "Upsample")
def _resize(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    xs = imp.act(ins[0])
    sizes = imp.ints(ins[3], "sizes") if len(ins) > 3 and ins[3] else None
    if sizes is None:
        src = ins[2] if op == "Resize" and len(ins) > 2 else ins[1] if len(ins) > 1 else ""
        sc = imp.const(src) if src else None
        scales = sc.floats().reshape(-1) if sc is not None else a.get("scales")
        if scales is None or len(scales) != len(xs):
            raise Bad(f"scales {scales} do not fit input {xs}")
        sizes = [math.floor(d * float(s)) for d, s in zip(xs, scales, strict=True)]
    if len(sizes) != len(xs):
        raise Bad(f"sizes {sizes} do not fit input {xs}")
    imp.add(index, node, "other", ins[:1], {node.output[0]: sizes})


@_handles("DepthToSpace", "SpaceToDepth")
def _depth(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    n, c, h, w = imp.act(ins[0])
    b = int(a.get("blocksize", 1))
    if b < 1 or (op == "DepthToSpace" and c % (b * b)) or (op == "SpaceToDepth" and (h % b or
                                                                                    w % b)):
        raise Bad(f"blocksize {b} does not fit {(n, c, h, w)}")
    out = (n, c // (b * b), h * b, w * b) if op == "DepthToSpace" else \
        (n, c * b * b, h // b, w // b)
    imp.add(index, node, "other", ins[:1], {node.output[0]: out})


@_handles("Gather")
def _gather(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    data, idx = imp.const(ins[0]), imp.const(ins[1])
    axis = a.get("axis", 0)
    if data is not None:     # a table read at activation indices: an embedding
        if data.values.ndim != 2 or axis != 0:
            raise Bad(f"a table of shape {data.values.shape} gathered along axis {axis}")
        weight = imp.weight(data, 0, lambda v: v, f"table '{ins[0]}'")
        imp.add(index, node, "embedding", [ins[1]],
                {node.output[0]: (*imp.act(ins[1]), data.values.shape[1])}, weight=weight)
        return
    xs = imp.act(ins[0])
    axis = axis_index(axis, len(xs))
    ishape = tuple(idx.values.shape) if idx is not None else imp.act(ins[1])
    imp.add(index, node, "group", ins[:2],
            {node.output[0]: (*xs[:axis], *ishape, *xs[axis + 1:])})


@_handles(*_QLINEAR)
def _qlinear(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    kind, pos = _QLINEAR[op]
    acts = [ins[p] for p in pos if p < len(ins) and ins[p] and imp.const(ins[p]) is None]
    xs = imp.act(ins[0]) if ins and imp.const(ins[0]) is None else imp.act(acts[0])
    if op == "QLinearGlobalAveragePool":
        out = (*xs[:2], *[1] * (len(xs) - 2)) if not a.get("channels_last") else \
            (xs[0], *[1] * (len(xs) - 2), xs[-1])
    elif op == "QLinearAveragePool":
        out = (*xs[:2], *spatial(a, xs[2:], a.get("kernel_shape", []))[0])
    else:
        out = broadcast(*(imp.shape_of(ins[p]) for p in pos if p < len(ins) and ins[p]))
    imp.add(index, node, kind, acts, {node.output[0]: out})


@_handles("QLinearConcat")
def _qconcat(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    xs = ins[2::3]
    shapes = [imp.shape_of(t) for t in xs]
    axis = axis_index(a.get("axis", 0), len(shapes[0]))
    out = (*shapes[0][:axis], sum(s[axis] for s in shapes), *shapes[0][axis + 1:])
    imp.add(index, node, "eltwise", xs, {node.output[0]: out})


# -- views ----------------------------------------------------------------------------------

@_handles("Identity", "Dropout", "Cast", "QuantizeLinear", "DequantizeLinear")
def _same(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if any(o for o in node.output[1:]):
        raise Bad("a second output (the dropout mask) is not supported")
    imp.view(ins[0], node.output[0], imp.act(ins[0]))


@_handles("Reshape")
def _reshape(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    target = imp.ints(ins[1], "shape") if len(ins) > 1 else a.get("shape")
    if target is None:
        raise Bad("no target shape")
    imp.view(ins[0], node.output[0], reshaped(imp.act(ins[0]), target, a.get("allowzero", 0)))


@_handles("Flatten")
def _flatten(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axis = axis_index(a.get("axis", 1), len(xs) + 1)
    imp.view(ins[0], node.output[0], (count(xs[:axis]), count(xs[axis:])))


@_handles("Squeeze", "Unsqueeze")
def _squeeze(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    axes = imp.ints(ins[1], "axes") if len(ins) > 1 else a.get("axes")
    xs = imp.act(ins[0])
    imp.view(ins[0], node.output[0], squeezed(xs, axes) if op == "Squeeze" else
             unsqueezed(xs, axes or []))


@_handles("Transpose")
def _transpose(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
               ins: list[str]) -> None:
    xs = imp.act(ins[0])
    perm = a.get("perm", list(range(len(xs)))[::-1])
    if sorted(perm) != list(range(len(xs))):
        raise Bad(f"perm {perm} does not permute the {len(xs)} axes of {xs}")
    imp.view(ins[0], node.output[0], [xs[p] for p in perm])


@_handles("Slice")
def _slice(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    xs = imp.act(ins[0])
    if len(ins) > 1:
        args = [imp.ints(t, "Slice bound") if t else None for t in (ins + [""] * 4)[1:5]]
    else:
        args = [a.get("starts"), a.get("ends"), a.get("axes"), None]
    if args[0] is None or args[1] is None:
        raise Bad("Slice without starts and ends")
    imp.view(ins[0], node.output[0], sliced(xs, *args))


@_handles("Split")
def _split(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    xs = imp.act(ins[0])
    axis = axis_index(a.get("axis", 0), len(xs))
    parts = imp.ints(ins[1], "split") if len(ins) > 1 and ins[1] else a.get("split")
    outs = list(node.output)
    if parts is None:
        size = -(-xs[axis] // len(outs))
        parts = [min(size, xs[axis] - size * i) for i in range(len(outs))]
    if len(parts) != len(outs) or sum(parts) != xs[axis] or min(parts) < 0:
        raise Bad(f"split {parts} does not cut axis {axis} of {xs} into {len(outs)}")
    for t, p in zip(outs, parts, strict=True):
        if t:
            imp.view(ins[0], t, (*xs[:axis], p, *xs[axis + 1:]))


@_handles("Expand")
def _expand(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    imp.view(ins[0], node.output[0],
             broadcast(imp.act(ins[0]), tuple(imp.ints(ins[1], "shape") or ())))


@_handles("Shape", "Size")
def _shape(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    shape = np.asarray(imp.shape_of(ins[0]), dtype=np.int64)
    if op == "Size":
        imp.fold(node.output[0], np.asarray(count(shape), dtype=np.int64))
        return
    start, end = a.get("start", 0), a.get("end", len(shape))
    imp.fold(node.output[0], shape[start:end])
