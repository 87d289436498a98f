"""The ONNX operators that multiply-accumulate against weights, and the folds into them.

Public names: ``HANDLERS``, ``bias_add``.

``HANDLERS`` maps Conv, ConvTranspose, QLinearConv (``conv``), Gemm, MatMul, QLinearMatMul,
QGemm (``linear``, or ``matmul`` of two activations) and BatchNormalization to their handlers
``(imp, index, node, op, attributes, inputs)``, which add the op to the ``onnx.Import`` ``imp``.
A BatchNormalization whose input is a float conv / Gemm / MatMul output read by it alone folds
into that op's weight and bias (the tracer's ``fold_bn`` arithmetic, in float32), any other is a
``norm`` op. ``bias_add(imp, inputs, node)`` makes a constant per-output-channel ``Add`` after a
MatMul the MatMul's bias and tells whether it did (``onnx_ops``' Add handler asks it first).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import NodeProto

from edgesim.frontends.graph import Weights
from edgesim.frontends.onnx_shapes import broadcast, count, nest, spatial
from edgesim.frontends.onnx_values import Bad, Const, Op, handler_table

if TYPE_CHECKING:
    from edgesim.frontends.onnx import Import

    Handler = Callable[[Import, int, NodeProto, str, dict[str, Any], list[str]], None]

__all__ = ["HANDLERS", "bias_add"]

#: Operator -> handler, filled by ``_handles`` below.
HANDLERS, _handles = handler_table()


def _conv_common(imp: Import, index: int, node: NodeProto, a: dict[str, Any], x: str,
                 wc: Const | None, w_what: str, bc: Const | None) -> Op:
    xs = imp.act(x)
    if wc is None:
        raise Bad(f"{w_what} must be a constant")
    w = wc.values
    sp = len(xs) - 2
    if not 1 <= sp <= 3 or w.ndim != sp + 2:
        raise Bad(f"input {xs} and {w_what} {w.shape} are not a 1-, 2- or 3-D conv")
    g = int(a.get("group", 1))
    kernel = [int(d) for d in w.shape[2:]]
    if a.get("kernel_shape", kernel) != kernel:
        raise Bad(f"kernel_shape {a['kernel_shape']} differs from the weight's {kernel}")
    if node.op_type == "ConvTranspose":
        return _deconv(imp, index, node, a, x, xs, wc, g, kernel, bc)
    k, cg = int(w.shape[0]), int(w.shape[1])
    if g < 1 or xs[1] % g or k % g or cg != xs[1] // g:
        raise Bad(f"{w_what} {w.shape} with group {g} does not fit input channels {xs[1]}")
    pq, strides, dils, pads = spatial(a, xs[2:], kernel)
    macs = xs[0] * k * cg * count(kernel) * count(pq)
    return imp.add(index, node, "conv", [x], {node.output[0]: (xs[0], k, *pq)},
                   shape=nest(xs[0], k, cg, kernel, pq), macs=macs,
                   weight=imp.weight(wc, 0, lambda v: v, w_what),
                   bias=imp.bias(bc, k, "the bias"), groups=g,
                   meta={"strides": strides, "dilations": dils, "pads": pads})


def _deconv(imp: Import, index: int, node: NodeProto, a: dict[str, Any], x: str,
            xs: tuple[int, ...], wc: Const, g: int, kernel: list[int],
            bc: Const | None) -> Op:
    """ConvTranspose: weight ``(C, K / g, R, S)``; each input pixel meets K/g x R x S outputs."""
    w = wc.values
    c, kg = int(w.shape[0]), int(w.shape[1])
    if g < 1 or c != xs[1] or c % g:
        raise Bad(f"weight {w.shape} with group {g} does not fit input channels {xs[1]}")
    k, n = kg * g, len(kernel)
    strides, dils = a.get("strides", [1] * n), a.get("dilations", [1] * n)
    extra = a.get("output_padding", [0] * n)
    if len(strides) != n or len(dils) != n or len(extra) != n:
        raise Bad(f"strides {strides}, dilations {dils} or output_padding {extra} do not "
                   f"fit {n} spatial dims")
    if "output_shape" in a or a.get("auto_pad", "NOTSET") in ("SAME_UPPER", "SAME_LOWER"):
        out = a.get("output_shape", [xs[2 + i] * strides[i] for i in range(n)])[-n:]
    else:
        pads = [0] * (2 * n) if a.get("auto_pad") == "VALID" else a.get("pads", [0] * (2 * n))
        if len(pads) != 2 * n:
            raise Bad(f"pads {pads} do not fit {n} spatial dims")
        out = [strides[i] * (xs[2 + i] - 1) + extra[i] + (kernel[i] - 1) * dils[i] + 1
               - pads[i] - pads[i + n] for i in range(n)]
    if len(out) != n or min(out) < 1:
        raise Bad(f"output size {out} is not positive")

    def layout(v: np.ndarray) -> np.ndarray:
        v = v.reshape(g, c // g, kg, *kernel).swapaxes(1, 2)
        return np.ascontiguousarray(v.reshape(k, c // g, *kernel))

    macs = xs[0] * k * (c // g) * count(kernel) * count(xs[2:])
    return imp.add(index, node, "conv", [x], {node.output[0]: (xs[0], k, *out)},
                   shape=nest(xs[0], k, c // g, kernel, xs[2:]), macs=macs,
                   weight=imp.weight(wc, 1, layout, "the weight", groups=g),
                   bias=imp.bias(bc, k, "the bias"), groups=g,
                   meta={"strides": strides, "transposed": True, "output": tuple(out)})


@_handles("Conv", "ConvTranspose")
def _conv(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if len(ins) < 2:
        raise Bad(f"{op} has {len(ins)} inputs; 2 or 3 expected")
    _conv_common(imp, index, node, a, ins[0], imp.operand(ins[1], "weight"),
                 f"weight '{ins[1]}'", imp.operand(ins[2] if len(ins) > 2 else "", "bias"))


@_handles("QLinearConv")
def _qconv(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    if len(ins) < 8:
        raise Bad(f"QLinearConv has {len(ins)} inputs; 8 or 9 expected")
    bias = _qbias(imp, ins[8], ins[1], ins[4]) if len(ins) > 8 and ins[8] else None
    _conv_common(imp, index, node, a, ins[0], _qconst(imp, ins[3], ins[4], ins[5], 0),
                 f"weight '{ins[3]}'", bias)


def _qconst(imp: Import, w: str, s: str, zp: str, axis: int) -> Const:
    """A QLinear operand as stored: integers, scales and zero points (per tensor or ``axis``)."""
    wc, sc = imp.const(w), imp.const(s)
    zc = imp.const(zp) if zp else None
    if wc is None or sc is None or (zp and zc is None):
        raise Bad(f"weight '{w}', its scale and zero point must be constants")
    scales = sc.floats().reshape(-1).astype(np.float32)
    zps = zc.values.reshape(-1) if zc is not None else np.zeros(scales.size, wc.values.dtype)
    per = scales.size > 1
    if wc.values.ndim <= axis or zps.size != scales.size or (
            per and wc.values.shape[axis] != scales.size):
        raise Bad(f"{scales.size} scales and {zps.size} zero points do not fit weight "
                   f"'{w}' of shape {wc.values.shape}")
    return Const(wc.values, scales, zps, axis if per else None)


def _qbias(imp: Import, b: str, x_scale: str, w_scale: str) -> Const:
    """An int32 QLinear bias as stored; its scale is input scale x weight scale."""
    bc = imp.operand(b, "bias")
    xs, ws = imp.operand(x_scale, "input scale"), imp.operand(w_scale, "weight scale")
    if bc.values.dtype != np.int32:
        raise Bad(f"bias '{b}' is {bc.values.dtype}; int32 expected")
    scale = (xs.floats().reshape(-1)[:1] * ws.floats().reshape(-1)).astype(np.float32)
    return Const(bc.values, scale, np.zeros(scale.size, np.int32),
                  0 if scale.size > 1 else None)


def _linear(imp: Import, index: int, node: NodeProto, x: str, wc: Const | None,
            w_what: str, trans_b: bool, bc: Const | None, alpha: float = 1.0,
            beta: float = 1.0, act_b: str = "") -> None:
    """``Y[.., M, N] = X[.., M, K] @ W`` with W ``(K, N)`` (``trans_b``: ``(N, K)``); without a
    constant W, a MatMul of the activations ``x`` and ``act_b``."""
    xs = imp.act(x)
    if wc is None:
        _matmul_acts(imp, index, node, x, xs, act_b)
        return
    w = wc.values
    if w.ndim != 2:
        raise Bad(f"{w_what} has shape {w.shape}; a 2-D constant expected")
    k, n = (int(w.shape[1]), int(w.shape[0])) if trans_b else (int(w.shape[0]), int(w.shape[1]))
    if not xs or xs[-1] != k:
        raise Bad(f"input {xs} does not end in the {k} features {w_what} {w.shape} reduces")
    m = count(xs[:-1])
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


def _matmul_acts(imp: Import, index: int, node: NodeProto, x: str, xs: tuple[int, ...],
                 y: str) -> None:
    """Activation x activation (attention): ``matmul`` without weights, numpy's broadcasting."""
    ys = imp.act(y)
    if not xs or not ys:
        raise Bad("MatMul of scalars")
    a2, b2 = (xs if len(xs) > 1 else (1, *xs)), (ys if len(ys) > 1 else (*ys, 1))
    if a2[-1] != b2[-2]:
        raise Bad(f"MatMul of {xs} and {ys}: the reduced dims differ")
    k, n = a2[-1], b2[-1]
    out = (*broadcast(a2[:-2], b2[:-2]), *xs[-2:-1], *(ys[-1:] if len(ys) > 1 else ()))
    m = count(out) // n if n else 0
    imp.add(index, node, "matmul", [x, y], {node.output[0]: out},
            shape=(("M", m), ("N", n), ("K", k)), macs=m * n * k)


