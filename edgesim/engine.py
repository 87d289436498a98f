"""The discrete-event engine: one stream of inferences of a Workload on a HardwareConfig.

Public names: ``simulate``, ``Result``, ``PREFETCH_MODES``, ``INFERENCE_COLUMNS``,
``LAYER_COLUMNS``.

``simulate(hw, workload)`` runs every input of ``workload.sequence`` in order, SRAM state kept
between inferences (the first is cold), and returns a ``Result`` with one row per inference and,
on request, one row per op.

How an inference runs (integer time in picoseconds, one simpy process each for the off-chip
channel and for the compute array, one event per transfer and per op):

1. The residency policy (``edgesim.sram``) decides, op by op, which weight bytes must come from
   off-chip and whether they stay. These bytes depend only on the access sequence.
2. The DMA process moves each op's bytes in op order over one channel: ``latency`` plus the bytes
   rounded up to whole bursts at the channel bandwidth. Kept bytes for op j may start once op
   ``j - depth - 1`` has finished (``depth`` = ``hw.prefetch_depth``; prefetch "none" is depth 0),
   once every op that still used the bytes they displace has finished, and, in a routed model,
   once the router that gates op j has decided (unless ``prefetch="speculative"``). Streamed bytes
   (weights that are not kept, and activation spills) start when op j-1 has finished and overlap
   op j's compute, tile by tile. An op whose live activations (inputs, output and tensors held
   for later ops) exceed the activation reserve spills the part of its output that does not fit:
   written out once and read back once (``act_dram_bytes``, never mixed into weight bytes).
3. The compute process runs the ops in order: op j starts when op j-1 is done and its kept bytes
   are on chip, takes ``ceil(MACs / (peak MACs per cycle x mapping utilisation))`` cycles, and
   ends no earlier than its streamed bytes have arrived. Time the array waits is a stall.

Energy (``edgesim.energy``) is computed from the counts. Identical (policy state, path[, future])
situations give identical inferences, so a repeated one is taken from a memo instead of being run
again (``memo=False`` runs every inference; the tests check both give the same table).

>>> from edgesim.testing import tiny_config, tiny_workload
>>> r = simulate(tiny_config(sram="1 MiB"), tiny_workload(inputs=3))
>>> list(r.inferences.weight_dram_bytes)
[3000, 0, 0]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import simpy

from edgesim import energy as _energy
from edgesim.encodings import resolve
from edgesim.sram import NEVER, NEVER_OP, OP_STRIDE, Residency, make_policy
from edgesim.workload import LayerOp, Workload

__all__ = ["INFERENCE_COLUMNS", "LAYER_COLUMNS", "PREFETCH_MODES", "Result", "simulate"]

PREFETCH_MODES = ("next", "none", "speculative")

INFERENCE_COLUMNS = (
    "input", "path", "weight_dram_bytes", "weight_stream_bytes", "spec_wasted_bytes",
    "act_dram_bytes", "sram_read_bytes", "sram_write_bytes", "macs", "compute_cycles",
    "stall_cycles", "cycles", "latency_s", "energy_j", "energy_mac_j", "energy_sram_j",
    "energy_offchip_j", "energy_decode_j", "energy_leak_j",
)

LAYER_COLUMNS = (
    "input", "path", "op", "name", "kind", "precision", "encoding", "weight_sparsity", "rule",
    "weight_bytes", "weight_dram_bytes",
    "weight_stream_bytes", "act_dram_bytes", "macs", "compute_cycles", "dma_start_s",
    "dma_end_s", "compute_start_s", "compute_end_s", "stall_s",
)

#: Elements per cycle of ops without MACs (pooling, adds, activations): one per array column.
_PS = 10**12


class Result:
    """What a simulation produced: per-inference rows, optional per-op rows, a summary.

    ``rows`` / ``layer_rows`` are plain tuples in ``INFERENCE_COLUMNS`` / ``LAYER_COLUMNS``
    order; ``inferences`` and ``layers`` are the same as DataFrames, built on first use (so a
    command that only prints rows never imports pandas).
    """

    def __init__(self, rows: list[tuple], layer_rows: list[tuple] | None,
                 summary: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.rows = rows
        self.layer_rows = layer_rows
        self.summary = summary
        self.meta = dict(meta or {})

    @cached_property
    def inferences(self):
        import pandas as pd
        return pd.DataFrame.from_records(self.rows, columns=list(INFERENCE_COLUMNS))

    @cached_property
    def layers(self):
        if self.layer_rows is None:
            return None
        import pandas as pd
        return pd.DataFrame.from_records(self.layer_rows, columns=list(LAYER_COLUMNS))


# ---------------------------------------------------------------------------------------------
# compile: a path on a hardware config -> per-op integer arrays
# ---------------------------------------------------------------------------------------------

def _utilisation(op: LayerOp, rows: int, cols: int) -> float:
    """Fraction of the MAC array an op keeps busy: reduction dim on rows, outputs on columns."""
    d = op.dims
    if op.kind == "conv" and "C" in d and "K" in d:
        red, out = d["C"] * d.get("R", 1) * d.get("S", 1), d["K"]
        if d.get("C", 1) == 1:  # depthwise: one reduction lane per output
            red = d.get("R", 1) * d.get("S", 1)
    elif "K" in d and "N" in d:
        red, out = d["K"], d["N"]
    else:
        return 1.0
    util_r = red / (math.ceil(red / rows) * rows)
    util_c = out / (math.ceil(out / cols) * cols)
    return util_r * util_c


@dataclass(frozen=True, slots=True)
class _PathPlan:
    name: str
    blocks: tuple[tuple[int, ...], ...]   # per op: block indices (deduplicated)
    cycles: np.ndarray                    # per op compute cycles
    compute_ps: np.ndarray                # per op compute time
    spill: np.ndarray                     # per op activation spill bytes (write + read back)
    gate: np.ndarray                      # per op: index of the gating router op, or -1
    macs: int
    compute_cycles: int
    sram_read_fixed: int                  # weight reads + activation reads
    sram_write_fixed: int                 # activation writes
    energy_mac_j: float
    energy_decode_j: float
    act_dram_bytes: int
    gated_blocks: frozenset[int]          # blocks read by gated ops


def _compile(hw, workload: Workload, index: dict[str, int]) -> list[_PathPlan]:
    rows, cols = hw.array_rows, hw.array_cols
    clock = round(hw.clock_hz)
    plans = []
    for path in workload.paths:
        n = len(path.ops)
        cycles = np.zeros(n, dtype=np.int64)
        spill = np.zeros(n, dtype=np.int64)
        gate = np.full(n, -1, dtype=np.int64)
        # a gate names a router (its module): the decision is known when that router's last
        # op has run; plain op names are accepted too
        names = {op.name: j for j, op in enumerate(path.ops)}
        names.update({op.router: j for j, op in enumerate(path.ops) if op.router is not None})
        blocks: list[tuple[int, ...]] = []
        macs = sram_read = sram_write = 0
        decode = 0
        mac_pj = 0.0
        gated: set[int] = set()
        for j, op in enumerate(path.ops):
            ids = tuple(dict.fromkeys(index[b] for b in op.weights))
            blocks.append(ids)
            executed = op.effective_macs if hw.skip_zero_weights else op.macs
            if op.macs:
                peak = hw.macs_per_cycle[op.precision] * _utilisation(op, rows, cols)
                cycles[j] = math.ceil(executed / peak) if executed else 0
            else:
                elements = (op.out_bytes * 8) // max(1, hw.act_bits)
                cycles[j] = math.ceil(elements / cols)
            macs += executed
            mac_pj += executed * hw.mac_pj[op.precision]
            wbytes = sum(workload.blocks[b].stored_bytes for b in dict.fromkeys(op.weights))
            sram_read += wbytes + op.in_bytes
            sram_write += op.out_bytes
            for b in dict.fromkeys(op.weights):
                blk = workload.blocks[b]
                if blk.encoding != "dense":
                    decode += blk.nonzeros
            # the part of this op's output that finds no room is written out and read back
            # once by its consumer (counted here, at the producer, so never twice)
            spill[j] = 2 * min(op.out_bytes, max(0, op.live_bytes - hw.act_reserve_bytes))
            g = op.gate
            if g is not None and g in names and names[g] < j:
                gate[j] = names[g]
                gated.update(ids)
        # Python ints: cycles x 10^12 overflows int64 past ~9.2 M cycles
        compute_ps = np.array([-(-(int(c) * _PS) // clock) for c in cycles], dtype=object)
        plans.append(_PathPlan(
            name=path.name, blocks=tuple(blocks), cycles=cycles, compute_ps=compute_ps,
            spill=spill, gate=gate, macs=macs, compute_cycles=int(cycles.sum()),
            sram_read_fixed=sram_read, sram_write_fixed=sram_write,
            energy_mac_j=mac_pj * 1e-12, energy_decode_j=decode * hw.index_decode_pj * 1e-12,
            act_dram_bytes=int(spill.sum()), gated_blocks=frozenset(gated)))
    return plans


# ---------------------------------------------------------------------------------------------
# next use, for belady
# ---------------------------------------------------------------------------------------------

class _Future:
    """Next uses of every block over the whole stream, for ``belady`` (offline, exact).

    ``next_use(b, i, j)`` is the stream position (``i * OP_STRIDE + op``) of block b's first use
    after op j of inference i, or ``NEVER``; ``key(blocks, i)`` is what of the future an
    inference's decisions depend on: the next uses after inference i of the given blocks.
    """

    def __init__(self, workload: Workload, nblocks: int, plans: list[_PathPlan]) -> None:
        seq = workload.sequence
        n = int(seq.size)
        self.seq = seq
        self.n = n
        # per path, per block: the op indices reading it (sorted lists, for bisect)
        self.ops_of: list[dict[int, list[int]]] = []
        first = np.full((len(plans), nblocks), -1, dtype=np.int64)
        uses = np.zeros((nblocks, len(plans)), dtype=bool)
        for p, plan in enumerate(plans):
            d: dict[int, list[int]] = {}
            for j, ids in enumerate(plan.blocks):
                for b in ids:
                    d.setdefault(b, []).append(j)
            self.ops_of.append(d)
            for b, ops in d.items():
                first[p, b] = ops[0]
                uses[b, p] = True
        self.first = first
        # nxt[b, i]: the first inference after i whose path reads b (n if none)
        idx = np.where(uses[:, seq], np.arange(n, dtype=np.int64), n)        # (blocks, n)
        after = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1]          # first >= i
        self.nxt = np.concatenate([after[:, 1:], np.full((nblocks, 1), n)], axis=1)

    def next_use(self, b: int, i: int, j: int) -> int:
        if j != NEVER_OP:
            here = self.ops_of[self.seq[i]].get(b)
            if here is not None:
                k = bisect_right(here, j)
                if k < len(here):
                    return i * OP_STRIDE + here[k]
        i2 = int(self.nxt[b, i])
        if i2 >= self.n:
            return NEVER
        return i2 * OP_STRIDE + int(self.first[self.seq[i2], b])

    def key(self, blocks, i: int):
        """Decisions inside inference i compare next uses; those after it only by their order
        (all come after every use inside it), so their dense ranks are the whole key."""
        arr = np.fromiter(sorted(blocks), dtype=np.int64)
        nx = self.nxt[arr, i]
        pos = np.where(nx >= self.n, np.iinfo(np.int64).max,
                       nx * OP_STRIDE + self.first[self.seq[np.minimum(nx, self.n - 1)], arr])
        ranks = np.unique(pos, return_inverse=True)[1].astype(np.int32)
        return arr.tobytes() + ranks.tobytes()


def _pinned_priority(workload: Workload, index: dict[str, int],
                     plans: list[_PathPlan]) -> list[int]:
    """Blocks by decreasing use frequency over the stream, ties by first use."""
    freq = workload.path_frequencies()
    use = np.zeros(len(index))
    first: dict[int, int] = {}
    order = 0
    for p, plan in enumerate(plans):
        for ids in plan.blocks:
            for b in ids:
                if b not in first:
                    first[b] = order
                    order += 1
        for b in {b for ids in plan.blocks for b in ids}:
            use[b] += freq[p]
    return sorted(first, key=lambda b: (-round(use[b], 12), first[b]))


# ---------------------------------------------------------------------------------------------
# one inference
# ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Inference:
    weight_bytes: int
    stream_bytes: int
    wasted_bytes: int
    latency_ps: int
    layers: list[tuple] | None


def _transfer_ps(nbytes: int, hw: _HW) -> int:
    """Latency plus the bytes rounded up to whole bursts at the channel bandwidth (ceil, ps)."""
    t = hw.transfer_cache.get(nbytes)
    if t is None:
        moved = -(-nbytes // hw.burst) * hw.burst
        t = hw.transfer_cache[nbytes] = hw.latency_ps + (-(-moved * _PS // hw.bw))
    return t


def _run_one(hw, plan: _PathPlan, policy: Residency, i: int, depth: int, speculative: bool,
             wrong_guess: tuple[int, ...], sizes: list[int], per_layer: bool) -> _Inference:
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
    # a wrong guess moved the guessed path's gated blocks that were not on chip, for nothing
    wasted = sum(sizes[b] for b in wrong_guess)
    weight_bytes = sum(kept) + sum(streamed)

    # transfer queue in op order: (op, part, bytes, op whose end it waits for)
    queue: list[tuple[int, int, int, int]] = []
    first_gate = -1
    for j in range(n):
        g = -1 if speculative else int(plan.gate[j])
        if wasted and first_gate < 0 and plan.gate[j] >= 0:
            first_gate = j
            queue.append((j, 2, wasted, max(-1, j - depth - 1, int(plan.gate[j]) - 1)))
        if kept[j]:
            queue.append((j, 0, kept[j], max(j - depth - 1, wait[j], g)))
        s = streamed[j] + int(plan.spill[j])
        if s:
            queue.append((j, 1, s, max(j - 1, wait[j], g)))

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
            yield env.timeout(_transfer_ps(nbytes, hw))
            if per_layer:
                t = dma_times.setdefault(j, [start, env.now])
                t[1] = env.now
            if part == 0:
                kept_done[j] = env.now
                ev = waiting.pop(("kept", j), None)
            elif part == 1:
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
                yield env.timeout(int(plan.compute_ps[j]))
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
    latency = ended[-1] if n else 0

    layers = None
    if per_layer:
        layers = []
        prev_end = 0
        for j in range(n):
            ds, de = dma_times.get(j, (None, None))
            cs, ce = comp_times[j]
            stall = (cs - prev_end) + (ce - cs - int(plan.compute_ps[j]))
            prev_end = ce
            layers.append((j, kept[j] + streamed[j], streamed[j], int(plan.spill[j]),
                           int(plan.cycles[j]), ds, de, cs, ce, stall))
    return _Inference(weight_bytes + wasted, sum(streamed), wasted, int(latency), layers)


# ---------------------------------------------------------------------------------------------
# the stream
# ---------------------------------------------------------------------------------------------

class _HW:
    """The config plus integer time constants the hot loop needs."""

    def __init__(self, hw) -> None:
        self._hw = hw
        self.latency_ps = math.ceil(hw.offchip_latency_s * _PS - 1e-6)
        self.bw = round(hw.offchip_bytes_per_s)
        self.burst = hw.offchip_burst_bytes
        self.transfer_cache: dict[int, int] = {}
        if self.bw <= 0:
            raise ValueError("offchip bandwidth must be positive")

    def __getattr__(self, name: str):
        return getattr(self._hw, name)


def simulate(hw, workload: Workload, *, policy: str = "lru", prefetch: str = "next",
             per_layer: bool = False, memo: bool = True,
             progress: Callable[[int], None] | None = None) -> Result:
    """Run every input of ``workload`` on ``hw`` and return per-inference (and per-op) rows.

    ``policy``: "lru", "pinned" or "belady". ``prefetch``: "next" (fetch up to
    ``hw.prefetch_depth`` ops ahead), "none" (fetch an op's weights after the previous op ends),
    or "speculative" ("next", and a routed model fetches the most frequent path's gated weights
    before its routers decide; a wrong guess costs the bytes, reported as ``spec_wasted_bytes``).
    ``progress`` is called with the number of inferences done so far, now and then.
    """
    if prefetch not in PREFETCH_MODES:
        raise ValueError(f"unknown prefetch mode {prefetch!r}; expected one of "
                         f"{', '.join(PREFETCH_MODES)}")
    workload = resolve(workload, hw)   # encodings and activation bytes as ``hw`` decodes them
    hwi = _HW(hw)
    index = {b: k for k, b in enumerate(workload.blocks)}
    sizes = [workload.blocks[b].stored_bytes for b in workload.blocks]
    plans = _compile(hwi, workload, index)
    capacity = hw.weight_sram_bytes
    future = _Future(workload, len(index), plans) if policy == "belady" and seq_size(workload) \
        else None
    next_use = future.next_use if future is not None else (lambda b, i, j: NEVER)
    priority = _pinned_priority(workload, index, plans) if policy == "pinned" else None
    pol = make_policy(policy, sizes, capacity, priority=priority, next_use=next_use)
    depth = 0 if prefetch == "none" else max(0, int(hw.prefetch_depth))

    speculative_path = None
    if prefetch == "speculative" and len(plans) > 1:
        speculative_path = int(np.argmax(workload.path_frequencies()))

    rows: list[tuple] = []
    layer_rows: list[tuple] = []
    cache: dict[Any, tuple[_Inference, Any]] = {}
    seq = workload.sequence
    period_clock = hw.clock_hz
    for i in range(seq.size):
        p = int(seq[i])
        plan = plans[p]
        wrong: tuple[int, ...] = ()
        if speculative_path is not None and p != speculative_path:
            resident = pol.resident_set()
            wrong = tuple(sorted(b for b in plans[speculative_path].gated_blocks
                                 - plan.gated_blocks if b not in resident))
        key = None
        if memo:
            key = (p, pol.state())
            if policy == "belady":
                key = (*key, future.key(pol.held_blocks() | set(_all_blocks(plan)), i))
        hit = cache.get(key) if key is not None else None
        if hit is not None:
            inf, end_state = hit
            pol.restore(end_state)
        else:
            inf = _run_one(hwi, plan, pol, i, depth, speculative_path is not None, wrong, sizes,
                           per_layer)
            if key is not None:
                cache[key] = (inf, pol.state())
        latency_ps = inf.latency_ps
        cycles = -(-latency_ps * round(period_clock) // _PS)
        cycles = max(cycles, plan.compute_cycles)
        latency_s = latency_ps * 1e-12
        wb = inf.weight_bytes
        sram_read = plan.sram_read_fixed + plan.act_dram_bytes // 2
        sram_write = plan.sram_write_fixed + wb - inf.wasted_bytes + plan.act_dram_bytes // 2
        parts = _energy.inference_energy(
            hw, mac_j=plan.energy_mac_j, decode_j=plan.energy_decode_j,
            sram_read_bytes=sram_read, sram_write_bytes=sram_write,
            offchip_read_bytes=wb + plan.act_dram_bytes // 2,
            offchip_write_bytes=plan.act_dram_bytes // 2, latency_s=latency_s)
        rows.append((i, plan.name, wb, inf.stream_bytes, inf.wasted_bytes, plan.act_dram_bytes,
                     sram_read, sram_write, plan.macs, plan.compute_cycles,
                     cycles - plan.compute_cycles, cycles, latency_s, parts.total,
                     parts.mac, parts.sram, parts.offchip, parts.decode, parts.leak))
        if per_layer and inf.layers is not None:
            ops = workload.paths[p].ops
            for (j, wbytes, sbytes, spill, cyc, ds, de, cs, ce, stall) in inf.layers:
                op = ops[j]
                enc, sparsity, rule = _op_blocks_info(workload, op)
                layer_rows.append((
                    i, plan.name, j, op.name, op.kind, op.precision, enc, sparsity, rule,
                    sum(sizes[b] for b in plan.blocks[j]), wbytes, sbytes, spill,
                    op.effective_macs if hw.skip_zero_weights else op.macs, cyc,
                    None if ds is None else ds * 1e-12, None if de is None else de * 1e-12,
                    cs * 1e-12, ce * 1e-12, stall * 1e-12))
        if progress is not None and (i + 1) % 256 == 0:
            progress(i + 1)
    if progress is not None:
        progress(seq.size)
    meta = {"policy": policy, "prefetch": prefetch, "memo_entries": len(cache)}
    return Result(rows, layer_rows if per_layer else None, summarize(rows), meta)


def _op_blocks_info(workload: Workload, op: LayerOp) -> tuple[str, float | None, str]:
    """Encodings of an op's blocks ("csr+dense"), its weight sparsity, and any layer rule.

    The sparsity is that of the weights proper: bias blocks (``meta["role"] == "bias"``) are
    left out unless the op reads nothing else, so a LayerNorm with an all-zero bias is 0 %.
    The level blocks of a nested weight (``meta["parameter"]``) count their whole tensor once:
    sub-network k's sparsity is 1 - (nonzeros of levels 1..k) / (elements of the tensor).
    """
    blocks = [workload.blocks[b] for b in dict.fromkeys(op.weights)]
    if not blocks:
        return "", None, ""
    enc = "+".join(dict.fromkeys(b.encoding for b in blocks))
    weights = [b for b in blocks if b.meta.get("role") != "bias"] or blocks
    sizes = {b.meta.get("parameter", b.id): (math.prod(b.meta["shape"]) if "parameter" in b.meta
                                             else b.elements) for b in weights}
    elements = sum(sizes.values())
    sparsity = round(1 - sum(b.nonzeros for b in weights) / elements, 4) if elements else 0.0
    rule = "+".join(dict.fromkeys(b.rule for b in blocks if b.rule))
    return enc, sparsity, rule


def seq_size(workload: Workload) -> int:
    return int(workload.sequence.size)


def _all_blocks(plan: _PathPlan) -> tuple[int, ...]:
    return tuple(dict.fromkeys(b for ids in plan.blocks for b in ids))


SUMMARY_METRICS = ("weight_dram_bytes", "act_dram_bytes", "latency_s", "energy_j",
                   "energy_mac_j", "energy_sram_j", "energy_offchip_j", "energy_decode_j",
                   "energy_leak_j", "stall_cycles", "spec_wasted_bytes")


def summarize(rows: list[tuple]) -> dict[str, Any]:
    """Cold (first inference), steady-state mean, p50 and p99 (inferences 2..N) per metric.

    ``rows`` are per-inference tuples in ``INFERENCE_COLUMNS`` order. With a single inference
    the steady-state figures are those of the cold one.
    """
    out: dict[str, Any] = {"inputs": len(rows)}
    if not rows:
        return out
    steady = rows[1:] if len(rows) > 1 else rows
    for m in SUMMARY_METRICS:
        k = INFERENCE_COLUMNS.index(m)
        col = np.fromiter((r[k] for r in steady), dtype=float, count=len(steady))
        out[m] = {
            "cold": rows[0][k],
            "steady_mean": float(col.mean()),
            "p50": float(np.percentile(col, 50)),
            "p99": float(np.percentile(col, 99)),
        }
    return out
