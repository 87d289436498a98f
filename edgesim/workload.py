"""The Workload IR: the plain-data contract between tracing and simulation.

Public names: ``WeightBlock``, ``LayerOp``, ``Window``, ``Path``, ``Workload``, ``OP_KINDS``,
``PRECISIONS``.

A Workload is what lives off-chip (the ``WeightBlock`` catalogue), the ways one inference can run
(the ``Path`` catalogue, each an ordered tuple of ``LayerOp``), and which path each input of a
stream takes (``sequence``). It is frozen dataclasses and a NumPy array: it pickles, it has a stable
``digest()``, and it knows nothing of torch or simpy.

Units: bytes are ``int`` bytes; MACs are ``int`` multiply-accumulates for a batch of one.

>>> b = WeightBlock("fc.weight", elements=8, nonzeros=8, bits=8, encoding="dense",
...                 stored_bytes=8, dense_bytes=8)
>>> op = LayerOp("fc", "linear", weights=("fc.weight",), in_bytes=4, out_bytes=2, live_bytes=6,
...              macs=8, effective_macs=8, precision="int8", shape=(("M", 1), ("N", 2), ("K", 4)))
>>> w = Workload.single_path("toy", "dense", [b], [op], inputs=3)
>>> w.stored_bytes, w.path_stored_bytes(0), w.sequence.tolist()
(8, 8, [0, 0, 0])
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["OP_KINDS", "PRECISIONS", "LayerOp", "Path", "WeightBlock", "Window", "Workload"]

#: Op kinds. Weight ops read WeightBlocks; the others move activations only.
OP_KINDS = (
    "conv",       # convolution with constant weights (loop nest N K C R S P Q)
    "linear",     # fully connected / 1x1 over tokens (M N K)
    "matmul",     # with a constant operand it has weights; activation x activation has none
    "embedding",  # table lookup
    "router",     # a routing decision of a dynamic model (has weights)
    "pool",       # max/avg pooling, global pooling
    "eltwise",    # add, mul, concat of activations
    "norm",       # batch/layer norm that is not folded away
    "act",        # activation functions, softmax
    "sample",     # point sampling (farthest-point sampling) and similar index computations
    "group",      # gather/grouping ops (ball query, window partition)
    "other",
)

#: Compute precisions a HardwareConfig gives a peak rate and an energy for.
PRECISIONS = ("int8", "int4", "fp16", "binary")


@dataclass(frozen=True, slots=True)
class WeightBlock:
    """One stored tensor (a parameter after deployment preparation), as it lies off-chip.

    ``stored_bytes`` is computed from the real tensor under ``encoding`` (see
    ``edgesim.encodings``); ``dense_bytes`` is the same tensor stored dense at ``bits`` per value.
    ``encoded`` is the stored bytes under each candidate encoding that can hold the tensor (in
    the model's order of preference), from which ``edgesim.encodings.resolve`` picks what a
    hardware decodes; empty means "as stored": only ``encoding`` / ``stored_bytes`` (biases). A
    level segment of a nested stream carries the nested layout and the generic sparse formats.
    """

    id: str
    elements: int
    nonzeros: int
    bits: int
    encoding: str
    stored_bytes: int
    dense_bytes: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    #: What a transform decided for this tensor, free text shown per layer (Mix-and-Match: the
    #: layer rule that set its sparsity range); "" when nothing did.
    rule: str = ""
    encoded: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.elements < 0 or not 0 <= self.nonzeros <= self.elements:
            raise ValueError(f"block {self.id}: need 0 <= nonzeros <= elements, "
                             f"got {self.nonzeros} of {self.elements}")
        if self.stored_bytes < 0 or self.dense_bytes < 0 or any(
                v < 0 for v in self.encoded.values()):
            raise ValueError(f"block {self.id}: negative byte count")

    @property
    def sparsity(self) -> float:
        """Fraction of zero values, 0.0 for an empty block."""
        return 1.0 - self.nonzeros / self.elements if self.elements else 0.0

    # Until the tracer fills typed fields for them, these read the block's provenance; they
    # are the only readers of ``meta`` the simulator and ``encodings`` rely on.
    @property
    def role(self) -> str:
        """``"weight"`` or ``"bias"`` (what the stored tensor is to its op)."""
        return self.meta.get("role", "weight")

    @property
    def level(self) -> int | None:
        """The nested level (1 = the sparsest sub-network's) whose segment this block stores,
        None for a block that is no level segment."""
        k = self.meta.get("level")
        return None if k is None else int(k)

    @property
    def scales(self) -> int:
        """Per-region scales stored with the tensor (``edgesim.encodings.SCALE_BYTES`` each)."""
        return int(self.meta.get("scales", 0))

    @property
    def tensor(self) -> tuple[str, int]:
        """The parameter this block stores (part of) and that whole tensor's element count.

        A level block of a nested weight names its parameter and the size of the full tensor;
        any other block is a whole tensor: ``(id, elements)``.
        """
        if "parameter" in self.meta:
            return self.meta["parameter"], math.prod(self.meta["shape"])
        return self.id, self.elements


@dataclass(frozen=True, slots=True)
class Window:
    """A pool's window over one NHWC plane: kernel ``r x s`` taps with strides ``stride_h,
    stride_w`` over an ``h x w x c`` input, giving a ``p x q x c`` output (``LayerOp.window``)."""

    r: int
    s: int
    stride_h: int
    stride_w: int
    h: int
    w: int
    c: int
    p: int
    q: int


@dataclass(frozen=True, slots=True)
class LayerOp:
    """One op of one inference.

    ``live_bytes`` is the activation working set while the op runs: its inputs, its output and
    every earlier tensor still needed by a later op (residual branches). ``shape`` is the loop
    nest, ``(("N",1),("K",64),("C",3),("R",7),("S",7),("P",112),("Q",112))`` for a conv or
    ``(("M",m),("N",n),("K",k))`` for a matmul (K is the reduction).

    The engine reads typed fields only: ``gate`` names the router (its module, or an op name)
    whose decision must be known before this op's weights may be fetched; ``router`` is the
    router module a ``router`` op belongs to; ``fused`` marks an activation fused into the op
    before it (0 activation bytes of its own); ``readers`` names the later ops that read this
    op's output (from the trace; empty: the next op that is not fused, an assumption for
    hand-made workloads). ``meta`` is free-form provenance for reports
    (``module``, ``func``, ``groups``, ...); the simulator reads it only through the accessors
    ``groups``, ``function``, ``strides``, ``dilations``, ``pads`` and ``window``.
    """

    name: str
    kind: str
    weights: tuple[str, ...]
    in_bytes: int
    out_bytes: int
    live_bytes: int
    macs: int
    effective_macs: int
    precision: str
    shape: tuple[tuple[str, int], ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    gate: str | None = None
    router: str | None = None
    fused: bool = False
    readers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in OP_KINDS:
            raise ValueError(f"op {self.name}: kind {self.kind!r} is not one of {OP_KINDS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"op {self.name}: precision {self.precision!r} not in {PRECISIONS}")
        if not 0 <= self.effective_macs <= self.macs:
            raise ValueError(f"op {self.name}: need 0 <= effective_macs <= macs, "
                             f"got {self.effective_macs} and {self.macs}")
        if min(self.in_bytes, self.out_bytes, self.live_bytes) < 0:   # a hand-edited entry
            raise ValueError(f"op {self.name}: negative byte count (in {self.in_bytes}, out "
                             f"{self.out_bytes}, live {self.live_bytes})")

    @property
    def dims(self) -> dict[str, int]:
        """The loop nest as a dict, e.g. ``{"K": 64, "C": 3, ...}``."""
        return dict(self.shape)

    # Until the front-ends fill typed fields for them, these read the op's provenance (the
    # only readers of ``meta`` the simulator relies on; the Workload format is unchanged).
    @property
    def groups(self) -> int:
        """Groups of a grouped conv (a depthwise conv: its input channels); 1 otherwise."""
        return max(1, int(self.meta.get("groups", 1)))

    @property
    def function(self) -> str:
        """The operator the op records, lower case (``"softmax"``, ``"add"``, ``"relu"``), or ""."""
        return str(self.meta.get("func", "")).lower()

    @property
    def strides(self) -> tuple[int, ...] | None:
        """A conv's or pool's strides (height, width) as the front-end records them, or None."""
        return self._ints("strides")

    @property
    def dilations(self) -> tuple[int, ...] | None:
        """A conv's dilations (height, width), or None when the op records none."""
        return self._ints("dilations")

    @property
    def pads(self) -> tuple[int, ...] | None:
        """A conv's padding (top, left, bottom, right), or None when the op records none."""
        return self._ints("pads")

    def _ints(self, key: str) -> tuple[int, ...] | None:
        v = self.meta.get(key)
        return None if v is None else tuple(int(x) for x in v)

    @property
    def window(self) -> Window | None:
        """A pool's window (``meta`` ``kernel``, ``strides``, ``input``, ``output``, as the TFLite
        front-end records them), or None when the op records no kernel."""
        kernel, inp, out = (self.meta.get(k) for k in ("kernel", "input", "output"))
        if kernel is None or inp is None or out is None:
            return None
        r, s = (int(v) for v in kernel)
        sh, sw = (int(v) for v in self.meta.get("strides", (1, 1)))
        h, w, c = (int(v) for v in inp)
        p, q = (int(v) for v in out[:2])
        return Window(r, s, sh, sw, h, w, c, p, q)


@dataclass(frozen=True, slots=True)
class Path:
    """One root-to-leaf execution: the ops in execution order. Dense models have one."""

    name: str
    ops: tuple[LayerOp, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def block_ids(self) -> tuple[str, ...]:
        """Weight block ids this path reads, each once, in first-use order."""
        seen: dict[str, None] = {}
        for op in self.ops:
            for b in op.weights:
                seen.setdefault(b, None)
        return tuple(seen)


@dataclass(frozen=True, eq=False)
class Workload:
    """Weight blocks, paths and the per-input path sequence of one model on one input stream.

    ``meta`` carries at least ``precision`` and may carry ``input`` (the input spec), ``params``
    (model parameters) and anything a transform wants to report.
    """

    name: str
    family: str
    blocks: Mapping[str, WeightBlock]
    paths: tuple[Path, ...]
    sequence: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seq = np.ascontiguousarray(self.sequence, dtype=np.int32)
        object.__setattr__(self, "sequence", seq)
        seq.setflags(write=False)
        if not self.paths:
            raise ValueError(f"workload {self.name}: no paths")
        if seq.ndim != 1 or (seq.size and (seq.min() < 0 or seq.max() >= len(self.paths))):
            raise ValueError(f"workload {self.name}: sequence must index {len(self.paths)} paths")
        for path in self.paths:
            for op in path.ops:
                for b in op.weights:
                    if b not in self.blocks:
                        raise ValueError(f"workload {self.name}: op {op.name} reads unknown "
                                         f"block {b}")

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def single_path(cls, name: str, family: str, blocks: Iterable[WeightBlock],
                    ops: Iterable[LayerOp], inputs: int = 1,
                    meta: Mapping[str, Any] | None = None) -> Workload:
        """A one-path (dense) workload whose ``inputs`` inputs all take path 0."""
        return cls(name, family, {b.id: b for b in blocks}, (Path("dense", tuple(ops)),),
                   np.zeros(inputs, dtype=np.int32), dict(meta or {}))

    def with_sequence(self, sequence: Iterable[int] | np.ndarray,
                      meta: Mapping[str, Any] | None = None) -> Workload:
        """The same model on another input stream."""
        return Workload(self.name, self.family, self.blocks, self.paths,
                        np.asarray(sequence, dtype=np.int32), {**self.meta, **(meta or {})})

    def with_inputs(self, n: int) -> Workload:
        """A one-path workload repeated ``n`` times; routed workloads need ``with_sequence``."""
        if len(self.paths) != 1:
            raise ValueError(f"workload {self.name} has {len(self.paths)} paths: "
                             "give a path sequence")
        return self.with_sequence(np.zeros(n, dtype=np.int32))

    # -- what the simulator reads of ``meta`` ----------------------------------------------
    @property
    def act_bits(self) -> int | None:
        """Bits per activation element the op bytes are counted at (a trace records 8), or
        None when the workload records none (taken to be at the hardware's bits already)."""
        bits = self.meta.get("act_bits")
        return None if bits is None else int(bits)

    @property
    def encodings(self) -> tuple[str, ...] | None:
        """The weight encodings the model prefers, in order, or None when it names none."""
        names = self.meta.get("encodings")
        return None if names is None else tuple(names)

    # -- accounting -----------------------------------------------------------------------
    @property
    def inputs(self) -> int:
        return int(self.sequence.size)

    @property
    def stored_bytes(self) -> int:
        """Bytes of all weight blocks as stored off-chip (the whole model, every path)."""
        return sum(b.stored_bytes for b in self.blocks.values())

    @property
    def dense_bytes(self) -> int:
        return sum(b.dense_bytes for b in self.blocks.values())

    @property
    def total_params(self) -> int:
        """Stored values of all blocks (weights and biases after deployment preparation)."""
        return sum(b.elements for b in self.blocks.values())

    @cached_property
    def _path_blocks(self) -> tuple[tuple[str, ...], ...]:
        return tuple(p.block_ids() for p in self.paths)

    def path_blocks(self, i: int) -> tuple[str, ...]:
        return self._path_blocks[i]

    def path_params(self, i: int) -> int:
        return sum(self.blocks[b].elements for b in self._path_blocks[i])

    def path_stored_bytes(self, i: int) -> int:
        return sum(self.blocks[b].stored_bytes for b in self._path_blocks[i])

    def path_frequencies(self) -> np.ndarray:
        """Fraction of inputs taking each path (uniform over paths for an empty sequence)."""
        if self.sequence.size == 0:
            return np.full(len(self.paths), 1.0 / len(self.paths))
        counts = np.bincount(self.sequence, minlength=len(self.paths))
        return counts / counts.sum()

    @property
    def active_params(self) -> float:
        """Mean parameters per inference over the paths, weighted by path frequency.

        With no inputs, or a one-path model, it is the plain mean over the path catalogue.
        """
        freqs = self.path_frequencies()
        return float(sum(f * self.path_params(i) for i, f in enumerate(freqs)))

    @property
    def mean_path_params(self) -> float:
        """Unweighted mean of parameters per path (what a routed model costs on average)."""
        return float(np.mean([self.path_params(i) for i in range(len(self.paths))]))

    def digest(self) -> str:
        """A stable hash of the whole workload (blocks, paths, sequence, meta)."""
        h = hashlib.sha256()
        h.update(pickle.dumps((self.name, self.family, sorted(self.blocks.items()),
                               self.paths, sorted(self.meta.items(), key=lambda kv: kv[0])),
                              protocol=4))
        h.update(self.sequence.tobytes())
        return h.hexdigest()
