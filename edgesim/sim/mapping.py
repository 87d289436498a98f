"""Mapping one op onto the MAC array, the vector unit and the SRAM port: its compute cycles.

Public names: ``Array``, ``Rates``, ``op_cycles``, ``mac_cycles``, ``broadcast_cycles``, ``fuses``,
``vector_cycles``, ``port_cycles``, ``utilisation``, ``chained``, ``DATAFLOWS``, ``KINDS``,
``SOFTMAX_LOWERINGS``.

An ``Array`` is ``rows x cols`` processing elements (PEs), a dataflow, a vector unit rate, an
SRAM port width, the array's kind and the rates of the op classes that do not fold onto it
(``Rates``). A PE does ``peak / (rows * cols)`` MACs per cycle at a precision of ``peak``
MACs/cycle (an Ethos-U PE is an 8-wide dot product; an int4 PE packs two products); below one
it needs ``ceil(rows * cols / peak)`` cycles per MAC.

**Weight-stationary** (the default; TPU v1, Jouppi et al. ISCA 2017; SCALE-Sim, Samajdar et al.
2018): the reduction ``C*R*S`` (C per group; ``K`` of a matmul) lies on the rows, output
channels on the columns. ``folds = groups * ceil(red / (rows*pack)) * ceil(K/groups / cols)``;
each fold costs

* ``rows`` cycles to load its weights (shifted in one row per cycle, not double-buffered:
  an assumption that makes a batch-1 FC weight-load bound),
* ``rows + cols - 2`` cycles of fill and drain (the skew of a systolic array),
* ``N*P*Q`` cycles streaming one output pixel per cycle (``M`` tokens of a matmul).

**Output-stationary** (Ethos-U: accumulators hold an output block while the reduction streams
through; Vela ``architecture_features``: OFM micro-block x 8-wide dot product): output pixels
on rows, output channels on columns, ``folds = groups * ceil(N*P*Q / rows) * ceil(K/groups /
cols)``; each fold streams the reduction tap by tap, ``R*S*ceil(C / pack)`` cycles (channels
pack into the PE's dot product; a 3-channel stem tap fills 3 of 8 lanes), plus fill and drain.

**Pipelined** folds (``array.pipelined``; Vela's conv estimate overlaps a block's output with
the next block's MACs: ``max(dpu, output) x blocks + min(dpu, output)``, ethos-u-vela
``npu_performance._estimate_conv_cycles``): with double-buffered weights and accumulators, a
fold's weight load, fill and drain proceed while the fold before it streams, so an op costs
``fixed + stream + (folds - 1) x max(stream, fixed)``. A batch-1 FC stays weight-load bound
(``fixed > stream``); a layer of many short folds loses its fill and drain.

**Broadcast** arrays (``kind: broadcast``; Ethos-U: an IFM brick is broadcast to a micro-block
of accumulators, each PE an 8-wide dot product; a mechanism learnt from ethos-u-vela
``npu_performance._estimate_conv_cycles`` and regor ``EstimateMacCyclesPerBlock``, written
afresh): ``rows`` output pixels (``ublock_width`` of them along Q) x ``cols`` output channels
(all cores) form a micro-block; the OFM plane is ``n_xy = N * ceil(P / (rows / ublock_width)) *
ceil(Q / ublock_width)`` micro-blocks. A *kernel step* takes ``step_cycles`` cycles per
micro-block and consumes ``step_cycles`` dot-product bricks of ``pack`` channels: of one tap
(depth-first: ``step_cycles * pack`` channels) or of ``step_cycles`` taps (part-kernel:
``pack`` channels each); the compiler takes the traversal with fewer steps, so a 3-channel
stem pads its depth to ``pack``, and four taps share a step. A step over one slice of
``cols`` channels lasts at least ``writeback_cycles`` (the accumulators' write-back), so::

    dpu = groups * ceil(K/cols) * steps * max(writeback, step_cycles * n_xy)
    steps = min(taps * ceil(C / (step_cycles*pack)), ceil(taps / step_cycles) * ceil(C / pack))

A depthwise conv (``depthwise: array``) is the part-kernel law with one channel per group and
the groups on the columns: ``ceil(G*K/cols) * ceil(taps / step_cycles) * max(wb, step * n_xy)``
(at 3x3, 9 of 12 tap slots of 1/pack of the lanes: 9.4 % of peak). A matmul has one tap and is
traversed depth-first. The output stage writes ``Rates.output`` cycles per OFM element and
overlaps the MACs slice by slice: ``max(dpu, out) + min(dpu, out) / slices`` (the last
slice's tail), never below the roofline. No fill or drain: nothing is skewed.

Depthwise convs (C per group == 1) otherwise run on the vector unit:
``ceil(N*K*P*Q*R*S / rate)`` (each output needs R*S MACs at the vector rate). Zero-skipping
hardware shortens only the streaming part, by effective / dense MACs (a skipped weight still
occupies its PE during loads and fill). A mapped op never takes fewer cycles than
``ceil(MACs / peak)`` (the roofline).

Ops without MACs run on the vector unit at ``rate`` elements per cycle over the elements they
read (``vector_cycles``), unless ``Rates`` gives their class its own unit: element-wise ops
``eltwise`` cycles per output element, pools ``pool`` per input element, resizes ``resize`` per
output element, standalone activations ``lut`` per element, each at least ``command`` cycles
(the least an NPU command takes). A fused activation is free, except a softmax when
``Rates.softmax`` says the hardware runs it as a chain of that many element-wise/LUT commands
over its producer's output (Ethos-U has no softmax unit: ``softmax * max(command, eltwise *
elements)``); with ``Rates.int32`` the softmax is its compiler's lowering instead
(``SOFTMAX_LOWERINGS``: int32 commands on 16-element bricks, each at least its command-issue
bound, those reading a constant waiting for the weights memory; the commands ``chained`` into
the one before them free but for a per-element rate). An element-wise op reading the output
of the MAC op just before it costs nothing when ``Rates.fuse_eltwise`` (Ethos-U85 chains it
into that op's output stage).

**Pools on the MAC engine** (``compute.pooling.unit: array``; Ethos-U runs pooling and a
softmax's max and sum reductions on the MAC engine, not a vector unit: regor
``EthosU55Performance::EstimateMacCyclesPerBlock`` / ``EstimateMacOpCycles`` and the U85's,
ethos-u-vela ``npu_performance._estimate_conv_cycles``; written afresh). A 2-D average or max
pool with a recorded window (``LayerOp.window``) costs, per OFM block of at most
``Pooling.block``: ``sum over kernel pieces of max(min_steps, taps) x micro-blocks x act_bits /
2`` MAC cycles (pieces of at most ``sub_kernel``; + ``delay`` per piece for a one-micro-block
block) and ``ceil(rate x block elements)`` output cycles; blocks are issued at least every
``(|OFM - IFM transfer| + mac + out) / 4`` cycles; the longer stage paces the blocks, the
shorter is paid once, and the first IFM block and the last OFM block transfer before and after
(``latency`` + bytes / port). KWS's 25 x 5 average pool over 64 channels on Ethos-U55-128:
pieces 40 + 40 + 40 + 5 = 125 steps x 8 micro-blocks x 4 = 4,000 MAC cycles; output 32;
issue (4,000 + 32) / 4 = 1,008; IFM block 8 x 5 x 64 B: 32 + 320; OFM 64 B: 32 + 8; total
4,000 + 1,008 + 352 + 40 = 5,400 (Vela's row: 5,400). A softmax's chain then has a ``1 x n``
max pool and a one-step int32 sum (``writeback_cycles``) in place of two element-wise commands.

An ``mcu`` array (``kind: mcu``) is no array: a CPU runs each op as an NN kernel whose cost
``edgesim.sim.mcu`` counts (instructions per MAC by op class, im2col, requantisation, per-op
overhead, flash waits); ``executed`` below the dense MACs is a sparse kernel walking nonzeros.

Every op takes at least ``ceil(SRAM bytes read and written / port bytes per cycle)``
(``port_cycles``; port 0 = no cap).

>>> a = Array(rows=4, cols=4, dataflow="weight_stationary", vector_rate=4, port_bytes=0)
>>> mac_cycles(a, {"M": 1, "N": 4, "K": 8}, 16, 32)   # 2 folds x (4 + 6 + 1)
22
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from edgesim.sim import mcu
from edgesim.workload import LayerOp, Window

__all__ = ["ARRAY_POOLS", "DATAFLOWS", "KINDS", "SOFTMAX_LOWERINGS", "Array", "Pooling", "Rates",
           "broadcast_cycles", "chained", "fuses", "mac_cycles", "op_cycles", "pool_cycles",
           "port_cycles", "utilisation", "vector_cycles"]

#: Dataflows an array can have (``compute.array.dataflow``).
DATAFLOWS = ("weight_stationary", "output_stationary")
#: Array kinds (``compute.array.kind``): what a fold's fixed cost is.
KINDS = ("systolic", "broadcast", "mcu")
#: Activation functions (``LayerOp.function``) an NPU runs as a chain of commands.
SOFTMAX = ("softmax", "log_softmax")
#: An int8 softmax as Vela 5.2.0 lowers it (regor ``compiler/softmax.cpp``, int8 path, and the
#: rows of calibration/vela/mlperf_tiny/*.csv), one NPU command per row: (name, operation, its
#: OFM elements: "n" the logits' count or "1", its inputs). An input is "x" (the logits),
#: another command's name, "c" a scalar constant or "C" an n-element constant (constants lie
#: in the weights memory). The exp LUT rides on "sub" as its activation; "max" and "sum" run
#: on the MAC engine (``pool_cycles``, ``_reduce_sum_cycles``), the rest are element-wise;
#: "nrN.*" are the three Newton-Raphson steps of the reciprocal, x' = x + 4 x (1 - d x).
_SOFTMAX_INT8 = (
    ("max", "max_pool", "1", ("x",)),
    ("sub", "sub", "n", ("x", "max")),
    ("asr", "asr", "n", ("sub", "c")),
    ("sum", "reduce_sum", "1", ("asr",)),
    ("clz", "clz", "1", ("sum",)),
    ("shift", "sub", "1", ("c", "clz")),
    ("headroom", "sub", "1", ("clz", "c")),
    ("d", "shl", "1", ("sum", "headroom")),
    ("mul", "mul", "1", ("d", "c")),
    ("nr0", "add", "1", ("mul", "c")),
    *(row for i in range(3) for row in (
        (f"nr{i}.dx", "mul", "1", (f"nr{i}", "d")),
        (f"nr{i}.e", "sub", "1", ("c", f"nr{i}.dx")),
        (f"nr{i}.xe", "mul", "1", (f"nr{i}", f"nr{i}.e")),
        (f"nr{i}.4xe", "mul", "1", (f"nr{i}.xe", "c")),
        (f"nr{i + 1}", "add", "1", (f"nr{i}", f"nr{i}.4xe")))),
    ("scaled", "mul", "n", ("sub", "nr3")),
    ("round", "add", "n", ("C", "scaled")),
    ("out", "asr", "n", ("round", "shift")),
)
#: Lowerings by command count (``Rates.softmax``): 28, Vela 5.2.0 for Ethos-U55/U65 (its rows:
#: an Add of an n-element rounding constant before the last ASR); 27, for Ethos-U85 (no such
#: Add in its rows; the regor mirror's softmax.cpp emits none either: the ASR rounds itself).
SOFTMAX_LOWERINGS = {
    28: _SOFTMAX_INT8,
    27: tuple((n, o, e, tuple("scaled" if i == "round" else i for i in ins))
              for n, o, e, ins in _SOFTMAX_INT8 if n != "round"),
}
#: Elements of an int32 feature-map brick: Ethos-U stores the int32 intermediates as NHCWB16,
#: so a command over them covers a multiple of 16 (regor ethos_u55_performance.cpp and
#: ethos_u85_performance.cpp EstimateElementwiseCycles: Shape::RoundAway(ofm, 16)).
BRICK = 16
#: Resize functions (``LayerOp.function``).
RESIZE = ("resize_nearest_neighbor", "resize_bilinear", "interpolate")


@dataclass(frozen=True, slots=True)
class Rates:
    """Per op class, the unit and rate of ops that do not fold onto the array (``compute.ops``).

    Rates are cycles per element (output elements; a pool's input elements); None: the op
    class runs on the vector unit (``Array.vector_rate``). ``output``: cycles per OFM element
    of a broadcast array's output stage. ``command``: the fewest cycles any rated op takes.
    ``softmax``: commands of the chain a fused softmax becomes (0: free, fused); with
    ``int32`` set, the lowering of that many commands (``SOFTMAX_LOWERINGS``), costed by
    ``_lowered_softmax_cycles`` with the fields after it.
    """

    output: float = 0.0
    eltwise: float | None = None
    pool: float | None = None
    resize: float | None = None
    lut: float | None = None
    command: int = 0
    softmax: int = 0
    fuse_eltwise: bool = False
    int32: float | None = None      # cycles per element of a softmax's int32 commands
    block: tuple[int, int] = (1, 1)  # such a command's OFM block: pixels, depth granule
    chain_int32: float | None = None  # cycles per element a chained command adds
    chain: int = 1                  # most commands chained into one (1: none)
    chain_ifms: int = 0             # most non-chained inputs of a chain
    scalar_immediate: bool = False  # a scalar constant travels in the command, not memory
    const_latency: int = 0          # cycles: read latency of the memory holding constants
    const_bytes_per_cycle: float = 0.0  # that memory's bandwidth

    def __post_init__(self) -> None:
        if self.int32 is not None and self.softmax not in (0, *SOFTMAX_LOWERINGS):
            raise ValueError(f"compute.ops.softmax {self.softmax} with compute.ops.int32 set: "
                             f"expected 0 or one of {sorted(SOFTMAX_LOWERINGS)} commands")

@dataclass(frozen=True, slots=True)
class Pooling:
    """Where 2-D pools and a softmax's max/sum reductions run (``compute.pooling``).

    ``unit`` "vector": pools at ``Rates.pool`` (else the vector unit), a softmax all
    element-wise commands. "array": on the MAC engine (``pool_cycles``); the other fields are
    the mechanism's constants (see the module docstring).
    """

    unit: str = "vector"
    sub_kernel: tuple[int, int] = (8, 8)   # (height, width): the largest piece of one pass
    min_steps: int = 4                     # fewest steps of a piece
    block: tuple[int, int, int] = (1, 1, 1)  # largest OFM block (height, width, depth)
    delay: int = 0                         # cycles per piece of a one-micro-block block
    latency: int = 0                       # cycles: first IFM / last OFM block's SRAM latency
    max_output: float = 0.0                # cycles per OFM element of a max pool's output
    ublock: tuple[int, int, int] | None = None  # a pool's micro-block; None: the array's

    def __post_init__(self) -> None:
        if self.unit not in ("vector", "array"):
            raise ValueError(f"pooling unit {self.unit!r} is not 'vector' or 'array'")


#: Coordinates per point a ``sample`` op's inputs and outputs hold (xyz): assumption.
POINT_DIMS = 3


@dataclass(frozen=True, slots=True)
class Array:
    """The compute resources one op maps onto (``rows x cols`` PEs, a vector unit, a port)."""

    rows: int
    cols: int
    dataflow: str
    vector_rate: float      # elements per cycle of the vector unit
    port_bytes: int         # SRAM bytes per cycle; 0: no port cap
    pipelined: bool = False  # a fold's fixed cost hides under the previous fold's streaming
    kind: str = "systolic"   # systolic: fill and drain per fold; broadcast: write-back
    depthwise: str = "vector"  # where a depthwise conv runs: "vector" or "array"
    ublock_width: int = 1    # broadcast: pixels of a micro-block along Q
    step_cycles: int = 1     # broadcast: cycles of one kernel step per micro-block
    writeback_cycles: int = 0  # broadcast: fewest cycles of a step over a channel slice
    rates: Rates = Rates()
    kernels: mcu.Kernels | None = None  # mcu: the CPU's kernels (``edgesim.sim.mcu``)
    pooling: Pooling = Pooling()        # where pools run (``compute.pooling``)

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow {self.dataflow!r} is not one of {DATAFLOWS}")
        if self.kind not in KINDS:
            raise ValueError(f"array kind {self.kind!r} is not one of {KINDS}")
        if self.depthwise not in ("vector", "array"):
            raise ValueError(f"depthwise {self.depthwise!r} is not 'vector' or 'array'")
        if self.kind == "mcu" and self.kernels is None:
            raise ValueError("array kind 'mcu' needs the CPU's kernels (edgesim.sim.mcu)")
        if self.rows % self.ublock_width:
            raise ValueError(f"ublock_width {self.ublock_width} does not divide rows {self.rows}")

    @classmethod
    def from_config(cls, hw) -> Array:
        """The array, vector unit, op rates and SRAM port of ``hw`` (a ``HardwareConfig``).

        Each key of ``compute.array`` is the field of its name, and so are those of
        ``compute.ops`` in ``Rates``, ``compute.pooling`` in ``Pooling`` and
        ``compute.kernels`` in ``mcu.Kernels`` (``HardwareConfig.section``): a new key is a
        schema line, the YAMLs and the code that reads it. Derived here: the vector rate
        (``compute.vector.elements_per_cycle``, else one element per column), the SRAM port
        (``sram.port_width``) and, for a softmax's constants, which lie with the weights, their
        memory's read latency (cycles) and bandwidth (bytes per cycle: ``Rates.const_*``).
        """
        array = hw.section("compute.array")
        wmem = hw.memories[hw.placement_weights]
        rates = Rates(**hw.section("compute.ops"),
                      const_latency=math.ceil(wmem["latency_s"] * hw.clock_hz - 1e-6),
                      const_bytes_per_cycle=wmem["bytes_per_s"] / hw.clock_hz)
        kernels = mcu.Kernels(**hw.section("compute.kernels")) if array["kind"] == "mcu" else None
        return cls(**array, vector_rate=hw.vector_elements_per_cycle or array["cols"],
                   port_bytes=hw.sram_port_bytes, rates=rates, kernels=kernels,
                   pooling=Pooling(**hw.section("compute.pooling")))


def _split(a: Array, peak: int) -> tuple[int, int]:
    """``(pack, slow)``: MACs one PE does per cycle, cycles one PE needs per MAC."""
    pes = a.rows * a.cols
    if peak >= pes:
        return peak // pes, 1
    return 1, -(-pes // peak)


def _loop(dims: Mapping[str, int]) -> tuple[int, int, int, int, int] | None:
    """``(groups, channels per group, taps, K per group, pixels)`` of a MAC op, else None."""
    if "C" in dims and "K" in dims:
        groups = max(1, dims.get("G", 1))
        taps = dims.get("R", 1) * dims.get("S", 1) * dims.get("T", 1)
        pixels = dims.get("N", 1) * dims.get("P", 1) * dims.get("Q", 1) * dims.get("O", 1)
        return groups, dims["C"], taps, -(-dims["K"] // groups), pixels
    if "K" in dims and "N" in dims:
        return 1, dims["K"], 1, dims["N"], dims.get("M", 1)
    return None


def mac_cycles(a: Array, dims: Mapping[str, int], peak: int, executed: int,
               dense: int | None = None) -> int:
    """Cycles of a MAC op of loop nest ``dims`` on the array (``executed`` of ``dense`` MACs).

    ``dims`` carries ``G`` (groups) when the conv is grouped. Without a loop nest the op runs
    at the roofline, ``ceil(executed / peak)``.
    """
    roof = -(-executed // peak)
    loop = _loop(dims)
    if loop is None or not executed:
        return roof
    groups, c, taps, k, pixels = loop
    pack, slow = _split(a, peak)
    fill = a.rows + a.cols - 2
    if a.dataflow == "weight_stationary":
        folds = groups * -(-(c * taps) // (a.rows * pack)) * -(-k // a.cols)
        fixed, stream = a.rows + fill, pixels * slow
    else:
        folds = groups * -(-pixels // a.rows) * -(-k // a.cols)
        fixed, stream = fill, taps * -(-c // pack) * slow
    dense = dense or executed
    # zero-skipping shortens the streaming part only: executed / dense of it (ceil)
    streamed = -(-folds * stream * executed // dense)
    if a.pipelined:
        # fold f+1 loads and fills while fold f streams: after the first fold's fixed cost,
        # each further fold costs the longer of its streaming and its fixed work
        per_fold = -(-streamed // folds)
        return max(roof, fixed + per_fold + (folds - 1) * max(per_fold, fixed))
    return max(roof, folds * fixed + streamed)


def _micro_blocks(a: Array, dims: Mapping[str, int]) -> int:
    """``n_xy``: micro-blocks of ``rows`` pixels (``ublock_width`` along Q) the OFM plane holds."""
    width = a.ublock_width
    height = a.rows // width
    if "C" in dims:
        batch = dims.get("N", 1) * dims.get("O", 1)
        return batch * -(-dims.get("P", 1) // height) * -(-dims.get("Q", 1) // width)
    return -(-dims.get("M", 1) // width)          # a matmul's tokens lie along Q


def broadcast_cycles(a: Array, dims: Mapping[str, int], peak: int, executed: int,
                     dense: int | None = None, *, depthwise: bool = False) -> int:
    """Cycles of a MAC op on a broadcast array (see the module docstring), output stage included.

    ``depthwise``: C per group is 1 and the groups lie on the columns.

    >>> u = Array(2, 8, "output_stationary", 1, 0, kind="broadcast", ublock_width=2,
    ...           step_cycles=4, writeback_cycles=32, rates=Rates(output=0.5))
    >>> dims = {"N": 1, "K": 64, "C": 1, "R": 3, "S": 3, "P": 25, "Q": 5}
    >>> broadcast_cycles(u, dims, 128, 72000, depthwise=True)  # 8 x 3 x 300 + 4000 / 8
    7700
    """
    roof = -(-executed // peak)
    loop = _loop(dims)
    if loop is None or not executed:
        return roof
    groups, c, taps, k, pixels = loop
    pack = max(1, peak // (a.rows * a.cols))
    step = a.step_cycles
    per_step = max(a.writeback_cycles, step * _micro_blocks(a, dims))
    if depthwise and a.pooling.ublock is not None and "C" in dims:
        # the pools' micro-block (``Pooling.ublock``: the U85 runs depthwise convs on its
        # 2x4x16 one, as its pools); the write-back scales with its depth
        uh, uw, ud = a.pooling.ublock
        n_xy = (dims.get("N", 1) * -(-dims.get("P", 1) // uh) * -(-dims.get("Q", 1) // uw))
        per_step = max(a.writeback_cycles * ud // max(1, a.cols), step * n_xy)
        slices = -(-(groups * k) // ud)
        steps = -(-taps // step)
    elif depthwise:
        slices = -(-(groups * k) // a.cols)
        steps = -(-taps // step)
    else:
        slices = groups * -(-k // a.cols)
        steps = taps * -(-c // (step * pack))          # depth-first
        if "C" in dims:                                # a conv may go part-kernel
            steps = min(steps, -(-taps // step) * -(-c // pack))
    dpu = slices * steps * per_step
    dpu = -(-dpu * executed // (dense or executed))    # zero-skipping hardware
    out = math.ceil(a.rates.output * pixels * k * groups - 1e-9)
    return max(roof, max(dpu, out) + min(dpu, out) // slices)


#: The pools the MAC engine runs (``LayerOp.function``); a MEAN or a reduction keeps its rate.
ARRAY_POOLS = ("average_pool_2d", "max_pool_2d", "avg_pool2d", "max_pool2d")


def _pieces(size: int, limit: int) -> list[int]:
    """``size`` cut into pieces of at most ``limit``: 25 by 8 is [8, 8, 8, 1]."""
    return [min(limit, size - i) for i in range(0, size, limit)]


def _blocked(a: Array, mac: int, out: int, ifm_bytes: int, ofm_bytes: int, blocks: int) -> int:
    """Cycles of ``blocks`` OFM blocks of ``mac`` engine and ``out`` output-stage cycles each.

    Each block is issued in at least a quarter of its IFM/OFM transfer gap, MAC and output
    cycles (4 DPU stages); the longer stage paces the blocks and the shorter is paid once; the
    first IFM block and the last OFM block transfer before and after (``Pooling.latency`` plus
    bytes over the port). Quarter cycles are kept as integers and the total floored.
    """
    port = max(1, a.port_bytes)
    ifm = a.pooling.latency + ifm_bytes // port
    ofm = a.pooling.latency + ofm_bytes // port
    gap = abs(ofm - ifm) if blocks > 1 else 0
    cmd4 = gap + mac + out                              # 4 x the command-issue bound
    mac4, out4 = max(4 * mac, cmd4), max(4 * out, cmd4)
    if mac4 > out4:
        total4 = mac4 * blocks + out4
    else:
        total4 = out4 * blocks + mac4
    return total4 // 4 + ofm + ifm


def pool_cycles(a: Array, win: Window, act_bits: int, *, maximum: bool) -> int:
    """Cycles of a 2-D pool on the MAC engine (``Pooling.unit`` "array"), output stage and the
    first/last block transfers included.

    The OFM is cut into blocks of at most ``Pooling.block``; a block is ``n`` micro-blocks of
    ``Pooling.ublock`` (default: ``rows`` pixels, ``ublock_width`` along Q, x ``cols``
    channels). The kernel is cut into
    pieces of at most ``sub_kernel``; each piece takes ``max(min_steps, its taps)`` steps, each
    step ``act_bits / 2`` cycles per micro-block (4 at int8), plus ``delay`` when the block is
    one micro-block. The output stage writes ``max_output`` (a max pool) or ``Rates.output``
    cycles per OFM element; the first IFM block is the window of the block's rows and columns
    (``sub_kernel`` at most), the last OFM block its elements.

    >>> u55 = Array(2, 8, "output_stationary", 1, 8, kind="broadcast", ublock_width=2,
    ...             rates=Rates(output=0.5), pooling=Pooling("array", block=(4, 8, 128),
    ...                                                       delay=2, latency=32))
    >>> pool_cycles(u55, Window(25, 5, 25, 5, 25, 5, 64, 1, 1), 8, maximum=False)
    5400
    """
    p = a.pooling
    bh, bw, bd = min(win.p, p.block[0]), min(win.q, p.block[1]), min(win.c, p.block[2])
    blocks = -(-win.p // bh) * -(-win.q // bw) * -(-win.c // bd)
    uh, uw, ud = p.ublock or (a.rows // a.ublock_width, a.ublock_width, a.cols)
    ublocks = -(-bh // uh) * -(-bw // uw) * -(-bd // ud)
    pieces = [r * s for r in _pieces(win.r, p.sub_kernel[0])
              for s in _pieces(win.s, p.sub_kernel[1])]
    mac = sum(max(p.min_steps, n) for n in pieces) * ublocks * max(1, act_bits // 2)
    if ublocks == 1:
        mac += p.delay * len(pieces)
    rate = p.max_output if maximum else a.rates.output
    out = math.ceil(rate * bh * bw * bd - 1e-9)
    bytes_ = max(1, act_bits // 8)
    ifm_h = min(win.h, (bh - 1) * win.stride_h + min(win.r, p.sub_kernel[0]))
    ifm_w = min(win.w, (bw - 1) * win.stride_w + min(win.s, p.sub_kernel[1]))
    return _blocked(a, mac, out, ifm_h * ifm_w * bd * bytes_, bh * bw * bd * bytes_, blocks)


def _reduce_sum_cycles(a: Array, elements: int) -> int:
    """A softmax's sum of ``elements`` int32 exponentials into one, on the MAC engine: one step
    over one micro-block, at least ``writeback_cycles``, plus ``delay``; an output element at
    ``Rates.output``; its int32 IFM and OFM transferred as one block."""
    mac = max(a.writeback_cycles, a.step_cycles) + a.pooling.delay
    out = math.ceil(a.rates.output - 1e-9)
    return _blocked(a, mac, out, 4 * elements, 4, 1)


def chained(lowering: tuple, chain: int, max_ifms: int, scalar_immediate: bool) -> set[str]:
    """The commands of ``lowering`` that chain into the command before them (free).

    Ethos-U85's rule (regor ethos_u85.cpp ``EthosU85OpGroup::Chain``/``ExternalIfms``; the
    groups are formed in command order): an element-wise command joins the group of the one
    before it when it reads that command's output, that output has no other reader (a
    chained tensor is never written to memory), both OFMs are the same size (no broadcast
    OFM), the group stays within ``chain`` commands and within ``max_ifms`` inputs that are
    not chained (a scalar constant counts none when ``scalar_immediate``). A group starts at
    an element-wise command here (the MAC engine's max and sum have more than one reader).
    """
    readers: dict[str, int] = {}
    for _, _, _, ins in lowering:
        for i in ins:
            readers[i] = readers.get(i, 0) + 1

    def external(ins: tuple[str, ...]) -> int:
        return sum(not (scalar_immediate and i == "c") for i in ins)

    out: set[str] = set()
    length, ifms, prev = 0, 0, None
    for name, op, size, ins in lowering:
        eltwise = op not in ("max_pool", "reduce_sum")
        if (chain > 1 and eltwise and prev is not None and prev[2] and length < chain
                and prev[0] in ins and readers[prev[0]] == 1 and prev[1] == size
                and ifms + external(ins) - 1 <= max_ifms):
            out.add(name)
            length, ifms = length + 1, ifms + external(ins) - 1
        else:
            length, ifms = 1, external(ins)
        prev = (name, size, eltwise)
    return out


def _command_cycles(a: Array, elements: int, ins: tuple[str, ...], rate: float) -> int:
    """One element-wise command of a softmax over int32 bricks (regor
    ``EstimateElementwiseCycles``, the Ethos-U55's and the U85's alike): ``E`` OFM elements
    (``elements`` rounded up to a ``BRICK``) at ``rate`` cycles each, or the command-issue bound
    when longer: ``ceil((B / block + rate) x E / 4)`` (4 DPU stages), ``block`` the OFM block's
    elements (``Rates.block``: its pixels x ``elements`` rounded up to its depth granule),
    ``B`` the slowest block
    transfer: the OFM written to SRAM, an input read from SRAM, or a constant read from the
    weights memory (``Rates.const_latency`` + its bytes over ``const_bytes_per_cycle``; none
    for a scalar the command carries, ``scalar_immediate``), each at its latency plus its
    int32 bytes over the port."""
    r = a.rates
    e = -(-elements // BRICK) * BRICK
    port = max(1, a.port_bytes)
    blk = a.pooling.latency + 4 * elements // port               # OFM write, SRAM inputs
    for i in ins:
        if i in ("c", "C") and not (i == "c" and r.scalar_immediate):
            n = 1 if i == "c" else elements
            bw = r.const_bytes_per_cycle or port
            blk = max(blk, r.const_latency + int(4 * n / bw))
    pixels, depth = r.block
    block = pixels * -(-elements // depth) * depth
    cmd = math.ceil(((blk / block + rate) * e / 4) - 1e-9)
    return max(math.ceil(rate * e - 1e-9), cmd)


def _lowered_softmax_cycles(a: Array, elements: int, act_bits: int) -> int:
    """A softmax as its lowering (``SOFTMAX_LOWERINGS[Rates.softmax]``): the max over the
    logits (a ``1 x elements`` max pool) and the sum of exponentials on the MAC engine, each
    element-wise command by ``_command_cycles`` (the first, int8 with the exp LUT as its
    activation, at the slower of ``eltwise`` and ``lut``; the others at ``int32``). A command
    ``chained`` into the one before it is no command: the group is one, at the sum of its
    members' rates, those writing to the chaining buffer at ``chain_int32`` (regor
    ``EthosU85Performance::EstimateAOCyclesPerElement``)."""
    r = a.rates
    lowering = SOFTMAX_LOWERINGS[r.softmax]
    free = chained(lowering, r.chain, r.chain_ifms, r.scalar_immediate)
    groups: list[list] = []   # per command issued: [elements, inputs, rate, its last's rate]
    total = 0
    for name, op, size, ins in lowering:
        n = elements if size == "n" else 1
        if op == "max_pool":
            total += pool_cycles(a, Window(1, elements, 1, 1, 1, elements, 1, 1, 1), act_bits,
                                 maximum=True)
        elif op == "reduce_sum":
            total += _reduce_sum_cycles(a, elements)
        elif name in free:
            g = groups[-1]                    # the one before writes to the chaining buffer
            g[1], g[2] = g[1] + ins, g[2] - g[3] + (r.chain_int32 or g[3]) + r.int32
            g[3] = r.int32
        else:
            rate = max(r.eltwise or 0.0, r.lut or 0.0) if "x" in ins else r.int32
            groups.append([n, ins, rate, rate])
    return total + sum(_command_cycles(a, n, ins, rate) for n, ins, rate, _ in groups)


def _softmax_cycles(a: Array, elements: int, act_bits: int) -> int:
    """A softmax over ``elements`` logits as ``Rates.softmax`` commands: with ``Rates.int32``
    its lowering (``_lowered_softmax_cycles``), else element-wise ones at ``Rates.eltwise``,
    but with pools on the MAC engine its first, a max over the logits (a ``1 x elements`` max
    pool), and its sum of exponentials run there."""
    r = a.rates
    if r.int32 is not None and r.softmax and a.pooling.unit == "array":
        return _lowered_softmax_cycles(a, elements, act_bits)
    command = _rated(r.eltwise, elements, r.command)
    if a.pooling.unit != "array" or r.softmax < 2:
        return r.softmax * command
    row = Window(1, elements, 1, 1, 1, elements, 1, 1, 1)
    return ((r.softmax - 2) * command + pool_cycles(a, row, act_bits, maximum=True)
            + _reduce_sum_cycles(a, elements))


def vector_cycles(a: Array, elements: int) -> int:
    """``ceil(elements / rate)``: the vector unit processes ``rate`` elements per cycle."""
    if elements <= 0:
        return 0
    return math.ceil(elements / a.vector_rate - 1e-9)


def port_cycles(a: Array, sram_bytes: int) -> int:
    """``ceil(sram_bytes / port)``: cycles the SRAM port needs to feed an op (0 without a cap)."""
    return -(-sram_bytes // a.port_bytes) if a.port_bytes else 0


def _vector_elements(op: LayerOp, act_bits: int) -> int:
    """Elements a non-MAC op reads (and, for a gather, produces).

    Elementwise ops, pools, activations, softmax and norms read their input elements (a pool's
    window input; overlapping windows are assumed reused, not re-read). A ``sample`` op is
    farthest-point sampling: S picks, each scanning all N input points of ``POINT_DIMS``
    coordinates, S*N*3 = in_elements * out_elements / 3 (at least one scan of the input, for
    argmax-like ops). A ``group`` op gathers: max(in, out) elements (the ball query's own
    distance scan is not recorded by the trace and not counted).
    """
    bits = max(1, act_bits)
    inp, out = op.in_bytes * 8 // bits, op.out_bytes * 8 // bits
    if op.kind == "sample":
        return inp * max(1, out // POINT_DIMS)
    if op.kind == "group":
        return max(inp, out)
    return inp


def _rated(rate: float, elements: int, command: int) -> int:
    """``max(command, ceil(rate * elements))``: an op of its class's own unit."""
    return max(command, math.ceil(rate * elements - 1e-9))


