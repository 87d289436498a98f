"""Keeping large activation buffers in the C heap while a stream of batches runs.

Public names: ``heap_buffers``, ``glibc``.

Why: PyTorch's CPU tensors come from ``malloc``. glibc serves a request above its mmap threshold
(128 KiB, rising with use to at most 32 MiB) with a fresh ``mmap`` and returns it with
``munmap`` on free, and it gives the top of the heap back to the kernel once more than the trim
threshold is free there. A batch of 64 ImageNet inputs through a ResNet has activations of
50-200 MB, above either limit, so every op maps its output, the kernel zero-fills it page by
page on first touch (a 205 MB buffer is 50,000 minor page faults) and unmaps it a moment later.
Routing 1,000 images through sigmab_r50 spent 74-83 s of its 182 s in the kernel that way
(42.7 M minor faults, issue 12). With both thresholds raised, freed buffers stay in the heap and
the next op (and the next batch, of the same shapes) reuses them: routing 256 images through
sigmab_r50 in one scope takes 0.4 M minor faults and 1 s of system time instead of 10.9 M and
29 s, and half the CPU time in all (``benchmarks/bench_route.py``).

The price is memory. A heap serving blocks of many sizes fragments (a freed 205 MB block is
split for smaller requests, the next 205 MB request extends the heap), so peak RSS rises:
sigmab_r50 1.3 -> 1.8-2.3 GiB, creeping up over a stream's first batches (1.29 GiB after one,
2.16 GiB after twelve), sigmab_pn2 1.9 -> 2.1-2.2 GiB; the CIFAR-size tree is unchanged.
Lower trim thresholds or a ``malloc_trim`` between batches bring the faults back without
lowering the peak.

``heap_buffers()`` is a context manager that raises both thresholds for its body and, on exit,
puts glibc's defaults back and hands the freed memory to the kernel (``malloc_trim``). Off glibc
(macOS, musl, Windows) it does nothing. glibc cannot report its current thresholds, so "back"
means the documented defaults (128 KiB each), with the dynamic rise of the mmap threshold off
for the rest of the process (glibc turns it off whenever a threshold is set): later large
allocations are mapped afresh, as a fresh process maps them before its first free.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading
from collections.abc import Iterator

__all__ = ["glibc", "heap_buffers"]

#: ``mallopt`` parameters of glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's default for both thresholds, bytes.
DEFAULT_THRESHOLD_BYTES = 128 * 1024
#: Both thresholds inside ``heap_buffers``, bytes: the largest ``int`` (``mallopt``'s argument).
MAX_THRESHOLD_BYTES = 2**31 - 1


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (has ``mallopt``, ``malloc_trim`` and
    ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the symbols this process has loaded: its C library
        for name in ("mallopt", "malloc_trim", "gnu_get_libc_version"):
            getattr(libc, name)
    except (OSError, AttributeError):  # musl and others have no gnu_get_libc_version
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


_lock = threading.Lock()
_depth = 0  # heap_buffers scopes open in this process


@contextlib.contextmanager
def heap_buffers() -> Iterator[bool]:
    """Within the body, glibc serves buffers up to ``MAX_THRESHOLD_BYTES`` from the heap and
    keeps up to that much freed memory at its top; yields whether the settings are on (False
    off glibc).

    Scopes nest: only the outermost one sets and restores, so a stream of batches wrapped in
    one scope reuses the same memory from batch to batch, each ``SigmaTree.route`` call inside
    it opening a scope of its own notwithstanding.

    >>> with heap_buffers() as on:
    ...     on == (glibc() is not None)
    True
    """
    global _depth
    libc = glibc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth += 1
        if _depth == 1:
            libc.mallopt(M_MMAP_THRESHOLD, MAX_THRESHOLD_BYTES)
            libc.mallopt(M_TRIM_THRESHOLD, MAX_THRESHOLD_BYTES)
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_THRESHOLD_BYTES)
                libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_THRESHOLD_BYTES)
                libc.malloc_trim(0)
