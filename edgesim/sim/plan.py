"""Compiling a Workload's paths for a hardware config: per-op integer arrays the engine runs.

Public names: ``Machine``, ``Memory``, ``PathPlan``, ``OpInfo``, ``compile_paths``, ``path_blocks``,
``utilisation``, ``PS_PER_S``, ``SRAM``.

``Machine.from_config(hw)`` holds the ``HardwareConfig`` and derives from it, once, what the
simulator computes with: the memories in integers (picoseconds of latency, bytes per second),
the array (``mapping.Array``) and the block buffer; every other field is read from ``hw``.
``compile_paths(machine, workload)`` maps every path onto it: per op the deduplicated block
indices, compute cycles (``edgesim.sim.mapping``: folds on the MAC array, the vector unit,
at least what the SRAM port feeds) and the MAC utilisation they give, compute time in integer
picoseconds, the activation bytes it moves off-chip and the router op that gates it; per path
the totals the energy model needs.

Activation traffic (the memory system, ``placement``). An op whose live activations exceed the
activation reserve spills the part of its output that does not fit, ``min(out, live -
reserve)``: written to the spill memory by the op (the producer) and read back by each of its
readers (``LayerOp.readers``, from the trace: a block output read by the next block's first
conv and by its residual add is read back twice). An op without recorded readers (a
hand-made workload) is read by the next op of the path that is not a fused activation (an
assumption). The last op's spill is never read back. When the arena is off-chip
(Vela's Dedicated_Sram) op 0 reads the network input from it and the last op writes the
network output to it; with the arena in SRAM (Shared_Sram) both stay in SRAM.

>>> from edgesim.testing import tiny_config, tiny_workload
>>> plan, = compile_paths(Machine.from_config(tiny_config()), tiny_workload())

On the tiny 8x8 weight-stationary array: conv ``a`` (C 8, K 8, 1000 pixels) is one fold of
8 (weight load) + 14 (fill, drain) + 1000 cycles; the ReLU reads 100 elements on 8 lanes (13);
the batch-1 FC ``b`` (K 250, N 8) is 32 folds of 8 + 14 + 1 = 736 cycles, 23x its MAC bound.

>>> plan.cycles.tolist(), plan.compute_cycles, plan.macs
([1022, 13, 736], 1771, 66000)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from edgesim.encodings import decodes, skips
from edgesim.sim.bound import compute_unit
from edgesim.sim.energy import compute_energy, op_energy, register_bits_per_mac
from edgesim.sim.mapping import SOFTMAX, Array, op_cycles, utilisation
from edgesim.sim.tiling import (
    ONCE,
    PSUM_BITS,
    BlockBuffer,
    Tiling,
    in_place_bytes,
    output_block,
    plan_tiling,
)
from edgesim.weight_codec import RECORD_BYTES
from edgesim.workload import LayerOp, Workload

if TYPE_CHECKING:
    from edgesim.hardware import HardwareConfig

__all__ = ["PS_PER_S", "SRAM", "Machine", "Memory", "OpInfo", "PathPlan", "compile_paths",
           "path_blocks", "utilisation"]

#: Output channels an op's record stream is rounded up to (``scale_cycles``): regor's U85 scale
#: source emits ``RoundAway(depth, RoundAway(ofmUBlock.Depth(), 16))`` records, the U85-1024's
#: micro-block 32 deep (ethos_u85_weight_encoder.cpp EthosU85ScaleSource::SetSource).
SCALE_GRANULE = 32

#: Picoseconds per second: simulated time is integer picoseconds.
PS_PER_S = 10**12

#: ``Machine.arena_mem`` when the activation arena is the SRAM (no off-chip memory).
SRAM = -1


@dataclass(frozen=True, slots=True)
class Memory:
    """One off-chip memory: integer times (ps, rounded up), bytes per second, its port index.

    ``bytes_per_s`` is the port's bandwidth; ``read_bytes_per_s`` and ``write_bytes_per_s``
    what one stream of reads or writes gets of it (``stream_bytes_per_s``: the bandwidth
    unless the config limits the bursts in flight); ``scale_bytes_per_s`` the rate of the
    channel that reads an op's per-channel bias and scale records (0: no such channel).
    """

    name: str
    port: int
    latency_ps: int
    write_latency_ps: int
    bytes_per_s: int
    burst_bytes: int
    read_pj_per_bit: float
    write_pj_per_bit: float
    read_bytes_per_s: int = 0
    write_bytes_per_s: int = 0
    scale_bytes_per_s: int = 0


def _ps(seconds: float) -> int:
    return math.ceil(seconds * PS_PER_S - 1e-6)


#: Of a memory's outstanding transactions (``offchip.max_reads`` / ``max_writes``) a stream
#: keeps this share busy, and a channel delivers this share of what its transactions in flight
#: carry: regor (Vela for Ethos-U85) EthosU85Performance::ChannelBW, ``transactionUtil =
#: min(read buffer, maxOutstanding x ports x 0.8)``, ``min(bandwidth, burst x transactionUtil
#: / latency x 0.8)`` (hapv3/neural-compiler ethosu/regor/architecture/ethosu85/
#: ethos_u85_performance.cpp).
TRANSACTION_UTILISATION = 0.8
CHANNEL_EFFICIENCY = 0.8


def stream_bytes_per_s(bytes_per_s: float, burst: int, latency_s: float,
                       in_flight: float | None) -> int:
    """What one stream gets of a memory: Little's law, the bytes in flight over the latency,
    derated by ``CHANNEL_EFFICIENCY``, at most the bandwidth; ``in_flight`` None is no limit.

    The Ethos-U85's DRAM of edge_match.ini (128 B bursts, 500-cycle reads, 24 reads
    outstanding at 1 GHz): 128 B x (24 x 0.8) / 500 ns x 0.8 = 3.93 GB/s of its 8 GB/s.

    >>> stream_bytes_per_s(8e9, 128, 500e-9, 24 * TRANSACTION_UTILISATION)
    3932160000
    """
    if in_flight is None or latency_s <= 0:
        return round(bytes_per_s)
    return round(min(bytes_per_s, burst * in_flight / latency_s * CHANNEL_EFFICIENCY))


@dataclass(frozen=True, slots=True)
class Machine:
    """A HardwareConfig as the simulator computes with it: ``hw`` itself, and what is derived
    from it once (integer clock, the memories and their indices, the array, the block buffer).

    Every plain field is read from ``hw`` (``m.hw.act_bits``), never copied: a new config field
    is a schema line (``edgesim.schema``) the simulator reads where it needs it. ``clock_hz``
    is ``hw.clock_hz`` rounded to whole hertz (simulated time is integer).
    """

    hw: HardwareConfig
    clock_hz: int
    array: Array                          # the array, vector unit, op rates and SRAM port
    memories: tuple[Memory, ...] = ()     # ``offchip`` first
    ports: tuple[str, ...] = ("AXI1",)    # port names, by index
    weights_mem: int = 0                  # index into ``memories``
    arena_mem: int = 0                    # index, or ``SRAM``
    spill_mem: int = 0                    # index
    block: BlockBuffer | None = None      # the output-block buffer (``compute.block``)
    input_in_place: bool = False          # ``placement.input == "in_place"``

    @classmethod
    def from_config(cls, hw: HardwareConfig) -> Machine:
        """Read ``hw``; a memory of non-positive bandwidth is an error."""
        names = list(hw.memories)
        ports = tuple(dict.fromkeys(mem["port"] for mem in hw.memories.values()))
        memories = []
        for name, mem in hw.memories.items():
            if round(mem["bytes_per_s"]) <= 0:
                raise ValueError(f"memory {name}: bandwidth must be positive, got "
                                 f"{mem['bytes_per_s']} B/s")
            reads, writes, scales = (mem.get(k) for k in ("max_reads", "max_writes",
                                                          "scale_reads"))
            bw, burst = mem["bytes_per_s"], mem["burst_bytes"]
            memories.append(Memory(
                name, ports.index(mem["port"]), _ps(mem["latency_s"]),
                _ps(mem["write_latency_s"]), round(bw), burst,
                mem["read_pj_per_bit"], mem["write_pj_per_bit"],
                stream_bytes_per_s(bw, burst, mem["latency_s"],
                                   reads and reads * TRANSACTION_UTILISATION),
                stream_bytes_per_s(bw, burst, mem["write_latency_s"],
                                   writes and writes * TRANSACTION_UTILISATION),
                stream_bytes_per_s(bw, burst, mem["latency_s"], scales) if scales else 0))
        arena = SRAM if hw.placement_arena == "sram" else names.index(hw.placement_arena)
        spills = hw.placement_spills or ("offchip" if arena == SRAM else hw.placement_arena)
        blk = hw.block
        block = None
        if blk["buffer"]:
            block = BlockBuffer(**hw.section("compute.block"))
        in_place = hw.placement_input == "in_place"
        if in_place and block is None:
            raise ValueError("placement.input in_place needs compute.block.buffer (the "
                             "output-block buffer an in-place read is cut by)")
        return cls(
            hw=hw, clock_hz=round(hw.clock_hz), array=Array.from_config(hw),
            memories=tuple(memories), ports=ports,
            weights_mem=names.index(hw.placement_weights), arena_mem=arena,
            spill_mem=names.index(spills), block=block, input_in_place=in_place)


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
    #: joules of the op that do not depend on the stream: MACs, PE registers, index decode,
    #: its SRAM reads and writes and its activation transfers (``_op_energies``)
    energy_j: float = 0.0


@dataclass(frozen=True, slots=True)
class PathPlan:
    """One path compiled for a Machine (arrays are per op, in path order)."""

    name: str
    blocks: tuple[tuple[int, ...], ...]   # per op: block indices (deduplicated)
    all_blocks: tuple[int, ...]           # every block the path reads, in first-use order
    cycles: np.ndarray                    # per op compute cycles
    units: tuple[str, ...]                # per op the unit of its cycles (``sim.bound``)
    util: tuple[float, ...]               # per op MACs / (cycles x peak); 0.0 without MACs
    compute_ps: tuple[int, ...]           # per op compute time, integer picoseconds
    spill: tuple[int, ...]                # per op activation bytes moved off-chip
    tiling: tuple[Tiling, ...]            # per op loop order and tiles (``sim.tiling``)
    act_parts: tuple[tuple[tuple[int, bool, int], ...], ...]  # per op (memory, write, bytes)
    gate: tuple[int, ...]                 # per op: index of the gating router op, or -1
    macs: int
    compute_cycles: int
    sram_read_fixed: int                  # weight reads + activation reads
    sram_write_fixed: int                 # activation writes
    energy_mac_j: float
    energy_array_j: float                 # PE registers (``energy.register_bits_per_mac``)
    energy_decode_j: float
    act_dram_bytes: int
    act_reread_bytes: int                 # of act_dram_bytes: input re-reads (tiling)
    act_traffic: tuple[tuple[int, int, int], ...]  # per memory used: (memory, read, write)
    gated_blocks: frozenset[int]          # blocks read by gated ops
    ops: tuple[OpInfo, ...] | None        # per-op row fields (only when asked for)
    #: what the engine derives from the plan once, per weight memory (``engine._per_plan``):
    #: filled when first needed, it lives and goes with the plan
    derived: dict = field(default_factory=dict, compare=False, repr=False)


def path_blocks(workload: Workload) -> list[tuple[tuple[int, ...], ...]]:
    """Per path, per op: the indices of the blocks it reads, deduplicated (``PathPlan.blocks``;
    what a residency policy is prepared from, before any path is compiled)."""
    index = {b: k for k, b in enumerate(workload.blocks)}
    return [tuple(tuple(dict.fromkeys(index[b] for b in op.weights)) for op in path.ops)
            for path in workload.paths]


def compile_paths(machine: Machine, workload: Workload, *, per_layer: bool = False,
                  reserved: int = 0, held: frozenset[int] = frozenset(),
                  blocks: list[tuple[tuple[int, ...], ...]] | None = None) -> list[PathPlan]:
    """Every path of ``workload`` compiled for ``machine``; ``per_layer`` adds ``ops``.

    ``reserved`` weight-SRAM bytes are held by the residency policy for the whole stream (the
    pinned set, whose block indices are ``held``): a weight tile gets the rest, and an op
    streams in tiles only the weights it does not hold. lru and belady evict to make room (0).
    ``blocks`` is ``path_blocks(workload)`` when the caller has it already.
    """
    blocks = path_blocks(workload) if blocks is None else blocks
    weight_buf = max(0, machine.hw.weight_sram_bytes - reserved)
    sizes = [b.stored_bytes for b in workload.blocks.values()] if held else []
    return [_compile_path(machine, workload, path, ids, per_layer, weight_buf,
                          {b: sizes[b] for b in held})
            for path, ids in zip(workload.paths, blocks, strict=True)]


def _compile_path(m: Machine, workload: Workload, path, op_blocks: tuple[tuple[int, ...], ...],
                  per_layer: bool, weight_buf: int, held: dict[int, int]) -> PathPlan:
    """One path's plan: per-op cycles, bytes, spills and gates, and the path's totals.

    Longer than 60 lines: it is one pass over the ops that accumulates a dozen per-path totals
    together (cycles, SRAM reads and writes, MAC and decode energy, spills, gated blocks);
    splitting the pass would walk the ops several times or thread the totals through helpers.
    """
    n = len(path.ops)
    cycles = np.zeros(n, dtype=np.int64)
    util = [0.0] * n
    units = ["none"] * n
    array = m.array
    gate = [-1] * n
    # a gate names a router (its module): the decision is known when that router's last
    # op has run; plain op names are accepted too
    names = {op.name: j for j, op in enumerate(path.ops)}
    names.update({op.router: j for j, op in enumerate(path.ops) if op.router is not None})
    blocks: list[tuple[int, ...]] = []
    macs = sram_read = sram_write = 0
    decode = 0
    macs_by: dict[str, int] = {}           # executed MACs per precision (energy)
    register_bits = 0
    gated: set[int] = set()
    op_weight_bytes: list[int] = []
    producer = None                     # the last op that is not a fused activation
    for j, op in enumerate(path.ops):
        ids = op_blocks[j]
        blocks.append(ids)
        executed = _executed_macs(m, op, workload)
        peak = m.hw.macs_per_cycle[op.precision]
        wbytes = _weight_bytes(workload, op)
        op_weight_bytes.append(wbytes)
        mapped = op_cycles(array, op, peak, executed, wbytes, m.hw.act_bits, producer)
        units[j] = compute_unit(array, op, mapped, wbytes, producer)
        cycles[j] = max(mapped + edge_cycles(m, op), scale_cycles(m, op))
        if not op.fused:
            producer = op
        util[j] = utilisation(executed, int(cycles[j]), peak)
        macs += executed
        macs_by[op.precision] = macs_by.get(op.precision, 0) + executed
        if op.macs:
            register_bits += executed * register_bits_per_mac(
                op.precision, act_bits=m.hw.act_bits, dataflow=array.dataflow)
        sram_read += wbytes + op.in_bytes
        sram_write += op.out_bytes
        for b in dict.fromkeys(op.weights):
            blk = workload.blocks[b]
            if decodes(blk.encoding):
                decode += blk.nonzeros
        g = op.gate
        if g is not None and g in names and names[g] < j:
            gate[j] = names[g]
            gated.update(ids)
    parts, in_place = _act_parts(m, path.ops)
    # what an op streams in tiles: its weights less the blocks a static set holds
    streamed = [max(0, w - sum(held.get(b, 0) for b in dict.fromkeys(ids)))
                for w, ids in zip(op_weight_bytes, blocks, strict=True)]
    tiling = _tile(m, path.ops, streamed, parts, in_place, weight_buf)
    # weights outer: the staged off-chip input is read once per weight tile (an input read in
    # place is already read per output block)
    parts = [tuple((mem, w, b if w or t.order != "weights_outer"
                    else (b - ip) * t.weight_tiles + ip) for mem, w, b in ps)
             for ps, t, ip in zip(parts, tiling, in_place, strict=True)]
    spill = [sum(b for _, _, b in ps) for ps in parts]
    traffic: dict[int, list[int]] = {}
    for ps in parts:
        for mem, write, b in ps:
            traffic.setdefault(mem, [0, 0])[write] += b
    act_in = sum(r for r, _ in traffic.values())
    act_out = sum(w for _, w in traffic.values())
    # Python ints: cycles x 10^12 overflows int64 past ~9.2 M cycles
    compute_ps = tuple(-(-(int(c) * PS_PER_S) // m.clock_hz) for c in cycles)
    ops = None
    if per_layer:
        ops = tuple(replace(_op_info(m, workload, op), energy_j=e) for op, e in
                    zip(path.ops, _op_energies(m, workload, path.ops, parts, in_place),
                        strict=True))
    mac_j, array_j, decode_j = compute_energy(m.hw, macs=macs_by, register_bits=register_bits,
                                              decoded=decode)
    return PathPlan(
        name=path.name, blocks=tuple(blocks),
        all_blocks=tuple(dict.fromkeys(b for ids in blocks for b in ids)), cycles=cycles,
        units=tuple(units), util=tuple(util),
        compute_ps=compute_ps, spill=tuple(spill), tiling=tuple(tiling), gate=tuple(gate),
        macs=macs,
        compute_cycles=int(cycles.sum()), sram_read_fixed=sram_read + act_out,
        sram_write_fixed=sram_write + act_in - sum(in_place),   # in place: not via SRAM
        energy_mac_j=mac_j, energy_array_j=array_j, energy_decode_j=decode_j,
        act_dram_bytes=sum(spill), act_reread_bytes=sum(t.act_reread for t in tiling),
        act_parts=parts,
        act_traffic=tuple((k, r, w) for k, (r, w) in sorted(traffic.items())),
        gated_blocks=frozenset(gated), ops=ops)


def _conv_block(m: Machine, op: LayerOp):
    """The output block of a conv on the machine's block buffer (``tiling.output_block``), a
    depthwise one reading only its own channels (C per group); None without a buffer."""
    dims = op.dims
    if m.block is None or op.kind != "conv" or "C" not in dims:
        return None
    sy, sx = op.strides or (1, 1)
    return output_block(m.block, P=dims.get("P", 1), Q=dims.get("Q", 1), K=dims["K"],
                        C=dims["C"], R=dims.get("R", 1), S=dims.get("S", 1), stride=(sy, sx),
                        depthwise=_depthwise_ublock(m, op))


def _depthwise_ublock(m: Machine, op: LayerOp) -> tuple[int, int, int] | None:
    """The micro-block a depthwise conv runs on (``compute.pooling.ublock``, where the array
    runs depthwise convs like its pools), None for any other op or without one."""
    dw = op.groups > 1 and op.dims.get("C", 1) == 1 and m.array.depthwise == "array"
    return m.array.pooling.ublock if dw else None


def edge_cycles(m: Machine, op: LayerOp) -> int:
    """Cycles a conv on a broadcast array spends before its first block and after its last:
    the first input block read and the last output block written, each the block buffer's
    SRAM ``latency`` plus its bytes over the SRAM port (regor EthosU55Performance /
    EthosU85Performance::EstimateMacOpCycles ``totalCycles += ofmBlockCycles`` (last) ``+=
    ifmBlockCycles`` (first), MinimumIfmCycles / MinimumOfmCycles); 0 without a block buffer.

    The input block is the output block's window (clipped to the input) of the block's
    channels for a depthwise conv, else of one input slice (``Block.ifm_d``); the output block
    is clipped to the output (tests/test_schedule.py works KWS's depthwise conv by hand).
    """
    if m.block is None or m.array.kind != "broadcast" or not op.macs:
        return 0
    dims = op.dims
    act = max(1, m.hw.act_bits // 8)
    port = max(1, m.array.port_bytes)
    blk = _conv_block(m, op)
    if blk is not None:
        p, q, k = dims.get("P", 1), dims.get("Q", 1), dims["K"]
        c = dims["C"] * op.groups
        sy, sx = op.strides or (1, 1)
        depth = min(blk.d, k) if op.groups > 1 and dims["C"] == 1 else min(blk.ifm_d, c)
        ih = min(blk.ih, (p - 1) * sy + dims.get("R", 1))
        iw = min(blk.iw, (q - 1) * sx + dims.get("S", 1))
        ifm = ih * iw * depth
        ofm = min(blk.h, p) * min(blk.w, q) * min(blk.d, k)
    elif "N" in dims and "K" in dims:   # a matmul (an FC): M tokens, K in, N out
        mh, mw, md = m.block.max
        rows = min(dims.get("M", 1), mh * mw)
        ifm = rows * min(dims["K"], 32)     # one input slice of at most 32 channels
        ofm = rows * min(dims["N"], md)
    else:
        return 0
    return 2 * m.block.latency + ifm * act // port + ofm * act // port


def scale_cycles(m: Machine, op: LayerOp, granule: int = SCALE_GRANULE) -> int:
    """Cycles the op's per-channel bias and scale records take through the weight memory's
    scale channel (``Memory.scale_bytes_per_s``; 0 without one): an op cannot end before they
    have arrived.

    An op that reads weights (a conv, depthwise or not, or a matmul) reads one record of
    ``RECORD_BYTES`` per output channel, the channels rounded up to ``granule``, once per
    output block in height and width (``tiling.output_block``; regor
    EthosU85Performance::MeasureElementAccess ``weightsRefetch = ofmBlocks.ElementsWH()``,
    ``constRead[1] = weightsRefetch x encodedScaleSize``, read on MemChannel::Scale).

    On the U85's DRAM (2 bursts of 128 B in flight, 500-cycle reads, at 1 GHz:
    128 x 2 / 500 x 0.8 = 0.4096 B/cycle) 128 channels in one block take 1,280 B / 0.4096 =
    3,125 cycles (Vela's DRAM access cycles of VWW's 128-channel depthwise convs: 3,124).
    """
    mem = m.memories[m.weights_mem] if m.memories else None
    if mem is None or not mem.scale_bytes_per_s or not op.macs or not op.weights:
        return 0
    dims = op.dims
    blocks_xy = 1
    if op.kind == "conv" and "C" in dims:
        k = dims["K"]                   # every output channel (dims["C"] is per group)
        blk = _conv_block(m, op)
        if blk is not None:
            blocks_xy = (-(-dims.get("P", 1) // blk.h) * -(-dims.get("Q", 1) // blk.w)
                         * dims.get("N", 1))
    elif "N" in dims:
        k = dims["N"]
    else:
        return 0
    nbytes = -(-k // granule) * granule * RECORD_BYTES * blocks_xy
    return -(-nbytes * m.clock_hz // mem.scale_bytes_per_s)


def _act_parts(m: Machine, ops) -> tuple[list[tuple[tuple[int, bool, int], ...]], list[int]]:
    """Per op, the activation transfers it makes off-chip: (memory, is a write, bytes); and per
    op the bytes of those it reads in place (``input_read``).

    Reads come before writes; a spill's write is the producer's, its read-back the consumer's.
    """
    n = len(ops)
    reads: list[dict[int, int]] = [{} for _ in range(n)]
    writes: list[dict[int, int]] = [{} for _ in range(n)]
    off = m.arena_mem != SRAM
    # the network's output is written by its last op; a fused activation writes it with its
    # producer, but a softmax (a chain of commands after it) writes it itself
    out_op = next((j for j in range(n - 1, -1, -1)
                   if not ops[j].fused or ops[j].function in SOFTMAX), n - 1)
    position = {op.name: j for j, op in enumerate(ops)}
    for j, op in enumerate(ops):
        last = j >= out_op
        if off and j == out_op:
            writes[j][m.arena_mem] = op.out_bytes       # the network's output
            continue
        over = min(op.out_bytes, max(0, op.live_bytes - m.hw.act_reserve_bytes))
        if not over:
            continue
        writes[j][m.spill_mem] = writes[j].get(m.spill_mem, 0) + over
        if last:
            continue
        consumers = [position[r] for r in op.readers if position.get(r, -1) > j]
        if not consumers:
            nxt = next((c for c in range(j + 1, n) if not ops[c].fused), None)
            consumers = [] if nxt is None else [nxt]
        for c in consumers:    # each reader reads the spilled part back
            reads[c][m.spill_mem] = reads[c].get(m.spill_mem, 0) + over
    in_place = [0] * n
    if off and n:
        nbytes, placed = input_read(m, ops[0])      # the network's input
        reads[0][m.arena_mem] = reads[0].get(m.arena_mem, 0) + nbytes
        in_place[0] = nbytes if placed else 0
    return [tuple((k, False, b) for k, b in sorted(reads[j].items()) if b)
            + tuple((k, True, b) for k, b in sorted(writes[j].items()) if b)
            for j in range(n)], in_place


def input_read(m: Machine, op: LayerOp) -> tuple[int, bool]:
    """Bytes ``op`` moves to read its input from the off-chip arena, and whether it reads it
    in place.

    ``staged`` (or an op that is not a 2-D conv, or no block buffer): the input is copied
    once, ``in_bytes``. ``in_place``: the conv reads it per output block (``tiling.output_block``
    for the machine's block buffer) with its kernel's halo, once per depth block and per kernel
    piece (``compute.block.sub_kernel``: a 10 x 4 kernel on 8 x 8 pieces is two); the network's
    input lies in its file's NHWC layout, so the array fetches each pixel's slice of ``ifm_d``
    channels as one run, and a run shorter than a burst costs ``burst / run`` times its bytes
    (``tiling.in_place_bytes``; ethos-u-vela npu_performance._estimate_memory_transfer_efficiency).
    """
    dims = op.dims
    if not (m.input_in_place and m.block is not None and op.kind == "conv" and "C" in dims
            and "P" in dims and op.in_bytes):
        return op.in_bytes, False
    groups = op.groups
    n, c = dims.get("N", 1), dims["C"] * groups
    p, q, k = dims["P"], dims.get("Q", 1), dims["K"] * groups
    pixels = max(1, op.in_bytes * 8 // max(1, m.hw.act_bits * c * n))
    dy, dx = op.dilations or (1, 1)
    r = (dims.get("R", 1) - 1) * dy + 1
    s = (dims.get("S", 1) - 1) * dx + 1
    if op.strides is not None:
        sy, sx = op.strides
        # the input's sides: the window the output needs less the padding (top, left, bottom,
        # right); without usable pads, the pixels split in the output's aspect
        pads = op.pads or (0, 0, 0, 0)
        height = max(1, (p - 1) * sy + r - pads[0] - pads[2])
        width = max(1, (q - 1) * sx + s - pads[1] - pads[3])
    else:                                   # a trace without strides: from the sides
        height = width = 0
    if height * width != pixels:
        height = max(1, round(math.sqrt(pixels * p / q)))
        width = max(1, pixels // height)
        if op.strides is None:
            sy, sx = max(1, round(height / p)), max(1, round(width / q))
    block = output_block(m.block, P=p, Q=q, K=k, C=c, R=r, S=s, stride=(sy, sx))
    mem = m.memories[m.arena_mem]
    kh, kw = m.block.sub_kernel
    pieces = (-(-dims.get("R", 1) // kh) if kh else 1) * (-(-dims.get("S", 1) // kw) if kw else 1)
    elements = n * in_place_bytes(block, P=p, Q=q, K=k, C=c, H=height, W=width,
                                  burst=mem.burst_bytes, run=block.ifm_d * m.hw.act_bits // 8,
                                  pieces=pieces)
    return max(op.in_bytes, -(-elements * m.hw.act_bits // 8)), True


def _tile(m: Machine, ops, weight_bytes: list[int], parts, in_place: list[int],
          weight_buf: int) -> list[Tiling]:
    """Per op, its tiling (``sim.tiling.plan_tiling``) for the SRAM left to it.

    The off-chip input is what ``parts`` reads for the op; a tile of weights may fill
    ``weight_buf``, a stripe of input the activation share. The unit of a weight tile is an
    output channel (``K`` of a conv, ``N`` of a matmul), of a stripe an output row (``N*P`` of a
    conv, ``M`` of a matmul); an op without a loop nest is one of each.
    """
    out = []
    for op, wbytes, ps, ip in zip(ops, weight_bytes, parts, in_place, strict=True):
        if not op.macs:    # no reduction: each weight meets its own slice of input once
            out.append(ONCE)
            continue
        offchip = sum(b for _, write, b in ps if not write) - ip   # staged input only
        dims = op.dims
        if "C" in dims:
            channels, rows = dims.get("K", 1), dims.get("N", 1) * dims.get("P", 1)
        else:
            channels, rows = dims.get("N", 1), dims.get("M", 1)
        out.append(plan_tiling(f"{op.name} ({op.kind})", weight_bytes=wbytes,
                               input_offchip=offchip, input_bytes=op.in_bytes,
                               channels=channels, rows=rows, weight_buf=weight_buf,
                               act_buf=m.hw.act_reserve_bytes,
                               psum_bytes=op.out_bytes * PSUM_BITS // max(1, m.hw.act_bits),
                               schedule=m.hw.schedule,
                               sram_bytes=m.hw.act_reserve_bytes + m.hw.weight_sram_bytes))
    return out


def _op_energies(m: Machine, workload: Workload, ops, parts, in_place: list[int]) -> list[float]:
    """Per op, the joules ``_compile_path``'s path totals hold of it (``energy.op_energy``):
    its MACs, PE registers and decoded indices (``compute_energy``), its SRAM reads (weights,
    input, and the activations it writes off-chip) and writes (output, and activations it
    reads back, less an input read in place), and its activation transfers. Summed
    over a path they are the path's ``energy_mac/array/decode_j`` and the SRAM and off-chip
    activation energy of ``engine._inference_row``; the engine adds the weight bytes each
    op moves and leakage over its time (``LayerRow.energy_j``)."""
    out = []
    for op, ps, ip in zip(ops, parts, in_place, strict=True):
        executed = _executed_macs(m, op, workload)
        bits = (executed * register_bits_per_mac(op.precision, act_bits=m.hw.act_bits,
                                                  dataflow=m.array.dataflow) if op.macs else 0)
        decoded = sum(workload.blocks[b].nonzeros for b in dict.fromkeys(op.weights)
                      if decodes(workload.blocks[b].encoding))
        mac, array, decode = compute_energy(m.hw, macs={op.precision: executed},
                                            register_bits=bits, decoded=decoded)
        act_out = sum(b for _, write, b in ps if write)
        act_in = sum(b for _, write, b in ps if not write)
        out.append(op_energy(
            m.hw, mac_j=mac, array_j=array, decode_j=decode,
            sram_read_bytes=_weight_bytes(workload, op) + op.in_bytes + act_out,
            sram_write_bytes=op.out_bytes + act_in - ip,
            transfers=[(m.memories[mem], w, b) for mem, w, b in ps]))
    return out


def _weight_bytes(workload: Workload, op: LayerOp) -> int:
    """Stored bytes of the op's blocks (each once): what it reads of weights from SRAM."""
    return sum(workload.blocks[b].stored_bytes for b in dict.fromkeys(op.weights))


def _executed_macs(m: Machine, op: LayerOp, workload: Workload | None = None) -> int:
    """MACs the hardware executes: the effective ones when it skips zero weights of every
    encoding, or when every weight of the op is in a sparse encoding the hardware or its
    kernels walk (``encodings.skips``: ``compute.skip_formats`` names it); else every MAC:
    hardware that cannot decode a sparse or nested layout runs the op dense."""
    if m.hw.skip_zero_weights:
        return op.effective_macs
    if workload is not None and op.weights and m.hw.skip_formats:
        weights = [workload.blocks[b] for b in op.weights if workload.blocks[b].role != "bias"]
        if weights and all(skips(b.encoding, m.hw.skip_formats) for b in weights):
            return op.effective_macs
    return op.macs


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
                  _executed_macs(m, op, workload))
