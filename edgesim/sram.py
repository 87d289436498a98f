"""Weight residency in on-chip SRAM: which weight bytes stay between ops and between inferences.

Public names: ``POLICIES``, ``Residency``, ``LRU``, ``Pinned``, ``Belady``, ``make_policy``,
``Served``.

A policy sees the ops of a stream in order. For each op it is asked to ``serve`` the op's weight
blocks (indices into a size array) and answers how many bytes had to come from off-chip and be
kept, how many came from off-chip and were not kept (streamed in tiles), and which resident blocks
lost bytes to make room. Decisions depend only on the access sequence, so the bytes an inference
moves are independent of timing; the engine (``edgesim.engine``) then schedules the transfers.

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
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["LRU", "POLICIES", "Belady", "Pinned", "Residency", "Served", "make_policy"]

POLICIES = ("lru", "pinned", "belady")

#: A next-use position larger than any real one.
NEVER = np.iinfo(np.int64).max


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


class LRU(Residency):
    """Least recently used, whole blocks."""

    name = "lru"

    def __init__(self, sizes: Sequence[int], capacity: int) -> None:
        super().__init__(sizes, capacity)
        self._order: OrderedDict[int, None] = OrderedDict()
        self._used = 0

    def state(self) -> Hashable:
        return tuple(self._order)

    def restore(self, state: Hashable) -> None:
        self._order = OrderedDict.fromkeys(state)  # type: ignore[arg-type]
        self._used = sum(self.sizes[b] for b in self._order)

    def resident_bytes(self) -> int:
        return self._used

    def resident_set(self) -> frozenset[int]:
        return frozenset(self._order)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        order, sizes = self._order, self.sizes
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
    """A static allocation chosen offline from use frequencies."""

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


class Belady(Residency):
    """Belady's MIN at byte granularity with bypass (offline optimal).

    ``next_use(block, inference, op)`` gives the stream position of the block's next use after
    (inference, op), or ``NEVER``; positions are comparable integers.
    """

    name = "belady"

    def __init__(self, sizes: Sequence[int], capacity: int, next_use) -> None:
        super().__init__(sizes, capacity)
        self._next_use = next_use
        self._held: dict[int, int] = {}       # block -> resident bytes
        self._nu: dict[int, int] = {}         # block -> its next use position

    def state(self) -> Hashable:
        return tuple(sorted(self._held.items()))

    def restore(self, state: Hashable) -> None:
        self._held = dict(state)  # type: ignore[arg-type]
        self._nu = {}

    def resident_bytes(self) -> int:
        return sum(self._held.values())

    def resident_set(self) -> frozenset[int]:
        return frozenset(b for b, n in self._held.items() if n == self.sizes[b])

    def held_blocks(self) -> set[int]:
        """Blocks with any bytes on chip."""
        return set(self._held)

    def serve(self, blocks: tuple[int, ...], inference: int, op: int) -> Served:
        held, sizes, nu = self._held, self.sizes, self._nu
        current = dict.fromkeys(blocks)
        before = {b: held.get(b, 0) for b in current}
        fetched = 0
        for b in current:
            fetched += sizes[b] - before[b]
            held[b] = sizes[b]
            nu[b] = self._next_use(b, inference, op)
        total = 0
        for b, n in held.items():
            total += n
            if b not in nu:  # resident since an earlier inference (after a restore)
                nu[b] = self._next_use(b, inference, op)
        evicted: list[int] = []
        if total > self.capacity:
            # drop the bytes used farthest in the future (ties: higher block index first)
            for b in sorted(held, key=lambda x: (nu[x], x), reverse=True):
                drop = min(held[b], total - self.capacity)
                held[b] -= drop
                total -= drop
                if b not in current:
                    evicted.append(b)
                if held[b] == 0:
                    del held[b]
                    del nu[b]
                if total <= self.capacity:
                    break
        kept = sum(max(0, held.get(b, 0) - before[b]) for b in current)
        return Served(kept, fetched - kept, tuple(evicted))


#: Positions are inference * OP_STRIDE + op index.
OP_STRIDE = 1 << 20
#: ``op`` value meaning "after the last op of the inference".
NEVER_OP = OP_STRIDE - 1


def make_policy(name: str, sizes: Sequence[int], capacity: int, *, priority=None,
                next_use=None) -> Residency:
    """Build a residency policy by name."""
    if name == "lru":
        return LRU(sizes, capacity)
    if name == "pinned":
        return Pinned(sizes, capacity, priority if priority is not None else range(len(sizes)))
    if name == "belady":
        if next_use is None:
            raise ValueError("belady needs next_use")
        return Belady(sizes, capacity, next_use)
    raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(POLICIES)}")
