"""The discrete-event engine: one stream of inferences of a Workload on a HardwareConfig.

Public names: ``simulate``, ``PREFETCH_MODES``, ``Part``.

``simulate(hw, workload)`` runs every input of ``workload.sequence`` in order, SRAM state kept
between inferences (the first is cold), and returns a ``Result`` (``edgesim.sim.result``) with
one row per inference and, on request, one row per op.

The steps, in order:

1. ``resolve`` the workload for the hardware (encodings and activation bytes as it decodes them),
   take the config's fields once (``Machine``) and compile every path (``edgesim.sim.plan``).
2. Build the residency policy for the stream (``edgesim.sim.residency``; offline preparation
   for ``pinned`` and ``belady`` happens here).
3. Per inference (integer time in picoseconds, one simpy process each for the off-chip channel
   and for the compute array, one event per transfer and per op):

   a. ``_serve``: the policy decides, op by op, which weight bytes must come from off-chip and
      whether they stay. These bytes depend only on the access sequence.
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
      op j starts when op j-1 is done and its kept bytes are on chip, takes its compiled cycles,
      and ends no earlier than its streamed bytes have arrived. Time the array waits is a stall.
   d. ``_inference_row`` and ``_layer_rows``: the counts and times become named rows, energy
      (``edgesim.sim.energy``) computed from the counts.

Identical (policy state, path[, future]) situations give identical inferences, so a repeated one
is taken from a memo instead of being run again (``memo=False`` runs every inference; the tests
check both give the same table).

>>> from edgesim.testing import tiny_config, tiny_workload
>>> r = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=3))
>>> [row.weight_dram_bytes for row in r.rows]
[3000, 0, 0]
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

import numpy as np
import simpy

from edgesim.encodings import resolve
from edgesim.sim.energy import inference_energy
from edgesim.sim.plan import PS_PER_S, Machine, PathPlan, compile_paths
from edgesim.sim.residency import POLICIES, Residency, Stream, make_policy
from edgesim.sim.result import InferenceRow, LayerRow, Result, summarize
from edgesim.workload import Workload

__all__ = ["PREFETCH_MODES", "Part", "simulate"]

#: The prefetch modes by name, each with what it does (CLI, sweep and tests read this table).
PREFETCH_MODES: Mapping[str, str] = MappingProxyType({
    "next": "fetch kept weights up to prefetch.depth ops ahead, while earlier ops compute",
    "none": "fetch an op's weights only after the op before it has ended",
    "speculative": "next, and a routed model fetches the most frequent path's gated weights "
                   "before its routers decide (a wrong guess costs spec_wasted_bytes)",
})


class Part(IntEnum):
    """What a transfer carries; it decides which event of its op the transfer completes."""

    KEPT = 0        # weights that stay on chip: the op may not start before they arrive
    STREAMED = 1    # weights not kept, and activation spills: they overlap the op's compute
    GUESS = 2       # a wrong speculative guess: moved for nothing, nothing waits for it


_KEPT, _STREAMED = Part.KEPT, Part.STREAMED


class _Channel:
    """The off-chip channel's transfer time, in integer picoseconds, memoised by size."""

    __slots__ = ("burst", "bytes_per_s", "cache", "latency_ps")

    def __init__(self, m: Machine) -> None:
        self.latency_ps = m.offchip_latency_ps
        self.bytes_per_s = m.offchip_bytes_per_s
        self.burst = m.offchip_burst_bytes
        self.cache: dict[int, int] = {}

    def transfer_ps(self, nbytes: int) -> int:
        """Latency plus the bytes rounded up to whole bursts at the bandwidth (ceil, ps)."""
        t = self.cache.get(nbytes)
        if t is None:
            moved = -(-nbytes // self.burst) * self.burst
            t = self.cache[nbytes] = self.latency_ps + (-(-moved * PS_PER_S // self.bytes_per_s))
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
    latency_ps: int
    kept: list[int]
    streamed: list[int]
    timings: list[tuple[int | None, int | None, int, int]] | None
    row: InferenceRow | None = None


# ---------------------------------------------------------------------------------------------
# one inference
# ---------------------------------------------------------------------------------------------

def _serve(plan: PathPlan, policy: Residency, i: int) -> tuple[list[int], list[int], list[int]]:
    """Per op: kept bytes, streamed bytes, and the last op that used a block it displaces."""
    n = len(plan.blocks)
    kept = [0] * n
    streamed = [0] * n
    wait = [-1] * n
    last_use: dict[int, int] = {}
    for j, ids in enumerate(plan.blocks):
        if ids:
            served = policy.serve(ids, i, j)
            kept[j], streamed[j] = served.kept, served.streamed
            for b in served.evicted:
                w = last_use.get(b, -1)
                if w > wait[j]:
                    wait[j] = w
            for b in ids:
                last_use[b] = j
    return kept, streamed, wait


def _transfers(plan: PathPlan, kept: list[int], streamed: list[int], wait: list[int],
               wasted: int, depth: int, speculative: bool) -> list[tuple[int, Part, int, int]]:
    """The DMA queue in op order: (op, part, bytes, op whose end it waits for, or -1)."""
    queue: list[tuple[int, Part, int, int]] = []
    first_gate = -1
    for j in range(len(plan.blocks)):
        gate = plan.gate[j]
        g = -1 if speculative else gate
        if wasted and first_gate < 0 and gate >= 0:
            first_gate = j
            queue.append((j, Part.GUESS, wasted, max(-1, j - depth - 1, gate - 1)))
        if kept[j]:
            queue.append((j, _KEPT, kept[j], max(j - depth - 1, wait[j], g)))
        s = streamed[j] + plan.spill[j]
        if s:
            queue.append((j, _STREAMED, s, max(j - 1, wait[j], g)))
    return queue


def _timeline(channel: _Channel, plan: PathPlan, queue: list[tuple[int, Part, int, int]],
              kept: list[int], streamed: list[int], per_layer: bool):
    """Run the DMA and compute processes; per-op end times, and per-op timings if asked."""
    n = len(plan.blocks)
    env = simpy.Environment()
    kept_done = [0 if not kept[j] else -1 for j in range(n)]
    stream_done = [0 if not (streamed[j] or plan.spill[j]) else -1 for j in range(n)]
    ended = [-1] * n
    waiting: dict[tuple[str, int], simpy.Event] = {}
    dma_times: dict[int, list[int]] = {}
    comp_times: list[tuple[int, int]] = []

    def dma():
        for j, part, nbytes, cond in queue:
            if cond >= 0 and ended[cond] < 0:
                ev = waiting[("end", cond)] = env.event()
                yield ev
            start = env.now
            yield env.timeout(channel.transfer_ps(nbytes))
            if per_layer:
                t = dma_times.setdefault(j, [start, env.now])
                t[1] = env.now
            if part == _KEPT:
                kept_done[j] = env.now
                ev = waiting.pop(("kept", j), None)
            elif part == _STREAMED:
                stream_done[j] = env.now
                ev = waiting.pop(("stream", j), None)
            else:
                ev = None
            if ev is not None:
                ev.succeed()

    def compute():
        for j in range(n):
            if kept_done[j] < 0:
                ev = waiting[("kept", j)] = env.event()
                yield ev
            start = env.now
            if plan.compute_ps[j]:
                yield env.timeout(plan.compute_ps[j])
            if stream_done[j] < 0:
                ev = waiting[("stream", j)] = env.event()
                yield ev
            ended[j] = env.now
            if per_layer:
                comp_times.append((start, env.now))
            ev = waiting.pop(("end", j), None)
            if ev is not None:
                ev.succeed()

    env.process(dma())
    env.process(compute())
    env.run()
    timings = None
    if per_layer:
        timings = [(*dma_times.get(j, (None, None)), *comp_times[j]) for j in range(n)]
    return ended, timings


def _run_one(channel: _Channel, plan: PathPlan, policy: Residency, i: int, depth: int,
             speculative: bool, wasted: int, per_layer: bool) -> _Inference:
    """Inference i on path ``plan``: serve, queue the transfers, run the timeline."""
    kept, streamed, wait = _serve(plan, policy, i)
    queue = _transfers(plan, kept, streamed, wait, wasted, depth, speculative)
    ended, timings = _timeline(channel, plan, queue, kept, streamed, per_layer)
    latency = ended[-1] if ended else 0
    return _Inference(sum(kept) + sum(streamed) + wasted, sum(streamed), wasted, int(latency),
                      kept, streamed, timings)


# ---------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------

def _inference_row(i: int, plan: PathPlan, inf: _Inference, m: Machine) -> InferenceRow:
    """The row of inference i: its counts, cycles, latency and energy parts."""
    cycles = -(-inf.latency_ps * m.clock_hz // PS_PER_S)
    cycles = max(cycles, plan.compute_cycles)
    latency_s = inf.latency_ps * 1e-12
    wb = inf.weight_bytes
    spill_half = plan.act_dram_bytes // 2
    sram_read = plan.sram_read_fixed + spill_half
    sram_write = plan.sram_write_fixed + wb - inf.wasted_bytes + spill_half
    e = inference_energy(
        m, mac_j=plan.energy_mac_j, array_j=plan.energy_array_j, decode_j=plan.energy_decode_j,
        sram_read_bytes=sram_read, sram_write_bytes=sram_write,
        offchip_read_bytes=wb + spill_half, offchip_write_bytes=spill_half,
        latency_s=latency_s)
    return InferenceRow(i, plan.name, wb, inf.stream_bytes, inf.wasted_bytes,
                        plan.act_dram_bytes, sram_read, sram_write, plan.macs,
                        plan.compute_cycles, cycles - plan.compute_cycles, cycles, latency_s,
                        e.total, e.mac, e.array, e.sram, e.offchip, e.decode, e.leak)


def _layer_rows(i: int, plan: PathPlan, inf: _Inference) -> list[LayerRow]:
    """The per-op rows of inference i (times in seconds; stall = wait before + wait at end)."""
    rows = []
    prev_end = 0
    for j, (ds, de, cs, ce) in enumerate(inf.timings):
        op = plan.ops[j]
        stall = (cs - prev_end) + (ce - cs - plan.compute_ps[j])
        prev_end = ce
        rows.append(LayerRow(
            i, plan.name, j, op.name, op.kind, op.precision, op.encoding, op.weight_sparsity,
            op.rule, op.weight_bytes, inf.kept[j] + inf.streamed[j], inf.streamed[j],
            plan.spill[j], op.macs, int(plan.cycles[j]), plan.util[j],
            None if ds is None else ds * 1e-12, None if de is None else de * 1e-12,
            cs * 1e-12, ce * 1e-12, stall * 1e-12))
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
        self.memo: dict[Hashable, tuple[_Inference, Hashable]] | None = {} if memo else None
        self.depth = 0 if prefetch == "none" else max(0, int(machine.prefetch_depth))
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
        plan, policy = self.plans[p], self.policy
        wasted = self.wasted_bytes(p)
        key = None
        if self.memo is not None:
            key = (p, policy.memo_key(i, plan.all_blocks))
            hit = self.memo.get(key)
            if hit is not None:
                policy.restore(hit[1])
                return hit[0]
        inf = _run_one(self.channel, plan, policy, i, self.depth, self.guess is not None,
                       wasted, self.per_layer)
        if key is not None:
            self.memo[key] = (inf, policy.state())
        return inf


def _check(policy: str, prefetch: str) -> None:
    if prefetch not in PREFETCH_MODES:
        raise ValueError(f"unknown prefetch mode {prefetch!r}; expected one of "
                         f"{', '.join(PREFETCH_MODES)}")
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")


def simulate(hw, workload: Workload, *, policy: str = "lru", prefetch: str = "next",
             per_layer: bool = False, memo: bool = True,
             progress: Callable[[int], None] | None = None) -> Result:
    """Run every input of ``workload`` on ``hw`` and return per-inference (and per-op) rows.

    ``policy``: a name of ``POLICIES`` ("lru", "pinned", "belady"). ``prefetch``: a name of
    ``PREFETCH_MODES`` — "next" (fetch up to ``hw.prefetch_depth`` ops ahead), "none" (fetch
    an op's weights after the previous op ends), or "speculative" ("next", and a routed model
    fetches the most frequent path's gated weights before its routers decide; a wrong guess
    costs the bytes, reported as ``spec_wasted_bytes``). ``progress`` is called with the number
    of inferences done so far, now and then.
    """
    _check(policy, prefetch)
    workload = resolve(workload, hw)   # encodings and activation bytes as ``hw`` decodes them
    machine = Machine.from_config(hw)
    plans = compile_paths(machine, workload, per_layer=per_layer)
    sizes = [b.stored_bytes for b in workload.blocks.values()]
    seq = workload.sequence
    pol = make_policy(policy, Stream(sizes, machine.weight_sram_bytes,
                                     [plan.blocks for plan in plans], seq))
    runner = _Runner(machine, plans, pol, sizes, seq, prefetch=prefetch, per_layer=per_layer,
                     memo=memo)
    rows: list[InferenceRow] = []
    layer_rows: list[LayerRow] | None = [] if per_layer else None
    for i, p in enumerate(seq.tolist()):
        inf = runner.infer(i, p)
        row = inf.row
        if row is None:
            row = inf.row = _inference_row(i, plans[p], inf, machine)
        rows.append(row if row.input == i else InferenceRow(i, *row[1:]))
        if layer_rows is not None:
            layer_rows.extend(_layer_rows(i, plans[p], inf))
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1)
    if progress is not None:
        progress(seq.size)
    meta = {"policy": policy, "prefetch": prefetch,
            "memo_entries": len(runner.memo) if runner.memo is not None else 0}
    return Result(rows, layer_rows, summarize(rows), meta)
