"""A deployed network as a file states it, framework-neutral: the seam between the file
importers (``tflite``, ``onnx``) and the Workload IR.

Public names: ``Tensor``, ``Weights``, ``Node``, ``Graph``, ``to_workload``, ``IMPORT_ENCODINGS``.

An importer reads its file format and returns a ``Graph``: activation tensors with their shapes,
and nodes in execution order, each with its loop nest, MACs and the weights exactly as the file
stores them (integers, with per-channel scales and zero points). ``to_workload`` turns a Graph
into a one-path ``Workload`` the same way the PyTorch tracer does (fusion of activations into
their producer, activation bytes at 8 bits, tensor liveness, one ``WeightBlock`` per stored
tensor with its bytes under every candidate encoding, measured on the stored integers).

Layouts are the tracer's, whatever the file's: a conv weight is ``(K, C / groups, R, S)``, a
depthwise weight ``(K, 1, R, S)`` with ``groups = C``, a fully connected weight ``(N, K)``;
activation shapes are ``(N, C, H, W)`` or ``(N, features)``. Importers transpose from the file's
layout (TFLite: OHWI, depthwise 1HW(C*M), NHWC activations).

What ``to_workload`` makes, op for op what the tracer records for the same network:

* one ``LayerOp`` per node (name = node name, ``meta`` = ``module`` (the name), ``func`` (the
  file's operator), ``groups`` of a grouped conv, then the node's own meta), and after a node with
  a fused ``activation`` an ``act`` op ``<node>.<activation>`` that reads its output (as
  ``conv2d`` then ``relu``); ``liveness.fuse`` then fuses it, as any activation that is its
  producer's only reader;
* activation bytes at 8 bits per element; a view (``Graph.aliases``) shares its source's buffer;
* blocks ``<node>.weight`` (the node's ``weight``) and ``<node>.bias`` (int32, dense), measured
  on the stored integers minus their channel's zero point (``trace.weights.stored_block``); a
  ``Weights`` object read by several nodes (a buffer the file shares) is one block, named
  after its first reader; ``effective_macs = macs * nonzeros // elements`` of the weight.

>>> x, y = Tensor("x", (1, 4)), Tensor("y", (1, 2))
>>> w = Weights(np.array([[1, 0, -3, 0], [0, 0, 0, 0]], dtype=np.int8), np.ones(2), np.zeros(2))
>>> fc = Node("fc", "linear", "FULLY_CONNECTED", ("x",), ("y",),
...           (("M", 1), ("N", 2), ("K", 4)), 8, weight=w, activation="RELU")
>>> wl = to_workload(Graph("toy", {"x": x, "y": y}, (fc,), ("x",), ("y",)), encodings=["dense"])
>>> [(op.name, op.kind, op.macs, op.effective_macs, op.fused) for op in wl.paths[0].ops]
[('fc', 'linear', 8, 2, False), ('fc.relu', 'act', 0, 0, True)]
>>> b = wl.blocks["fc.weight"]; (b.elements, b.nonzeros, b.stored_bytes)   # 8 B + 2 fp32 scales
(8, 2, 16)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

from edgesim.errors import ModelError
from edgesim.trace.liveness import Act, Buf, fuse, live_bytes
from edgesim.trace.weights import layout_of, stored_block
from edgesim.workload import OP_KINDS, LayerOp, WeightBlock, Workload

__all__ = ["IMPORT_ENCODINGS", "Graph", "Node", "Tensor", "Weights", "to_workload"]

#: Candidate encodings of an imported file's weights: a hardware picks the smallest it decodes.
IMPORT_ENCODINGS: tuple[str, ...] = ("dense", "mlw", "bitmap", "csr", "csc", "rle")
#: Bits per activation element of the recorded bytes (``encodings.resolve`` rescales them).
ACT_BITS = 8


@dataclass(frozen=True, slots=True)
class Tensor:
    """An activation tensor: its shape (batch first, channels second) and bits per element."""

    name: str
    shape: tuple[int, ...]
    bits: int = 8

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True, slots=True, eq=False)
class Weights:
    """A constant tensor as stored in the file.

    ``values`` are the stored integers in the tracer's layout (int8 for TFLite, int8 or uint8
    for ONNX); ``scales`` and ``zero_points`` one per output channel, or one for the tensor.
    A value equal to its channel's zero point is a real zero of the stored tensor. ``bits``:
    8 for weights, 32 for biases.
    """

    values: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    bits: int = 8


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One operator of the file, in execution order.

    ``kind`` is a ``edgesim.workload.OP_KINDS`` kind; ``op`` the file's own operator name
    (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``QLinearConv``, ...), kept for reports. ``inputs`` and
    ``outputs`` name activation tensors of ``Graph.tensors`` (constants are not inputs).
    ``shape`` is the loop nest as the tracer writes it (``N K C R S P Q`` with C per group for a
    conv, ``M N K`` for a fully connected op); ``macs`` its multiply-accumulates for a batch of
    one. ``weight`` / ``bias`` are the constants it reads; ``groups`` its conv groups;
    ``activation`` a fused activation the file states on the op (``RELU``, ``RELU6``, ...), or
    None. ``meta`` is provenance for reports (strides, padding, the file's op index).
    """

    name: str
    kind: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shape: tuple[tuple[str, int], ...] = ()
    macs: int = 0
    weight: Weights | None = None
    bias: Weights | None = None
    groups: int = 1
    activation: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """A network as a file states it: tensors, nodes in execution order, graph inputs/outputs.

    ``aliases`` maps the output of a view (reshape, squeeze, flatten) to the tensor it views:
    a view is not an op and shares its input's buffer. ``source`` names the format
    (``tflite`` / ``onnx``) and ``file`` the path it was read from.
    """

    name: str
    tensors: Mapping[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    file: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of the first graph input without its batch dimension."""
        return tuple(self.tensors[self.inputs[0]].shape[1:])


@dataclass(slots=True, eq=False)
class _Raw:
    """One op before liveness: what ``liveness.fuse`` reads (``kind``, ``ins``, ``outs``)."""

    name: str
    kind: str
    ins: list[Act]
    outs: list[Act]
    node: Node | None          # None: the fused activation of the op before
    func: str


def _where(graph: Graph) -> str:
    return graph.file or graph.name


def _centred(w: Weights) -> np.ndarray:
    """The stored integers minus their channel's zero point (a zero is a real zero)."""
    v = np.asarray(w.values)
    zp = np.asarray(w.zero_points).reshape(-1)
    if not zp.size or not zp.any():
        return v
    zp = zp.reshape((-1,) + (1,) * (v.ndim - 1)) if zp.size > 1 and v.ndim else zp[:1]
    return v.astype(np.int32) - zp.astype(np.int32)


def _block(bid: str, w: Weights, role: str, encodings: Sequence[str], where: str,
           layout: str | None = None) -> WeightBlock:
    q = _centred(w)
    scales = 0 if role == "bias" else int(np.asarray(w.scales).size)
    rows = int(q.shape[0]) if q.ndim else 1
    try:
        return stored_block(bid, q, int(w.bits), scales, encodings, role=role, precision="int8",
                            shape=tuple(q.shape), records=rows if scales != rows else None,
                            layout=layout)
    except ValueError as exc:
        raise ModelError(f"{where}: tensor '{bid}': {exc}") from None


def _unique(names: dict[str, int], base: str) -> str:
    n = names.get(base, 0)
    names[base] = n + 1
    return base if n == 0 else f"{base}.{n}"


def _raws(graph: Graph) -> tuple[list[_Raw], list[Buf]]:
    """The ops in order, with their activations and buffers (views share their source's)."""
    where = _where(graph)
    bufs: list[Buf] = []
    acts: dict[str, Act] = {}

    def nbytes(t: str) -> int:
        tensor = graph.tensors.get(t)
        if tensor is None:
            raise ModelError(f"{where}: tensor '{t}' is not in the graph")
        return (tensor.elements * ACT_BITS + 7) // 8

    def new(t: str, index: int) -> Act:
        buf = Buf(nbytes(t), index, index)
        bufs.append(buf)
        return Act(buf.nbytes, buf)

    def act_of(t: str, reader: str) -> Act:
        act = acts.get(t)
        if act is None:
            src, seen = t, {t}
            while src in graph.aliases:
                src = graph.aliases[src]
                if src in seen:
                    raise ModelError(f"{where}: view '{t}' is a view of itself")
                seen.add(src)
            if src not in acts:
                raise ModelError(f"{where}: node '{reader}' reads tensor '{t}' before any "
                                 "node writes it")
            act = acts[t] = Act(nbytes(t), acts[src].buf)
        return act

    for t in graph.inputs:
        acts[t] = new(t, 0)
    raws: list[_Raw] = []
    names: dict[str, int] = {}
    for node in graph.nodes:
        if node.kind not in OP_KINDS:
            raise ModelError(f"{where}: node '{node.name}' ({node.op}): kind {node.kind!r} is "
                             f"not one of {OP_KINDS}")
        index = len(raws)
        ins: list[Act] = []
        for t in dict.fromkeys(node.inputs):
            act = act_of(t, node.name)
            ins.append(act)
            act.buf.readers.append(index)
        outs = [new(t, index) for t in node.outputs]
        raws.append(_Raw(_unique(names, node.name), node.kind, ins, outs, node, node.op))
        if node.activation is None:
            acts.update(zip(node.outputs, outs, strict=True))
            continue
        if len(outs) != 1:
            raise ModelError(f"{where}: node '{node.name}' has a fused activation and "
                             f"{len(outs)} outputs; expected one")
        outs[0].buf.readers.append(index + 1)
        act = new(node.outputs[0], index + 1)
        acts[node.outputs[0]] = act
        func = node.activation.lower()
        raws.append(_Raw(_unique(names, f"{raws[-1].name}.{func}"), "act", [outs[0]], [act],
                         None, func))
    return raws, bufs


def to_workload(graph: Graph, *, encodings: Sequence[str] = IMPORT_ENCODINGS) -> Workload:
    """The one-path Workload of ``graph``: ops as the tracer makes them, weights measured on
    the stored integers under every candidate in ``encodings`` (see the module docstring).

    Raises ``ModelError`` (one line naming the file) for a node that reads a tensor no node
    wrote before it, an unknown tensor or op kind.
    """
    encodings = tuple(encodings)
    where = _where(graph)
    raws, bufs = _raws(graph)
    blocks: dict[str, WeightBlock] = {}
    made: dict[int, str] = {}        # id(Weights) -> block id (a shared buffer is one block)

    def block(node: Node, name: str, w: Weights | None, role: str) -> tuple[str, ...]:
        if w is None:
            return ()
        bid = made.get(id(w))
        if bid is None:
            bid = made[id(w)] = f"{name}.{role}"
            if bid in blocks:
                raise ModelError(f"{where}: two tensors are named '{bid}'")
            layout = (layout_of(node.kind, node.groups, np.shape(w.values)) if role == "weight"
                      else None)
            blocks[bid] = _block(bid, w, role, encodings, where, layout)
        return (bid,)

    fused = fuse(raws)
    live = live_bytes(bufs, len(raws))
    ops: list[LayerOp] = []
    for i, r in enumerate(raws):
        readers = () if i in fused else tuple(dict.fromkeys(
            raws[k].name for a in r.outs for k in a.buf.root().readers
            if k > i and k not in fused))
        in_b = 0 if i in fused else sum(a.nbytes for a in r.ins)
        out_b = 0 if i in fused else sum(a.nbytes for a in r.outs)
        node = r.node
        meta: dict[str, Any] = {"module": r.name, "func": r.func}
        macs, eff, shape, weights = 0, 0, (), ()
        if node is not None:
            if node.groups != 1:
                meta["groups"] = int(node.groups)
            meta.update((k, v) for k, v in node.meta.items() if k not in meta)
            weights = (block(node, r.name, node.weight, "weight")
                       + block(node, r.name, node.bias, "bias"))
            macs, shape = int(node.macs), tuple(node.shape)
            eff = macs
            if node.weight is not None:
                b = blocks[weights[0]]
                eff = macs * b.nonzeros // b.elements if b.elements else 0
        try:
            ops.append(LayerOp(r.name, r.kind, weights, in_b, out_b,
                               max(int(live[i]), in_b + out_b), macs, eff, "int8", shape, meta,
                               fused=i in fused, readers=readers))
        except ValueError as exc:
            raise ModelError(f"{where}: {exc}") from None
    info = {"precision": "int8", "act_bits": ACT_BITS, "encodings": list(encodings),
            "params": {}, "input": {"shape": list(graph.input_shape)}, "source": graph.source,
            "file": PurePath(graph.file).name if graph.file else ""}
    return Workload.single_path(graph.name, "dense", blocks.values(), ops, 1, info)