def _class_cycles(a: Array, op: LayerOp, act_bits: int) -> int:
    """Cycles of an op without MACs: its class's own rate when the config gives one, else the
    vector unit over the elements it reads."""
    r = a.rates
    bits = max(1, act_bits)
    inp, out = op.in_bytes * 8 // bits, op.out_bytes * 8 // bits
    rate, elements = None, 0
    if op.kind == "eltwise":
        rate, elements = r.eltwise, out
    elif op.kind == "pool":
        win = op.window
        if a.pooling.unit == "array" and win is not None and op.function in ARRAY_POOLS:
            return pool_cycles(a, win, act_bits, maximum="max" in op.function)
        rate, elements = r.pool, inp
    elif op.kind == "act":
        rate, elements = r.lut, out
        if op.function in SOFTMAX and r.softmax and r.eltwise is not None:
            return _softmax_cycles(a, out, act_bits)
    elif op.function in RESIZE or op.function.startswith("upsample"):
        rate, elements = r.resize, out
    if rate is None:
        return vector_cycles(a, _vector_elements(op, act_bits))
    return _rated(rate, elements, r.command)


def _fused_cycles(a: Array, op: LayerOp, producer: LayerOp | None, act_bits: int) -> int:
    """A fused activation: free, but a softmax the hardware runs as a chain of commands over
    its producer's output (``Rates.softmax``)."""
    r = a.rates
    if op.function not in SOFTMAX or not r.softmax or r.eltwise is None or producer is None:
        return 0
    elements = producer.out_bytes * 8 // max(1, act_bits)
    return _softmax_cycles(a, elements, act_bits)


