"""The recorder: a ``TorchFunctionMode`` plus module hooks that see one eager forward pass.

Public names: ``record``, ``trace`` (see ``edgesim.trace`` for what they record).

``_Recorder`` keeps the bookkeeping of tensors (which are activations, in which buffer; which
are constants, made of which parameters), the module context (hints, router gates, op names)
and one ``_Raw`` per op; ``edgesim.trace.ops`` analyses each call, ``edgesim.trace.weights``
makes the weight blocks and ``edgesim.trace.liveness`` the buffers and live bytes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgesim.errors import TraceError
from edgesim.trace import ops as opa
from edgesim.trace.liveness import Act, Buf, fuse, live_bytes
from edgesim.trace.weights import weight_block
from edgesim.workload import OP_KINDS, PRECISIONS, LayerOp, WeightBlock, Workload

__all__ = ["record", "trace"]


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
    ins: list[Act]
    outs: list[Act]
    macs: int
    shape: tuple[tuple[str, int], ...]
    precision: str
    meta: dict[str, Any]
    #: (nonzeros, elements) of the weight the op reads when a layout hook gave them
    nonzeros: tuple[int, int] | None = None


class _Recorder(TorchFunctionMode):
    """Records every torch call of one forward pass (see ``edgesim.trace``)."""

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
        self._acts: dict[int, Act] = {}
        self._consts: dict[int, _Const] = {}
        self._refs: dict[int, weakref.ref] = {}
        self._names: dict[str, int] = {}
        self.bufs: list[Buf] = []
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
        buf = Buf(self._bytes(t), 0, 0)
        self.bufs.append(buf)
        self._set_act(t, Act(buf.nbytes, buf))

    def _set_act(self, t: torch.Tensor, act: Act) -> None:
        self._watch(t)
        self._consts.pop(id(t), None)
        self._acts[id(t)] = act

    def _act_of(self, t: torch.Tensor) -> Act:
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
        acts: list[tuple[torch.Tensor, Act]] = []
        consts: list[_Const] = []
        for t in inputs:
            c = self._consts.get(id(t))
            if c is not None and c.tensor is t:
                consts.append(c)
            else:
                acts.append((t, self._act_of(t)))
        if fname in opa.FACTORIES:
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
        if fname in opa.VIEWS:
            if fname == "__getitem__" and len(inputs) > 1:
                self._record("group", fname, args, kwargs, acts, consts, outs)
                return
            src = acts[0][1]
            for o in outs:
                if o is not acts[0][0]:
                    self._set_act(o, Act(self._bytes(o), src.buf))
            return
        self._record(opa.kind_of(fname, args), fname, args, kwargs, acts, consts, outs)

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
    def _precision(self) -> str:
        hint = self._module_attr("edgesim_precision")
        precision = self.precision if hint is None else str(hint[1])
        if precision not in PRECISIONS:
            raise TraceError(f"module '{hint[0] if hint else ''}': edgesim_precision "
                             f"{precision!r} is not one of {PRECISIONS}")
        return precision

    def _record(self, kind: str, fname: str, args: Sequence[Any], kwargs: Mapping[str, Any],
                acts: list[tuple[torch.Tensor, Act]], consts: list[_Const],
                outs: list[torch.Tensor]) -> None:
        index = len(self.raws)
        precision = self._precision()
        a = opa.analyse(kind, fname, args, kwargs, outs[0], {id(c.tensor) for c in consts})
        weights, main, nonzeros = self._weights(consts, a, precision)
        router = self._module_attr("edgesim_kind")
        meta: dict[str, Any] = {"module": self.stack[-1][0] if self.stack else "",
                                "func": fname, **a.extra}
        if router is not None and router[1] == "router":
            meta["router"] = router[0]
            meta["op"] = kind
            kind = "router"
        if weights and self.gate is not None:
            meta["gate"] = self.gate
        seen: set[int] = set()
        ins: list[Act] = []
        for t, act in acts:
            if id(t) not in seen:
                seen.add(id(t))
                ins.append(act)
                act.buf.readers.append(index)
        out_acts = []
        for o in outs:
            buf = Buf(self._bytes(o), index, index)
            self.bufs.append(buf)
            act = Act(buf.nbytes, buf)
            self._set_act(o, act)
            out_acts.append(act)
        self.raws.append(_Raw(self._op_name(fname), kind, weights, main, ins, out_acts, a.macs,
                              tuple(a.shape), precision, meta, nonzeros))

    # -- weights ---------------------------------------------------------------------------------
    def _owner(self, bid: str) -> tuple[nn.Module | None, str | None]:
        """The module holding parameter ``bid`` and, for a parametrized one, the tensor name."""
        head, sep, rest = f".{bid}".partition(".parametrizations.")
        if sep:
            return self._modules.get(head[1:]), rest.split(".", 1)[0]
        return self._modules.get(bid.rpartition(".")[0]), None

    def _weights(self, consts: list[_Const], a: opa.Analysis,
                 precision: str) -> tuple[list[str], str | None, tuple[int, int] | None]:
        """Block ids an op reads (blocks made on first read), its main block, and (nonzeros,
        elements) of its weight when a layout hook (``edgesim_weight_blocks``) stored it."""
        weights: list[str] = []
        main: str | None = None
        nonzeros = None
        for c in consts:
            bid = c.block_id
            if bid is None or bid in weights:
                continue
            role, axis = a.roles.get(id(c.tensor), ("aux", None))
            if role == "aux" and bid.rsplit(".", 1)[-1].startswith("bias"):
                role = "bias"
            values = c.tensor
            param = self._params.get(bid)
            if param is not None and param.numel() != values.numel():
                # Gathered or expanded from a parameter (a relative position bias table): what
                # is stored is the parameter itself.
                values, axis = param, (0 if role == "weight" else axis)
            owner, tensor = self._owner(bid)
            hook = _layout_hook(owner, tensor) if role == "weight" else None
            if hook is not None:
                blocks, ids, nnz = hook(bid, values if param is None else param, precision)
                for b in blocks:
                    self.blocks.setdefault(b.id, b)
                weights.extend(ids)
                nonzeros = (int(nnz), int(values.numel()))
                ids_main = ids[0] if ids else None
            else:
                if bid not in self.blocks:
                    region = getattr(owner, "edgesim_region", None) if role == "weight" else None
                    self.blocks[bid] = weight_block(
                        bid, values.detach().float().cpu().numpy(), role, axis, precision,
                        self.encodings, region=region)
                weights.append(bid)
                ids_main = bid
            if c.tensor is a.main:
                main = ids_main
        return weights, main, nonzeros

    # -- after the pass --------------------------------------------------------------------------
    def finish(self) -> list[LayerOp]:
        fused = fuse(self.raws)
        live = live_bytes(self.bufs, len(self.raws))
        ops = []
        for i, r in enumerate(self.raws):
            # the ops that read this op's output (through a fused activation's merged buffer)
            readers = () if i in fused else tuple(dict.fromkeys(
                self.raws[k].name for a in r.outs for k in a.buf.root().readers
                if k > i and k not in fused))
            in_b = 0 if i in fused else sum(a.nbytes for a in r.ins)
            out_b = 0 if i in fused else sum(a.nbytes for a in r.outs)
            meta = dict(r.meta)
            eff = r.macs
            if r.nonzeros is not None:
                eff = r.macs * r.nonzeros[0] // max(1, r.nonzeros[1])
            elif r.main is not None:
                b = self.blocks[r.main]
                eff = r.macs * b.nonzeros // b.elements if b.elements else 0
            gate, router = meta.pop("gate", None), meta.pop("router", None)
            ops.append(LayerOp(r.name, r.kind, tuple(r.weights), in_b, out_b,
                               max(int(live[i]), in_b + out_b), r.macs, eff, r.precision,
                               r.shape, meta, gate=gate, router=router, fused=i in fused,
                               readers=readers))
        return ops


def _layout_hook(owner: nn.Module | None, tensor: str | None) -> Callable[..., Any] | None:
    """The ``edgesim_weight_blocks`` hook of a parameter: on its module, or on one of the
    parametrizations of its tensor (see ``edgesim.trace``)."""
    hook = getattr(owner, "edgesim_weight_blocks", None)
    if hook is None and tensor is not None:
        plist = getattr(getattr(owner, "parametrizations", None), tensor, None)
        for p in plist if plist is not None else ():
            hook = getattr(p, "edgesim_weight_blocks", None)
            if hook is not None:
                break
    return hook


def _precision_ok(precision: str, act_bits: int) -> None:
    if precision not in PRECISIONS:
        raise TraceError(f"precision {precision!r} is not one of {PRECISIONS}")
    if int(act_bits) != act_bits or act_bits < 1:
        raise TraceError(f"act_bits must be a positive integer, got {act_bits!r}")


def _hooks(rec: _Recorder, modules: Mapping[str, nn.Module]) -> list[Any]:
    """Forward pre/post hooks on every module: the module stack, opaque modules, router gates."""
    names = {id(m): n for n, m in modules.items()}

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
    return handles


def record(model: nn.Module, example: Any, *, forward: Callable[..., Any] | None = None,
           precision: str = "int8", act_bits: int = 8,
           encodings: Iterable[str] = ("dense",)) -> tuple[list[WeightBlock], list[LayerOp]]:
    """Run ``forward`` (default ``model``) once on ``example``; the blocks read and the ops run.

    ``example`` is a tensor, or a tuple of tensors passed as positional arguments. Parameter
    names come from ``model.named_parameters()``. ``encodings`` are the candidates each weight
    block is measured under (``WeightBlock.encoded``); ``act_bits`` the bits per activation
    element of the recorded bytes (8, what ``edgesim.encodings.resolve`` expects, gives bytes =
    elements). Errors inside the forward are re-raised as ``TraceError`` naming the innermost
    module that was running.
    """
    _precision_ok(precision, act_bits)
    encodings = tuple(encodings)
    rec = _Recorder(model, precision, int(act_bits), encodings)
    modules = dict(model.named_modules())
    handles = _hooks(rec, modules)
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
    """A one-path ``Workload`` of ``model`` on ``example`` (see ``record``), as traced:
    ``edgesim.encodings.resolve`` gives it as a hardware stores it.

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
