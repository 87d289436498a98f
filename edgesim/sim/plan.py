"""Compiling a Workload's paths for a hardware config: per-op integer arrays the engine runs.

Public names: ``Machine``, ``PathPlan``, ``OpInfo``, ``compile_paths``, ``utilisation``,
``PS_PER_S``.

``Machine.from_config(hw)`` takes, once, the typed fields of a ``HardwareConfig`` the simulator
needs, with the off-chip channel turned into integers (picoseconds of latency, bytes per second).
``compile_paths(machine, workload)`` maps every path onto it: per op the deduplicated block
indices, compute cycles on the MAC array (``utilisation``: reduction on rows, outputs on columns)
or the vector lanes, compute time in integer picoseconds, activation spill bytes and the router
op that gates it; per path the totals the energy model needs.

>>> from edgesim.testing import tiny_config, tiny_workload
>>> plan, = compile_paths(Machine.from_config(tiny_config()), tiny_workload())
>>> plan.cycles.tolist(), plan.compute_cycles, plan.macs
([1000, 13, 32], 1045, 66000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edgesim.sim.energy import register_bits_per_mac
from edgesim.workload import LayerOp, Workload

__all__ = ["PS_PER_S", "Machine", "OpInfo", "PathPlan", "compile_paths", "utilisation"]

#: Picoseconds per second: simulated time is integer picoseconds.
PS_PER_S = 10**12


@dataclass(frozen=True, slots=True)
class Machine:
    """The fields of a HardwareConfig the simulator reads, integer where time is computed.

    ``clock_hz`` is rounded to whole hertz; ``offchip_latency_ps`` is the latency rounded up to
    whole picoseconds; ``offchip_bytes_per_s`` the bandwidth rounded to whole bytes per second.
    The energy fields keep the config's names and units (pJ per byte or bit, watts).
    """

    clock_hz: int
    array_rows: int
    array_cols: int
    act_bits: int
    act_reserve_bytes: int
    weight_sram_bytes: int
    skip_zero_weights: bool
    macs_per_cycle: Mapping[str, int]
    mac_pj: Mapping[str, float]
    index_decode_pj: float
    register_pj_per_byte: float
    prefetch_depth: int
    offchip_latency_ps: int
    offchip_bytes_per_s: int
    offchip_burst_bytes: int
    sram_read_pj_per_byte: float
    sram_write_pj_per_byte: float
    offchip_read_pj_per_bit: float
    offchip_write_pj_per_bit: float
    sram_leak_w: float

    @classmethod
    def from_config(cls, hw) -> Machine:
        """Read ``hw`` (a HardwareConfig); a non-positive off-chip bandwidth is an error."""
        bw = round(hw.offchip_bytes_per_s)
        if bw <= 0:
            raise ValueError(f"offchip bandwidth must be positive, got {hw.offchip_bytes_per_s} "
                             "B/s")
        return cls(
            clock_hz=round(hw.clock_hz), array_rows=hw.array_rows, array_cols=hw.array_cols,
            act_bits=hw.act_bits, act_reserve_bytes=hw.act_reserve_bytes,
            weight_sram_bytes=hw.weight_sram_bytes, skip_zero_weights=hw.skip_zero_weights,
            macs_per_cycle=hw.macs_per_cycle, mac_pj=hw.mac_pj,
            index_decode_pj=hw.index_decode_pj, register_pj_per_byte=hw.register_pj_per_byte,
            prefetch_depth=hw.prefetch_depth,
            offchip_latency_ps=math.ceil(hw.offchip_latency_s * PS_PER_S - 1e-6),
            offchip_bytes_per_s=bw, offchip_burst_bytes=hw.offchip_burst_bytes,
            sram_read_pj_per_byte=hw.sram_read_pj_per_byte,
            sram_write_pj_per_byte=hw.sram_write_pj_per_byte,
            offchip_read_pj_per_bit=hw.offchip_read_pj_per_bit,
            offchip_write_pj_per_bit=hw.offchip_write_pj_per_bit, sram_leak_w=hw.sram_leak_w)


def utilisation(op: LayerOp, rows: int, cols: int) -> float:
    """Fraction of the MAC array an op keeps busy: reduction dim on rows, outputs on columns.

    >>> op = LayerOp("fc", "linear", (), 0, 0, 0, 8, 8, "int8", (("M", 1), ("N", 2), ("K", 4)))
    >>> utilisation(op, 8, 8)   # 4 of 8 rows, 2 of 8 columns
    0.125
    """
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
class OpInfo:
    """What a per-op row shows of an op that does not change between inferences."""

    name: str
    kind: str
    precision: str
    encoding: str
    weight_sparsity: float | None
    rule: str
    weight_bytes: int
    macs: int


@dataclass(frozen=True, slots=True)
class PathPlan:
    """One path compiled for a Machine (arrays are per op, in path order)."""

    name: str
    blocks: tuple[tuple[int, ...], ...]   # per op: block indices (deduplicated)
    all_blocks: tuple[int, ...]           # every block the path reads, in first-use order
    cycles: np.ndarray                    # per op compute cycles
    compute_ps: tuple[int, ...]           # per op compute time, integer picoseconds
    spill: tuple[int, ...]                # per op activation spill bytes (write + read back)
    gate: tuple[int, ...]                 # per op: index of the gating router op, or -1
    macs: int
    compute_cycles: int
    sram_read_fixed: int                  # weight reads + activation reads
    sram_write_fixed: int                 # activation writes
    energy_mac_j: float
    energy_array_j: float                 # PE registers (``energy.register_bits_per_mac``)
    energy_decode_j: float
    act_dram_bytes: int
    gated_blocks: frozenset[int]          # blocks read by gated ops
    ops: tuple[OpInfo, ...] | None        # per-op row fields (only when asked for)


def compile_paths(machine: Machine, workload: Workload, *,
                  per_layer: bool = False) -> list[PathPlan]:
    """Every path of ``workload`` compiled for ``machine``; ``per_layer`` adds ``ops``."""
    index = {b: k for k, b in enumerate(workload.blocks)}
    return [_compile_path(machine, workload, path, index, per_layer) for path in workload.paths]


def _compile_path(m: Machine, workload: Workload, path, index: dict[str, int],
                  per_layer: bool) -> PathPlan:
    n = len(path.ops)
    cycles = np.zeros(n, dtype=np.int64)
    spill = [0] * n
    gate = [-1] * n
    # a gate names a router (its module): the decision is known when that router's last
    # op has run; plain op names are accepted too
    names = {op.name: j for j, op in enumerate(path.ops)}
    names.update({op.router: j for j, op in enumerate(path.ops) if op.router is not None})
    blocks: list[tuple[int, ...]] = []
    macs = sram_read = sram_write = 0
    decode = 0
    mac_pj = 0.0
    register_bits = 0
    gated: set[int] = set()
    for j, op in enumerate(path.ops):
        ids = tuple(dict.fromkeys(index[b] for b in op.weights))
        blocks.append(ids)
        executed = _executed_macs(m, op)
        if op.macs:
            peak = m.macs_per_cycle[op.precision] * utilisation(op, m.array_rows, m.array_cols)
            cycles[j] = math.ceil(executed / peak) if executed else 0
        else:
            elements = (op.out_bytes * 8) // max(1, m.act_bits)
            cycles[j] = math.ceil(elements / m.array_cols)
        macs += executed
        mac_pj += executed * m.mac_pj[op.precision]
        if op.macs:
            register_bits += executed * register_bits_per_mac(op.precision, act_bits=m.act_bits)
        wbytes = sum(workload.blocks[b].stored_bytes for b in dict.fromkeys(op.weights))
        sram_read += wbytes + op.in_bytes
        sram_write += op.out_bytes
        for b in dict.fromkeys(op.weights):
            blk = workload.blocks[b]
            if blk.encoding != "dense":
                decode += blk.nonzeros
        # the part of this op's output that finds no room is written out and read back
        # once by its consumer (counted here, at the producer, so never twice)
        spill[j] = 2 * min(op.out_bytes, max(0, op.live_bytes - m.act_reserve_bytes))
        g = op.gate
        if g is not None and g in names and names[g] < j:
            gate[j] = names[g]
            gated.update(ids)
    # Python ints: cycles x 10^12 overflows int64 past ~9.2 M cycles
    compute_ps = tuple(-(-(int(c) * PS_PER_S) // m.clock_hz) for c in cycles)
    ops = (tuple(_op_info(m, workload, op) for op in path.ops) if per_layer else None)
    return PathPlan(
        name=path.name, blocks=tuple(blocks),
        all_blocks=tuple(dict.fromkeys(b for ids in blocks for b in ids)), cycles=cycles,
        compute_ps=compute_ps, spill=tuple(spill), gate=tuple(gate), macs=macs,
        compute_cycles=int(cycles.sum()), sram_read_fixed=sram_read, sram_write_fixed=sram_write,
        energy_mac_j=mac_pj * 1e-12,
        energy_array_j=register_bits / 8 * m.register_pj_per_byte * 1e-12,
        energy_decode_j=decode * m.index_decode_pj * 1e-12,
        act_dram_bytes=sum(spill), gated_blocks=frozenset(gated), ops=ops)


def _executed_macs(m: Machine, op: LayerOp) -> int:
    """MACs the array executes: the effective ones when it skips zero weights."""
    return op.effective_macs if m.skip_zero_weights else op.macs


def _op_info(m: Machine, workload: Workload, op: LayerOp) -> OpInfo:
    """Encodings of an op's blocks ("csr+dense"), its weight sparsity, any layer rule.

    The sparsity is that of the weights proper: bias blocks (``role == "bias"``) are left out
    unless the op reads nothing else, so a LayerNorm with an all-zero bias is 0 %. Blocks that
    store parts of one tensor (the levels of a nested weight, ``WeightBlock.tensor``) count the
    whole tensor once: sub-network k's sparsity is 1 - (nonzeros of levels 1..k) / (elements of
    the tensor).
    """
    blocks = [workload.blocks[b] for b in dict.fromkeys(op.weights)]
    weight_bytes = sum(b.stored_bytes for b in blocks)
    if not blocks:
        enc, sparsity, rule = "", None, ""
    else:
        enc = "+".join(dict.fromkeys(b.encoding for b in blocks))
        weights = [b for b in blocks if b.role != "bias"] or blocks
        elements = sum(dict(b.tensor for b in weights).values())
        sparsity = (round(1 - sum(b.nonzeros for b in weights) / elements, 4) if elements
                    else 0.0)
        rule = "+".join(dict.fromkeys(b.rule for b in blocks if b.rule))
    return OpInfo(op.name, op.kind, op.precision, enc, sparsity, rule, weight_bytes,
                  _executed_macs(m, op))
