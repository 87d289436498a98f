"""Mapping one op onto the MAC array, the vector unit and the SRAM port: its compute cycles.

Public names: ``Array``, ``op_cycles``, ``mac_cycles``, ``vector_cycles``, ``port_cycles``,
``utilisation``, ``DATAFLOWS``.

An ``Array`` is ``rows x cols`` processing elements (PEs), a dataflow, a vector unit rate and an
SRAM port width. A PE does ``peak / (rows * cols)`` MACs per cycle at a precision of ``peak``
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

Depthwise convs (C per group == 1) run on the vector unit: ``ceil(N*K*P*Q*R*S / rate)`` (each
output needs R*S MACs at the vector rate). Zero-skipping hardware shortens only the streaming
part, by effective / dense MACs (a skipped weight still occupies its PE during loads and
fill). A mapped op never takes fewer cycles than ``ceil(MACs / peak)`` (the roofline).

Ops without MACs run on the vector unit at ``rate`` elements per cycle over the elements they
read (``vector_cycles``); a fused activation is free. Every op takes at least
``ceil(SRAM bytes read and written / port bytes per cycle)`` (``port_cycles``; port 0 = no cap).

>>> a = Array(rows=4, cols=4, dataflow="weight_stationary", vector_rate=4, port_bytes=0)
>>> mac_cycles(a, {"M": 1, "N": 4, "K": 8}, 16, 32)   # 2 folds x (4 + 6 + 1)
22
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from edgesim.workload import LayerOp

__all__ = ["DATAFLOWS", "Array", "mac_cycles", "op_cycles", "port_cycles", "utilisation",
           "vector_cycles"]

#: Dataflows an array can have (``compute.array.dataflow``).
DATAFLOWS = ("weight_stationary", "output_stationary")

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

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise ValueError(f"dataflow {self.dataflow!r} is not one of {DATAFLOWS}")


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


def op_cycles(a: Array, op: LayerOp, peak: int, executed: int, weight_bytes: int,
              act_bits: int) -> int:
    """Compute cycles of ``op``: mapped (array or vector unit), at least what the port feeds.

    ``weight_bytes`` are the stored bytes of its weights (read from SRAM), ``executed`` the MACs
    it runs (effective ones on zero-skipping hardware), ``peak`` MACs/cycle at its precision.
    """
    if op.fused:
        return 0
    dims = op.dims
    if op.macs:
        groups = int(op.meta.get("groups", 1)) if op.kind == "conv" else 1
        if op.kind == "conv" and groups > 1 and dims.get("C", 1) == 1:
            # depthwise: each output element needs R*S MACs, one element per vector lane-cycle
            compute = max(vector_cycles(a, executed), -(-executed // peak))
        else:
            if groups > 1:
                dims = {**dims, "G": groups}
            compute = mac_cycles(a, dims, peak, executed, op.macs)
    else:
        compute = vector_cycles(a, _vector_elements(op, act_bits))
    return max(compute, port_cycles(a, op.in_bytes + op.out_bytes + weight_bytes))


def utilisation(macs: int, cycles: int, peak: int) -> float:
    """``macs / (cycles * peak)``: the fraction of the array's peak an op used; 0.0 without MACs.

    >>> utilisation(64, 2, 64), utilisation(0, 10, 64)
    (0.5, 0.0)
    """
    return macs / (cycles * peak) if macs and cycles else 0.0
