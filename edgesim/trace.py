"""The recorder: one eager forward pass of a PyTorch model -> WeightBlocks and LayerOps.

Public names: ``record``, ``trace``.

Built on ``torch.overrides.TorchFunctionMode`` (every torch function call is seen, so functional
ops and residual adds are recorded) plus forward pre/post hooks on every module (the module each
call runs in). It runs the model once, in eval mode under ``no_grad``, on a real example.

* Ops: conv (``N K C R S P Q``, C per group), linear and matmul (``M N K``, K the reduction;
  activation x activation matmuls have no weights), embedding, pool, eltwise (add, mul, cat),
  norm (not folded), act (relu, gelu, softmax, ...), group/sample (gather, topk), other.
  View and shape ops are not ops. An activation that directly consumes the previous op's output,
  and is its only reader, is fused into it: it stays in the list with ``fused=True``
  and 0 in/out bytes.
* Bytes: an activation tensor costs ``ceil(numel * act_bits / 8)``; ``in_bytes`` sums the
  distinct activation inputs, ``out_bytes`` the outputs, ``live_bytes`` every activation buffer
  alive while the op runs (from its producer to its last reader, so a residual branch counts
  while the main branch runs), and never less than ``in_bytes + out_bytes``.
* Weights: one ``WeightBlock`` per parameter actually read (id = qualified parameter name; a
  tensor computed from parameters, e.g. ``weight * mask``, is named after its parameters),
  quantized once (``edgesim.quantize``) at the precision in force where it is first read; nonzeros
  are counted after quantization; biases are int32. Norm affine weights and parameters read by
  non-MAC ops are quantized per tensor (int8 when the precision is binary).
* ``edgesim_opaque = True`` on a module records its whole call as ONE op without weights, of
  kind ``edgesim_kind`` (e.g. ``sample`` for farthest-point sampling, ``group`` for ball query),
  with the activation bytes of its inputs and outputs; the torch calls inside are not recorded.
* Module hints: ``edgesim_precision`` (innermost wins) sets the precision of the module's ops and
  parameters; ``edgesim_kind = "router"`` makes every op inside the module a ``router`` op
  (``LayerOp.router`` = module name), and every weight op recorded after a router module ran gets
  ``LayerOp.gate`` = that router's module name (the last router seen).

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
>>> blocks, ops = record(net, torch.randn(1, 3, 4, 4))
>>> [(op.name, op.kind, op.macs) for op in ops]     # conv: 4*3*3*3*4*4, linear: 2*64
[('0', 'conv', 1728), ('1', 'act', 0), ('3', 'linear', 128)]
>>> [(b.id, b.bits, b.elements) for b in blocks]
[('0.weight', 8, 108), ('0.bias', 32, 4), ('3.weight', 8, 128), ('3.bias', 32, 2)]
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgesim import encodings
from edgesim.errors import TraceError
from edgesim.quantize import bits_of, quantize, quantize_bias
from edgesim.workload import OP_KINDS, PRECISIONS, LayerOp, WeightBlock, Workload

__all__ = ["record", "trace"]

_CONV = {"conv1d", "conv2d", "conv3d"}
_LINEAR = {"linear"}
_MATMUL = {"matmul", "bmm", "mm", "__matmul__", "__rmatmul__", "mv"}
_ADDMM = {"addmm", "baddbmm"}
_EMBED = {"embedding"}
_POOL = {"max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
         "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
         "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
         "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool2d",
         "mean", "sum", "amax", "amin", "max", "min", "logsumexp"}
_NORM = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm",
         "local_response_norm", "normalize"}
_ACT = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_", "gelu", "silu", "silu_", "sigmoid",
        "sigmoid_", "tanh", "tanh_", "softmax", "log_softmax", "softmin", "hardswish",
        "hardsigmoid", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "mish",
        "softplus", "softsign", "prelu", "glu", "logsigmoid", "exp", "sqrt", "rsqrt"}
_ELTWISE = {"add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__",
            "__rsub__", "__isub__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "div",
            "div_", "__truediv__", "__rtruediv__", "__itruediv__", "__neg__", "neg", "cat",
            "concat", "concatenate", "stack", "where", "maximum", "minimum", "pow", "__pow__",
            "addcmul", "addcdiv", "lerp", "clamp", "clamp_", "clip", "abs"}
_ELTWISE |= {"eq", "ne", "lt", "le", "gt", "ge", "__eq__", "__ne__", "__lt__", "__le__",
             "__gt__", "__ge__", "logical_and", "logical_or", "logical_not", "__and__", "__or__",
             "__invert__", "masked_fill", "masked_fill_"}
#: Calls whose output does not depend on the values of their tensor inputs: constants out.
_FACTORY = {"zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like",
            "randint_like", "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor",
            "arange", "zeros", "ones", "full", "empty", "eye", "linspace"}
_GROUP = {"gather", "index_select", "take_along_dim", "take", "masked_select", "index"}
_SAMPLE = {"topk", "sort", "argsort", "argmax", "argmin", "multinomial", "cdist", "nonzero"}
_VIEW = {"view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "contiguous",
         "squeeze", "unsqueeze", "expand", "expand_as", "view_as", "reshape_as", "chunk", "split",
         "tensor_split", "unbind", "narrow", "select", "dropout", "dropout1d", "dropout2d",
         "dropout3d", "alpha_dropout", "feature_alpha_dropout", "detach", "clone", "to", "float",
         "half", "double", "bfloat16", "type", "type_as", "movedim", "moveaxis", "swapaxes",
         "swapdims", "__getitem__", "__get__", "cpu", "cuda", "requires_grad_", "identity",
         "as_strided", "unfold", "repeat", "tile", "repeat_interleave", "broadcast_to",
         "ravel", "flip", "roll", "numpy", "tolist", "item"}


def _name_of(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Tensors in ``obj`` and one level of list/tuple/dict inside it."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in ((x,) if isinstance(x, torch.Tensor) else
                                         (x if isinstance(x, (list, tuple)) else ()))
                if isinstance(t, torch.Tensor)]
    if isinstance(obj, dict):
        return _tensors(list(obj.values()))
    return []


def _arg(args: Sequence[Any], kwargs: Mapping[str, Any], i: int, name: str,
         default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


@dataclass(slots=True, eq=False)
class _Buf:
    """An activation buffer: bytes, producing op, readers (op indices); union-find parent."""

    nbytes: int
    first: int
    last: int
    readers: list[int] = field(default_factory=list)
    parent: _Buf | None = None

    def root(self) -> _Buf:
        b = self
        while b.parent is not None:
            b = b.parent
        return b


@dataclass(slots=True)
class _Act:
    """An activation tensor: its own bytes and the buffer it lives in (views share it)."""

    nbytes: int
    buf: _Buf


@dataclass(slots=True)
class _Const:
    """A constant tensor: a parameter, a buffer, or computed from them only."""

    tensor: torch.Tensor
    params: tuple[str, ...]
    buffers: tuple[str, ...]

    @property
    def block_id(self) -> str | None:
        """The parameters it is made of (buffers such as BN running stats are not blocks)."""
        return "+".join(self.params) if self.params else None


@dataclass(slots=True)
class _Raw:
    name: str
    kind: str
    weights: list[str]
    main: str | None
    ins: list[_Act]
    outs: list[_Act]
    macs: int
    shape: tuple[tuple[str, int], ...]
    precision: str
    meta: dict[str, Any]


class _Recorder(TorchFunctionMode):
    """Records every torch call of one forward pass (see the module docstring)."""

    def __init__(self, model: nn.Module, precision: str, act_bits: int,
                 encodings: tuple[str, ...]) -> None:
        super().__init__()
        self.precision = precision
        self.act_bits = act_bits
        self.encodings = encodings
        self.stack: list[tuple[str, nn.Module]] = []
        self.gate: str | None = None
        self.opaque = 0          # depth inside modules with ``edgesim_opaque = True``
        self.raws: list[_Raw] = []
        self.blocks: dict[str, WeightBlock] = {}
        self._nnz_frac: dict[str, tuple[int, int]] = {}
        self._acts: dict[int, _Act] = {}
        self._consts: dict[int, _Const] = {}
        self._refs: dict[int, weakref.ref] = {}
        self._names: dict[str, int] = {}
        self.bufs: list[_Buf] = []
        self._params = dict(model.named_parameters())
        self._modules = dict(model.named_modules())
        for name, p in self._params.items():
            self._consts[id(p)] = _Const(p, (name,), ())
        for name, b in model.named_buffers():
            self._consts[id(b)] = _Const(b, (), (name,))
        self._fixed = set(self._consts)

    # -- bookkeeping of tensors ---------------------------------------------------------------
    def _watch(self, t: torch.Tensor) -> None:
        key = id(t)
        if key in self._refs or key in self._fixed:
            return

        def forget(_ref: weakref.ref, key: int = key) -> None:
            self._refs.pop(key, None)
            self._acts.pop(key, None)
            self._consts.pop(key, None)

        self._refs[key] = weakref.ref(t, forget)

    def _bytes(self, t: torch.Tensor) -> int:
        return (t.numel() * self.act_bits + 7) // 8

    def add_input(self, t: torch.Tensor) -> None:
        buf = _Buf(self._bytes(t), 0, 0)
        self.bufs.append(buf)
        self._set_act(t, _Act(buf.nbytes, buf))

    def _set_act(self, t: torch.Tensor, act: _Act) -> None:
        self._watch(t)
        self._consts.pop(id(t), None)
        self._acts[id(t)] = act

    def _act_of(self, t: torch.Tensor) -> _Act:
        act = self._acts.get(id(t))
        if act is None:  # a tensor from outside the pass: an external input
            self.add_input(t)
            act = self._acts[id(t)]
        return act

    # -- module context -----------------------------------------------------------------------
    def _module_attr(self, attr: str) -> tuple[str, Any] | None:
        for name, mod in reversed(self.stack):
            value = getattr(mod, attr, None)
            if value is not None:
                return name, value
        return None

    def _op_name(self, func_name: str) -> str:
        if self.stack:
            mod_name, mod = self.stack[-1]
            leaf = next(iter(mod.children()), None) is None
            base = mod_name if leaf and mod_name else (
                f"{mod_name}.{func_name.strip('_')}" if mod_name else func_name.strip("_"))
        else:
            base = func_name.strip("_")
        n = self._names.get(base, 0)
        self._names[base] = n + 1
        return base if n == 0 else f"{base}.{n}"

    # -- the hook ------------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.opaque:  # inside an opaque module: recorded as one op when it returns
            return out
        try:
            self._on_call(_name_of(func), args, kwargs, out)
        except TraceError:
            raise
        except Exception as exc:
            where = self.stack[-1][0] if self.stack else "<top>"
            raise TraceError(f"module '{where}': recording {_name_of(func)} failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        return out

    def _on_call(self, fname: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                 out: Any) -> None:
        outs = _tensors(out)
        if not outs:
            return
        inputs = [t for a in (*args, *kwargs.values()) for t in _tensors(a)]
        acts: list[tuple[torch.Tensor, _Act]] = []
        consts: list[_Const] = []
        for t in inputs:
            c = self._consts.get(id(t))
            if c is not None and c.tensor is t:
                consts.append(c)
            else:
                acts.append((t, self._act_of(t)))
        if fname in _FACTORY:
            acts, consts = [], []
        if not acts:  # weight preprocessing (w * mask, w.t()) or a factory: constants out
            params = tuple(dict.fromkeys(n for c in consts for n in c.params))
            buffers = tuple(dict.fromkeys(n for c in consts for n in c.buffers))
            for o in outs:
                if id(o) not in self._fixed:
                    self._watch(o)
                    self._acts.pop(id(o), None)
                    self._consts[id(o)] = _Const(o, params, buffers)
            return
        if fname in _VIEW:
            if fname == "__getitem__" and len(inputs) > 1:
                self._record("group", fname, args, kwargs, acts, consts, outs)
                return
            src = acts[0][1]
            for o in outs:
                if o is not acts[0][0]:
                    self._set_act(o, _Act(self._bytes(o), src.buf))
            return
        self._record(self._kind(fname, args), fname, args, kwargs, acts, consts, outs)

    def _kind(self, fname: str, args: Sequence[Any]) -> str:
        if fname in _CONV:
            return "conv"
        if fname in _LINEAR or fname in _ADDMM:
            return "linear"
        if fname in _MATMUL:
            return "matmul"
        if fname in _EMBED:
            return "embedding"
        if fname in ("max", "min") and len(args) > 1 and isinstance(args[1], torch.Tensor):
            return "eltwise"
        for kind, names in (("pool", _POOL), ("norm", _NORM), ("act", _ACT),
                            ("eltwise", _ELTWISE), ("group", _GROUP), ("sample", _SAMPLE)):
            if fname in names:
                return kind
        return "other"

    def record_module(self, name: str, mod: nn.Module, args: Sequence[Any], out: Any) -> None:
        """One op for a whole opaque module (``edgesim_opaque``): its activations in and out."""
        outs = _tensors(out)
        if not outs:
            return
        acts, seen = [], set()
        for t in (x for a in args for x in _tensors(a)):
            if id(t) in seen:
                continue
            seen.add(id(t))
            c = self._consts.get(id(t))
            if c is None or c.tensor is not t:
                acts.append((t, self._act_of(t)))
        kind = str(getattr(mod, "edgesim_kind", "other"))
        if kind not in OP_KINDS or kind == "router":
            kind = "other"
        self._record(kind, type(mod).__name__, (), {}, acts, [], outs)

    # -- one op --------------------------------------------------------------------------------
    def _record(self, kind: str, fname: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                acts: list[tuple[torch.Tensor, _Act]], consts: list[_Const],
                outs: list[torch.Tensor]) -> None:
        index = len(self.raws)
        hint = self._module_attr("edgesim_precision")
        precision = self.precision if hint is None else str(hint[1])
        if precision not in PRECISIONS:
            raise TraceError(f"module '{hint[0] if hint else ''}': edgesim_precision "
                             f"{precision!r} is not one of {PRECISIONS}")
        roles: dict[int, tuple[str, int | None]] = {}  # id(const tensor) -> (role, channel axis)
        macs, shape, main_t = 0, (), None
        out0 = outs[0]
        if kind == "conv":
            w = _arg(args, kwargs, 1, "weight")
            b = _arg(args, kwargs, 2, "bias")
            groups = int(_arg(args, kwargs, 6, "groups", 1))
            spatial = w.dim() - 2
            k_out, c_per_group = int(w.shape[0]), int(w.shape[1])
            rs = [1] * (2 - min(spatial, 2)) + [int(v) for v in w.shape[2:]]
            pq = [1] * (2 - min(spatial, 2)) + [int(v) for v in out0.shape[-spatial:]]
            n = out0.numel() // (k_out * math.prod(pq))
            macs = n * k_out * c_per_group * math.prod(rs) * math.prod(pq)
            names = ("R", "S") if spatial <= 2 else ("T", "R", "S")
            pqn = ("P", "Q") if spatial <= 2 else ("D", "P", "Q")
            shape = (("N", n), ("K", k_out), ("C", c_per_group), *zip(names, rs, strict=True),
                     *zip(pqn, pq, strict=True))
            main_t = w
            roles[id(w)] = ("weight", 0)
            if isinstance(b, torch.Tensor):
                roles[id(b)] = ("bias", None)
            extra = {"groups": groups} if groups != 1 else {}
        elif kind == "linear" and fname in _ADDMM:
            bias, a, w = (_arg(args, kwargs, i, nm) for i, nm in
                          enumerate(("input", "mat1", "mat2")))
            m, kk, nn_ = a.numel() // int(a.shape[-1]), int(a.shape[-1]), int(w.shape[-1])
            macs, shape, main_t = m * nn_ * kk, (("M", m), ("N", nn_), ("K", kk)), w
            roles[id(w)] = ("weight", w.dim() - 1)
            roles[id(bias)] = ("bias", None)
            extra = {}
        elif kind == "linear":
            x = _arg(args, kwargs, 0, "input")
            w = _arg(args, kwargs, 1, "weight")
            b = _arg(args, kwargs, 2, "bias")
            kk, nn_ = int(w.shape[-1]), int(w.shape[0]) if w.dim() > 1 else 1
            m = x.numel() // kk
            macs, shape, main_t = m * nn_ * kk, (("M", m), ("N", nn_), ("K", kk)), w
            roles[id(w)] = ("weight", 0)
            if isinstance(b, torch.Tensor):
                roles[id(b)] = ("bias", None)
            extra = {}
        elif kind == "matmul":
            a, b = args[0], args[1]
            if fname == "__rmatmul__":
                a, b = b, a
            kk = int(a.shape[-1])
            nn_ = int(b.shape[-1]) if b.dim() > 1 else 1
            m = out0.numel() // nn_
            macs, shape = m * nn_ * kk, (("M", m), ("N", nn_), ("K", kk))
            if id(b) in {id(c.tensor) for c in consts}:
                main_t = b
                roles[id(b)] = ("weight", b.dim() - 1)
            elif id(a) in {id(c.tensor) for c in consts}:
                main_t = a
                roles[id(a)] = ("weight", max(a.dim() - 2, 0))
            extra = {}
        elif kind == "embedding":
            w = _arg(args, kwargs, 1, "weight")
            main_t = w
            roles[id(w)] = ("weight", 0)
            extra = {}
        else:
            extra = {}
        weights: list[str] = []
        main: str | None = None
        for c in consts:
            bid = c.block_id
            if bid is None or bid in weights:
                continue
            role, axis = roles.get(id(c.tensor), ("aux", None))
            if role == "aux" and bid.rsplit(".", 1)[-1].startswith("bias"):
                role = "bias"
            values = c.tensor
            param = self._params.get(bid)
            if param is not None and param.numel() != values.numel():
                # Gathered or expanded from a parameter (a relative position bias table): what
                # is stored is the parameter itself.
                values, axis = param, (0 if role == "weight" else axis)
            owner = self._modules.get(bid.split(".parametrizations.", 1)[0])
            if role == "weight" and getattr(owner, "edgesim_levels", None) is not None:
                segments, nnz = self._nested_blocks(bid, owner, precision)
                weights.extend(segments)
                extra = {**extra, "nested_nonzeros": nnz}
                if c.tensor is main_t:
                    main = segments[0]
                continue
            self._block(bid, values, role, axis, precision)
            weights.append(bid)
            if c.tensor is main_t:
                main = bid
        router = self._module_attr("edgesim_kind")
        meta: dict[str, Any] = {"module": self.stack[-1][0] if self.stack else "",
                                "func": fname, **extra}
        if router is not None and router[1] == "router":
            meta["router"] = router[0]
            meta["op"] = kind
            kind = "router"
        if weights and self.gate is not None:
            meta["gate"] = self.gate
        seen: set[int] = set()
        ins: list[_Act] = []
        for t, act in acts:
            if id(t) not in seen:
                seen.add(id(t))
                ins.append(act)
                act.buf.readers.append(index)
        out_acts = []
        for o in outs:
            buf = _Buf(self._bytes(o), index, index)
            self.bufs.append(buf)
            act = _Act(buf.nbytes, buf)
            self._set_act(o, act)
            out_acts.append(act)
        self.raws.append(_Raw(self._op_name(fname), kind, weights, main, ins, out_acts, macs,
                              tuple(shape), precision, meta))

    def _block(self, bid: str, t: torch.Tensor, role: str, axis: int | None,
               precision: str) -> None:
        if bid in self.blocks:
            return
        values = t.detach().float().cpu().numpy()
        if role == "bias":
            q, bits, nscales = quantize_bias(values), 32, 0
        else:
            prec = precision
            if role == "aux":
                prec = "int8" if precision == "binary" else precision
                axis = None
            try:
                q, scales = quantize(values, prec, channel_axis=axis)
            except ValueError as exc:
                raise TraceError(f"parameter '{bid}': {exc}") from exc
            bits, nscales = bits_of(prec), int(scales.size)
        nnz = int(np.count_nonzero(q))
        if role == "bias":
            encoding, stored = "dense", encodings.stored_bytes(q, "dense", bits, 0)
        else:
            # Encodings that cannot hold this tensor (signed_binary with mixed signs) drop out.
            # signed_binary keeps only zero/nonzero and a sign: it holds 1-bit tensors only.
            allowed = [e for e in self.encodings if e != "signed_binary" or bits == 1]
            table = encodings.encoding_table(q, bits, nscales, allowed=allowed)
            if not table:
                raise TraceError(f"parameter '{bid}': none of the encodings "
                                 f"{', '.join(self.encodings)} can store it")
            encoding = min(table, key=table.__getitem__)   # first of the smallest on a tie
            stored = table[encoding]
        dense = encodings.stored_bytes(q, "dense", bits, nscales)
        self.blocks[bid] = WeightBlock(bid, int(q.size), nnz, bits, encoding, int(stored),
                                       int(dense), {"shape": tuple(values.shape), "role": role,
                                                    "precision": precision, "scales": nscales})

    def _nested_blocks(self, bid: str, mod: nn.Module, precision: str) -> tuple[list[str], int]:
        """A nested weight as one stream in the nested prefix layout, one block per level.

        Block ``bid#Lk`` holds the bytes the stream adds for level k (``encodings.nested_bytes``),
        so sub-network k reads the blocks of levels 1..k, a prefix of the stream. Elements are
        split so that the blocks together count the tensor once. Returns the ids the current
        level reads and the nonzeros of the current sub-network.
        """
        levels = mod.edgesim_levels.detach().cpu().numpy().astype(np.int64)
        level = int(mod.parametrizations.weight[0].level)
        n_levels = max(int(levels.max()), level)
        latent = mod.parametrizations.weight.original.detach().float().cpu().numpy()
        q, scales = quantize(latent * (levels >= 1), precision, channel_axis=0)
        bits, nscales = bits_of(precision), int(scales.size)
        levels = np.where(q != 0, levels, 0)      # quantized to zero: in no level
        prefix = encodings.nested_bytes(levels, bits, scales=nscales, n_levels=n_levels)
        counts = [int((levels == k).sum()) for k in range(1, n_levels + 1)]
        ids = []
        for k in range(1, n_levels + 1):
            sid = f"{bid}#L{k}"
            ids.append(sid)
            if sid in self.blocks:
                continue
            stored = prefix[k - 1] - (prefix[k - 2] if k > 1 else 0)
            elements = q.size - sum(counts[1:]) if k == 1 else counts[k - 1]
            dense = encodings.stored_bytes(q, "dense", bits, nscales) if k == 1 else 0
            self.blocks[sid] = WeightBlock(
                sid, int(elements), counts[k - 1], bits, "nested", int(stored), int(dense),
                {"shape": tuple(q.shape), "role": "weight", "precision": precision,
                 "level": k, "levels": n_levels, "parameter": bid})
        return ids[:level], sum(counts[:level])

    # -- after the pass --------------------------------------------------------------------------
    def finish(self) -> list[LayerOp]:
        fused = self._fuse()
        n = len(self.raws)
        delta = np.zeros(n + 1, dtype=np.int64)
        for buf in self.bufs:
            if buf.parent is not None:
                continue
            last = max([buf.last, *buf.readers])
            delta[buf.first] += buf.nbytes
            delta[min(last, n - 1) + 1] -= buf.nbytes
        live = np.cumsum(delta)[:n]
        ops = []
        for i, r in enumerate(self.raws):
            in_b = 0 if i in fused else sum(a.nbytes for a in r.ins)
            out_b = 0 if i in fused else sum(a.nbytes for a in r.outs)
            meta = dict(r.meta)
            eff = r.macs
            if "nested_nonzeros" in r.meta:
                shape = self.blocks[r.main].meta["shape"]
                eff = r.macs * r.meta["nested_nonzeros"] // max(1, math.prod(shape))
            elif r.main is not None:
                b = self.blocks[r.main]
                eff = r.macs * b.nonzeros // b.elements if b.elements else 0
            gate, router = meta.pop("gate", None), meta.pop("router", None)
            ops.append(LayerOp(r.name, r.kind, tuple(r.weights), in_b, out_b,
                               max(int(live[i]), in_b + out_b), r.macs, eff, r.precision,
                               r.shape, meta, gate=gate, router=router, fused=i in fused))
        return ops

    def _fuse(self) -> set[int]:
        """Fuse act ops that are the only reader of the previous op's output (in place)."""
        fused: set[int] = set()
        for i in range(1, len(self.raws)):
            r, prev = self.raws[i], self.raws[i - 1]
            if r.kind != "act" or len(r.ins) != 1 or len(r.outs) != 1:
                continue
            src = r.ins[0].buf.root()
            if src not in {a.buf.root() for a in prev.outs}:
                continue
            if any(j != i for j in src.readers):
                continue
            dst = r.outs[0].buf
            dst.parent = src
            src.nbytes = max(src.nbytes, dst.nbytes)
            src.last = max(src.last, dst.last)
            src.readers = [*(j for j in src.readers if j != i), i, *dst.readers]
            fused.add(i)
        return fused


