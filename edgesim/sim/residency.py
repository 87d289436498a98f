"""Weight residency in on-chip SRAM: which weight bytes stay between ops and between inferences.

Public names: ``POLICIES``, ``Residency``, ``LRU``, ``Pinned``, ``Belady``, ``Stream``,
``Served``, ``make_policy``, ``NEVER``, ``NEVER_OP``, ``OP_STRIDE``.

A policy sees the ops of a stream in order. For each op it is asked to ``serve`` the op's weight
blocks (indices into a size array) and answers how many bytes had to come from off-chip and be
kept, how many came from off-chip and were not kept (streamed in tiles), and which resident blocks
lost bytes to make room. Decisions depend only on the access sequence, so the bytes an inference
moves are independent of timing; the engine (``edgesim.sim.engine``) then schedules the transfers.

Byte model. Capacity is the weight part of SRAM in bytes. Every fetched byte passes through SRAM;
a policy only decides what stays afterwards. A block larger than what the policy can make free is
streamed and not kept. The blocks of the op being served are never evicted to serve that op.

* ``lru``: whole blocks, least recently used evicted first.
* ``pinned``: a static set chosen offline before the stream starts — blocks in decreasing order of
  use frequency over the stream (the fraction of inputs whose path reads them: a shared backbone
  and root router first, then the hottest leaves), ties by first use, packed greedily into
  capacity. Pinned blocks are fetched on first use and never leave; the rest are streamed.
* ``belady``: Belady's MIN at byte granularity with bypass: after each op, SRAM holds the bytes
  with the nearest next use among what is resident and what was just fetched. Blocks may be kept
  in part. With every byte an equal-size unit and next uses known, this is optimal (it is a stack
  algorithm), so it is a lower bound on the bytes of any policy of this model, ``lru`` and
  ``pinned`` included, and it never moves more bytes when capacity grows.

Each policy class builds itself for a stream (``for_stream``, where offline preparation such as
pinned's priority order or belady's next-use table happens) and says what of the stream its next
inference depends on (``memo_key``). A new policy is one class and one line in ``POLICIES``.

>>> s = Stream(sizes=(10, 10), capacity=10, paths=(((0,), (1,)),), sequence=np.zeros(2, int))
>>> lru = make_policy("lru", s)
>>> [lru.serve(ids, 0, j).kept for j, ids in enumerate(s.paths[0])]
[10, 10]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from types import MappingProxyType

import numpy as np

__all__ = ["LRU", "NEVER", "NEVER_OP", "OP_STRIDE", "POLICIES", "Belady", "Pinned", "Residency",
           "Served", "Stream", "make_policy"]

#: A next-use position larger than any real one.
NEVER = np.iinfo(np.int64).max
#: Stream positions are ``inference * OP_STRIDE + op index``.
OP_STRIDE = 1 << 20
#: ``op`` value meaning "after the last op of the inference".
NEVER_OP = OP_STRIDE - 1


@dataclass(frozen=True, slots=True)
class Stream:
    """What a policy may know of a stream before it starts (offline preparation).

    ``sizes[b]`` is block b's stored bytes; ``capacity`` the weight SRAM bytes; ``paths[p][j]``
    the block indices op j of path p reads (deduplicated); ``sequence`` the path of each input.
    """

    sizes: Sequence[int]
    capacity: int
    paths: Sequence[Sequence[tuple[int, ...]]]
    sequence: np.ndarray

    def frequencies(self) -> np.ndarray:
        """Fraction of inputs taking each path (uniform over paths for an empty sequence)."""
        if self.sequence.size == 0:
            return np.full(len(self.paths), 1.0 / len(self.paths))
        counts = np.bincount(self.sequence, minlength=len(self.paths))
        return counts / counts.sum()


@dataclass(slots=True)
class Served:
    """What serving one op cost: kept and streamed bytes, and the blocks that lost bytes."""

    kept: int
    streamed: int
    evicted: tuple[int, ...]


class Residency(ABC):
    """Base class of residency policies; ``sizes[i]`` is block i's stored bytes."""

    name = "base"

    def __init__(self, sizes: Sequence[int], capacity: int) -> None:
        self.sizes = [int(s) for s in sizes]
        self.capacity = max(0, int(capacity))

    @classmethod
    def for_stream(cls, stream: Stream) -> Residency:
        """The policy for ``stream``, with whatever it prepares offline."""
        return cls(stream.sizes, stream.capacity)

    def reserved_bytes(self) -> int:
        """Weight-SRAM bytes the policy holds for the whole stream, out of reach of an op's
        weight tiles (``edgesim.sim.tiling``); 0 for a policy that evicts to make room."""
        return 0

    @abstractmethod
    def state(self) -> Hashable:
        """A hashable snapshot that, with the path (and for ``belady`` the future), fixes what
        the next inference costs."""

    @abstractmethod
    def restore(self, state: Hashable) -> None:
        """Return to a snapshot taken with ``state()``."""

    @abstractmethod
    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        """Bring an op's blocks on chip; what it cost and what was displaced."""

    @abstractmethod
    def resident_bytes(self) -> int:
        """Weight bytes on chip now."""

    @abstractmethod
    def resident_set(self) -> frozenset[int]:
        """Blocks wholly on chip now."""

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        """What, besides the path, fixes the cost of ``inference`` reading ``blocks``: the
        policy's state (an offline policy adds what it knows of the future)."""
        return self.state()