@_handles("Gemm")
def _gemm(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
          ins: list[str]) -> None:
    if len(ins) < 2 or a.get("transA", 0):
        raise Bad("Gemm needs A and B, and transA=0 (a transposed activation is not supported)")
    if len(imp.act(ins[0])) != 2:
        raise Bad(f"input {imp.act(ins[0])} is not 2-D")
    _linear(imp, index, node, ins[0], imp.const(ins[1]), f"B '{ins[1]}'",
            bool(a.get("transB", 0)), imp.operand(ins[2] if len(ins) > 2 else "", "C"),
            a.get("alpha", 1.0), a.get("beta", 1.0), act_b=ins[1])


@_handles("MatMul")
def _matmul(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
            ins: list[str]) -> None:
    if len(ins) != 2 or imp.const(ins[0]) is not None:
        raise Bad("a constant left operand is not supported (the weight must be on the right)")
    _linear(imp, index, node, ins[0], imp.const(ins[1]), f"B '{ins[1]}'", False, None,
            act_b=ins[1])


@_handles("QLinearMatMul")
def _qmatmul(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
             ins: list[str]) -> None:
    if len(ins) < 8:
        raise Bad(f"QLinearMatMul has {len(ins)} inputs; 8 expected")
    if imp.const(ins[0]) is not None:
        raise Bad("a constant left operand is not supported (the weight must be on the right)")
    wc = _qconst(imp, ins[3], ins[4], ins[5], 1) if imp.const(ins[3]) is not None else None
    _linear(imp, index, node, ins[0], wc, f"B '{ins[3]}'", False, None, act_b=ins[3])


