"""Activation buffers of one traced pass: who produces and reads them, fusion, live bytes.

Public names: ``Buf``, ``Act``, ``drop``, ``fuse``, ``live_bytes``.

A ``Buf`` is one activation buffer (views of a tensor share it): its bytes, the op that produced
it and the ops that read it. ``fuse`` merges an activation op into the op before it when it is
that op's output's only reader (the two buffers become one); ``live_bytes`` sweeps the buffers
and gives, per op, the bytes of every buffer alive while it runs (from its producer to its last
reader, so a residual branch counts while the main branch runs). ``drop`` removes ops that
pass their input through as deployed (a folded BatchNorm): their output buffer joins their
input's.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Act", "Buf", "drop", "fuse", "live_bytes"]


@dataclass(slots=True, eq=False)
class Buf:
    """An activation buffer: bytes, producing op, readers (op indices); union-find parent."""

    nbytes: int
    first: int
    last: int
    readers: list[int] = field(default_factory=list)
    parent: Buf | None = None

    def root(self) -> Buf:
        b = self
        while b.parent is not None:
            b = b.parent
        return b


@dataclass(slots=True)
class Act:
    """An activation tensor: its own bytes and the buffer it lives in (views share it)."""

    nbytes: int
    buf: Buf


def fuse(raws: Sequence[Any]) -> set[int]:
    """Fuse act ops that are the only reader of the previous op's output (buffers merged in
    place); returns the indices of the fused ops. ``raws`` have ``kind``, ``ins`` and ``outs``
    (lists of ``Act``)."""
    fused: set[int] = set()
    for i in range(1, len(raws)):
        r, prev = raws[i], raws[i - 1]
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


def drop(raws: Sequence[Any], bufs: Sequence[Buf], dropped: set[int]) -> list[Any]:
    """``raws`` without the ops ``dropped`` (each with one input and one output): a dropped
    op's output buffer joins its input's, whose readers become the dropped op's readers, and
    the op indices in ``bufs`` are renumbered."""
    for j in dropped:
        src, dst = raws[j].ins[0].buf.root(), raws[j].outs[0].buf
        dst.parent = src
        src.readers = [*(k for k in src.readers if k != j), *dst.readers]
    gone = sorted(dropped)

    def index(i: int) -> int:
        return i - bisect.bisect_left(gone, i)

    for buf in bufs:
        buf.first, buf.last = index(buf.first), index(buf.last)
        buf.readers = [index(k) for k in buf.readers]
    return [r for i, r in enumerate(raws) if i not in dropped]


def live_bytes(bufs: Sequence[Buf], n: int) -> np.ndarray:
    """Bytes of the root buffers alive at each of ``n`` ops (int64 array of length ``n``)."""
    delta = np.zeros(n + 1, dtype=np.int64)
    for buf in bufs:
        if buf.parent is not None:
            continue
        last = max([buf.last, *buf.readers])
        delta[buf.first] += buf.nbytes
        delta[min(last, n - 1) + 1] -= buf.nbytes
    return np.cumsum(delta)[:n]