class _Hashed:
    """A tuple with its hash computed once: a memo key asked for again and again."""

    __slots__ = ("hash", "value")

    def __init__(self, value: tuple) -> None:
        self.value = value
        self.hash = hash(value)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, _Hashed) and self.hash == other.hash
                                 and self.value == other.value)


class LRU(Residency):
    """Least recently used, whole blocks."""

    name = "lru"

    def __init__(self, sizes: Sequence[int], capacity: int) -> None:
        super().__init__(sizes, capacity)
        self._order: OrderedDict[int, None] = OrderedDict()
        self._used = 0
        self._snap: tuple[int, ...] | None = ()   # the state as a tuple, until serve changes it
        self._key: _Hashed | None = None            # memo_key of ``_snap``

    def state(self) -> Hashable:
        if self._snap is None:
            self._snap = tuple(self._order)
        return self._snap

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        """The state with its hash computed once per state, not per inference (a steady
        stream asks for the same key thousands of times)."""
        snap = self.state()
        key = self._key
        if key is None or key.value is not snap:
            key = self._key = _Hashed(snap)
        return key

    def restore(self, state: Hashable) -> None:
        if state is self._snap:   # a memo hit in a steady stream: already there
            return
        self._order = OrderedDict.fromkeys(state)  # type: ignore[arg-type]
        self._used = sum(self.sizes[b] for b in self._order)
        self._snap = state  # type: ignore[assignment]

    def resident_bytes(self) -> int:
        return self._used

    def resident_set(self) -> frozenset[int]:
        return frozenset(self._order)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        order, sizes = self._order, self.sizes
        self._snap = None
        misses = []
        for b in blocks:
            if b in order:
                order.move_to_end(b)
            else:
                misses.append(b)
        if not misses:
            return Served(0, 0, ())
        kept = streamed = 0
        evicted: list[int] = []
        current = set(blocks)
        for b in misses:
            size = sizes[b]
            if b in order:  # the same block twice in one op
                continue
            # bytes that could be freed without touching this op's blocks
            if size > self.capacity - sum(sizes[x] for x in order if x in current):
                streamed += size
                continue
            while self._used + size > self.capacity:
                victim = next(x for x in order if x not in current)
                del order[victim]
                self._used -= sizes[victim]
                evicted.append(victim)
            order[b] = None
            self._used += size
            kept += size
        return Served(kept, streamed, tuple(evicted))


class Pinned(Residency):
    """A static allocation chosen offline from use frequencies (``priority``: blocks in the order
    they are offered room)."""

    name = "pinned"

    def __init__(self, sizes: Sequence[int], capacity: int, priority: Sequence[int]) -> None:
        super().__init__(sizes, capacity)
        room = self.capacity
        pinned = set()
        for b in priority:
            if self.sizes[b] <= room:
                pinned.add(b)
                room -= self.sizes[b]
        self.pinned = frozenset(pinned)
        self._loaded: set[int] = set()

    @classmethod
    def for_stream(cls, stream: Stream) -> Pinned:
        return cls(stream.sizes, stream.capacity, pinned_priority(stream))

    def reserved_bytes(self) -> int:
        return sum(self.sizes[b] for b in self.pinned)

    def state(self) -> Hashable:
        return frozenset(self._loaded)

    def restore(self, state: Hashable) -> None:
        self._loaded = set(state)  # type: ignore[arg-type]

    def resident_bytes(self) -> int:
        return sum(self.sizes[b] for b in self._loaded)

    def resident_set(self) -> frozenset[int]:
        return frozenset(self._loaded)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        kept = streamed = 0
        for b in dict.fromkeys(blocks):
            if b in self._loaded:
                continue
            if b in self.pinned:
                self._loaded.add(b)
                kept += self.sizes[b]
            else:
                streamed += self.sizes[b]
        return Served(kept, streamed, ())


