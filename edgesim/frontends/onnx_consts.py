"""Bounded constant folding: the shape arithmetic on small constants (``Shape``, ``Gather``,
``Concat``, ...) that the ONNX importer evaluates, and the quantisation ops on constants.

Public names: ``FOLDS``, ``Budget``, ``FOLD_ELEMENTS``.

``FOLDS`` maps an operator to its evaluator ``(budget, attributes, inputs) -> outputs`` (each a
``Const`` or an array); an operator not in it is refused when all its inputs are constant. The
``Budget`` an import holds is charged, before a result is made, for the elements it adds beyond
its largest input, and refuses (``Bad``) past ``FOLD_ELEMENTS`` in all.

>>> b = Budget()
>>> FOLDS["Concat"](b, {"axis": 0}, [Const(np.arange(3)), Const(np.arange(5))])[0].tolist()
[0, 1, 2, 0, 1, 2, 3, 4]
>>> b.added        # 8 elements made from inputs of at most 5
3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from onnx import TensorProto

from edgesim.frontends.onnx_shapes import (
    axis_index,
    broadcast,
    count,
    reshaped,
    squeezed,
    unsqueezed,
)
from edgesim.frontends.onnx_values import DTYPES, Bad, Const, array

__all__ = ["FOLDS", "FOLD_ELEMENTS", "Budget"]

#: Elements the arithmetic on constants may add beyond its inputs, in all (a file cannot grow
#: a constant without bound by concatenating it with itself; a same-size result is free).
FOLD_ELEMENTS = 1 << 22


class Budget:
    """The elements constant arithmetic has added so far (``added``), at most ``FOLD_ELEMENTS``."""

    __slots__ = ("added",)

    def __init__(self) -> None:
        self.added = 0

    def charge(self, shape: Sequence[int], *inputs: np.ndarray) -> None:
        """Refuse a result that grows past ``FOLD_ELEMENTS`` added elements, before making it."""
        self.added += max(count(shape) - max((x.size for x in inputs), default=0), 0)
        if self.added > FOLD_ELEMENTS:
            raise Bad(f"constant arithmetic would make a {tuple(shape)} tensor (over "
                      f"{FOLD_ELEMENTS} elements added in all)")


def _one(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    return lambda budget, a, cs: [fn(budget, a, cs)]


def _c_constant(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    if "value" in a and isinstance(a["value"], TensorProto):
        return array(a["value"], "Constant value")
    for key, dt in (("value_float", np.float32), ("value_floats", np.float32),
                    ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dt)
    raise Bad("a Constant without a tensor, float(s) or int(s) value")


def _c_dequantize(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> list[Const]:
    x, s = cs[0].values, cs[1].floats().astype(np.float32)
    zp = cs[2].values if len(cs) > 2 and cs[2] is not None else np.zeros(s.shape, x.dtype)
    if a.get("block_size"):
        raise Bad("blocked quantisation (block_size) is not supported")
    if s.size > 1 and s.ndim == 1:
        axis = axis_index(a.get("axis", 1), x.ndim)
        if x.shape[axis] != s.size or zp.size != s.size:
            raise Bad(f"{s.size} scales / {zp.size} zero points do not fit axis {axis} "
                       f"of {x.shape}")
        return [Const(x, s, zp.reshape(-1), axis)]
    if s.size != 1 or zp.size != 1:
        raise Bad(f"scales of shape {s.shape} are neither one per tensor nor per axis")
    return [Const(x, s.reshape(1), zp.reshape(1), None)]


def _c_quantize(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    """A float constant quantised as QuantizeLinear does (round half to even, saturate)."""
    x, s = cs[0].floats().astype(np.float32), cs[1].floats().astype(np.float32)
    zp = cs[2].values if len(cs) > 2 and cs[2] is not None else np.zeros(s.shape, np.uint8)
    if zp.dtype not in (np.int8, np.uint8):
        raise Bad(f"QuantizeLinear to {zp.dtype}; int8 or uint8 expected")
    shape = [1] * x.ndim
    if s.size > 1:
        shape[axis_index(a.get("axis", 1), x.ndim)] = -1
    info = np.iinfo(zp.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.rint(x / s.reshape(shape)) + zp.astype(np.float32).reshape(shape)
    return np.clip(np.nan_to_num(q), info.min, info.max).astype(zp.dtype)


def _c_reshape(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    x = cs[0].values
    return x.reshape(reshaped(x.shape, [int(v) for v in cs[1].values.reshape(-1)],
                               a.get("allowzero", 0)))


def _axes(a: dict[str, Any], cs: list[Const | None], i: int) -> list[int] | None:
    if len(cs) > i and cs[i] is not None:
        return [int(v) for v in cs[i].values.reshape(-1)]
    return a.get("axes")


def _c_concat(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    arrs = [c.values for c in cs if c is not None]
    axis = axis_index(a.get("axis", 0), arrs[0].ndim)
    budget.charge((sum(x.shape[axis] for x in arrs), *arrs[0].shape[:axis],
                *arrs[0].shape[axis + 1:]), *arrs)
    return np.concatenate(arrs, axis=axis)


def _c_gather(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    x, idx = cs[0].values, cs[1].values.astype(np.int64)
    axis = axis_index(a.get("axis", 0), x.ndim)
    budget.charge((*x.shape[:axis], *idx.shape, *x.shape[axis + 1:]), x)
    return np.take(x, idx, axis=axis)


def _c_slice(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    x = cs[0].values
    starts, ends = (a.get("starts"), a.get("ends")) if len(cs) < 3 else (
        cs[1].values.reshape(-1), cs[2].values.reshape(-1))
    axes = a.get("axes") if len(cs) < 4 or cs[3] is None else cs[3].values.reshape(-1)
    steps = None if len(cs) < 5 or cs[4] is None else cs[4].values.reshape(-1)
    axes = range(len(starts)) if axes is None else [axis_index(int(v), x.ndim) for v in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if int(st) == 0:
            raise Bad("Slice step 0")
        index[ax] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _c_math(fn: Callable[..., np.ndarray]) -> Callable[..., list[np.ndarray]]:
    def go(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> list[np.ndarray]:
        arrs = [c.floats() for c in cs if c is not None]
        budget.charge(broadcast(*(x.shape for x in arrs)), *arrs)
        with np.errstate(all="ignore"):
            return [np.asarray(fn(*arrs))]
    return go


def _int_div(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer) and np.issubdtype(y.dtype, np.integer):
        return np.trunc(x / np.where(y == 0, 1, y)).astype(np.result_type(x, y))
    return x / y


def _c_cast(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    dtype = DTYPES.get(a.get("to", 0))
    if dtype is None:
        raise Bad(f"Cast to data type {a.get('to')} is not supported")
    with np.errstate(all="ignore"):
        return cs[0].floats().astype(dtype)


def _c_of_shape(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    shape = [int(v) for v in cs[0].values.reshape(-1)]
    if any(d < 0 for d in shape):
        raise Bad(f"ConstantOfShape {shape}")
    budget.charge(shape)
    fill = array(a["value"], "ConstantOfShape value").reshape(-1)[:1] if "value" in a else \
        np.zeros(1, np.float32)
    return np.full(shape, fill[0] if fill.size else 0, dtype=fill.dtype)


def _c_range(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    start, limit, delta = (c.values.reshape(-1)[0] for c in cs[:3])
    if delta == 0:
        raise Bad("Range delta 0")
    budget.charge((max(math.ceil((float(limit) - float(start)) / float(delta)), 0),))
    return np.arange(start, limit, delta)


def _c_expand(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> np.ndarray:
    x, shape = cs[0].values, tuple(int(v) for v in cs[1].values.reshape(-1))
    out = broadcast(x.shape, shape)
    budget.charge(out, x)
    return np.broadcast_to(x, out).copy()


def _c_transpose(budget: Budget, a: dict[str, Any], cs: list[Const | None]) -> list[Any]:
    c = cs[0]
    perm = a.get("perm", list(range(c.values.ndim))[::-1])
    if sorted(perm) != list(range(c.values.ndim)):
        raise Bad(f"perm {perm} does not permute {c.values.ndim} axes")
    if c.quantized:
        axis = None if c.axis is None else perm.index(c.axis)
        return [Const(np.transpose(c.values, perm), c.scales, c.zero_points, axis)]
    return [np.transpose(c.values, perm)]


FOLDS: dict[str, Callable[..., list[Any]]] = {
    "Constant": _one(_c_constant),
    "Identity": lambda budget, a, cs: [cs[0]],
    "Dropout": lambda budget, a, cs: [cs[0]],
    "DequantizeLinear": _c_dequantize,
    "QuantizeLinear": _one(_c_quantize),
    "Reshape": _one(_c_reshape),
    "Flatten": _one(lambda budget, a, cs: cs[0].values.reshape(
        count(cs[0].values.shape[:axis_index(a.get("axis", 1), cs[0].values.ndim + 1)]), -1)),
    "Squeeze": _one(lambda budget, a, cs: cs[0].values.reshape(
        squeezed(cs[0].values.shape, _axes(a, cs, 1)))),
    "Unsqueeze": _one(lambda budget, a, cs: cs[0].values.reshape(
        unsqueezed(cs[0].values.shape, _axes(a, cs, 1) or []))),
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