def _precision_ok(precision: str, act_bits: int) -> None:
    if precision not in PRECISIONS:
        raise TraceError(f"precision {precision!r} is not one of {PRECISIONS}")
    if int(act_bits) != act_bits or act_bits < 1:
        raise TraceError(f"act_bits must be a positive integer, got {act_bits!r}")


def record(model: nn.Module, example: Any, *, forward: Callable[..., Any] | None = None,
           precision: str = "int8", act_bits: int = 8,
           encodings: Iterable[str] = ("dense",)) -> tuple[list[WeightBlock], list[LayerOp]]:
    """Run ``forward`` (default ``model``) once on ``example``; the blocks read and the ops run.

    ``example`` is a tensor, or a tuple of tensors passed as positional arguments. Parameter
    names come from ``model.named_parameters()``. Errors inside the forward are re-raised as
    ``TraceError`` naming the innermost module that was running.
    """
    _precision_ok(precision, act_bits)
    encodings = tuple(encodings)
    rec = _Recorder(model, precision, int(act_bits), encodings)
    names = {id(m): n for n, m in model.named_modules()}
    modules = {n: m for n, m in model.named_modules()}

    def pre(mod: nn.Module, _args: Any) -> None:
        if rec.opaque:
            rec.opaque += bool(getattr(mod, "edgesim_opaque", False))
            return
        rec.stack.append((names[id(mod)], mod))
        if getattr(mod, "edgesim_opaque", False):
            rec.opaque = 1

    def post(mod: nn.Module, args: Any, out: Any) -> None:
        if getattr(mod, "edgesim_opaque", False):
            rec.opaque -= 1
            if rec.opaque == 0:
                rec.record_module(names[id(mod)], mod, args, out)
        if rec.opaque:
            return
        if rec.stack and rec.stack[-1][1] is mod:
            rec.stack.pop()
        if getattr(mod, "edgesim_kind", None) == "router":
            rec.gate = names[id(mod)]

    handles = []
    for m in modules.values():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    training = {m: m.training for m in modules.values()}
    model.eval()
    fn = model if forward is None else forward
    ex = example if isinstance(example, tuple) else (example,)
    try:
        with torch.no_grad():
            for t in ex:
                if isinstance(t, torch.Tensor):
                    rec.add_input(t)
            with rec:
                fn(*ex)
    except TraceError:
        raise
    except Exception as exc:
        where, mod = rec.stack[-1] if rec.stack else ("<top>", model)
        raise TraceError(f"module '{where}' ({type(mod).__name__}) failed during tracing: "
                         f"{type(exc).__name__}: {exc}") from exc
    finally:
        for h in handles:
            h.remove()
        for m, t in training.items():
            m.train(t)
    return list(rec.blocks.values()), rec.finish()


def trace(model: nn.Module, example: Any, *, name: str, family: str,
          forward: Callable[..., Any] | None = None, precision: str = "int8",
          act_bits: int = 8, encodings: Iterable[str] = ("dense",), inputs: int = 1,
          meta: Mapping[str, Any] | None = None) -> Workload:
    """A one-path ``Workload`` of ``model`` on ``example`` (see ``record``).

    ``meta`` gets ``precision``, ``act_bits``, ``encodings``, ``input`` (the example's shape)
    and ``params`` (the model's parameter count), then the caller's ``meta`` on top.
    """
    encodings = tuple(encodings)
    blocks, ops = record(model, example, forward=forward, precision=precision,
                         act_bits=act_bits, encodings=encodings)
    first = example[0] if isinstance(example, tuple) else example
    info = {"precision": precision, "act_bits": int(act_bits), "encodings": encodings,
            "input": tuple(first.shape) if isinstance(first, torch.Tensor) else None,
            "params": sum(p.numel() for p in model.parameters()), **(meta or {})}
    return Workload.single_path(name, family, blocks, ops, inputs=inputs, meta=info)
