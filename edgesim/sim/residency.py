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
pinned's priority order or belady's next-use table happens) and says what its next inference
depends on: its state (``memo_key``) and, for an offline policy, what of the future its decisions
compared (``watch``, ``condition``, ``holds``). A new policy is one class and one line in
``POLICIES``.

>>> s = Stream(sizes=(10, 10), capacity=10, paths=(((0,), (1,)),), sequence=np.zeros(2, int))
>>> lru = make_policy("lru", s)
>>> [lru.serve(ids, 0, j).kept for j, ids in enumerate(s.paths[0])]
[10, 10]
"""

from __future__ import annotations

import itertools
import os
from abc import ABC, abstractmethod
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from types import MappingProxyType

import numpy as np

#: The compiled passes (``_kernel.c``: Belady's byte pass, its memo lookup, the timeline's
#: recurrence), built by setup.py as an optional extension; None where it could not be built
#: or ``EDGESIM_NO_KERNEL`` is set (not 0): then the Python passes, the same answers, run.
_kernel = None
if os.environ.get("EDGESIM_NO_KERNEL", "0") in ("", "0"):
    try:
        from edgesim.sim import _kernel
    except ImportError:   # pragma: no cover (a machine that could not build it)
        _kernel = None

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

    def serve_path(self, blocks: Sequence[tuple[int, ...]], inference: int
                   ) -> tuple[list[int], list[int], list[int]]:
        """``serve`` each op of a path in turn (``blocks[j]``: op j's blocks): per op its kept
        bytes, its streamed bytes, and the last op of this inference that read a block it
        displaced (-1: none; the engine's transfer waits for it). A policy may do this faster
        in one pass (``Belady``), with the same answers and state after: the engine runs this
        loop with its memo off (event by event) and a policy's own with it on, and the tests
        compare the two."""
        n = len(blocks)
        kept = [0] * n
        streamed = [0] * n
        wait = [-1] * n
        last_use: dict[int, int] = {}
        for j, ids in enumerate(blocks):
            if ids:
                served = self.serve(ids, inference, j)
                kept[j], streamed[j] = served.kept, served.streamed
                for b in served.evicted:
                    w = last_use.get(b, -1)
                    if w > wait[j]:
                        wait[j] = w
                for b in ids:
                    last_use[b] = j
        return kept, streamed, wait

    def serve_vec(self, blocks: Sequence[tuple[int, ...]], inference: int) -> bytes | None:
        """``serve_path`` as one vector (int64 bytes: per op the kept bytes, then per op the
        streamed bytes, then per op the op waited for), from a policy's compiled pass; None
        (nothing changed) where it has none, or where it does not take this path now: the
        engine then asks ``serve_path``."""
        return None

    def quick(self, blocks: Sequence[tuple[int, ...]]) -> object | None:
        """What ``step`` takes for a path (made once per path), or None where the policy has
        no one-call step for it: the engine then asks ``memo_key``, ``watch``, ``serve_vec``,
        ``condition`` and ``after``."""
        return None

    def quick_state(self) -> Hashable | None:
        """The state, when ``step`` can start from it (a memo key for its entries as it is:
        hashed in C), else None."""
        return None

    def step(self, quick: object, inference: int) -> tuple[bytes, Hashable, Hashable] | None:
        """``watch``, ``serve_vec``, ``condition`` and ``after`` in one call, for a path
        ``quick`` took, from a state ``quick_state`` took: the vector, the condition and the
        state after; None (nothing changed) where the compiled pass does not take it."""
        return None

    @abstractmethod
    def resident_bytes(self) -> int:
        """Weight bytes on chip now."""

    @abstractmethod
    def resident_set(self) -> frozenset[int]:
        """Blocks wholly on chip now."""

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        """What, besides the path (and a ``condition`` on the future), fixes the cost of
        ``inference`` reading ``blocks``: the policy's state."""
        return self.state()

    def watch(self) -> None:
        """Start noting what of the future the next ``serve`` calls depend on (``condition``);
        an online policy depends on none of it."""
        return

    def after(self) -> Hashable:
        """What ``restore`` takes to leave the policy as the ``serve`` calls since the last
        ``memo_key`` did, from any state with that key: the state itself (``state()``)."""
        return self.state()

    def condition(self) -> Hashable | None:
        """What of the future the ``serve`` calls since ``watch`` depended on, as something
        ``holds`` can test at another inference; None: nothing (the state and path fix them)."""
        return None

    def holds(self, condition: Hashable, inference: int) -> bool:
        """Whether the future as seen from ``inference`` meets ``condition`` (from
        ``condition()``), so the same state and path would be served the same way there."""
        return True

    def met(self, entries: list[tuple], inference: int) -> tuple | None:
        """The first of a memo's ``entries`` (condition or None, ...) whose condition
        ``holds`` at ``inference``, or None (the engine's memo lookup)."""
        for entry in entries:
            if entry[0] is None or self.holds(entry[0], inference):
                return entry
        return None


class _Once:
    """A value hashed once (``hash``), asked for again and again as a memo key or an interned
    state: equal when of one type, of equal hash and ``_same``."""

    __slots__ = ("hash",)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is type(self) and self.hash == other.hash
                                 and self._same(other))

    def _same(self, other) -> bool:
        raise NotImplementedError


class _Hashed(_Once):
    """A state with its hash computed once: a memo key asked for again and again."""

    __slots__ = ("value",)

    def __init__(self, value: Hashable) -> None:
        self.value = value
        self.hash = hash(value)

    def _same(self, other: _Hashed) -> bool:
        return self.value == other.value


#: Most states (or changes) a policy interns: as many as the engine's memo keeps.
INTERNED = 1 << 14


def _interned(table: dict, value):
    """The one object equal to ``value`` in ``table`` (``value`` itself when new), so later
    questions about it go by identity; ``table`` starts over at ``INTERNED`` entries."""
    if len(table) >= INTERNED:
        table.clear()
    return table.setdefault(value, value)


def _fetch(held: dict[int, int], sizes: Sequence[int], blocks) -> tuple[int, dict[int, int]]:
    """Bring ``blocks`` wholly on chip in ``held``: the bytes fetched, and the bytes held
    before of the blocks that were not wholly held."""
    fetched = 0
    before: dict[int, int] = {}
    for b in blocks:
        size = sizes[b]
        h = held.get(b, 0)
        if h != size:
            before[b] = h
            fetched += size - h
            held[b] = size
    return fetched, before


class _Held(_Once):
    """A ``Belady`` state: its held bytes per block (a dict no one changes once it is here),
    hashed once from its blocks and bytes in block order; as an iterable, its (block,
    bytes) in block order (``restore`` takes those too)."""

    __slots__ = ("held",)

    def __init__(self, held: dict[int, int]) -> None:
        self.held = held
        blocks = sorted(held)
        self.hash = hash((tuple(blocks), tuple(map(held.__getitem__, blocks))))

    def _same(self, other: _Held) -> bool:
        return self.held == other.held

    def __iter__(self):
        return iter(sorted(self.held.items()))


class _Prefix(_Once):
    """A ``Belady`` state where each set (``Future.members``) holds a prefix of its blocks in
    the order of their next use (``Future.by_use``), the last of them perhaps in part: its
    held bytes per set (``held``), the blocks (``_Sets``) following from them. Hashed once;
    as an iterable, its (block, bytes) in block order, as ``_Held``."""

    __slots__ = ("held", "sets")

    def __init__(self, held: tuple[int, ...], sets: _Sets) -> None:
        self.held = held
        self.sets = sets
        self.hash = hash(held)

    def _same(self, other: _Prefix) -> bool:
        return self.held == other.held and self.sets is other.sets

    def __iter__(self):
        return iter(sorted(self.sets.blocks(self.held).items()))


class _Sets:
    """A stream's sets as ``Belady._serve_bytes`` reads them: per set, the bytes of its
    blocks in ``by_use`` order summed (``cum[s][k]``: of its first k blocks)."""

    __slots__ = ("by_use", "cum", "flat", "positive", "sizes")

    def __init__(self, by_use: list[list[int]], sizes: Sequence[int]) -> None:
        self.by_use, self.sizes = by_use, sizes
        self.cum = [list(itertools.accumulate((sizes[b] for b in order), initial=0))
                    for order in by_use]
        #: per set, whether each of its blocks has bytes
        self.positive = [all(sizes[b] > 0 for b in order) for order in by_use]
        #: the sets with a layout's orders as the compiled pass reads them (``_flat_layout``)
        self.flat: bytes | None = None

    def blocks(self, held: Sequence[int], low: Sequence[int] | None = None,
               up: Sequence[int] | None = None) -> dict[int, int]:
        """The held bytes per block of a prefix per set; with ``low`` and ``up``, per set of
        its bytes ``[0, low) + [up, held)`` (``Belady._bytes_pass``: a gap)."""
        out: dict[int, int] = {}
        for s, (order, cum, x) in enumerate(zip(self.by_use, self.cum, held, strict=True)):
            spans = [(0, x)] if low is None or low[s] == up[s] else [(0, low[s]), (up[s], x)]
            for a, b in spans:
                k = bisect_right(cum, a) - 1
                while k + 1 < len(cum) and cum[k] < b:
                    out[order[k]] = min(b, cum[k + 1]) - max(a, cum[k])
                    k += 1
        return out

    def prefix(self, held: Mapping[int, int]) -> tuple[int, ...] | None:
        """``held`` as a prefix per set, or None when it is not one."""
        out = []
        sizes = self.sizes
        for order in self.by_use:
            x = 0
            for b in order:
                h = held.get(b, 0)
                x += h
                if h != sizes[b]:
                    break
            out.append(x)
        return tuple(out) if sum(out) == sum(held.values()) else None


class _Advance(tuple):
    """An LRU state change rather than a state (``LRU.after``): the blocks an inference read,
    in the order of their last use, moved to the most recent end (and added if absent)."""

    __slots__ = ()


class LRU(Residency):
    """Least recently used, whole blocks.

    Its memo key is its order of blocks, or, when everything a path reads fits beside what is
    held (nothing can be evicted), only which of those blocks are missing: an inference then
    keeps every block it fetches and leaves the order with its blocks moved to the end, in the
    order of their last use, wherever they were before (``after``: an ``_Advance``).

    States are interned (one tuple object per order met), so what a memo hit asks of one is
    looked up by identity once it was worked out: its held set and memo key (``_of``), and
    the state an ``_Advance`` leads to from it (``restore``). A stream of hits where paths
    take turns then costs O(1) per input instead of O(blocks) (moving each block of the path
    and hashing the new order). Held sets are interned too (``_set_of``), with their bytes,
    the free key per path and the held set an ``_Advance`` leads to: many orders hold one set
    (a stream of free hits leaves a new order per input, rarely a new set), so a new order
    costs its making and hashing alone.

    When the whole model fits (its blocks' bytes at most the capacity), nothing is ever
    evicted, so the order can never matter: the state is then the held blocks in block order
    (``_roomy``), a memo key is that state, and a stream of hits leaves it as it is, where
    tracking the order made a new one per input.
    """

    name = "lru"

    def __init__(self, sizes: Sequence[int], capacity: int) -> None:
        super().__init__(sizes, capacity)
        self._order: OrderedDict[int, None] = OrderedDict()
        self._used = 0
        self._snap: tuple[int, ...] | None = ()   # the state as a tuple, until serve changes it
        self._pending = False   # restored to _snap, _order not built yet (a run of memo hits)
        # blocks of the inference since memo_key when it cannot evict (None: it can)
        self._free: int | None = None
        # by id of a path's blocks: them, their bytes, and them without repeats
        self._bytes: dict[int, tuple[tuple[int, ...], int, tuple[int, ...]]] = {}
        # held sets, interned by the set: (the set, its bytes, by id of a path's blocks (them,
        # the free key there or None, ``_free`` there), by id of an advance (it, the held set
        # it leads to))
        self._sets: dict[frozenset[int], tuple[frozenset[int], int, dict, dict]] = {}
        # by id of a state: it, its held set, its memo key
        self._info: dict[int, tuple[tuple[int, ...], tuple, _Hashed]] = {}
        self._states: dict[tuple[int, ...], tuple[int, ...]] = {}   # interned states
        # interned advances, each with its blocks as a set
        self._advances: dict[_Advance, tuple[_Advance, frozenset[int]]] = {}
        # by (id of a state, id of an advance): them and the state it leads to
        self._moves: dict[tuple[int, int], tuple[tuple[int, ...], _Advance,
                                                  tuple[int, ...], tuple]] = {}
        self._now = self._of(())   # ``_of(_snap)`` while _snap is set
        # the compiled pass (``_kernel.lru_pass``): the sizes as int64 (made when first
        # asked), by id of a path's blocks them and their ids per op; bytes past 62 bits:
        # the Python pass
        self._flat_sizes: bytes | None = None
        self._flat_paths: dict[int, tuple[Sequence[tuple[int, ...]], bytes]] = {}
        self._compiled = sum(self.sizes) < 1 << 62 and self.capacity < 1 << 62
        #: whether the whole model fits, so that nothing is ever evicted (the order is kept
        #: in block order: it cannot change what an inference costs)
        self._roomy = sum(self.sizes) <= self.capacity

    def _set_of(self, held: frozenset[int], used: int | None = None) -> tuple:
        """The interned held set ``held``; ``used``: its bytes when known."""
        info = self._sets.get(held)
        if info is None:
            if len(self._sets) >= INTERNED:
                self._sets.clear()
            if used is None:
                used = sum(self.sizes[b] for b in held)
            info = self._sets[held] = (held, used, {}, {})
        return info

    def _of(self, state: tuple[int, ...], held: tuple | None = None):
        """What is worked out once per state: it, its held set (``held`` when known), its
        memo key."""
        info = self._info.get(id(state))
        if info is None or info[0] is not state:
            if len(self._info) >= INTERNED:
                self._info.clear()
            if held is None:
                held = self._set_of(frozenset(state))
            info = self._info[id(state)] = (state, held, _Hashed(state))
        return info

    def _unpack(self) -> None:
        self._pending = False
        self._order = OrderedDict.fromkeys(self._snap)  # type: ignore[arg-type]

    def state(self) -> Hashable:
        if self._snap is None:
            self._snap = _interned(self._states, self._canonical(tuple(self._order)))
            self._now = self._of(self._snap)
        return self._snap

    def _canonical(self, order: tuple[int, ...]) -> tuple[int, ...]:
        """The state of an order: the order itself, or, where nothing is ever evicted
        (``_roomy``), its blocks in block order."""
        return tuple(sorted(order)) if self._roomy else order

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        """``("free", the missing ones)`` when ``blocks`` all fit beside what is held, worked
        out once per held set and path; else the state with its hash computed once per
        state, not per inference (a steady stream asks for the same key thousands of
        times)."""
        if self._snap is None:
            self.state()
        info = self._now
        held = info[1]
        known = held[2].get(id(blocks))
        if known is None or known[0] is not blocks:
            key = free = None
            hit = self._bytes.get(id(blocks))
            if hit is None or hit[0] is not blocks:
                once = tuple(dict.fromkeys(blocks))
                hit = self._bytes[id(blocks)] = (blocks, sum(self.sizes[b] for b in once),
                                                 once)
            # (they cannot all fit, whatever is held; or, the whole model fitting, the state
            # says what is held in a form no inference changes: it is the key)
            if hit[1] <= self.capacity and not self._roomy:
                sizes = self.sizes
                missing = tuple(itertools.filterfalse(held[0].__contains__, hit[2]))
                if held[1] + sum(sizes[b] for b in missing) <= self.capacity:
                    free, key = len(hit[2]), ("free", missing)
            known = held[2][id(blocks)] = (blocks, key, free)
        self._free = known[2]
        return info[2] if known[1] is None else known[1]

    def after(self) -> Hashable:
        if self._free is None:
            return self.state()
        # (the order as the compiled pass leaves it, pending, or as the Python one does)
        order = self._snap if self._pending else list(self._order)
        advance = _Advance(order[len(order) - self._free:])  # type: ignore[index]
        known = self._advances.get(advance)
        if known is None:
            if len(self._advances) >= INTERNED:
                self._advances.clear()
            known = self._advances[advance] = (advance, frozenset(advance))
        return known[0]

    def restore(self, state: Hashable) -> None:
        if state is self._snap:   # a memo hit in a steady stream: already there
            return
        if isinstance(state, _Advance):
            start = self.state()
            move = self._moves.get((id(start), id(state)))
            if move is None or move[0] is not start or move[1] is not state:
                # its blocks last, in its order; the others as they were
                moved = self._moved(state)  # type: ignore[arg-type]
                after = None if _kernel is None else _kernel.lru_advance(
                    start, state, len(self.sizes))
                if after is None:   # (no kernel, or an id it does not take)
                    after = (*itertools.filterfalse(moved.__contains__, start), *state)
                after = _interned(self._states, after)
                held = self._now[1]   # (the held set it leads to, once per set and advance)
                to = held[3].get(id(state))
                if to is None or to[0] is not state:
                    new = moved - held[0]
                    to = held[3][id(state)] = (state, self._set_of(
                        held[0] | new, held[1] + sum(self.sizes[b] for b in new))
                        if new else held)
                if len(self._moves) >= INTERNED:
                    self._moves.clear()
                move = self._moves[id(start), id(state)] = (  # type: ignore[assignment]
                    start, state, after, self._of(after, to[1]))
            # (the state it leads to, pending like a restore)
            self._snap, self._now = move[2], move[3]  # type: ignore[assignment]
        else:
            self._snap = state  # type: ignore[assignment]
            self._now = self._of(state)  # type: ignore[arg-type]
        self._used = self._now[1][1]
        self._pending = True

    def _moved(self, advance: _Advance) -> frozenset[int]:
        """The blocks of an advance as a set, made once per advance."""
        known = self._advances.get(advance)
        if known is None or known[0] is not advance:   # (not one this policy noted)
            return frozenset(advance)
        return known[1]

    def resident_bytes(self) -> int:
        return self._used

    def resident_set(self) -> frozenset[int]:
        if self._pending:
            return self._now[1][0]
        return frozenset(self._order)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        if self._pending:
            self._unpack()
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
            if size > self.capacity - sum(sizes[x] for x in current if x in order):
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

    def serve_path(self, blocks: Sequence[tuple[int, ...]], inference: int
                   ) -> tuple[list[int], list[int], list[int]]:
        """``serve`` op by op in one loop (no call and ``Served`` per op): the same answers
        and order after (the engine's memo-off run takes the op-by-op loop; tests compare).
        The compiled pass (``_kernel.lru_pass``) takes it where built, from and to the order
        as a tuple, so a memo miss after a run of hits never builds the ``OrderedDict``."""
        if _kernel is not None and self._compiled:
            out = self._compiled_pass(blocks)
            if out is not None:
                return out
        if self._pending:
            self._unpack()
        order, sizes, capacity = self._order, self.sizes, self.capacity
        self._snap = None
        move = order.move_to_end
        n = len(blocks)
        kept, streamed, wait = [0] * n, [0] * n, [-1] * n
        last_use: dict[int, int] = {}
        used = self._used
        for j, ids in enumerate(blocks):
            if not ids:
                continue
            misses = None
            for b in ids:
                if b in order:
                    move(b)
                elif misses is None:
                    misses = [b]
                else:
                    misses.append(b)
            if misses is not None:
                k = s = 0
                w = -1
                current = set(ids)
                mine = sum(sizes[x] for x in current if x in order)   # (none is evicted)
                for b in misses:
                    size = sizes[b]
                    if b in order:  # the same block twice in one op
                        continue
                    if size > capacity - mine:
                        s += size   # (more than can be freed beside this op's blocks)
                        continue
                    while used + size > capacity:
                        # the least recent: never this op's (they were all moved or
                        # added last, and ``mine`` leaves another block to evict)
                        victim = next(iter(order))
                        del order[victim]
                        used -= sizes[victim]
                        w = max(w, last_use.get(victim, -1))
                    order[b] = None
                    used += size
                    mine += size
                    k += size
                kept[j], streamed[j], wait[j] = k, s, w
            for b in ids:
                last_use[b] = j
        self._used = used
        return kept, streamed, wait

    def serve_vec(self, blocks: Sequence[tuple[int, ...]], inference: int) -> bytes | None:
        """``Residency.serve_vec`` by the compiled pass (``_kernel.lru_pass``), where built."""
        if _kernel is None or not self._compiled:
            return None
        return self._compiled_pass(blocks, True)

    def _compiled_pass(self, blocks: Sequence[tuple[int, ...]], packed: bool = False):
        """``serve_path`` by ``_kernel.lru_pass``; None (nothing changed) when it does not
        take the blocks (an id past the sizes); ``packed``: as one vector (``serve_vec``)."""
        if self._flat_sizes is None:
            self._flat_sizes = np.array(self.sizes, dtype=np.int64).tobytes()
        path = self._flat_paths.get(id(blocks))
        if path is None or path[0] is not blocks:
            if len(self._flat_paths) >= INTERNED:
                self._flat_paths.clear()
            flat = [len(blocks), *itertools.accumulate(map(len, blocks), initial=0),
                    *itertools.chain.from_iterable(blocks)]
            path = self._flat_paths[id(blocks)] = (
                blocks, np.array(flat, dtype=np.int64).tobytes())
        order = self._snap if self._snap is not None else tuple(self._order)
        out = _kernel.lru_pass(order, self._used, self.capacity,  # type: ignore[union-attr]
                               self._flat_sizes, path[1], packed)
        if out is None:
            return None
        kept, streamed, wait, after, self._used = out
        # the order after, pending (``_order`` is built from it only if a Python pass asks)
        self._snap = _interned(self._states, self._canonical(after))
        self._now = self._of(self._snap)
        self._pending = True
        return kept if packed else (kept, streamed, wait)


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
        # the state, made when asked and kept until serve loads a block: a stream of memo
        # hits asks for it and restores it once per input, and then neither copies nor
        # hashes a set (a frozenset keeps its hash)
        self._snap: frozenset[int] | None = frozenset()

    @classmethod
    def for_stream(cls, stream: Stream) -> Pinned:
        return cls(stream.sizes, stream.capacity, pinned_priority(stream))

    def reserved_bytes(self) -> int:
        return sum(self.sizes[b] for b in self.pinned)

    def state(self) -> Hashable:
        if self._snap is None:
            self._snap = frozenset(self._loaded)
        return self._snap

    def restore(self, state: Hashable) -> None:
        if state is self._snap:   # (what is loaded is that state already)
            return
        self._snap = state  # type: ignore[assignment]
        self._loaded = set(state)  # type: ignore[arg-type]

    def resident_bytes(self) -> int:
        return sum(self.sizes[b] for b in self._loaded)

    def resident_set(self) -> frozenset[int]:
        return self.state()  # type: ignore[return-value]  # (the loaded blocks, kept)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        kept = streamed = 0
        for b in dict.fromkeys(blocks):
            if b in self._loaded:
                continue
            if b in self.pinned:
                self._loaded.add(b)
                self._snap = None
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
    rounded = np.round(use, 12).tolist()   # (as ``round(use[b], 12)`` per block, at once)
    return sorted(first, key=lambda b: (-rounded[b], first[b]))


class Belady(Residency):
    """Belady's MIN at byte granularity with bypass (offline optimal).

    ``next_use(block, inference, op)`` gives the stream position of the block's next use after
    (inference, op), or ``NEVER``; positions are comparable integers. ``future`` (a ``Future``),
    when given, lets ``condition`` say what of the future an inference's decisions depended on.

    What an inference depends on (``watch``, ``condition``, ``holds``). Each eviction drops
    the bytes of the held blocks whose next use is farthest (ties: the higher block index);
    its outcome is fixed by the order of next uses between the blocks that lost bytes and the
    blocks that stay. A block read again later in the same inference is always nearer than one
    read in a later inference, and the order among those is fixed by the path. A block next
    read in a later inference is at ``Future.nxt[s, i] * OP_STRIDE + first op`` for its set s
    (the paths reading it): the order among blocks of one set is fixed by the path at that
    inference (only whether it exists, for a ``uniform`` set), and between a dropped block of
    set s and a kept one of set t by ``nxt[s, i]`` against ``nxt[t, i]`` (ties: by the first
    op there and the block, known when the paths there are). So the condition of an inference
    is, for the sets involved, the path at their next inference, and per pair (s dropped, t
    kept) ``nxt[s] > nxt[t]`` or ``>=``: every situation meeting it is served the same way,
    whatever the rest of the future (a random routed stream has a handful per path and state).
    """

    name = "belady"

    def __init__(self, sizes: Sequence[int], capacity: int, next_use,
                 future: Future | None = None) -> None:
        super().__init__(sizes, capacity)
        self._next_use = next_use
        self._future = future
        self._next_uses = (future.next_uses if future is not None else
                           lambda bs, i, j: [next_use(b, i, j) for b in bs])
        self._held: dict[int, int] = {}       # block -> resident bytes
        self._total = 0                       # sum(self._held.values()), kept running
        self._nu: dict[int, int] = {}         # block -> its next use position
        self._stale = False                   # after a restore: _nu to be filled at next serve
        # eviction order: a min-heap of (-next use, -block), so the top is the block used
        # farthest in the future, ties the higher block index (as sorting all held blocks by
        # (next use, block), largest first); entries whose next use was since recomputed, or
        # whose block has left, are skipped when they reach the top (lazy deletion)
        self._heap: list[tuple[int, int]] = []
        # the state (``state``) until serve changes it; after a restore, _held etc. are built
        # from it only when serve (or a question about what is held) needs them
        self._snap: _Held | None = _Held({})
        self._pending = False
        # per state (by id, the state kept alive here): its hashed memo_key; states met
        # before are the same object (interned), so a memo key compares by identity
        self._per_state: dict[int, tuple[_Held, _Hashed]] = {}
        self._last_key: tuple[_Held | None, _Hashed | None] = (None, None)   # the last asked
        self._states: dict[_Held, _Held] = {}
        # the prefix states (``_Prefix``) interned by their held bytes per set (a tuple:
        # hashed and compared in C, no ``_Prefix`` made to look one up)
        self._prefixes: dict[tuple[int, ...], _Prefix] = {}
        # while watched: the inference, the sets involved, and per pair of sets (s dropped,
        # t kept) whether a tie of their next inferences would reverse a decision (strict)
        self._watched: tuple[int, set[int], dict[tuple[int, int], bool]] | None = None
        self._made: Hashable | None = None   # the condition, when the compiled pass made it
        self._high: dict[int, tuple[int, int] | None] | None = None   # (``watch``)
        self._dirty: set[int] = set()
        self._set_bytes: list[int] | None = None   # per set, its bytes (``_serve_sets``)
        # the sets' byte sums (``_serve_bytes``, ``_Prefix``)
        self._sets = _Sets(future.by_use, sizes) if future is not None else None
        #: whether the compiled pass (``_kernel.c``) takes ``_bytes_pass``: its keys
        #: (next inference * ``span`` + rank) and byte sums must fit in 64 bits
        self._compiled = (future is not None and
                          (future.n + 2) * future.layout.span < 1 << 62 and
                          sum(sizes) < 1 << 62)

    @classmethod
    def for_stream(cls, stream: Stream) -> Belady:
        if stream.sequence.size == 0:
            return cls(stream.sizes, stream.capacity, lambda b, i, j: NEVER)
        future = Future(stream)
        return cls(stream.sizes, stream.capacity, future.next_use, future)

    def state(self) -> Hashable:
        """The held bytes: a ``_Prefix`` when each set holds a prefix of its blocks (as
        Belady's order keeps a tree's sets), else a ``_Held`` (a copy of the dict, hashed
        once); whatever the order they were held in, as nothing Belady does depends on it."""
        if self._snap is None:
            prefix = None
            if self._future is not None:   # (as ``_serve_bytes`` leaves it, when it is one)
                prefix = self._sets.prefix(self._held)  # type: ignore[union-attr]
            self._snap = (_interned(self._states, _Held(self._held.copy())) if prefix is None
                          else self._prefix_state(prefix))
        return self._snap

    def restore(self, state: Hashable) -> None:
        if state is self._snap and self._pending:   # a run of memo hits in a steady stream
            return
        # (the state just left by serve, too: its held bytes hold, but not the next uses,
        # which are positions of the inference that computed them)
        self._snap = state  # type: ignore[assignment]
        self._pending = True      # a run of memo hits never builds the dicts

    def _unpack(self) -> None:
        """Build the held bytes from the restored state (next uses: at the next serve)."""
        self._pending = False
        snap = self._snap
        if isinstance(snap, _Held):
            self._held = snap.held.copy()
        elif isinstance(snap, _Prefix):
            self._held = snap.sets.blocks(snap.held)
        else:
            self._held = dict(snap)  # type: ignore[arg-type]
        self._total = sum(self._held.values())
        self._nu = {}
        self._heap = []
        self._stale = True

    def memo_key(self, inference: int, blocks: tuple[int, ...]) -> Hashable:
        """The state, hashed once per state (the future goes in ``condition``)."""
        snap = self.state()
        last = self._last_key
        if last[0] is snap:   # (a steady stream: the state of the inference before)
            return last[1]
        per = self._per_state
        entry = per.get(id(snap))
        if entry is None or entry[0] is not snap:
            if len(per) >= INTERNED:
                per.clear()
            entry = per[id(snap)] = (snap, _Hashed(snap))  # type: ignore[arg-type]
        self._last_key = entry
        return entry[1]

    def watch(self) -> None:
        if self._future is None:
            return
        self._watched = (-1, set(), {})
        # per set: its farthest held block next read in a later inference (``_note``): found
        # at the first eviction, then raised as blocks are read, and found again for a set
        # whose farthest block left (``_dirty``). (A block next read in a later inference is
        # not read again in this one, and a read only moves a block's next use later.)
        self._high: dict[int, tuple[int, int] | None] | None = None
        self._dirty: set[int] = set()

    def condition(self) -> Hashable | None:
        """``(((s, path there), ...), ((s, t, strict, path there of s, of t), ...))``: the
        sets whose blocks' order among themselves decided something, with the path at their
        next inference (``Future.column``), and per pair (s dropped, t kept) ``nxt[s] >
        nxt[t]`` (strict) or ``>=``, and then on a tie the paths there as they were; None
        when no decision compared next uses of later inferences."""
        watched, self._watched = self._watched, None
        if watched is _MADE:   # (the compiled pass made it from the same notes)
            return self._made
        if watched is None or not (watched[1] or watched[2]):
            return None
        i, sets, pairs = watched
        there = self._future.column(i)[1]  # type: ignore[union-attr]
        return (tuple((s, there[s]) for s in sorted(sets)),
                tuple((s, t, strict, there[s], there[t])
                      for (s, t), strict in sorted(pairs.items())))

    def met(self, entries: list[tuple], inference: int) -> tuple | None:
        future = self._future
        if _kernel is None or future is None:
            return Residency.met(self, entries, inference)
        k = inference - future._clo   # (``Future.row``, as it answers within its chunk:
        if not 0 <= k < future._cm:    # a memo hit asks once)
            k = future.row(inference)
        return _kernel.first(entries, *future.raw, k, len(future.members))

    def holds(self, condition: Hashable, inference: int) -> bool:
        col, there = self._future.column(inference)  # type: ignore[union-attr]
        if _kernel is not None:
            return _kernel.holds(condition, col, there)
        sets, pairs = condition  # type: ignore[misc]
        for s, v in sets:
            if there[s] != v:
                return False
        for s, t, strict, vs, vt in pairs:
            a, b = col[s], col[t]
            if a < b or (a == b and (strict or there[s] != vs or there[t] != vt)):
                return False
        return True

    def _note(self, inference: int, dropped: list[tuple[int, int]]) -> None:
        """Note what an eviction's outcome depended on (``condition``): ``dropped`` are the
        (next use, block) of the blocks that lost bytes, the held blocks stay."""
        later = (inference + 1) * OP_STRIDE   # next uses from here are in a later inference
        set_of = self._future._set_of  # type: ignore[union-attr]
        high, nu = self._high, self._nu   # per set: its farthest kept (pos in, block)
        if high is not None:
            for _, b in dropped:
                if b not in nu:   # gone: if it was its set's farthest, find that again
                    t = set_of[b]
                    k2 = high.get(t)
                    if k2 is not None and k2[1] == b:
                        self._dirty.add(t)
        low: dict[int, tuple[int, int]] = {}   # per set: its nearest dropped (pos in, block)
        for n, b in dropped:
            if n >= later:
                k = (n % OP_STRIDE if n != NEVER else 0, b)
                s = set_of[b]
                if s not in low or k < low[s]:
                    low[s] = k
        if not low:   # only blocks read again in this inference lost bytes: the path fixes it
            return
        _, sets, pairs = self._watched  # type: ignore[misc]
        nsets = len(self._future.members)  # type: ignore[union-attr]
        if all(s in sets and all(pairs.get((s, t)) for t in range(nsets) if t != s)
               for s in low):   # already the strictest it can be (a dense model's one set)
            return
        if high is None:
            high = self._high = {}
            for b, n in nu.items():
                if n >= later:
                    k = (n % OP_STRIDE if n != NEVER else 0, b)
                    t = set_of[b]
                    if t not in high or k > high[t]:  # type: ignore[operator]
                        high[t] = k
            self._dirty.clear()
        for t in self._dirty:
            best = None
            for b in self._future.members[t]:  # type: ignore[union-attr]
                n = nu.get(b)
                if n is not None and n >= later:
                    k = (n % OP_STRIDE if n != NEVER else 0, b)
                    if best is None or k > best:
                        best = k
            high[t] = best
        self._dirty.clear()
        self._watched = (inference, sets, pairs)
        for s, k in low.items():
            for t, k2 in high.items():
                if k2 is None:
                    continue
                if s == t:     # the order inside the set: by the path at its next inference
                    sets.add(s)
                elif k > k2:   # a tie of their next inferences keeps the order: >= will do
                    pairs.setdefault((s, t), False)
                else:          # a tie would reverse it: >
                    pairs[s, t] = True

    def resident_bytes(self) -> int:
        if self._pending:
            self._unpack()
        return self._total

    def resident_set(self) -> frozenset[int]:
        if self._pending:
            self._unpack()
        return frozenset(b for b, n in self._held.items() if n == self.sizes[b])

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        if self._pending:
            self._unpack()
        held, sizes, nu, heap = self._held, self.sizes, self._nu, self._heap
        next_use = self._next_use
        if self._stale:   # resident since an earlier inference (after a restore): their next
            self._stale = False   # uses from here (none of them is read before this op)
            nu.update(zip(held, self._next_uses(held, inference, op), strict=True))
            heap[:] = [(-n, -b) for b, n in nu.items()]
            heapify(heap)
        self._snap = None
        current = blocks if len(blocks) < 2 else dict.fromkeys(blocks)
        fetched, before = _fetch(held, sizes, current)
        future = self._future
        if future is not None:   # Future.next_use written out, its per-inference part once
            ops, col, there, set_of, first = future.at(inference)  # (there: paths)
        for b in current:
            if future is None:
                n = next_use(b, inference, op)
            else:
                here = ops.get(b)
                if here is not None and here[-1] > op:
                    n = inference * OP_STRIDE + here[bisect_right(here, op)]
                else:
                    s = set_of[b]
                    p2 = there[s]
                    n = NEVER if p2 < 0 else col[s] * OP_STRIDE + first[p2][b]
            nu[b] = n
            heappush(heap, (-n, -b))
        high = self._high
        if high is not None and self._watched is not None:   # (raise their sets' farthest)
            set_of = future._set_of  # type: ignore[union-attr]
            later = (inference + 1) * OP_STRIDE
            for b in current:
                n = nu[b]
                if n >= later:
                    k = (n % OP_STRIDE if n != NEVER else 0, b)
                    t = set_of[b]
                    k2 = high.get(t)
                    if k2 is None or k > k2:
                        high[t] = k
        total = self._total + fetched
        evicted: list[int] = []
        kept = fetched   # until this op's own blocks lose bytes below what they had
        if total > self.capacity:
            dropped: list[tuple[int, int]] = []
            # drop the bytes used farthest in the future (ties: higher block index first)
            while True:
                n, b = heap[0]
                b = -b
                if b not in held or nu[b] != -n:   # stale entry
                    heappop(heap)
                    continue
                dropped.append((-n, b))
                drop = min(held[b], total - self.capacity)
                if b in current:   # its kept bytes: those above what it held before
                    kept -= min(drop, max(0, held[b] - before.get(b, held[b])))
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
            if self._watched is not None:
                self._note(inference, dropped)
        self._total = total
        if len(heap) > 2 * len(held) + 64:   # drop the stale entries now and then
            heap[:] = [(-n, -b) for b, n in nu.items()]
            heapify(heap)
        return Served(kept, fetched - kept, tuple(evicted))

    def serve_path(self, blocks: Sequence[tuple[int, ...]], inference: int
                   ) -> tuple[list[int], list[int], list[int]]:
        """``Residency.serve_path``, a set at a time where the path allows it
        (``_serve_sets``), else op by op. Same answers and state after (the tests compare the
        two on random trees and streams, and the engine's rows with its memo on and off)."""
        if self._future is not None:
            program = self._program(blocks)
            if program.sets is not None:
                if program.spans is not None:
                    out = self._serve_bytes(program, len(blocks), inference)
                    if out is not None:
                        return out
                return self._serve_sets(program, len(blocks), inference)
        return Residency.serve_path(self, blocks, inference)

    def _prefix(self) -> tuple[int, ...] | None:
        """The held bytes per set when the state is a prefix per set (``_Prefix``), else
        None."""
        snap = self._snap
        if isinstance(snap, _Prefix):   # (serve sets _snap to None when it changes it)
            return snap.held
        if not self._pending:
            held = self._held
        elif isinstance(snap, _Held):
            held = snap.held
        else:
            held = dict(snap)  # type: ignore[arg-type]
        return self._sets.prefix(held)  # type: ignore[union-attr]

    def _serve_bytes(self, program: _Program, n: int, inference: int, packed: bool = False):
        """``_serve_sets`` on held bytes per set instead of blocks, when the state holds a
        prefix of each set (``_Prefix``), as Belady's order keeps it on a tree's paths; None
        (nothing changed) when it does not, or when what the path reads would leave one
        that does not (the caller then serves the blocks).

        Why a prefix. A set's held blocks are dropped farthest first, the order of
        ``by_use`` (``_serve_sets``), and a path reads a set's blocks in that order: so
        held blocks stay the nearest of their set, unless the path reads a set's blocks past
        a part it dropped earlier in the inference (a gap: followed as ``[0, low) + [up,
        top)``, which later drops usually close; a second gap in one set gives up, and one
        left at the end leaves the state as blocks). On byte sums per set (``_Sets.cum``),
        each op's fetch, each set's drops down to where the next farthest set's last would
        come first (one ``bisect``), its kept bytes and the op it waits for are a few
        integer steps each, whatever its blocks. ``packed``: the compiled pass's answers as
        one vector (``serve_vec``), None where that pass does not take the path."""
        h0 = self._prefix()
        if h0 is None:
            return None
        watched = self._watched
        noted = watched is not None and bool(watched[1] or watched[2])
        if _kernel is not None and self._compiled and not noted:
            # (it changes nothing when it gives up, and makes the condition from its own
            # notes: so only when nothing was noted before this pass)
            return self._compiled_pass(program, n, inference, h0, packed)
        if packed:   # (a vector comes from the compiled pass alone)
            return None
        saved = (set(watched[1]), dict(watched[2])) if noted else None  # type: ignore[index]
        out = self._bytes_pass(program, n, inference, h0)
        if out is None and watched is not None:   # (what it noted goes with it)
            watched[1].clear()
            watched[2].clear()
            if saved is not None:
                watched[1].update(saved[0])
                watched[2].update(saved[1])
        return out

    def _compiled_pass(self, program: _Program, n: int, inference: int, h0: tuple[int, ...],
                       packed: bool = False):
        """``_bytes_pass`` by the compiled pass (``_kernel.c``): the same steps on flat
        arrays, the same answers, state after and notes for ``condition`` (the tests run
        both); ``packed``: the answers as one vector (``serve_vec``)."""
        watched = self._watched
        out = self._pass(self._flat(program), n, inference, h0, watched is not None, packed)
        if out is None:
            return None
        if watched is not None:   # (``condition`` as it would make it from the notes)
            self._watched = _MADE
            self._made = out[7]
        return out[0] if packed else out[:3]

    def _flat(self, program: _Program) -> bytes:
        """The program as the compiled pass reads it, the layout's sets too (made once)."""
        if self._sets.flat is None:  # type: ignore[union-attr]
            self._sets.flat = _flat_layout(self._future.layout, self._sets)  # type: ignore
        if program.flat is None:
            program.flat = _flat_program(program, len(self._future.members))  # type: ignore
        return program.flat

    def _pass(self, flat: bytes, n: int, inference: int, h0: tuple[int, ...], watched: bool,
              packed: bool) -> tuple | None:
        """``_kernel.bytes_pass`` over a flat program of n ops from held bytes ``h0`` per
        set, the state it leaves taken (``_leave``); its answers, or None (it gave up:
        nothing changed)."""
        future = self._future
        k = future.row(inference)  # type: ignore[union-attr]
        out = _kernel.bytes_pass(  # type: ignore[union-attr]
            self._sets.flat, flat, h0, *future.raw, k, future.n,  # type: ignore[union-attr]
            future.layout.span, self.capacity, n, watched, packed)  # type: ignore[union-attr]
        if out is not None:
            self._leave(out[3], out[4], out[5], out[6])
        return out

    def serve_vec(self, blocks: Sequence[tuple[int, ...]], inference: int) -> bytes | None:
        """``Residency.serve_vec``: where ``serve_path`` would take the compiled byte pass
        (the path a set at a time, the state a prefix per set, nothing noted before), the
        same pass handing its answers over as one vector; else None, nothing changed."""
        if _kernel is None or not self._compiled:
            return None
        program = self._program(blocks)
        if program.sets is None or program.spans is None:
            return None
        return self._serve_bytes(program, len(blocks), inference, True)

    def quick(self, blocks: Sequence[tuple[int, ...]]) -> tuple[bytes, int] | None:
        """The path's flat program and op count, where ``serve_vec`` would take the compiled
        byte pass for it (from a state that is a prefix per set)."""
        if _kernel is None or not self._compiled:
            return None
        program = self._program(blocks)
        if program.sets is None or program.spans is None:
            return None
        return self._flat(program), len(blocks)

    def quick_state(self) -> tuple[int, ...] | None:
        """The held bytes per set (``_Prefix.held``) when the state is a prefix per set."""
        snap = self._snap
        if snap is None:
            snap = self.state()
        return snap.held if type(snap) is _Prefix else None  # type: ignore[union-attr]

    def step(self, quick: tuple[bytes, int], inference: int
             ) -> tuple[bytes, Hashable, Hashable] | None:
        """``serve_vec`` with ``watch`` before and ``condition`` and ``after`` after, from a
        prefix state: the compiled byte pass alone, with nothing noted before it (as after
        ``watch``), so it makes the condition from its own notes."""
        out = self._pass(quick[0], quick[1], inference, self._snap.held,  # type: ignore
                         True, True)
        if out is None:
            return None
        return out[0], out[7], self._snap or self.state()

    def _leave(self, top: tuple[int, ...], low: list[int] | None, up: list[int] | None,
               total: int) -> None:
        """The state a byte pass leaves: its held bytes per set ``[0, top)``, or ``[0, low)
        + [up, top)`` for a set with a gap, ``total`` in all (``low`` and ``up`` None: no
        set has one, as the compiled pass says it)."""
        self._total = total
        if low != up:   # a gap left: the held blocks (the next serve takes them)
            self._held = self._sets.blocks(top, low, up)  # type: ignore[union-attr]
            self._snap = None
            self._pending = False
            return
        self._snap = self._prefix_state(top)
        self._pending = True   # (the held blocks: made from it when asked)

    def _prefix_state(self, held: tuple[int, ...]) -> _Prefix:
        """The one ``_Prefix`` of held bytes ``held`` per set (interned, as ``_interned``)."""
        snap = self._prefixes.get(held)
        if snap is None:
            if len(self._prefixes) >= INTERNED:
                self._prefixes.clear()
            snap = self._prefixes[held] = _Prefix(held, self._sets)  # type: ignore[arg-type]
        return snap

    def _bytes_pass(self, program: _Program, n: int, inference: int, h0: tuple[int, ...]
                    ) -> tuple[list[int], list[int], list[int]] | None:
        """``_serve_bytes``'s pass: the same steps as ``_serve_sets`` (see there for what
        they note for ``condition``), a set's stack being its bytes ``[0, top)``, or
        ``[0, low) + [up, top)`` across a gap."""
        future = self._future
        layout = future.layout  # type: ignore[union-attr]
        col = future.column(inference)[0]  # type: ignore[union-attr]
        end = future.n  # type: ignore[union-attr]
        on_path = program.on_path
        cum = self._sets.cum  # type: ignore[union-attr]
        span = layout.span
        nsets = len(col)
        # per set: the sorted values its blocks rank by at its next inference (the rank, or
        # the block for a set never read again), its held bytes [0, top) on its stack (an
        # on-path set's: those it read so far), and the key of its last held block
        ats = []
        top = list(h0)
        low, up = [0] * nsets, [0] * nsets   # a set's gap: its stack [0, low) + [up, top)
        keys = [0] * nsets
        live = []
        for s in range(nsets):
            c = col[s]
            if c < end:
                ats.append(layout.ranks_at[s])
            elif layout.in_block_order[s] or not (top[s] or on_path[s]):
                ats.append(layout.by_use[s])
            else:   # (a set never read again whose order is not by_use: by blocks)
                return None
            if on_path[s]:
                top[s] = 0
            elif top[s]:
                live.append(s)
                keys[s] = c * span + ats[s][bisect_left(cum[s], top[s]) - 1]
        watched = self._watched
        if watched is not None:
            watched = self._watched = (inference, watched[1], watched[2])
        kept = [0] * n
        streamed = [0] * n
        wait = [-1] * n
        capacity, total = self.capacity, sum(h0)   # (``_total`` waits for an unpack)
        ops_at = layout.ops_at

        notes = _Notes(watched, live, keys, span)   # (as in ``_serve_sets``)
        since = notes.since
        for rs, steps, ka, kb in program.spans:  # type: ignore[union-attr]
            if rs >= 0:
                cs = cum[rs]
                if top[rs] == cs[ka] and h0[rs] >= cs[kb]:   # all held: nothing moves
                    if rs not in since:
                        since[rs] = keys[rs] if top[rs] else -1
                    if not top[rs]:
                        live.append(rs)
                    top[rs] = cs[kb]
                    keys[rs] = col[rs] * span + ats[rs][kb - 1]
                    continue
            at_step, nsteps = 0, len(steps)
            while at_step < nsteps:
                j, segs = steps[at_step]
                at_step += 1
                fetched = 0
                best = -1
                for s, a, b in segs:
                    cs = cum[s]
                    lo, hi = cs[a], cs[b]
                    t = top[s]
                    if t != lo:   # read past a part it dropped: [0, low) + [up, top)
                        if up[s] != low[s]:   # (a second gap: not for this pass)
                            return None
                        low[s], up[s] = t, lo
                    held = h0[s]   # (its bytes held before the inference: not dropped since)
                    fetched += hi - (lo if held <= lo else hi if held >= hi else held)
                    if s not in since:
                        since[s] = keys[s] if t else -1
                    if not t:
                        live.append(s)
                    top[s] = hi
                    keys[s] = col[s] * span + ats[s][b - 1]
                total += fetched
                k = fetched
                w = -1
                while total > capacity:
                    best, rk = _farthest(live, keys)
                    cs, at, t, u, v = cum[best], ats[best], top[best], up[best], low[best]
                    kt = bisect_left(cs, t) - 1   # its last held block
                    if watched is not None:   # (more than one block held: in the upper
                        notes.drop(best, kt > bisect_left(cs, u) or v > 0)   # part, or below)
                    base = col[best] * span
                    near = rk >= base
                    floor = u
                    if near:   # down to the first block not farther than the next set's
                        kf = bisect_right(at, rk - base)
                        f = cs[kf if kf < kt else kt]
                        if f > floor:
                            floor = f
                    need = total - capacity
                    new = t - need
                    if new < floor:
                        new = floor
                    need -= t - new
                    gone = new   # the lowest byte dropped
                    under = -1   # the lower part's top when it lost bytes
                    if new == u and u != v:   # the upper part gone: on to [0, low)
                        if need and v and (not near or at[bisect_left(cs, v) - 1] > rk - base):
                            under = v
                            v2 = v - need
                            if near and cs[kf] > v2:
                                v2 = cs[kf]
                            elif v2 < 0:
                                v2 = 0
                            need -= v - v2
                            gone = v2
                            v = v2
                        new = v
                        low[best] = up[best] = 0
                    total = capacity + need
                    if on_path[best]:   # its blocks were read in this inference
                        mine = t   # below here, blocks of earlier ops: the op waits for them
                        for s, a, _ in segs:
                            if s == best:   # its kept bytes: those above what it held
                                lo = cs[a]
                                if lo < mine:
                                    mine = lo
                                held = h0[s]
                                fresh = lo if held <= lo else held   # (< hi: it was fetched)
                                if t > fresh:   # (its span is in the upper part, if any)
                                    k -= t - (gone if gone > fresh else fresh)
                        x = mine if under < 0 else under   # the highest dropped of earlier ops
                        if under < 0 and gone >= mine:
                            x = -1
                        elif under >= 0 and u < mine:
                            x = mine
                        if x > 0:
                            op = ops_at[best][bisect_right(cs, x - 1) - 1]
                            if op > w:
                                w = op
                    top[best] = new
                    if new:
                        keys[best] = base + at[bisect_left(cs, new) - 1]
                    else:
                        live.remove(best)
                    if watched is not None:   # (its last drop so far)
                        notes.last = at[bisect_right(cs, gone) - 1]
                kept[j] = k
                streamed[j] = fetched - k
                wait[j] = w
                if best == rs >= 0 and at_step < nsteps and self._sets.positive[rs]:
                    # The run's set was the farthest when this op's drops ended (the room
                    # full): each op to the run's end reads blocks farther still, fetches
                    # them all (what it held before ends below this op's fetch) and, nothing
                    # else having moved, drops just them again; so each streams what it
                    # reads, waits for nothing, and leaves all as it was.
                    cs = cum[rs]
                    many = top[rs] > 0   # (more than one block on its stack at a drop)
                    for j, ((_, a, b),) in steps[at_step:]:
                        streamed[j] = cs[b] - cs[a]
                        many = many or b - a > 1
                    if watched is not None:
                        if many:
                            watched[1].add(rs)
                        notes.last = ats[rs][steps[-1][1][0][1]]
                    break
        if watched is not None:
            notes.end()
        self._leave(tuple(top), low, up, total)
        return kept, streamed, wait

    def _program(self, blocks: Sequence[tuple[int, ...]]) -> _Program:
        """``_Program`` of a path (``blocks``: a compiled plan's, equal to one of the stream's
        paths), made once per path of the stream's layout (``Future.layout``)."""
        layout = self._future.layout  # type: ignore[union-attr]
        hit = layout.plan_paths.get(id(blocks))
        if hit is None or hit[0] is not blocks:
            p = next((p for p, path in enumerate(layout.paths)
                      if len(path) == len(blocks) and path == blocks), -1)
            if p < 0:   # (not a path of the stream: made for it alone)
                return _Program(blocks, layout)
            if len(layout.plan_paths) >= PROGRAM_IDS:
                layout.plan_paths.clear()
            hit = layout.plan_paths[id(blocks)] = (blocks, p)
        program = layout.programs.get(hit[1])
        if program is None:
            program = layout.programs[hit[1]] = _Program(blocks, layout)
        return program

    def _serve_sets(self, program: _Program, n: int, inference: int
                    ) -> tuple[list[int], list[int], list[int]]:
        """``serve_path`` for a stream whose sets are all ``uniform`` and a path which reads
        each block once (``_Program.sets``), a set at a time instead of a heap of blocks.

        What Belady's order comes to there. A held block the path reads later in this
        inference is nearer than any other (its next use is here), so none loses bytes (see
        the drop loop). Every other held block (of a set the path does not read, or one it
        has read by now) is next read at its set's next inference, at the op the set's blocks
        are read there whichever path it is (uniform), or never: so within a set the order is
        fixed (``Future.by_use``, or by block for a set never read again), and the farthest
        held block is the last of its set's held blocks in that order (a stack per set: the
        path pushes a block on its set's stack as it reads it, in order, or in block order for
        a set it reads for the last time) for the set whose last has the farthest (next
        inference, op, block). Each drop compares the chosen set's last with every other
        set's: the pairs and the sets whose order within decided are what ``condition``
        reports, as ``_note`` does for the heap pass.
        """
        future = self._future
        col = future.column(inference)[0]  # type: ignore[union-attr]
        stream_end = future.n  # type: ignore[union-attr]
        if self._pending:
            self._unpack()
        held, sizes, op_of = self._held, self.sizes, future.op_of  # type: ignore[union-attr]
        self._snap = None
        self._stale = True   # (the heap's next uses: made again if it serves next)
        self._nu, self._heap = {}, []
        nsets = len(col)
        rank, span = future.rank, future.span  # type: ignore[union-attr]
        # per set, its held blocks that are read after this inference, nearest first, and
        # the (next inference, op, block) of the last of them as one integer (Future.rank)
        stacks: list[list[int]] = []
        keys = [0] * nsets
        live = []   # sets with such a block
        intact = [False] * nsets   # a set of the path with all its blocks held
        members, by_use = future.members, future.by_use  # type: ignore[union-attr]
        set_bytes = self._set_bytes
        if set_bytes is None:
            set_bytes = self._set_bytes = [sum(sizes[b] for b in m) for m in members]
        for s in range(nsets):
            c = col[s]
            if program.on_path[s]:
                stacks.append([])
                intact[s] = (c < stream_end and
                             sum(map(held.get, members[s], _ZEROS)) == set_bytes[s])
                continue
            st = [b for b in (by_use[s] if c < stream_end else members[s]) if b in held]
            stacks.append(st)
            if st:
                live.append(s)
                keys[s] = c * span + (rank[st[-1]] if c < stream_end else st[-1])
        watched = self._watched
        if watched is not None:
            watched = self._watched = (inference, watched[1], watched[2])
        kept = [0] * n
        streamed = [0] * n
        wait = [-1] * n
        capacity, total = self.capacity, self._total
        on_path = program.on_path

        notes = _Notes(watched, live, keys, span)   # (what ``condition`` will report)
        since = notes.since
        for rs, run, run_blocks in program.runs:
            if rs >= 0 and intact[rs]:   # its blocks all held: nothing moves, nothing waits
                st = stacks[rs]
                if rs not in since:
                    since[rs] = keys[rs] if st else -1
                if not st:
                    live.append(rs)
                st.extend(run_blocks)
                keys[rs] = col[rs] * span + rank[run_blocks[-1]]
                continue
            for j, current, by_set in run:
                fetched, before = _fetch(held, sizes, current)
                for s, blocks in by_set:
                    st = stacks[s]
                    if s not in since:
                        since[s] = keys[s] if st else -1
                    if not st:
                        live.append(s)
                    c = col[s]
                    if c < stream_end:   # read in order: the last read is the farthest
                        st.extend(blocks)
                        keys[s] = c * span + rank[blocks[-1]]
                    else:                # never read again: by block
                        for b in blocks:
                            insort(st, b)
                        keys[s] = c * span + st[-1]
                total += fetched
                k = fetched
                w = -1
                # Drops never reach a block the path reads later in this inference: every
                # other held block is farther, and dropping them all (this op's blocks too)
                # would leave at most what was held before the op, which fitted.
                while total > capacity:
                    best, rk = _farthest(live, keys)
                    st = stacks[best]
                    if watched is not None:
                        notes.drop(best, len(st) > 1)
                    c = col[best]
                    # (all of its blocks go first when the next farthest set is read at an
                    # earlier inference: no key to compare on the way)
                    near = rk >= c * span
                    read = on_path[best]   # its blocks were read in this inference
                    need = total - capacity
                    while True:   # its blocks, farthest first, while they are the farthest
                        b = st[-1]
                        h = held[b]
                        drop = h if h < need else need
                        if read:
                            if b in current:   # its kept bytes: those above what it held
                                k -= min(drop, max(0, h - before.get(b, h)))
                            elif op_of[b] > w:   # the op that read it (once)
                                w = op_of[b]
                        need -= drop
                        if h != drop:
                            held[b] = h - drop
                            break
                        del held[b]
                        st.pop()
                        if not st:
                            live.remove(best)
                            break
                        if not need:
                            break
                        if near:
                            top = st[-1]
                            if c * span + (rank[top] if c < stream_end else top) < rk:
                                break
                    total = capacity + need
                    if st:
                        top = st[-1]
                        keys[best] = c * span + (rank[top] if c < stream_end else top)
                    if watched is not None:   # (its last drop so far)
                        notes.last = rank[b] if c < stream_end else b
                kept[j] = k
                streamed[j] = fetched - k
                wait[j] = w
        if watched is not None:
            notes.end()
        self._total = total
        return kept, streamed, wait


def _farthest(live: list[int], keys: list[int]) -> tuple[int, int]:
    """Of the sets ``live``, the one whose last block is farthest (``keys``: each set's last
    as one integer, ``Future.rank``; no two equal) and the next farthest set's key (-1:
    none) — the choice at each drop of a set pass (``Belady._serve_sets``,
    ``Belady._bytes_pass``)."""
    best, bk, rk = -1, -1, -1
    for s in live:
        key = keys[s]
        if key > bk:
            rk, best, bk = bk, s, key
        elif key > rk:
            rk = key
    return best, rk


class _Notes:
    """What a set pass notes for ``Belady.condition`` as its drops go (``watched``: the
    sets whose order within decided, and per pair (s dropped, t kept) whether a tie of
    their next inferences would reverse it). The set the drops took from last and the rank
    of its last dropped block are noted (``went_first``) when another set gives way or the
    path ends: while one set gives, only it loses blocks and the others only gain (the
    path's reads), so its last drop against the others' lasts as they were then asks all
    that each of its drops asked. ``since``: per set read since the last drop, the key of
    its last then (-1: none)."""

    __slots__ = ("keys", "last", "live", "pairs", "sets", "since", "span", "streak")

    def __init__(self, watched: tuple | None, live: list[int], keys: list[int],
                 span: int) -> None:
        self.sets: set[int] = watched[1] if watched is not None else set()
        self.pairs: dict[tuple[int, int], bool] = watched[2] if watched is not None else {}
        self.live, self.keys, self.span = live, keys, span
        self.since: dict[int, int] = {}
        self.streak, self.last = -1, 0

    def drop(self, best: int, many: bool) -> None:
        """A drop from set ``best`` (``many``: more than one of its blocks held, so which
        of them goes is decided by the path at its next inference)."""
        if many:
            self.sets.add(best)
        if best != self.streak:   # the set before gave way: note what it passed
            if self.streak >= 0:  # (before this set loses any block)
                self.went_first()
            self.streak = best
        self.since.clear()

    def went_first(self) -> None:
        """Note that the streak's blocks went before every other set's last as it was at
        the last drop (``since``), down to rank ``last``: per pair, whether a tie of their
        next inferences would reverse it."""
        best, last, since, keys, span = self.streak, self.last, self.since, self.keys, self.span
        pairs = self.pairs
        for t in self.live:
            if t != best:
                key = since.get(t, keys[t])
                if key < 0:   # (it had no block then)
                    continue
                if last > key % span:
                    pairs.setdefault((best, t), False)   # a tie keeps it
                else:
                    pairs[best, t] = True                # a tie reverses it

    def end(self) -> None:
        """The path ended: note the last streak."""
        if self.streak >= 0:
            self.went_first()


class _Program:
    """A path as ``Belady._serve_sets`` reads it, when every set of the stream is ``uniform``
    and it reads each block in one op (else ``sets`` is None). (Every set, not only those it
    reads: the pass orders the held blocks of a set the path does not read by ``by_use``,
    which is their order of next use only when where they sit does not depend on the path
    there.) ``sets``, the sets it reads;
    ``on_path``, per set whether it reads it; ``runs``, its ops that read blocks in runs
    reading one set each: (that set, or -1 for an op reading more than one; per op its
    index, its blocks, and per set it reads (the set, its blocks in the order they go on the
    set's stack: by block); the run's blocks in that order)."""

    __slots__ = ("flat", "on_path", "runs", "sets", "spans")

    def __init__(self, blocks: Sequence[tuple[int, ...]], layout: _Layout) -> None:
        set_of = layout._set_of
        ops = [(j, tuple(dict.fromkeys(ids))) for j, ids in enumerate(blocks) if ids]
        read = [b for _, current in ops for b in current]
        sets = {set_of[b] for b in read}
        self.on_path = [k in sets for k in range(len(layout.members))]
        self.sets: frozenset[int] | None = None
        runs: list[tuple[int, list]] = []
        if len(set(read)) == len(read) and all(layout.uniform):
            self.sets = frozenset(sets)
            for j, current in ops:
                by_set: dict[int, list[int]] = {}
                for b in sorted(current):
                    by_set.setdefault(set_of[b], []).append(b)
                op = (j, current, tuple((s, tuple(bs)) for s, bs in by_set.items()))
                s = next(iter(by_set)) if len(by_set) == 1 else -1
                if s >= 0 and runs and runs[-1][0] == s:
                    runs[-1][1].append(op)
                else:
                    runs.append((s, [op]))
        self.runs = [(s, run, tuple(b for op in run for _, bs in op[2] for b in bs))
                     for s, run in runs]
        #: the runs for ``Belady._serve_bytes`` (None: not for this path): (their set or -1,
        #: per op its index and per set it reads (the set, the positions of its first and
        #: past its last block there in the set's ``by_use``: a span, as the set's blocks
        #: are read in that order), the first and past the last position of the run)
        self.spans: list[tuple[int, list, int, int]] | None = None
        if self.sets is not None:   # (every set uniform)
            at = layout.at
            reached = [0] * len(layout.members)   # per set, the positions read so far
            ok = True
            spans = []
            for s, run, _ in self.runs:
                steps = []
                for j, _, by_set in run:
                    segs = []
                    for t, bs in by_set:
                        k = sorted(at[b] for b in bs)
                        # (a set's blocks are read in its by_use order, op after op)
                        ok = ok and k[0] == reached[t] and k[-1] - k[0] + 1 == len(k)
                        reached[t] = k[-1] + 1
                        segs.append((t, k[0], k[-1] + 1))
                    steps.append((j, tuple(segs)))
                if s >= 0:
                    spans.append((s, steps, steps[0][1][0][1], steps[-1][1][0][2]))
                else:
                    spans.append((s, steps, -1, -1))
            if ok and all(reached[t] == len(layout.members[t]) for t in self.sets):
                self.spans = spans
        #: ``spans`` as the compiled pass reads them (``_flat_program``), made when first asked
        self.flat: bytes | None = None


def _flat_layout(layout: _Layout, sets: _Sets) -> bytes:
    """A layout's sets as the compiled pass reads them (``_kernel.c``): int64s, ``[nsets,
    then per set (its block count, the offsets of its cum, ranks_at, by_use and ops_at, its
    flags: 1 positive, 2 in_block_order)]``, then those lists."""
    nsets = len(layout.by_use)
    head: list[int] = [nsets]
    body: list[int] = []
    at = 1 + 6 * nsets
    for s in range(nsets):
        m = len(layout.by_use[s])
        lists = (sets.cum[s], layout.ranks_at[s], layout.by_use[s], layout.ops_at[s])
        offsets = []
        for values in lists:
            offsets.append(at + len(body))
            body.extend(values)
        flags = (1 if sets.positive[s] else 0) | (2 if layout.in_block_order[s] else 0)
        head.extend((m, *offsets, flags))
    return np.array(head + body, dtype=np.int64).tobytes()


def _flat_program(program: _Program, nsets: int) -> bytes:
    """A program's ``spans`` as the compiled pass reads them: int64s, ``[nsets, nruns, where
    runs, steps and segs start, on_path per set]``, then per run (its set or -1, ka, kb, its
    first step, past its last), per step (op, its first seg, past its last), per seg (set,
    a, b)."""
    runs: list[int] = []
    steps: list[int] = []
    segs: list[int] = []
    for rs, run_steps, ka, kb in program.spans:  # type: ignore[union-attr]
        runs.extend((rs, ka, kb, len(steps) // 3, len(steps) // 3 + len(run_steps)))
        for j, run_segs in run_steps:
            steps.extend((j, len(segs) // 3, len(segs) // 3 + len(run_segs)))
            for seg in run_segs:
                segs.extend(seg)
    at = 5 + nsets
    head = [nsets, len(runs) // 5, at, at + len(runs), at + len(runs) + len(steps)]
    head.extend(int(x) for x in program.on_path)
    return np.array(head + runs + steps + segs, dtype=np.int64).tobytes()


class Future:
    """Next uses of every block over the whole stream, for ``belady`` (offline, exact).

    ``next_use(b, i, j)`` is the stream position (``i * OP_STRIDE + op``) of block b's first use
    after op j of inference i, or ``NEVER``; ``column(i)`` is what ``Belady.holds`` compares.

    Memory is O(sets x N), not O(blocks x N): blocks read by the same set of paths (a tree's
    backbone, one node's blocks, a leaf's) share one next-inference index ``nxt[s, i]``, the
    first inference after i whose path is in set s (``n`` if none). A dense model has one set;
    a depth-3 tree at most 15.
    """

    def __init__(self, stream: Stream) -> None:
        seq = stream.sequence
        n = int(seq.size)
        nblocks = len(stream.sizes)
        self.seq = seq
        self.n = n
        layout = _layout(stream.paths, nblocks)
        self.layout = layout
        self.ops_of, self.first, self._first = layout.ops_of, layout.first, layout._first
        self.set_of, self._set_of, self.uniform = layout.set_of, layout._set_of, layout.uniform
        self.members, self.op_of, self.by_use = layout.members, layout.op_of, layout.by_use
        self.rank, self.span, self.reads = layout.rank, layout.span, layout.reads
        nsets = len(self.members)
        # the window of nxt (``window``): inferences [_lo, _hi), and per set the first
        # inference at or after _tail_from[s] reading it (_tail[s]), found by a forward scan
        self.nxt = np.empty((nsets, 0), dtype=np.int64)
        self._lo = self._hi = 0
        self._tail = [-1] * nsets
        self._tail_from = [n + 1] * nsets
        # ``column``'s answers for inferences [_clo, _clo + _cm), made a ``COLUMNS`` chunk
        # at a time (one NumPy pass instead of one per inference): per inference and set,
        # int64, as arrays and as bytes (``Belady.met``, compiled); the lists of the last
        # inference asked
        self._clo = self._cm = 0
        self._rows: tuple[np.ndarray, np.ndarray] = (np.empty((0, nsets), np.int64),) * 2
        self.raw: tuple[bytes, bytes] = (b"", b"")
        self._last: tuple[int, tuple[list[int], list[int]]] = (-1, ([], []))
        self._uniform = layout.uniform_column
        self._at: tuple[int, tuple] = (-1, ())

    def next_use(self, b: int, i: int, j: int) -> int:
        seq = self.seq.item   # (.item: a Python int, without a NumPy scalar on the way)
        if j != NEVER_OP:
            here = self.ops_of[seq(i)].get(b)
            if here is not None:
                k = bisect_right(here, j)
                if k < len(here):
                    return i * OP_STRIDE + here[k]
        i2 = self.window(i).item(self._set_of[b], i - self._lo)
        if i2 >= self.n:
            return NEVER
        return i2 * OP_STRIDE + self._first[seq(i2)][b]

    def next_uses(self, blocks, i: int, j: int) -> list[int]:
        """``[next_use(b, i, j) for b in blocks]``, the per-inference lookups done once."""
        ops, col, paths, set_of, first = self.at(i)
        if j == NEVER_OP:
            ops = {}
        base = i * OP_STRIDE
        out = []
        for b in blocks:
            here = ops.get(b)
            if here is not None and here[-1] > j:
                out.append(base + here[bisect_right(here, j)])
            else:
                s = set_of[b]
                p2 = paths[s]
                out.append(NEVER if p2 < 0 else col[s] * OP_STRIDE + first[p2][b])
        return out

    def at(self, i: int) -> tuple[dict[int, list[int]], list[int], list[int], list[int],
                                  list[list[int]]]:
        """What ``next_use`` looks up for inference i: its path's op lists per block; per
        set, its next inference (``column(i)``) and the path taken there (-1: none); the set
        of each block, and the first op of each block on each path."""
        if self._at[0] != i:
            col, seq = self.column(i)[0], self.seq.item
            paths = [-1 if c >= self.n else seq(c) for c in col]
            self._at = (i, (self.ops_of[seq(i)], col, paths, self._set_of, self._first))
        return self._at[1]

    def window(self, i: int) -> np.ndarray:
        """``nxt`` for the ``WINDOW`` inferences from i (or the window holding i): per set
        s and inference k of the window, the first inference after k whose path reads s (n:
        none). Memory is a window's, whatever the stream's length: inferences ask in order."""
        if self._lo <= i < self._hi:
            return self.nxt
        n, seq = self.n, self.seq
        lo, hi = i, min(n, i + WINDOW)
        end = min(n, hi + 1)                    # reads at inferences lo .. end - 1 are seen
        span = np.arange(lo, end, dtype=np.int64)
        nxt = np.empty((len(self.uniform), hi - lo), dtype=np.int64)
        for k in range(len(self.uniform)):
            here = np.where(self.reads[k][seq[lo:end]], span, n)
            after = np.minimum.accumulate(here[::-1])[::-1]         # first at or after
            row = np.full(hi - lo, self._first_from(k, end), dtype=np.int64)
            row[:end - lo - 1] = np.minimum(after[1:], row[:end - lo - 1])
            nxt[k] = row
        self.nxt, self._lo, self._hi = nxt, lo, hi
        return nxt

    def _first_from(self, k: int, start: int) -> int:
        """The first inference at or after ``start`` reading set k (n: none), by a forward
        scan a window at a time that later calls with a later ``start`` reuse."""
        if self._tail_from[k] <= start <= self._tail[k]:
            return self._tail[k]
        n, reads, seq = self.n, self.reads[k], self.seq
        found = n
        for a in range(start, n, WINDOW):
            hit = np.flatnonzero(reads[seq[a:a + WINDOW]])
            if hit.size:
                found = a + int(hit[0])
                break
        self._tail_from[k], self._tail[k] = start, found
        return found

    def column(self, i: int) -> tuple[list[int], list[int]]:
        """Per set, the first inference after i reading it (``nxt[:, i]``, ``n``: none) and
        the path there (-1: none; 0 for a ``uniform`` set, where its blocks sit does not
        depend on the path), as lists (``row``)."""
        last = self._last
        if last[0] == i:
            return last[1]
        k = self.row(i)
        out = (self._rows[0][k].tolist(), self._rows[1][k].tolist())
        self._last = (i, out)
        return out

    def row(self, i: int) -> int:
        """Where inference i's ``column`` is in the chunk (``raw``: per inference, per set,
        int64). Inferences ask in order: the next ``COLUMNS`` inferences of the window are
        made at once."""
        k = i - self._clo
        if 0 <= k < self._cm:
            return k
        nxt = self.window(i)
        a = i - self._lo
        cols = nxt[:, a:a + COLUMNS]
        n = self.n
        there = np.where(cols >= n, -1,
                         np.where(self._uniform, 0, self.seq[np.minimum(cols, n - 1)]))
        rows = (np.ascontiguousarray(cols.T, dtype=np.int64),
                np.ascontiguousarray(there.T, dtype=np.int64))
        self._clo, self._cm, self._rows = i, rows[0].shape[0], rows
        self.raw = (rows[0].tobytes(), rows[1].tobytes())
        return 0


class _Layout:
    """What ``Future`` knows of a stream's paths whatever its sequence: per path which ops read
    each block, the sets of blocks read by the same paths, their order of next use; made
    once per paths object in a process (``_layout``), as the engine's plans are."""

    def __init__(self, paths: Sequence[Sequence[tuple[int, ...]]], nblocks: int) -> None:
        npaths = len(paths)
        # per path, per block: the op indices reading it (sorted lists, for bisect)
        self.ops_of: list[dict[int, list[int]]] = []
        first = [[-1] * nblocks for _ in range(npaths)]
        op_of = [-1] * nblocks
        readers: list[set[int]] = [set() for _ in range(nblocks)]
        for p, ops in enumerate(paths):
            d: dict[int, list[int]] = {}
            for j, ids in enumerate(ops):
                for b in ids:
                    d.setdefault(b, []).append(j)
            self.ops_of.append(d)
            row = first[p]
            for b, js in d.items():
                row[b] = js[0]
                readers[b].add(p)
                if js[0] > op_of[b]:
                    op_of[b] = js[0]
        self.first = np.array(first, dtype=np.int64).reshape(npaths, nblocks)
        self._first = first   # (rows of Python ints, for next_use)
        sets: dict[frozenset[int], int] = {}
        set_of = [sets.setdefault(frozenset(r), len(sets)) for r in readers]
        self.set_of = np.array(set_of, dtype=np.int64)
        self._set_of = set_of
        #: per set, whether each of its blocks is read at one op index by every path reading
        #: it (a backbone, a tree node at its depth): then where a next use lands inside its
        #: inference does not depend on which of those paths runs there
        uniform = [True] * len(sets)
        for b, r in enumerate(readers):
            if len({first[p][b] for p in r}) > 1:
                uniform[set_of[b]] = False
        self.uniform = uniform
        #: per set, its blocks
        self.members: list[list[int]] = [[] for _ in sets]
        for b, k in enumerate(set_of):
            self.members[k].append(b)
        #: per block, the op that first reads it on a path that reads it (-1: none); in a
        #: ``uniform`` set, the op of every path reading it
        self.op_of = op_of
        #: per set, its blocks nearest next use first, when the set is read again: by
        #: (``op_of``, block) in a uniform set (``Belady._serve_sets``)
        self.by_use = [sorted(m, key=lambda b: (self.op_of[b], b)) for m in self.members]
        #: (next inference, op, block) as one integer, ``col * span + rank[b]`` (``rank``: op,
        #: block; a block of a set never read again ranks by block alone, at col = n)
        self.rank = [max(0, op) * nblocks + b for b, op in enumerate(self.op_of)]
        self.span = (max(self.op_of, default=0) + 2) * max(1, nblocks)
        #: per set, the ``rank`` and ``op_of`` of its blocks in ``by_use`` order (both rise),
        #: and where each block stands in its set's ``by_use`` (``Belady._serve_bytes``)
        self.ranks_at = [[self.rank[b] for b in order] for order in self.by_use]
        self.ops_at = [[self.op_of[b] for b in order] for order in self.by_use]
        self.at = [0] * nblocks
        for order in self.by_use:
            for k, b in enumerate(order):
                self.at[b] = k
        #: per set, whether ``by_use`` is also block order (the order of a set never read
        #: again): then a prefix of it stays one when the set is never read again
        self.in_block_order = [order == sorted(order) for order in self.by_use]
        #: per set, whether each path reads it
        self.reads = np.zeros((len(sets), max(1, npaths)), dtype=bool)
        for who, k in sets.items():
            self.reads[k, list(who)] = True
        self.uniform_column = np.array(uniform, dtype=bool)[:, None]
        self.paths = paths
        #: per path, its ``_Program`` (``Belady._program``), and by the id of a compiled
        #: plan's blocks (equal to a path's, a new tuple per config compiled; kept alive here,
        #: at most ``PROGRAM_IDS``) the path they are
        self.programs: dict[int, _Program] = {}
        self.plan_paths: dict[int, tuple[Sequence, int]] = {}


#: Compiled plans' blocks a ``_Layout`` names by id (each a few hundred bytes).
PROGRAM_IDS = 64

#: Layouts of the last few paths objects met (``_layout``).
_LAYOUTS: dict[int, tuple[Sequence, int, _Layout]] = {}


def _layout(paths: Sequence[Sequence[tuple[int, ...]]], nblocks: int) -> _Layout:
    """The ``_Layout`` of ``paths`` (the same object and block count as before: taken again)."""
    hit = _LAYOUTS.get(id(paths))
    if hit is not None and hit[0] is paths and hit[1] == nblocks:
        return hit[2]
    while len(_LAYOUTS) >= 8:
        del _LAYOUTS[next(iter(_LAYOUTS))]
    layout = _Layout(paths, nblocks)
    _LAYOUTS[id(paths)] = (paths, nblocks, layout)
    return layout


#: ``Belady._watched`` once the compiled pass has made the condition (``Belady._made``).
_MADE = (-1, frozenset(), MappingProxyType({}))

#: ``sum(map(held.get, blocks, _ZEROS))``: the bytes held of each block, 0 for none.
_ZEROS = itertools.repeat(0)

#: Inferences per window of ``Future.nxt`` (per set, 8 bytes each).
WINDOW = 1 << 16
#: Inferences whose ``Future.column`` lists are made at once (per set, ~70 bytes each).
COLUMNS = 1 << 10


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