def fuses(a: Array, op: LayerOp, producer: LayerOp | None) -> bool:
    """True when ``op`` is an element-wise op the hardware chains into ``producer``'s output
    stage: ``Rates.fuse_eltwise``, ``producer`` (the op before it) has MACs and ``op`` reads
    its output (``producer.readers``; none recorded: the next op)."""
    return (a.rates.fuse_eltwise and op.kind == "eltwise" and producer is not None
            and bool(producer.macs) and (not producer.readers or op.name in producer.readers))


def op_cycles(a: Array, op: LayerOp, peak: int, executed: int, weight_bytes: int,
              act_bits: int, producer: LayerOp | None = None) -> int:
    """Compute cycles of ``op``: mapped (array or vector unit), at least what the port feeds.

    ``weight_bytes`` are the stored bytes of its weights (read from SRAM), ``executed`` the MACs
    it runs (effective ones on zero-skipping hardware), ``peak`` MACs/cycle at its precision;
    ``producer`` the op before it that is not a fused activation (what a fused softmax reads,
    what an element-wise op may fuse into), None for the first. An ``mcu`` array runs the op as
    its CPU kernel (``edgesim.sim.mcu.op_cycles``; ``executed`` < dense MACs: a sparse kernel).
    """
    if a.kernels is not None and a.kind == "mcu":
        return mcu.op_cycles(a.kernels, op, executed, weight_bytes, act_bits, producer)
    if op.fused:
        return _fused_cycles(a, op, producer, act_bits)
    if fuses(a, op, producer):
        return 0
    dims = op.dims
    if op.macs:
        groups = op.groups if op.kind == "conv" else 1
        depthwise = op.kind == "conv" and groups > 1 and dims.get("C", 1) == 1
        if depthwise and a.depthwise == "vector":
            # each output element needs R*S MACs, one element per vector lane-cycle
            compute = max(vector_cycles(a, executed), -(-executed // peak))
        else:
            if groups > 1:
                dims = {**dims, "G": groups}
            if a.kind == "broadcast":
                compute = broadcast_cycles(a, dims, peak, executed, op.macs,
                                           depthwise=depthwise)
            else:
                compute = mac_cycles(a, dims, peak, executed, op.macs)
    else:
        compute = _class_cycles(a, op, act_bits)
    return max(compute, port_cycles(a, op.in_bytes + op.out_bytes + weight_bytes))


def utilisation(macs: int, cycles: int, peak: int) -> float:
    """``macs / (cycles * peak)``: the fraction of the array's peak an op used; 0.0 without MACs.

    >>> utilisation(64, 2, 64), utilisation(0, 10, 64)
    (0.5, 0.0)
    """
    return macs / (cycles * peak) if macs and cycles else 0.0
