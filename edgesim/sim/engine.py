"""The discrete-event engine: one stream of inferences of a Workload on a HardwareConfig.

Public names: ``simulate``, ``PREFETCH_MODES``, ``Part``.

``simulate(hw, workload)`` runs every input of ``workload.sequence`` in order, SRAM state kept
between inferences (the first is cold), and returns a ``Result`` (``edgesim.sim.result``) with
one row per inference and, on request, one row per op.

The steps, in order:

1. ``resolve`` the workload for the hardware (encodings and activation bytes as it decodes them),
   derive what the simulator computes with once (``Machine``) and compile every path
   (``edgesim.sim.plan``).
2. Build the residency policy for the stream (``edgesim.sim.residency``; offline preparation
   for ``pinned`` and ``belady`` happens here).
3. Per inference (integer time in picoseconds, one simpy process each for the off-chip channel
   and for the compute array, one event per transfer and per op):

   a. ``Residency.serve_path``: the policy decides, op by op, which weight bytes must come
      from off-chip and whether they stay. These bytes depend only on the access sequence.
   b. ``_transfers``: the DMA queue in op order. Kept bytes for op j may start once op
      ``j - depth - 1`` has finished (``depth`` = ``hw.prefetch_depth``; prefetch "none" is
      depth 0), once every op that still used the bytes they displace has finished, and, in a
      routed model, once the router that gates op j has decided (unless
      ``prefetch="speculative"``). Streamed bytes (weights that are not kept, and activation
      spills) start when op j-1 has finished and overlap op j's compute, tile by tile. An op
      whose live activations exceed the activation reserve spills the part of its output that
      does not fit: written out once and read back once (``act_dram_bytes``, never mixed into
      weight bytes).
   c. ``_timeline``: the channel moves each transfer in queue order (``latency`` plus the bytes
      rounded up to whole bursts at the bandwidth); the compute process runs the ops in order:
      op j starts when op j-1 is done, takes its compiled cycles, and ends no earlier than its
      weight bytes (kept or streamed) and activation reads have arrived: weights enter the
      array tile by tile as they come, so an op that keeps its weights never waits longer
      than one that streams them. Time the array waits is a stall.
   d. ``_inference_row`` and ``_layer_rows``: the counts and times become named rows, energy
      (``edgesim.sim.energy``) computed from the counts.

Identical situations give identical inferences, so a repeated one is taken from a memo instead
of being run again: the policy's state and the path, and for ``belady`` a condition on the
future that the first run's evictions depended on (``Residency.condition``, tested at the new
input by ``Residency.holds``). An inference that is run again gets its timeline from a second
memo when its per-op bytes and waits were seen before. ``memo=False`` runs every inference
event by event; the tests check both give the same table.

Two steps have a faster form that the memo-on run takes, each the same answer as the
reference the memo-off run takes (and the tests compare): the policy's own ``serve_path``
(``Belady`` serves a routed tree a set of blocks at a time, not a heap of blocks op by op),
and ``_schedule``, the timeline's max-plus recurrence in one pass, for the SimPy processes of
``_timeline``. An inference the memo has not seen costs ~0.15 ms instead of ~0.7 ms (sigmab_r50,
belady at 16 MiB), what a routed stream meets most at 1,000 inputs (issue 22).

>>> from edgesim.testing import tiny_config, tiny_workload
>>> r = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=3))
>>> [row.weight_dram_bytes for row in r.rows]
[3000, 0, 0]
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import accumulate, compress, islice
from operator import add, or_
from types import MappingProxyType
from typing import Any

import numpy as np

from edgesim.encodings import resolve
from edgesim.sim import des
from edgesim.sim.bound import op_bounds, stall_bounds, wait_bound
from edgesim.sim.energy import energy_parts, layer_energy
from edgesim.sim.plan import PS_PER_S, Machine, PathPlan, compile_paths, path_blocks
from edgesim.sim.residency import POLICIES, Residency, Stream, _Hashed, _kernel, make_policy
from edgesim.sim.result import InferenceRow, LayerRow, Result, Summary
from edgesim.sim.tiling import TileError
from edgesim.workload import Workload

__all__ = ["PREFETCH_MODES", "Part", "simulate"]

#: The prefetch modes by name, each with what it does (CLI, sweep and tests read this table).
PREFETCH_MODES: Mapping[str, str] = MappingProxyType({
    "next": "fetch kept weights up to prefetch.depth ops ahead, while earlier ops compute",
    "none": "fetch an op's weights only after the op before it has ended",
    "speculative": "next, and a routed model fetches the most frequent path's gated weights "
                   "before its routers decide (a wrong guess costs spec_wasted_bytes)",
})


#: Most situations the memo keeps (each holds an inference and a policy state, ~KBs): a
#: stream whose situations never repeat (belady over a random path sequence) would otherwise
#: grow it by one entry per input.
MEMO_LIMIT = 1 << 14
#: Most conditions on the future (``Residency.condition``) the memo keeps per policy state.
MEMO_PER_STATE = 64


class Part(IntEnum):
    """What a transfer carries; it decides which event of its op the transfer completes."""

    KEPT = 0        # weights that stay on chip: the op may not start before they arrive
    STREAMED = 1    # weights not kept, and activation spills: they overlap the op's compute
    GUESS = 2       # a wrong speculative guess: moved for nothing, nothing waits for it


_KEPT, _STREAMED = Part.KEPT, Part.STREAMED


class _Channel:
    """Transfer times of the off-chip memories, in integer picoseconds, memoised.

    ``ports[k]`` is the port of memory k: each port is one FIFO server (a process taking its
    transfers in queue order), so transfers on one port queue and on different ports overlap.
    """

    __slots__ = ("cache", "flat", "memories", "port_of", "ports", "weights_mem")

    def __init__(self, m: Machine) -> None:
        self.memories = m.memories
        self.weights_mem = m.weights_mem
        self.ports = len(m.ports)
        self.port_of = [mm.port for mm in m.memories]
        self.cache: dict[tuple[int, bool, int], int] = {}
        # what ``_kernel.run`` reads to take ``transfer_ps`` itself: per memory its port,
        # read and write latency, burst and read and write rate
        self.flat = np.array(
            [(mm.port, mm.latency_ps, mm.write_latency_ps, mm.burst_bytes,
              mm.read_bytes_per_s or mm.bytes_per_s, mm.write_bytes_per_s or mm.bytes_per_s)
             for mm in m.memories], dtype=np.int64).tobytes()

    def transfer_ps(self, nbytes: int, mem: int = 0, write: bool = False) -> int:
        """Read (or write) latency plus the bytes rounded up to whole bursts at what one
        stream of reads (writes) gets of the memory's bandwidth (``Memory.read_bytes_per_s``;
        ceil, ps)."""
        key = (mem, write, nbytes)
        t = self.cache.get(key)
        if t is None:
            mm = self.memories[mem]
            moved = -(-nbytes // mm.burst_bytes) * mm.burst_bytes
            lat = mm.write_latency_ps if write else mm.latency_ps
            rate = mm.write_bytes_per_s if write else mm.read_bytes_per_s
            t = self.cache[key] = lat + (-(-moved * PS_PER_S // (rate or mm.bytes_per_s)))
        return t


@dataclass(slots=True)
class _Inference:
    """What one inference cost, independent of its position in the stream (memoised).

    ``kept``/``streamed`` are per-op weight bytes; ``timings`` (per op ``(dma_start,
    dma_end, compute_start, compute_end)`` in ps, dma ``None`` if the op moved nothing) only
    when per-op rows are asked for.
    """

    weight_bytes: int
    stream_bytes: int
    wasted_bytes: int
    refetch_bytes: int
    latency_ps: int
    kept: list[int] | None              # per op (None: the compiled timeline's, no per-op rows)
    streamed: list[int] | None          # per op, re-fetches included
    refetch: list[int] | None
    timings: list[tuple[int | None, int | None, int, int]] | None
    bounds: list[str] | None            # per op (``sim.bound``), with per-op timings
    bound: str                          # where most of the time went
    row: InferenceRow | None = None


# ---------------------------------------------------------------------------------------------
# one inference
# ---------------------------------------------------------------------------------------------

_Transfer = tuple[int, Part, int, int, int, bool]


class _Waits:
    """One event per op, made when a process first waits for it (``event(j)``) and fired
    when the op gets there (``succeed(j)``); ``done[j]``: it has got there."""

    __slots__ = ("done", "env", "events")

    def __init__(self, env, done: list[bool]) -> None:
        self.env = env
        self.done = done
        self.events: dict[int, des.Event] = {}

    def event(self, j: int) -> des.Event:
        ev = self.events.get(j)
        if ev is None:
            ev = self.events[j] = des.Event(self.env)
        return ev

    def succeed(self, j: int) -> None:
        self.done[j] = True
        ev = self.events.pop(j, None)
        if ev is not None:
            ev.succeed()


@dataclass(slots=True)
class _Derived:
    """What ``_run_one`` reads of a compiled path in every inference, derived once per path
    and weight memory (``_per_plan``, kept in ``PathPlan.derived``): per op the activation
    bytes it reads from the weight memory (they travel with its streamed weights) and its
    other activation transfers (memory, write, bytes); the input stripes past the first its
    streamed weights pass over again (None: no op has any); the ops with activation
    transfers; the first op a router gates (-1: none); the compute time of the path per
    unit (``sim.bound``) and the path's bound when no op waits (``calm``); and all of it for
    the compiled timeline (``_flat_plan``, made when first asked)."""

    same: list[int]
    other: list[tuple]
    again: list[int] | None
    acts: list[int]
    first_gated: int
    unit_time: dict[str, int]
    calm: str
    flat: bytes | None = None
    traffic: list[tuple[int, int, int]] | None = None   # (``_inference_row``)


def _per_plan(plan: PathPlan, wmem: int) -> _Derived:
    """``_Derived`` of ``plan`` for weights in memory ``wmem``, made once and kept with the
    plan (``PathPlan.derived``: no cache of its own to outlive the plans)."""
    hit = plan.derived.get(wmem)
    if hit is not None:
        return hit
    same = [sum(nb for mem, write, nb in parts if mem == wmem and not write)
            for parts in plan.act_parts]
    other = [tuple(p for p in parts if p[1] or p[0] != wmem) for parts in plan.act_parts]
    again: list[int] | None = [t.input_stripes - 1 for t in plan.tiling]
    if not any(again):  # type: ignore[arg-type]
        again = None
    unit_time: dict[str, int] = {}
    for unit, c in zip(plan.units, plan.compute_ps, strict=True):
        unit_time[unit] = unit_time.get(unit, 0) + c
    derived = plan.derived[wmem] = _Derived(
        same, other, again,
        [j for j, (sb, o) in enumerate(zip(same, other, strict=True)) if sb or o],
        next((j for j, g in enumerate(plan.gate) if g >= 0), -1), unit_time,
        wait_bound(plan.units, unit_time, plan.compute_ps, (), ()))
    return derived


def _flat_plan(plan: PathPlan, d: _Derived) -> bytes:
    """What ``_kernel.run`` reads of a path (the layout is in ``_kernel.c``): per op its
    compute time, gate, activation bytes riding with its streamed weights, input stripes
    passed over again and its other activation transfers, as int64."""
    n = len(plan.gate)
    head, other = [n, d.first_gated], []
    again = d.again or [0] * n
    for j in range(n):
        start = len(other) // 3
        for mem, write, nbytes in d.other[j]:
            other += (mem, int(write), nbytes)
        head += (plan.compute_ps[j], plan.gate[j], d.same[j], again[j], start, len(other) // 3)
    return np.array(head + other, dtype=np.int64).tobytes()


def _transfers(plan: PathPlan, kept: list[int], streamed: list[int], wait: list[int],
               wasted: int, depth: int, speculative: bool, wmem: int,
               ops: Iterable[int] | None = None) -> list[_Transfer]:
    """The DMA queue in op order: (op, part, bytes, op whose end it waits for or -1, memory,
    is a write). Weights come from memory ``wmem``; an op's streamed weights and the
    activations it reads from the same memory are one transfer. ``ops``: only these ops (in
    order) have transfers, the others are passed over (None: look at every op)."""
    queue: list[_Transfer] = []
    append = queue.append
    d = _per_plan(plan, wmem)
    same, other, gates = d.same, d.other, plan.gate
    for j in range(len(gates)) if ops is None else ops:
        gate = gates[j]
        g = -1 if speculative else gate
        if wasted and j == d.first_gated:
            append((j, Part.GUESS, wasted, max(-1, j - depth - 1, gate - 1), wmem, False))
        if kept[j]:
            append((j, _KEPT, kept[j], max(j - depth - 1, wait[j], g), wmem, False))
        s = streamed[j] + same[j]
        if s:
            append((j, _STREAMED, s, max(j - 1, wait[j], g), wmem, False))
        for mem, write, nbytes in other[j]:
            append((j, _STREAMED, nbytes, j - 1, mem, write))
    return queue


def _timeline(channel: _Channel, plan: PathPlan, queue: list[_Transfer],
              kept: list[int], streamed: list[int], per_layer: bool):
    """Run one DMA process per port and the compute process; per-op end times, and per-op
    timings if asked.

    What a process waits for is a SimPy event of one op: its kept weights have arrived
    (``kept_ev``), its streamed transfers are done (``stream_ev``), it has ended (``end_ev``).
    An event is made only when a process finds the op not there yet (``_Waits``): most ops
    are waited for by nobody, and an event for each would cost the memo-off engine ~10 %.
    The compute process ends op j once its compute time has passed and both of its events
    have fired (``env.timeout(c) & kept & streamed`` as one condition event gives the same
    times, ~40 % slower).
    """
    n = len(plan.blocks)
    env = des.Environment()
    pending = [0] * n                  # streamed transfers of op j not yet done
    for t in queue:
        if t[1] == _STREAMED:
            pending[t[0]] += 1
    kept_ev = _Waits(env, [not k for k in kept])
    stream_ev = _Waits(env, [not p for p in pending])
    end_ev = _Waits(env, [False] * n)
    ended = [-1] * n
    dma_times: dict[int, list[int]] = {}
    comp_times: list[tuple[int, int]] = []
    port_of = channel.port_of

    def dma(port: int):
        for j, part, nbytes, cond, mem, write in queue:
            if port_of[mem] != port:
                continue
            if cond >= 0 and not end_ev.done[cond]:
                yield end_ev.event(cond)
            start = env.now
            yield env.timeout(channel.transfer_ps(nbytes, mem, write))
            if per_layer:
                t = dma_times.setdefault(j, [start, env.now])
                t[0] = min(t[0], start)
                t[1] = max(t[1], env.now)
            if part == _KEPT:
                kept_ev.succeed(j)
            elif part == _STREAMED:
                pending[j] -= 1
                if not pending[j]:
                    stream_ev.succeed(j)

    def compute():
        for j in range(n):
            start = env.now
            # weights arrive tile by tile while the op computes, kept or not: an op ends
            # when its compute and its last byte are done (so more SRAM never adds a wait)
            if plan.compute_ps[j]:
                yield env.timeout(plan.compute_ps[j])
            if not kept_ev.done[j]:
                yield kept_ev.event(j)
            if not stream_ev.done[j]:
                yield stream_ev.event(j)
            ended[j] = env.now
            if per_layer:
                comp_times.append((start, env.now))
            end_ev.succeed(j)

    used = {port_of[t[4]] for t in queue}
    for port in sorted(used):
        env.process(dma(port))
    env.process(compute())
    env.run()
    timings = None
    if per_layer:
        timings = [(*dma_times.get(j, (None, None)), *comp_times[j]) for j in range(n)]
    return ended, timings


def _schedule(channel: _Channel, plan: PathPlan, queue: list[_Transfer], per_layer: bool):
    """``_timeline``'s times without the event loop: the same answer, in one pass in op order.

    The processes of ``_timeline`` are a max-plus recurrence: a port serves its transfers in
    queue order, so transfer k starts at the later of its port's last end and the end of the
    op it waits for (``cond``), and ends ``transfer_ps`` later; op j ends at the latest of the
    previous op's end plus its compute time, its kept bytes' arrival and its last streamed
    transfer's. The queue is in op order and every transfer of op j waits for an op before j
    (``_transfers``), so taking the ops in order finds every time it needs already known; an
    op without transfers ends its compute time after the one before (a running sum, taken a
    stretch at a time). The engine runs this with the memo on; ``memo=False`` runs
    ``_timeline`` event by event, and the tests check both give the same rows
    (``tests/test_engine.py``)."""
    n = len(plan.blocks)
    compute_ps = plan.compute_ps
    port_of, cache, transfer_ps = channel.port_of, channel.cache, channel.transfer_ps
    guess = Part.GUESS
    free = [0] * channel.ports          # when each port ends its last transfer
    ended: list[int] = []
    dma: dict[int, list[int]] = {}
    prev = 0
    op = -1              # the op whose transfers are being taken
    arrive = 0           # the last of its kept and streamed transfers
    for j, part, nbytes, cond, mem, write in queue:
        if j != op:
            if op >= 0:   # (the op before ends)
                end = prev + compute_ps[op]
                prev = arrive if arrive > end else end
                ended.append(prev)
            if j > len(ended):   # the ops before j move nothing: one after the other
                ended.extend(islice(accumulate(compute_ps[len(ended):j], initial=prev), 1,
                                    None))
                prev = ended[-1]
            op, arrive = j, 0
        port = port_of[mem]
        start = free[port]
        if cond >= 0 and ended[cond] > start:
            start = ended[cond]
        t = cache.get((mem, write, nbytes))
        end = free[port] = start + (transfer_ps(nbytes, mem, write) if t is None else t)
        if end > arrive and part != guess:
            arrive = end
        if per_layer:
            span = dma.setdefault(j, [start, end])
            span[0] = min(span[0], start)
            span[1] = max(span[1], end)
    if op >= 0:
        end = prev + compute_ps[op]
        prev = arrive if arrive > end else end
        ended.append(prev)
    if len(ended) < n:
        ended.extend(islice(accumulate(compute_ps[len(ended):], initial=prev), 1, None))
    timings = None
    if per_layer:   # (an op computes from the previous op's end)
        timings = [(*dma.get(j, (None, None)), start, end)
                   for j, (start, end) in enumerate(zip([0, *ended[:-1]], ended, strict=True))]
    return ended, timings


def _run_one(channel: _Channel, plan: PathPlan, policy: Residency, i: int, depth: int,
             speculative: bool, wasted: int, per_layer: bool,
             runs: dict[Hashable, Any] | None = None) -> _Inference:
    """Inference i on path ``plan``: serve, queue the transfers, run the timeline. ``runs``
    (when given) memoises the last two by what they depend on: the path and, per op, the
    kept and streamed bytes and the op the kept bytes wait for, and the wasted bytes.

    With the memo on, no per-op rows and the compiled kernel, the policy's compiled pass
    hands those per-op values over as one int64 vector (``serve_vec``), which keys ``runs``
    (under its digest, ``_run_vec``) and is what the compiled timeline reads (``_kernel.run``): no
    list or tuple is made per op. The inference then keeps no per-op values (only per-op
    rows read them)."""
    compiled = runs is not None and _kernel is not None and not per_layer
    if compiled:
        vec = policy.serve_vec(plan.blocks, i)
        if vec is not None:
            return _run_vec(channel, plan, vec, wasted, depth, speculative, runs)  # type: ignore
    # (the memo off: op by op, event by event; on: the policy's own pass over the path)
    serve = Residency.serve_path if runs is None else type(policy).serve_path
    kept, streamed, wait = serve(policy, plan.blocks, i)
    key = None
    if runs is not None:
        key = (id(plan), tuple(kept), tuple(streamed), tuple(wait), wasted)
        inf = runs.get(key)
        if inf is not None:
            return inf
    inf = None
    if compiled:
        try:
            vec = array("q", (*kept, *streamed, *wait)).tobytes()
        except OverflowError:   # (past 64 bits)
            pass
        else:
            inf = _compiled_timeline(channel, plan, vec, wasted, depth, speculative)
    if inf is None:
        inf = _python_timeline(channel, plan, kept, streamed, wait, wasted, depth, speculative,
                               per_layer, runs is None)
    if key is not None:
        _keep(runs, key, inf)  # type: ignore[arg-type]
    return inf


def _run_vec(channel: _Channel, plan: PathPlan, vec: bytes, wasted: int, depth: int,
             speculative: bool, runs: dict[Hashable, list]) -> _Inference:
    """The inference of a policy's vector (``serve_vec``) on ``plan``: from ``runs`` when
    met before, else by the compiled timeline (the Python one past 64 bits). ``runs`` holds
    the vectors under their digest (``_kernel.digest``: 0.3 us for a path of 131 ops, the
    vector's own hash 0.7 us), each compared whole."""
    key = (id(plan), _kernel.digest(vec), wasted)
    met = runs.get(key)
    if met is not None:
        for v, inf in met:
            if v == vec:
                return inf
    inf = _compiled_timeline(channel, plan, vec, wasted, depth, speculative)
    if inf is None:   # (past 64 bits: the Python timeline, from lists)
        kept, streamed, wait = _lists(vec)
        inf = _python_timeline(channel, plan, kept, streamed, wait, wasted, depth, speculative,
                               False, False)
    if met is None:
        _keep(runs, key, [(vec, inf)])
    else:
        met.append((vec, inf))
    return inf


def _keep(runs: dict[Hashable, Any], key: Hashable, inf: Any) -> None:
    """``runs[key] = inf``, ``runs`` started over at ``MEMO_LIMIT`` entries."""
    if len(runs) >= MEMO_LIMIT:
        runs.clear()
    runs[key] = inf


def _lists(vec: bytes) -> tuple[list[int], list[int], list[int]]:
    """The kept, streamed and wait per op of a policy's vector (``serve_vec``)."""
    values = array("q", vec).tolist()
    n = len(values) // 3
    return values[:n], values[n:2 * n], values[2 * n:]


def _compiled_timeline(channel: _Channel, plan: PathPlan, vec: bytes, wasted: int, depth: int,
                       speculative: bool) -> _Inference | None:
    """The inference from the compiled timeline (``_kernel.run``: queue, recurrence and waits
    in one pass over the ops), or None when a time or a byte count passes 64 bits. It keeps
    no per-op values: per-op rows, which read them, take the Python timeline."""
    d = _per_plan(plan, channel.weights_mem)
    if d.flat is None:
        d.flat = _flat_plan(plan, d)
    try:
        latency, kept_bytes, streamed_bytes, refetch_bytes, waits = _kernel.run(
            d.flat, vec, wasted, depth, speculative, channel.weights_mem, channel.flat,
            channel.ports)
    except OverflowError:
        return None
    bound = d.calm if not waits else wait_bound(plan.units, d.unit_time, plan.compute_ps,
                                                plan.spill, waits)
    return _Inference(kept_bytes + streamed_bytes + wasted, streamed_bytes, wasted,
                      refetch_bytes, latency, None, None, None, None, None, bound)


def _python_timeline(channel: _Channel, plan: PathPlan, kept: list[int], streamed: list[int],
                     wait: list[int], wasted: int, depth: int, speculative: bool,
                     per_layer: bool, events: bool) -> _Inference:
    """The inference from the Python timeline, with its per-op values: event by event
    (``events``: the memo off), else by ``_schedule`` over the ops that move something (only
    they can wait)."""
    d = _per_plan(plan, channel.weights_mem)
    # input outer: the streamed weights pass over every input stripe (``sim.tiling``)
    if d.again is None:
        refetch = [0] * len(streamed)
    else:
        refetch = [x * s for x, s in zip(d.again, streamed, strict=True)]
        streamed = [s + r for s, r in zip(streamed, refetch, strict=True)]
    if events:
        queue = _transfers(plan, kept, streamed, wait, wasted, depth, speculative,
                           channel.weights_mem)
        ended, timings = _timeline(channel, plan, queue, kept, streamed, per_layer)
        bounds, bound = op_bounds(plan.units, plan.compute_ps, ended,
                                  list(map(add, kept, streamed)), plan.spill)
    else:
        moving = set(compress(range(len(kept)), map(or_, kept, streamed)))
        moving.update(d.acts)
        if wasted and d.first_gated >= 0:
            moving.add(d.first_gated)
        ops = sorted(moving)
        queue = _transfers(plan, kept, streamed, wait, wasted, depth, speculative,
                           channel.weights_mem, ops)
        ended, timings = _schedule(channel, plan, queue, per_layer)
        bounds, bound = stall_bounds(plan.units, d.unit_time, plan.compute_ps, ended,
                                     kept, streamed, plan.spill, ops)
    streamed_bytes = sum(streamed)
    return _Inference(sum(kept) + streamed_bytes + wasted, streamed_bytes, wasted, sum(refetch),
                      ended[-1] if ended else 0, kept, streamed, refetch, timings, bounds,
                      bound)


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------

def _inference_row(i: int, plan: PathPlan, inf: _Inference, m: Machine) -> InferenceRow:
    """The row of inference i: its counts, cycles, latency and energy parts."""
    cycles = -(-inf.latency_ps * m.clock_hz // PS_PER_S)
    cycles = max(cycles, plan.compute_cycles)
    latency_s = inf.latency_ps * 1e-12
    wb = inf.weight_bytes
    # activations moved off-chip are read out of SRAM or written into it (``sram_*_fixed``)
    sram_read = plan.sram_read_fixed
    sram_write = plan.sram_write_fixed + wb - inf.wasted_bytes
    d = _per_plan(plan, m.weights_mem)
    if d.traffic is None:   # per memory in order, its activation bytes read and written
        traffic = {mem: (r, w) for mem, r, w in plan.act_traffic}
        traffic.setdefault(m.weights_mem, (0, 0))
        d.traffic = [(k, r, w) for k, (r, w) in sorted(traffic.items())]
    wm, mems = m.weights_mem, m.memories   # (and the weights read from theirs)
    e = energy_parts(m.hw, plan.energy_mac_j, plan.energy_array_j, plan.energy_decode_j,
                     sram_read, sram_write, latency_s,
                     [(r + wb if k == wm else r, w, mems[k]) for k, r, w in d.traffic])
    return _new_row(InferenceRow, (
        i, plan.name, wb, inf.stream_bytes, inf.wasted_bytes, inf.refetch_bytes,
        plan.act_dram_bytes, plan.act_reread_bytes, sram_read, sram_write, plan.macs,
        plan.compute_cycles, cycles - plan.compute_cycles, cycles, latency_s, *e[:7],
        inf.bound))


def _order(t) -> str:
    """A tiling as a report shows it: ``once``, ``weights_outer/3``, ``input_outer/2``."""
    if t.order == "once":
        return "once"
    return f"{t.order}/{t.weight_tiles if t.order == 'weights_outer' else t.input_stripes}"


def _layer_rows(i: int, plan: PathPlan, inf: _Inference, m: Machine) -> list[LayerRow]:
    """The per-op rows of inference i (times in seconds; stall = wait before + wait at end).

    An op's energy is its fixed part (``plan._op_energies``), the weight bytes it moved (read
    off-chip, written into SRAM) and leakage over its time (its end less the previous op's
    end); a wrong speculative guess's bytes go to the first gated op, where they were queued.
    The ops' energies add up to the inference's ``energy_j``."""
    rows = []
    prev_end = 0
    wmem = m.memories[m.weights_mem]
    guess = next((j for j, g in enumerate(plan.gate) if g >= 0), -1)
    for j, (ds, de, cs, ce) in enumerate(inf.timings):
        op = plan.ops[j]
        stall = (cs - prev_end) + (ce - cs - plan.compute_ps[j])
        moved = inf.kept[j] + inf.streamed[j]
        energy = layer_energy(m.hw, wmem, fixed_j=op.energy_j, moved_bytes=moved,
                              wasted_bytes=inf.wasted_bytes if j == guess else 0,
                              time_ps=ce - prev_end)
        prev_end = ce
        rows.append(LayerRow(
            i, plan.name, j, op.name, op.kind, op.precision, op.encoding, op.weight_sparsity,
            op.rule, op.weight_bytes, moved, inf.streamed[j],
            inf.refetch[j], plan.spill[j], plan.tiling[j].act_reread, _order(plan.tiling[j]),
            op.macs, int(plan.cycles[j]), plan.util[j],
            None if ds is None else ds * 1e-12, None if de is None else de * 1e-12,
            cs * 1e-12, ce * 1e-12, stall * 1e-12, inf.bounds[j], energy))
    return rows


# ---------------------------------------------------------------------------------------------
# the stream
# ---------------------------------------------------------------------------------------------

class _Runner:
    """One stream's fixed context: plans, policy, prefetch, memo; ``infer(i)`` runs input i."""

    def __init__(self, machine: Machine, plans: list[PathPlan], policy: Residency,
                 sizes: list[int], sequence: np.ndarray, *, prefetch: str, per_layer: bool,
                 memo: bool) -> None:
        self.machine = machine
        self.channel = _Channel(machine)
        self.plans = plans
        self.policy = policy
        self.sizes = sizes
        self.per_layer = per_layer
        # per (path, policy state): (condition on the future or None, inference, state after)
        self.memo: dict[Hashable, list[tuple[Hashable, _Inference, Hashable]]] | None = (
            {} if memo else None)
        self.entries = 0    # inferences in the memo (run event by event)
        # _run_one's memo of the timeline: an _Inference, or a list of (vector, _Inference)
        self.runs: dict[Hashable, Any] = {}
        self.depth = 0 if prefetch == "none" else max(0, int(machine.hw.prefetch_depth))
        # per path, what the policy's one-call step takes (``Residency.quick``; None: the
        # memo's general steps), with the memo on, no per-op rows and the compiled kernel
        self.quick = ([policy.quick(plan.blocks) for plan in plans]
                      if memo and not per_layer and _kernel is not None else [None] * len(plans))
        self.guess: int | None = None   # the path a speculative prefetch bets on
        if prefetch == "speculative" and len(plans) > 1:
            freq = np.bincount(sequence, minlength=len(plans)) if sequence.size else None
            self.guess = 0 if freq is None else int(np.argmax(freq))

    def wasted_bytes(self, p: int) -> int:
        """Bytes a wrong guess moves: the guessed path's gated blocks not on chip that path p
        does not read."""
        if self.guess is None or p == self.guess:
            return 0
        resident = self.policy.resident_set()
        wrong = self.plans[self.guess].gated_blocks - self.plans[p].gated_blocks
        return sum(self.sizes[b] for b in sorted(wrong) if b not in resident)

    def infer(self, i: int, p: int) -> _Inference:
        """Input i on path p: from the memo if its situation was met before (the policy's
        state, the path, and the policy's ``condition`` on the future holds), else run.

        Where the policy has a one-call step for the path (``Residency.quick``) and the
        state allows it (``quick_state``), that state keys the entries as it is (no key of
        ``memo_key``'s is equal to one of these) and a new situation is served by ``step``
        (``watch``, ``serve_vec``, ``condition`` and ``after`` in one call): the same
        entries, fewer calls."""
        plan, policy, memo = self.plans[p], self.policy, self.memo
        wasted = 0 if self.guess is None else self.wasted_bytes(p)
        if memo is None:
            return _run_one(self.channel, plan, policy, i, self.depth, self.guess is not None,
                            wasted, self.per_layer)
        quick = self.quick[p]
        state = None if quick is None else policy.quick_state()
        key = (p, wasted, policy.memo_key(i, plan.all_blocks) if state is None else state)
        entries = memo.get(key)
        if entries:   # (an entry with no condition is met: an online policy's only one)
            hit = entries[0] if entries[0][0] is None else policy.met(entries, i)
            if hit is not None:
                policy.restore(hit[2])
                return hit[1]
        if self.entries >= MEMO_LIMIT:   # a stream of ever-new situations: start over,
            memo.clear()                 # so memory stays flat (results are the same)
            self.entries = 0
            entries = None
        out = None if state is None else policy.step(quick, i)
        if out is not None:
            vec, condition, after = out
            inf = _run_vec(self.channel, plan, vec, wasted, self.depth,
                           self.guess is not None, self.runs)
        else:   # (no step, or it did not take it: nothing changed)
            policy.watch()
            inf = _run_one(self.channel, plan, policy, i, self.depth, self.guess is not None,
                           wasted, self.per_layer, self.runs)
            condition, after = policy.condition(), policy.after()
        if entries is None:
            entries = memo[key] = []
        elif len(entries) >= MEMO_PER_STATE:   # the oldest conditions of this state go
            del entries[0]
            self.entries -= 1
        entries.append((condition, inf, after))
        self.entries += 1
        return inf


#: Inputs whose paths are taken from the sequence as Python ints at a time (``_paths``).
CHUNK = 1 << 16


def _paths(seq: np.ndarray):
    """``enumerate(seq.tolist())`` a chunk at a time: no list of the whole stream (a list
    holds 8 bytes per input: 80 MB at 10^7 inputs)."""
    for start in range(0, seq.size, CHUNK):
        yield from enumerate(seq[start:start + CHUNK].tolist(), start)


#: ``InferenceRow`` from a tuple of its fields without the namedtuple's Python ``__new__``.
_new_row = tuple.__new__


class _Counts:
    """A stream's summary counted by distinct inference: the cold one (and, with no memo,
    every one: each a new object) added at once; a memo entry's row made once and added as
    often as it occurs (``Summary.add(row, times)``; the input number is no metric), at most
    ``MEMO_LIMIT`` of them held (ever-new situations: memory stays flat)."""

    __slots__ = ("direct", "machine", "plans", "seen", "summary")

    def __init__(self, summary: Summary, runner: _Runner) -> None:
        self.summary, self.plans, self.machine = summary, runner.plans, runner.machine
        self.direct = runner.memo is None
        self.seen: dict[int, list] = {}   # id of an _Inference -> [inference, path, count]

    def add(self, i: int, p: int, inf: _Inference) -> None:
        if self.direct or not i:
            if inf.row is None:
                inf.row = _inference_row(i, self.plans[p], inf, self.machine)
            self.summary.add(inf.row)
            return
        hit = self.seen.get(id(inf))
        if hit is None:
            if len(self.seen) >= MEMO_LIMIT:
                self.flush()
            self.seen[id(inf)] = [inf, p, 1]
        else:
            hit[2] += 1

    def flush(self) -> None:
        for inf, p, n in self.seen.values():
            if inf.row is None:
                inf.row = _inference_row(0, self.plans[p], inf, self.machine)
            self.summary.add(inf.row, n)
        self.seen.clear()


def _tally(runner: _Runner, seq: np.ndarray, summary: Summary,
           progress: Callable[[int], None] | None) -> None:
    """Run the stream for its summary alone (``_Counts``): no row per input."""
    counts = _Counts(summary, runner)
    for i, p in _paths(seq):
        counts.add(i, p, runner.infer(i, p))
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1)
    counts.flush()
    if progress is not None:
        progress(seq.size)


def _check(policy: str, prefetch: str) -> None:
    if prefetch not in PREFETCH_MODES:
        raise ValueError(f"unknown prefetch mode {prefetch!r}; expected one of "
                         f"{', '.join(PREFETCH_MODES)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")


def _tile_room(pol, capacity: int, weight_sram: int, workload: Workload, blocks,
               sizes: Sequence[int]) -> int:
    """The capacity to choose a static set for again after a tile did not fit beside it: the
    weight SRAM less the largest one-output-channel tile of an op the set does not hold all of
    (``sim.tiling.plan_tiling``'s smallest weight tile), and below ``capacity``."""
    held = getattr(pol, "pinned", frozenset())
    need = 0
    for path, ids in zip(workload.paths, blocks, strict=True):
        for op, bs in zip(path.ops, ids, strict=True):
            if not op.macs or not bs or all(b in held for b in bs):
                continue
            dims = op.dims
            channels = dims.get("K", 1) if "C" in dims else dims.get("N", 1)
            need = max(need, -(-sum(sizes[b] for b in bs) // max(1, channels)))
    return max(0, min(capacity - 1, weight_sram - need))


#: Compiled plans of the last few (config, workload, policy room) met in this process
#: (``_compiled``): a sweep worker runs several policies on one config, a benchmark the same
#: stream again.
PLAN_CACHE = 8
_PLANS: dict[Hashable, tuple[object, object, list[PathPlan]]] = {}
#: The configs of ``_PLANS``'s keys, each hashed once (``_hashed``): by id, with the config.
_HASHED: dict[int, _Hashed] = {}


def _hashed(hw) -> _Hashed:
    """``hw`` with its hash computed once, the same object for the same config object: a
    config hashes its every field (~25 us on npu_small), and a plan-cache key is looked up,
    moved and filed each run. TypeError: a config that does not hash."""
    hit = _HASHED.get(id(hw))
    if hit is not None and hit.value is hw:
        return hit
    while len(_HASHED) >= 2 * PLAN_CACHE:
        del _HASHED[next(iter(_HASHED))]
    hit = _HASHED[id(hw)] = _Hashed(hw)
    return hit


def _compiled(hw, machine: Machine, workload: Workload, per_layer: bool, reserved: int,
              held: frozenset[int], blocks) -> list[PathPlan]:
    """``compile_paths`` for ``hw``, taken from ``_PLANS`` when an equal config compiled the same
    paths and blocks (the same objects: a resolved Workload is one object per process, whatever
    its sequence) with the same policy room before. Plans are read-only."""
    try:
        key = (_hashed(hw), id(workload.paths), id(workload.blocks), per_layer, reserved, held)
        hit = _PLANS.get(key)
    except TypeError:   # a config object that does not hash: compiled every time
        return compile_paths(machine, workload, per_layer=per_layer, reserved=reserved,
                             held=held, blocks=blocks)
    if hit is not None and hit[0] is workload.paths and hit[1] is workload.blocks:
        _PLANS[key] = _PLANS.pop(key)   # most recently used last
        return hit[2]
    plans = compile_paths(machine, workload, per_layer=per_layer, reserved=reserved, held=held,
                          blocks=blocks)
    while len(_PLANS) >= PLAN_CACHE:
        del _PLANS[next(iter(_PLANS))]
    # (paths and blocks kept alive with their plans, so their ids name them while cached)
    _PLANS[key] = (workload.paths, workload.blocks, plans)
    return plans


_BLOCKS: dict[tuple[int, int], tuple[object, object, list]] = {}


def _path_blocks(workload: Workload) -> list[tuple[tuple[int, ...], ...]]:
    """``path_blocks``, taken from ``_BLOCKS`` for the paths and blocks (the same objects)
    met before in this process, as ``_compiled`` does for plans."""
    key = (id(workload.paths), id(workload.blocks))
    hit = _BLOCKS.get(key)
    if hit is not None and hit[0] is workload.paths and hit[1] is workload.blocks:
        return hit[2]
    while len(_BLOCKS) >= PLAN_CACHE:
        del _BLOCKS[next(iter(_BLOCKS))]
    blocks = path_blocks(workload)
    _BLOCKS[key] = (workload.paths, workload.blocks, blocks)
    return blocks


def simulate(hw, workload: Workload, *, policy: str = "lru", prefetch: str | None = None,
             per_layer: bool = False, memo: bool | None = None,
             progress: Callable[[int], None] | None = None,
             on_row: Callable[[InferenceRow | LayerRow], None] | None = None,
             keep_rows: bool = True) -> Result:
    """Run every input of ``workload`` on ``hw`` and return per-inference (and per-op) rows.

    ``policy``: a name of ``POLICIES`` ("lru", "pinned", "belady"). ``prefetch`` (None: the
    config's ``prefetch.mode``, ``hw.prefetch_mode``): a name of ``PREFETCH_MODES`` — "next"
    (fetch up to ``hw.prefetch_depth`` ops ahead), "none" (fetch an op's weights after the
    previous op ends), or "speculative" ("next", and a routed model
    fetches the most frequent path's gated weights before its routers decide; a wrong guess
    costs the bytes, reported as ``spec_wasted_bytes``). ``progress`` is called with the number
    of inferences done so far, now and then.

    Long streams: ``on_row`` is called with each inference row as it is produced (to write it
    out), and ``keep_rows=False`` keeps no rows in the Result, per inference or per op (its
    summary is built on the fly, ``Summary``), so memory does not grow with the number of
    inputs. An ``on_row`` with a method ``renumbered(i, row)`` (``cli.run._Rows``) is given
    a memo hit's row that way instead, with ``keep_rows=False`` and no per-op rows: ``row``
    is the very row met before (another input number), to be written as input i, so a writer
    can reuse what it made of it. With ``per_layer`` and ``keep_rows=False``, ``on_row``
    also hears each op's ``LayerRow``, right after the ``InferenceRow`` of its inference
    (``Result.layer_rows`` is then empty): a per-op log of any length is written as it is
    produced.

    ``memo``: take an inference whose situation repeats from the memo (the same rows, by
    construction and by test); None reads ``EDGESIM_NO_MEMO`` (set and not 0: no memo), the
    switch ``edgesim run --no-memo`` sets.
    """
    if memo is None:
        memo = os.environ.get("EDGESIM_NO_MEMO", "0") in ("", "0")
    if prefetch is None:
        prefetch = hw.prefetch_mode
    _check(policy, prefetch)
    workload = resolve(workload, hw)   # encodings and activation bytes as ``hw`` decodes them
    machine = Machine.from_config(hw)
    blocks = _path_blocks(workload)
    sizes = [b.stored_bytes for b in workload.blocks.values()]
    seq = workload.sequence
    pol = make_policy(policy, Stream(sizes, machine.hw.weight_sram_bytes, blocks, seq))
    capacity = machine.hw.weight_sram_bytes
    while True:   # pinned blocks take their room from every op's weight tiles
        try:
            plans = _compiled(hw, machine, workload, per_layer, pol.reserved_bytes(),
                              getattr(pol, "pinned", frozenset()), blocks)
            break
        except TileError:
            if not pol.reserved_bytes():
                raise
            # a static set must leave the room an op it does not hold needs to stream its
            # smallest tile (as lru can): chosen again for the weight SRAM less that tile
            capacity = _tile_room(pol, capacity, machine.hw.weight_sram_bytes, workload, blocks,
                                  sizes)
            pol = make_policy(policy, Stream(sizes, capacity, blocks, seq))
    runner = _Runner(machine, plans, pol, sizes, seq, prefetch=prefetch, per_layer=per_layer,
                     memo=memo)
    rows: list[InferenceRow] = []
    summary = Summary()
    layer_rows: list[LayerRow] | None = [] if per_layer else None
    if not (keep_rows or per_layer or on_row is not None):   # the summary alone (a sweep)
        _tally(runner, seq, summary, progress)
        return Result(rows, None, summary.result(), {
            "policy": policy, "prefetch": prefetch, "memo_entries": runner.entries})
    counts = _Counts(summary, runner)   # (each distinct inference counted once)
    # a writer that takes a repeated row with its input number (``on_row.renumbered``)
    renumbered = (getattr(on_row, "renumbered", None)
                  if not keep_rows and layer_rows is None else None)
    for i, p in _paths(seq):
        inf = runner.infer(i, p)
        row = inf.row
        if row is None:
            row = inf.row = _inference_row(i, plans[p], inf, machine)
        counts.add(i, p, inf)
        if row[0] != i:   # a memo hit: the same row under this input's number
            if renumbered is not None:
                renumbered(i, row)
                row = None
            else:
                row = _new_row(InferenceRow, (i, *row[1:]))
        if row is not None and on_row is not None:
            on_row(row)
        if keep_rows:
            rows.append(row)
        if layer_rows is not None:
            if keep_rows:
                layer_rows.extend(_layer_rows(i, plans[p], inf, machine))
            elif on_row is not None:
                for layer_row in _layer_rows(i, plans[p], inf, machine):
                    on_row(layer_row)
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1)
    counts.flush()
    if progress is not None:
        progress(seq.size)
    meta = {"policy": policy, "prefetch": prefetch,
            "memo_entries": runner.entries}
    return Result(rows, layer_rows, summary.result(), meta)
