"""The recorder: a ``TorchFunctionMode`` plus module hooks that see one eager forward pass.

Public names: ``record``, ``trace`` (see ``edgesim.trace`` for what they record).

``_Recorder`` keeps the bookkeeping of tensors (which are activations, in which buffer; which
are constants, made of which parameters), the module context (hints, router gates, op names)
and one ``_Raw`` per op; ``edgesim.trace.ops`` analyses each call, ``edgesim.trace.weights``
makes the weight blocks, ``edgesim.trace.liveness`` the buffers and live bytes, and
``edgesim.trace.fold`` decides the BatchNorm folds (``fold_bn``): reads of a parameter itself
(or of what its parametrization computes from it) are kept as ``_Read`` until the pass is
over, so that a fold can scale it first. A conv whose weight is computed in its forward other
than by a parametrization is not folded.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from edgesim.errors import TraceError
from edgesim.trace import ops as opa
from edgesim.trace.fold import Fold, FoldWatch
from edgesim.trace.liveness import Act, Buf, drop, fuse, live_bytes
from edgesim.trace.weights import layout_of, weight_block
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
    #: the parametrization list (``<module>.parametrizations.<name>``) that returned it
    chain: str | None = None

    @property
    def block_id(self) -> str | None:
        """The parameters it is made of (buffers such as BN running stats are not blocks)."""
        return "+".join(self.params) if self.params else None


@dataclass(slots=True, eq=False)
class _Read:
    """One op's read of the weight ``bid`` and, once made, the ``ids`` it reads and the
    ``blocks`` it made (none when an earlier read made the block).

    A read of a parameter itself (``chain`` None) or of what its parametrization list
    ``chain`` computes from it is made after the pass (``ids`` None until then), from the
    parameter, so that a fold can scale it first; any other is made at once.
    """

    bid: str
    role: str
    axis: int | None
    precision: str
    main: bool                  # the op's main weight (effective MACs skip its zeros)
    numel: int                  # elements of the tensor read
    dtype: torch.dtype
    chain: str | None = None
    layout: str | None = None   # the op a weight feeds, for the mlw order (weights.layout_of)
    ids: list[str] | None = None
    blocks: list[WeightBlock] = field(default_factory=list)
    #: (nonzeros, elements) of the tensor when a layout hook stored it
    nonzeros: tuple[int, int] | None = None


@dataclass(slots=True)
class _Raw:
    name: str
    kind: str
    reads: list[_Read]
    ins: list[Act]
    outs: list[Act]
    macs: int
    shape: tuple[tuple[str, int], ...]
    precision: str
    meta: dict[str, Any]


class _Recorder(TorchFunctionMode):
    """Records every torch call of one forward pass (see ``edgesim.trace``)."""

    def __init__(self, model: nn.Module, precision: str, act_bits: int,
                 encodings: tuple[str, ...], fold_bn: bool = False) -> None:
        super().__init__()
        self.precision = precision
        self.act_bits = act_bits
        self.encodings = encodings
        self.fold_bn = fold_bn
        self.stack: list[tuple[str, nn.Module]] = []
        self.gate: str | None = None
        self.opaque = 0          # depth inside modules with ``edgesim_opaque = True``
        self.raws: list[_Raw] = []
        self.blocks: dict[str, WeightBlock] = {}
        self._made: set[str] = set()    # block ids made at once (by a read that is not kept)
        self._acts: dict[int, Act] = {}
        self._consts: dict[int, _Const] = {}
        self._refs: dict[int, weakref.ref] = {}
        self._names: dict[str, int] = {}
        self.bufs: list[Buf] = []
        self._params = dict(model.named_parameters())
        self._modules = dict(model.named_modules())
        self._watch_folds = FoldWatch(self._modules) if fold_bn else None
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
        if self._watch_folds is not None and isinstance(out, (torch.Tensor, list, tuple)):
            self._watch_folds.count_reads((*args, *kwargs.values()))
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
        reads = self._reads(consts, a, precision, kind)
        router = self._module_attr("edgesim_kind")
        meta: dict[str, Any] = {"module": self.stack[-1][0] if self.stack else "",
                                "func": fname, **a.extra}
        if router is not None and router[1] == "router":
            meta["router"] = router[0]
            meta["op"] = kind
            kind = "router"
        if reads and self.gate is not None:
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
        self.raws.append(_Raw(self._op_name(fname), kind, reads, ins, out_acts, a.macs,
                              tuple(a.shape), precision, meta))

    # -- weights ---------------------------------------------------------------------------------
    def _owner(self, bid: str) -> tuple[nn.Module | None, str | None]:
        """The module holding parameter ``bid`` and, for a parametrized one, the tensor name."""
        head, sep, rest = f".{bid}".partition(".parametrizations.")
        if sep:
            return self._modules.get(head[1:]), rest.split(".", 1)[0]
        return self._modules.get(bid.rpartition(".")[0]), None

    def _reads(self, consts: list[_Const], a: opa.Analysis, precision: str,
               kind: str) -> list[_Read]:
        """The weights an op reads, one ``_Read`` per block id: made at once, or after the
        pass when the read is of a parameter (or its parametrization) and BN may fold."""
        reads: list[_Read] = []
        for c in consts:
            bid = c.block_id
            if bid is None or any(r.bid == bid for r in reads):
                continue
            role, axis = a.roles.get(id(c.tensor), ("aux", None))
            if role == "aux" and bid.rsplit(".", 1)[-1].startswith("bias"):
                role = "bias"
            param = self._params.get(bid)
            kept = self.fold_bn and param is not None and (c.tensor is param or c.chain is not None)
            read = _Read(bid, role, axis, precision, c.tensor is a.main, c.tensor.numel(),
                         c.tensor.dtype, None if c.tensor is param else c.chain,
                         layout_of(kind, a.extra.get("groups", 1), tuple(c.tensor.shape))
                         if role == "weight" and axis == 0 else None)
            if not kept:
                self._make(read, lambda c=c: c.tensor, param, self._made)
                self._made.update(b.id for b in read.blocks)
            reads.append(read)
        return reads

    def _make(self, read: _Read, values: Callable[[], torch.Tensor],
              stored: torch.Tensor | None, made: Container[str]) -> None:
        """Make ``read``'s blocks from ``values()`` (the tensor the op reads; ``stored``: the
        parameter as it lies in ``named_parameters()``): by its layout hook, or quantized
        unless ``made`` holds its id already (the first read makes a block)."""
        axis, elements = read.axis, read.numel
        if stored is not None and stored.numel() != read.numel:
            # Gathered or expanded from a parameter (a relative position bias table): what
            # is stored is the parameter itself.
            values, axis = (lambda: stored), (0 if read.role == "weight" else axis)
            elements = stored.numel()
        owner, tensor = self._owner(read.bid)
        hook = _layout_hook(owner, tensor) if read.role == "weight" else None
        if hook is not None:
            blocks, ids, nnz = hook(read.bid, values() if stored is None else stored,
                                    read.precision)
            read.blocks, read.ids, read.nonzeros = list(blocks), list(ids), (int(nnz), elements)
            return
        read.ids = [read.bid]
        if read.bid in made:
            return
        region = getattr(owner, "edgesim_region", None) if read.role == "weight" else None
        read.blocks = [weight_block(read.bid, values().detach().float().cpu().numpy(),
                                    read.role, axis, read.precision, self.encodings,
                                    region=region, layout=read.layout)]

    # -- BatchNorm folding (``edgesim.trace.fold``) --------------------------------------------
    def module_out(self, name: str, mod: nn.Module, args: Sequence[Any], out: Any) -> None:
        """After a module call: tag a parametrization's output; the fold watch notes the
        dataflow of conv/linear and BN modules."""
        if isinstance(mod, parametrize.ParametrizationList) and isinstance(out, torch.Tensor):
            c = self._consts.get(id(out))
            if c is not None and c.tensor is out and id(out) not in self._fixed:
                c.chain = name
        if self._watch_folds is not None:
            self._watch_folds.module_out(name, mod, args, out)

    def _folds(self) -> tuple[dict[str, Fold], set[int]]:
        """The folds by the block ids they change and the indices of the BN ops folded away; a
        folded conv that read no bias reads the folded one right after its weight."""
        folds, dropped, biases = self._watch_folds.decide(self.raws)
        for raw, weight_read, bias, features in biases:
            raw.reads.insert(raw.reads.index(weight_read) + 1, _Read(
                bias, "bias", None, weight_read.precision, False, features, weight_read.dtype))
        return folds, dropped

    def _blocks(self, folds: Mapping[str, Fold]) -> None:
        """Make the kept reads (folded where ``folds`` says) and the blocks, in first-read
        order (a block is made by the first read of its id)."""
        for r in self.raws:
            for read in r.reads:
                if read.ids is None:
                    stored = self._stored(read.bid, folds)
                    try:
                        self._make(read, functools.partial(self._compute, read, stored),
                                   stored, self.blocks)
                    except TraceError:
                        raise
                    except Exception as exc:
                        raise TraceError(f"op '{r.name}': storing parameter '{read.bid}' "
                                         f"failed: {type(exc).__name__}: {exc}") from exc
                for b in read.blocks:
                    self.blocks.setdefault(b.id, b)

    def _stored(self, bid: str, folds: Mapping[str, Fold]) -> torch.Tensor | None:
        """Parameter ``bid`` as deployed: folded (``Fold.tensor``) or as it lies in the
        model."""
        fold = folds.get(bid)
        if fold is None:
            return self._params.get(bid)
        return fold.tensor(bid, self._params[fold.latent])

    def _compute(self, read: _Read, stored: torch.Tensor) -> torch.Tensor:
        """The tensor ``read`` reads, from its parameter ``stored`` (through its
        parametrization list, if it has one)."""
        if read.chain is None:
            return stored
        values = stored
        for p in self._modules[read.chain]:
            values = p(values)
        return values

    # -- after the pass --------------------------------------------------------------------------
    def finish(self) -> list[LayerOp]:
        """The ops, once the pass is over (BN folded when ``fold_bn``); fills ``blocks``."""
        folds, dropped = self._folds() if self.fold_bn else ({}, set())
        self.raws = drop(self.raws, self.bufs, dropped)
        self._blocks(folds)
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
            weights = tuple(w for read in r.reads for w in read.ids or ())
            main = next((read for read in reversed(r.reads) if read.main), None)
            hooked = next((read for read in reversed(r.reads) if read.nonzeros is not None),
                          None)
            eff = r.macs
            if hooked is not None:
                eff = r.macs * hooked.nonzeros[0] // max(1, hooked.nonzeros[1])
            elif main is not None and main.ids:
                b = self.blocks[main.ids[0]]
                eff = r.macs * b.nonzeros // b.elements if b.elements else 0
            gate, router = meta.pop("gate", None), meta.pop("router", None)
            ops.append(LayerOp(r.name, r.kind, weights, in_b, out_b,
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
        rec.module_out(names[id(mod)], mod, args, out)
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
           precision: str = "int8", act_bits: int = 8, encodings: Iterable[str] = ("dense",),
           fold_bn: bool = False) -> tuple[list[WeightBlock], list[LayerOp]]:
    """Run ``forward`` (default ``model``) once on ``example``; the blocks read and the ops run.

    ``example`` is a tensor, or a tuple of tensors passed as positional arguments. Parameter
    names come from ``model.named_parameters()``. ``encodings`` are the candidates each weight
    block is measured under (``WeightBlock.encoded``); ``act_bits`` the bits per activation
    element of the recorded bytes (8, what ``edgesim.encodings.resolve`` expects, gives bytes =
    elements). Errors inside the forward are re-raised as ``TraceError`` naming the innermost
    module that was running. ``fold_bn``: the model as deployed, every foldable conv/linear ->
    BatchNorm pair folded (``edgesim.zoo.deploy``'s rules and arithmetic) in the same pass,
    without changing or copying ``model``: no BN op, the conv's weight and bias blocks folded.
    """
    _precision_ok(precision, act_bits)
    encodings = tuple(encodings)
    rec = _Recorder(model, precision, int(act_bits), encodings, fold_bn)
    modules = dict(model.named_modules())
    handles = _hooks(rec, modules)
    training = {m: m.training for m in modules.values()}
    model.eval()
    fn = model if forward is None else forward
    ex = example if isinstance(example, tuple) else (example,)
    try:
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
        with torch.no_grad():   # still in eval mode: parametrizations recomputed as in the pass
            ops = rec.finish()
    finally:
        for m, t in training.items():
            m.train(t)
    return list(rec.blocks.values()), ops


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