def pinned_priority(stream: Stream) -> list[int]:
    """Blocks by decreasing use frequency over the stream, ties by first use (path order, then
    op order); blocks no path reads are left out."""
    freq = stream.frequencies()
    use = np.zeros(len(stream.sizes))
    first: dict[int, int] = {}
    order = 0
    for p, ops in enumerate(stream.paths):
        for ids in ops:
            for b in ids:
                if b not in first:
                    first[b] = order
                    order += 1
        for b in {b for ids in ops for b in ids}:
            use[b] += freq[p]
    return sorted(first, key=lambda b: (-round(use[b], 12), first[b]))


class Belady(Residency):
    """Belady's MIN at byte granularity with bypass (offline optimal).

    ``next_use(block, inference, op)`` gives the stream position of the block's next use after
    (inference, op), or ``NEVER``; positions are comparable integers. ``future`` (a ``Future``),
    when given, adds what of the future an inference depends on to ``memo_key``.
    """

    name = "belady"

    def __init__(self, sizes: Sequence[int], capacity: int, next_use,
                 future: Future | None = None) -> None:
        super().__init__(sizes, capacity)
        self._next_use = next_use
        self._future = future
        self._held: dict[int, int] = {}       # block -> resident bytes
        self._total = 0                       # sum(self._held.values()), kept running
        self._nu: dict[int, int] = {}         # block -> its next use position
        self._stale = False                   # after a restore: _nu to be filled at next serve
        # eviction order: a min-heap of (-next use, -block), so the top is the block used
        # farthest in the future, ties the higher block index (as sorting all held blocks by
        # (next use, block), largest first); entries whose next use was since recomputed, or
        # whose block has left, are skipped when they reach the top (lazy deletion)
        self._heap: list[tuple[int, int]] = []
        self._path_bytes: dict[int, tuple[tuple[int, ...], int]] = {}   # memo_key, by id
        # the state as a tuple until serve changes it; after a restore, _held etc. are built
        # from it only when serve (or a question about what is held) needs them
        self._snap: tuple[tuple[int, int], ...] | None = ()
        self._pending = False
        # per state (by id, the state kept alive here): its hashed memo_key part, and per path
        # (by id of its blocks) the sets of Future.key under it (None: the future is moot)
        self._per_state: dict[int, tuple[tuple, _Hashed, dict]] = {}

    @classmethod
    def for_stream(cls, stream: Stream) -> Belady:
        if stream.sequence.size == 0:
            return cls(stream.sizes, stream.capacity, lambda b, i, j: NEVER)
        future = Future(stream)
        return cls(stream.sizes, stream.capacity, future.next_use, future)

    def state(self) -> Hashable:
        if self._snap is None:
            self._snap = tuple(sorted(self._held.items()))
        return self._snap

    def restore(self, state: Hashable) -> None:
        if state is self._snap:   # a memo hit in a steady stream: already there (and the
            return                # next uses and heap still hold)
        self._snap = state  # type: ignore[assignment]
        self._pending = True      # a run of memo hits never builds the dicts

    def _unpack(self) -> None:
        """Build the held bytes from the restored state (next uses: at the next serve)."""
        self._pending = False
        self._held = dict(self._snap)  # type: ignore[arg-type]
        self._total = sum(self._held.values())
        self._nu = {}
        self._heap = []
        self._stale = True

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        snap = self.state()
        per = self._per_state
        entry = per.get(id(snap))
        if entry is None or entry[0] is not snap:   # hashed once per state
            if len(per) >= 1 << 14:   # (as many states as the engine's memo keeps)
                per.clear()
            entry = per[id(snap)] = (snap, _Hashed(snap), {})  # type: ignore[arg-type]
        hashed, by_path = entry[1], entry[2]
        if self._future is None:
            return hashed
        sets = by_path.get(id(blocks))
        if sets is None or sets[0] is not blocks:
            sets = by_path[id(blocks)] = (blocks, self._key_sets(inference, blocks))
        if sets[1] is None:
            return hashed, None
        return hashed, self._future.key_of(sets[1], inference)

    def _key_sets(self, inference: int, blocks: tuple[int, ...]) -> tuple[int, ...] | None:
        """The sets ``Future.key`` ranks for reading ``blocks`` in the current state, or None
        when the future cannot change a decision."""
        if self._pending:
            self._unpack()
        held, sizes = self._held, self.sizes
        hit = self._path_bytes.get(id(blocks))
        if hit is None or hit[0] is not blocks:
            hit = self._path_bytes[id(blocks)] = (blocks, sum(sizes[b] for b in set(blocks)))
        need = hit[1]
        if need <= self.capacity:   # else it cannot fit, whatever is held
            need += self._total - sum(held.get(b, 0) for b in set(blocks))
            if need <= self.capacity:   # everything it reads fits beside what is held: it
                return None             # evicts nothing, and the future is moot
        return self._future.key_sets(inference, held)

    def resident_bytes(self) -> int:
        if self._pending:
            self._unpack()
        return self._total

    def resident_set(self) -> frozenset[int]:
        if self._pending:
            self._unpack()
        return frozenset(b for b, n in self._held.items() if n == self.sizes[b])

    def held_blocks(self) -> set[int]:
        """Blocks with any bytes on chip."""
        if self._pending:
            self._unpack()
        return set(self._held)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        if self._pending:
            self._unpack()
        held, sizes, nu, heap = self._held, self.sizes, self._nu, self._heap
        next_use = self._next_use
        if self._stale:   # resident since an earlier inference (after a restore): their next
            self._stale = False   # uses from here (none of them is read before this op)
            for b in held:
                nu[b] = next_use(b, inference, op)
            heap[:] = [(-n, -b) for b, n in nu.items()]
            heapify(heap)
        self._snap = None
        current = dict.fromkeys(blocks)
        before = {b: held.get(b, 0) for b in current}
        fetched = 0
        total = self._total
        for b in current:
            size = sizes[b]
            fetched += size - before[b]
            total += size - before[b]
            held[b] = size
            n = nu[b] = next_use(b, inference, op)
            heappush(heap, (-n, -b))
        evicted: list[int] = []
        kept = fetched   # until this op's own blocks lose bytes below what they had
        if total > self.capacity:
            # drop the bytes used farthest in the future (ties: higher block index first)
            while True:
                n, b = heap[0]
                b = -b
                if b not in held or nu[b] != -n:   # stale entry
                    heappop(heap)
                    continue
                drop = min(held[b], total - self.capacity)
                if b in current:   # its kept bytes: those above what it held before
                    kept -= min(drop, max(0, held[b] - before[b]))
                else:
                    evicted.append(b)
                held[b] -= drop
                total -= drop
                if held[b] == 0:
                    del held[b]
                    del nu[b]
                    heappop(heap)
                if total <= self.capacity:
                    break
        self._total = total
        if len(heap) > 2 * len(held) + 64:   # drop the stale entries now and then
            heap[:] = [(-n, -b) for b, n in nu.items()]
            heapify(heap)
        return Served(kept, fetched - kept, tuple(evicted))


