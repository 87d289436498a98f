"""Op analysis: the kind of op a torch function is, and for a MAC op its MACs, loop nest and the
roles of its constant operands.

Public names: ``KINDS``, ``VIEWS``, ``FACTORIES``, ``Analysis``, ``kind_of``, ``analyse``,
``ANALYSERS``.

``KINDS`` maps a torch function name to an op kind (``edgesim.workload.OP_KINDS``); a name in
none of them is ``other``. ``VIEWS`` are view and shape calls (not ops: the output shares the
input's buffer), ``FACTORIES`` calls whose output does not depend on their tensor inputs'
values (constants out). ``ANALYSERS`` holds one small function per MAC op kind (conv, linear,
matmul, embedding) returning an ``Analysis``: MACs for a batch of one, the loop nest
(``N K C R S P Q`` with C per group for a conv, ``M N K`` with K the reduction otherwise) and,
for each constant operand, its role (``weight`` with its output-channel axis, or ``bias``).

>>> kind_of("conv2d", ()), kind_of("relu_", ()), kind_of("max", ()), kind_of("foo", ())
('conv', 'act', 'pool', 'other')
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import torch

__all__ = ["ANALYSERS", "FACTORIES", "KINDS", "VIEWS", "Analysis", "analyse", "kind_of"]

_ADDMM = ("addmm", "baddbmm")

#: Function names of each op kind, in priority order (a name listed twice takes its first kind).
_NAMES: dict[str, tuple[str, ...]] = {
    "conv": ("conv1d", "conv2d", "conv3d"),
    "linear": ("linear", *_ADDMM),
    "matmul": ("matmul", "bmm", "mm", "__matmul__", "__rmatmul__", "mv"),
    "embedding": ("embedding",),
    "pool": ("max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
             "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
             "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
             "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool2d",
             "mean", "sum", "amax", "amin", "max", "min", "logsumexp"),
    "norm": ("batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
             "local_response_norm", "normalize"),
    "act": ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "silu_",
            "sigmoid", "sigmoid_", "tanh", "tanh_", "softmax", "log_softmax", "softmin",
            "hardswish", "hardsigmoid", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu",
            "celu", "mish", "softplus", "softsign", "prelu", "glu", "logsigmoid", "exp", "sqrt",
            "rsqrt"),
    "eltwise": ("add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
                "__rsub__", "__isub__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div",
                "div_", "__truediv__", "__rtruediv__", "__itruediv__", "__neg__", "neg", "cat",
                "concat", "concatenate", "stack", "where", "maximum", "minimum", "pow",
                "__pow__", "addcmul", "addcdiv", "lerp", "clamp", "clamp_", "clip", "abs",
                "eq", "ne", "lt", "le", "gt", "ge", "__eq__", "__ne__", "__lt__", "__le__",
                "__gt__", "__ge__", "logical_and", "logical_or", "logical_not", "__and__",
                "__or__", "__invert__", "masked_fill", "masked_fill_"),
    "group": ("gather", "index_select", "take_along_dim", "take", "masked_select", "index"),
    "sample": ("topk", "sort", "argsort", "argmax", "argmin", "multinomial", "cdist",
               "nonzero"),
}

#: torch function name -> op kind.
KINDS: Mapping[str, str] = MappingProxyType(
    {name: kind for kind, names in reversed(_NAMES.items()) for name in names})

#: Calls whose output does not depend on the values of their tensor inputs: constants out.
FACTORIES = frozenset({
    "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
    "randint_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "arange",
    "zeros", "ones", "full", "empty", "eye", "linspace"})

#: View and shape calls: not ops; the output lives in the input's buffer.
VIEWS = frozenset({
    "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous",
    "squeeze", "unsqueeze", "expand", "expand_as", "view_as", "reshape_as", "chunk", "split",
    "tensor_split", "unbind", "narrow", "select", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "detach", "clone", "to", "float",
    "half", "double", "bfloat16", "type", "type_as", "movedim", "moveaxis", "swapaxes",
    "swapdims", "__getitem__", "__get__", "cpu", "cuda", "requires_grad_", "identity",
    "as_strided", "unfold", "repeat", "tile", "repeat_interleave", "broadcast_to", "ravel",
    "flip", "roll", "numpy", "tolist", "item"})


def kind_of(fname: str, args: Sequence[Any]) -> str:
    """The op kind of a call of ``fname``; ``max``/``min`` of two tensors is ``eltwise``."""
    if fname in ("max", "min") and len(args) > 1 and isinstance(args[1], torch.Tensor):
        return "eltwise"
    return KINDS.get(fname, "other")


class Analysis(NamedTuple):
    """What a MAC op computes: ``macs``, loop nest ``shape``, the ``main`` weight tensor (whose
    zeros effective MACs skip), ``roles`` (id of a constant operand -> (role, channel axis)) and
    ``extra`` meta (``groups`` of a grouped conv)."""

    macs: int = 0
    shape: tuple[tuple[str, int], ...] = ()
    main: torch.Tensor | None = None
    roles: Mapping[int, tuple[str, int | None]] = MappingProxyType({})
    extra: Mapping[str, Any] = MappingProxyType({})


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str,
         default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _weight_and_bias(w: torch.Tensor, b: Any, axis: int) -> dict[int, tuple[str, int | None]]:
    roles: dict[int, tuple[str, int | None]] = {id(w): ("weight", axis)}
    if isinstance(b, torch.Tensor):
        roles[id(b)] = ("bias", None)
    return roles


def _conv(fname: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: torch.Tensor,
          consts: set[int]) -> Analysis:
    w, b = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    groups = int(_arg(args, kwargs, 6, "groups", 1))
    spatial = w.dim() - 2
    k_out, c_per_group = int(w.shape[0]), int(w.shape[1])
    rs = [1] * (2 - min(spatial, 2)) + [int(v) for v in w.shape[2:]]
    pq = [1] * (2 - min(spatial, 2)) + [int(v) for v in out.shape[-spatial:]]
    n = out.numel() // (k_out * math.prod(pq))
    macs = n * k_out * c_per_group * math.prod(rs) * math.prod(pq)
    names = ("R", "S") if spatial <= 2 else ("T", "R", "S")
    pqn = ("P", "Q") if spatial <= 2 else ("D", "P", "Q")
    shape = (("N", n), ("K", k_out), ("C", c_per_group), *zip(names, rs, strict=True),
             *zip(pqn, pq, strict=True))
    return Analysis(macs, shape, w, _weight_and_bias(w, b, 0),
                    {"groups": groups} if groups != 1 else {})


def _linear(fname: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: torch.Tensor,
            consts: set[int]) -> Analysis:
    if fname in _ADDMM:
        bias, a, w = (_arg(args, kwargs, i, nm) for i, nm in
                      enumerate(("input", "mat1", "mat2")))
        m, kk, nn_ = a.numel() // int(a.shape[-1]), int(a.shape[-1]), int(w.shape[-1])
        roles = {id(w): ("weight", w.dim() - 1), id(bias): ("bias", None)}
    else:
        x, w, bias = (_arg(args, kwargs, i, nm) for i, nm in
                      enumerate(("input", "weight", "bias")))
        kk, nn_ = int(w.shape[-1]), int(w.shape[0]) if w.dim() > 1 else 1
        m = x.numel() // kk
        roles = _weight_and_bias(w, bias, 0)
    return Analysis(m * nn_ * kk, (("M", m), ("N", nn_), ("K", kk)), w, roles)


def _matmul(fname: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: torch.Tensor,
            consts: set[int]) -> Analysis:
    """Weights only when an operand is constant: the right one (channels last) or the left."""
    a, b = args[0], args[1]
    if fname == "__rmatmul__":
        a, b = b, a
    kk = int(a.shape[-1])
    nn_ = int(b.shape[-1]) if b.dim() > 1 else 1
    m = out.numel() // nn_
    macs, shape = m * nn_ * kk, (("M", m), ("N", nn_), ("K", kk))
    if id(b) in consts:
        return Analysis(macs, shape, b, {id(b): ("weight", b.dim() - 1)})
    if id(a) in consts:
        return Analysis(macs, shape, a, {id(a): ("weight", max(a.dim() - 2, 0))})
    return Analysis(macs, shape)


def _embedding(fname: str, args: Sequence[Any], kwargs: Mapping[str, Any], out: torch.Tensor,
               consts: set[int]) -> Analysis:
    w = _arg(args, kwargs, 1, "weight")
    return Analysis(0, (), w, {id(w): ("weight", 0)})


#: MAC op kind -> analyser(fname, args, kwargs, first output, ids of constant operands).
ANALYSERS: Mapping[str, Callable[..., Analysis]] = MappingProxyType({
    "conv": _conv, "linear": _linear, "matmul": _matmul, "embedding": _embedding})


def analyse(kind: str, fname: str, args: Sequence[Any], kwargs: Mapping[str, Any],
            out: torch.Tensor, consts: set[int]) -> Analysis:
    """The ``Analysis`` of one call; ops of other kinds have no MACs and no weight roles."""
    fn = ANALYSERS.get(kind)
    return Analysis() if fn is None else fn(fname, args, kwargs, out, consts)