@_handles("QGemm")
def _qgemm(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
           ins: list[str]) -> None:
    if len(ins) < 6 or a.get("transA", 0):
        raise Bad("QGemm needs A, its scale and zero point, B, its scale and zero point, "
                   "and transA=0")
    trans = bool(a.get("transB", 0))
    bias = _qbias(imp, ins[6], ins[1], ins[4]) if len(ins) > 6 and ins[6] else None
    _linear(imp, index, node, ins[0], _qconst(imp, ins[3], ins[4], ins[5], 0 if trans else 1),
            f"B '{ins[3]}'", trans, bias, a.get("alpha", 1.0))


def _producer(imp: Import, x: str, node: NodeProto) -> Op | None:
    """The float conv/linear op whose output ``x`` only ``node`` reads (it may fold into it)."""
    i = imp.producer.get(x)
    if i is None or imp.readers[x] != 1 or x in imp.aliases:
        return None
    op = imp.ops[i]
    if op.kind not in ("conv", "linear") or not isinstance(op.weight, np.ndarray) or \
            isinstance(op.bias, Weights) or len(op.outputs) != 1:
        return None
    return op


def _retarget(imp: Import, op: Op, old: str, new: str, what: str) -> None:
    op.outputs = (new,)
    imp.shapes[new] = imp.shapes.pop(old)
    imp.producer[new] = imp.producer.pop(old)
    op.meta.setdefault("folded", []).append(what)


@_handles("BatchNormalization")
def _bn(imp: Import, index: int, node: NodeProto, op: str, a: dict[str, Any],
        ins: list[str]) -> None:
    x = ins[0]
    xs = imp.act(x)
    params = [imp.const(t) for t in ins[1:5]]
    if len(xs) < 2 or len(params) != 4 or any(p is None for p in params) or any(
            p.values.size != xs[1] for p in params):
        raise Bad(f"scale, bias, mean and var must be constants of {xs[1:2]} channels")
    if a.get("training_mode", 0) or any(o for o in node.output[1:]):
        raise Bad("training mode (running statistics as outputs) is not supported")
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


def bias_add(imp: Import, ins: list[str], node: NodeProto) -> bool:
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