class Future:
    """Next uses of every block over the whole stream, for ``belady`` (offline, exact).

    ``next_use(b, i, j)`` is the stream position (``i * OP_STRIDE + op``) of block b's first use
    after op j of inference i, or ``NEVER``; ``key(blocks, i)`` is what of the future an
    inference's decisions depend on.

    Memory is O(sets x N), not O(blocks x N): blocks read by the same set of paths (a tree's
    backbone, one node's blocks, a leaf's) share one next-inference index ``nxt[s, i]``, the
    first inference after i whose path is in set s (``n`` if none). A dense model has one set;
    a depth-3 tree at most 15.
    """

    def __init__(self, stream: Stream) -> None:
        seq = stream.sequence
        n = int(seq.size)
        nblocks, npaths = len(stream.sizes), len(stream.paths)
        self.seq = seq
        self.n = n
        # per path, per block: the op indices reading it (sorted lists, for bisect)
        self.ops_of: list[dict[int, list[int]]] = []
        first = np.full((npaths, nblocks), -1, dtype=np.int64)
        readers: list[set[int]] = [set() for _ in range(nblocks)]
        for p, ops in enumerate(stream.paths):
            d: dict[int, list[int]] = {}
            for j, ids in enumerate(ops):
                for b in ids:
                    d.setdefault(b, []).append(j)
            self.ops_of.append(d)
            for b, js in d.items():
                first[p, b] = js[0]
                readers[b].add(p)
        self.first = first
        sets: dict[frozenset[int], int] = {}
        self.set_of = np.array([sets.setdefault(frozenset(r), len(sets)) for r in readers],
                               dtype=np.int64)
        set_of = self.set_of.tolist()
        #: per path, the sets of the blocks it reads (``key``: the sets an inference touches)
        self.path_sets = [frozenset(set_of[b] for b in d) for d in self.ops_of]
        self._set_of = set_of
        #: per set, whether each of its blocks is read at one op index by every path reading
        #: it (a backbone, a tree node at its depth): then where a next use lands inside its
        #: inference does not depend on which of those paths runs there
        uniform = [True] * len(sets)
        for b, r in enumerate(readers):
            if len({int(first[p, b]) for p in r}) > 1:
                uniform[set_of[b]] = False
        self.uniform = uniform
        dtype = np.int32 if n < 2**31 - 1 else np.int64
        self.nxt = np.empty((len(sets), n), dtype=dtype)
        arange = np.arange(n, dtype=dtype)
        for paths, k in sets.items():
            reads = np.zeros(npaths, dtype=bool)
            reads[list(paths)] = True
            idx = np.where(reads[seq], arange, n)                     # one row at a time
            after = np.minimum.accumulate(idx[::-1])[::-1]              # first >= i
            self.nxt[k, :-1] = after[1:]
            if n:
                self.nxt[k, -1] = n

    def next_use(self, b: int, i: int, j: int) -> int:
        seq = self.seq.item   # (.item: a Python int, without a NumPy scalar on the way)
        if j != NEVER_OP:
            here = self.ops_of[seq(i)].get(b)
            if here is not None:
                k = bisect_right(here, j)
                if k < len(here):
                    return i * OP_STRIDE + here[k]
        i2 = self.nxt.item(self._set_of[b], i)
        if i2 >= self.n:
            return NEVER
        return i2 * OP_STRIDE + self.first.item(seq(i2), b)

    def key(self, blocks, i: int, held: Mapping[int, int] | None = None
            ) -> tuple[tuple[int, int, int], ...]:
        """What of the future inference i's decisions depend on (exact; ``blocks`` are implied
        by the state and path). They compare next uses of the blocks the inference reads and
        of those ``held`` on chip (all blocks when None); a use after it is at
        ``nxt[s, i] * OP_STRIDE + first[path there, b]`` for the block's set s. So the order
        of all of them is fixed by, per set s of those blocks, the rank of ``nxt[s, i]`` among
        those sets' and the path taken there (-1: never; 0 when the set is ``uniform``: its
        blocks sit at the same op in every path). Sets no such block belongs to, and paths
        that cannot change an order, stay out of the key, so more situations share one."""
        return self.key_of(self.key_sets(i, held), i)

    def key_sets(self, i: int, held: Mapping[int, int] | None = None) -> tuple[int, ...]:
        """The sets ``key`` ranks: those of the blocks inference i reads and of ``held``."""
        mine = self.path_sets[int(self.seq[i])]
        if held is None or len(mine) == len(self.uniform):   # (a dense model: one set)
            return tuple(range(len(self.uniform)))
        set_of = self._set_of
        return tuple(sorted(mine.union([set_of[b] for b in held])))

    def key_of(self, relevant: tuple[int, ...], i: int) -> tuple[tuple[int, int, int], ...]:
        """``key`` over the sets ``relevant`` (from ``key_sets``)."""
        col = self.nxt[:, i].tolist()
        vals = [col[s] for s in relevant]
        rank = {v: r for r, v in enumerate(sorted(set(vals)))}
        n, seq, uniform = self.n, self.seq, self.uniform
        return tuple((s, rank[v], -1 if v >= n else 0 if uniform[s] else int(seq[v]))
                     for s, v in zip(relevant, vals, strict=True))


#: The residency policies by name (CLI, sweep and tests read this table).
POLICIES: Mapping[str, type[Residency]] = MappingProxyType({
    "lru": LRU,
    "pinned": Pinned,
    "belady": Belady,
})


def make_policy(name: str, stream: Stream) -> Residency:
    """The policy ``name`` of ``POLICIES``, prepared for ``stream``."""
    cls = POLICIES.get(name)
    if cls is None:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
    return cls.for_stream(stream)
