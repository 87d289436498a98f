"""The hardware-config schema: the YAML's sections and keys, and the frozen ``HardwareConfig``.

Public names: ``Unit``, ``Attr``, ``ConfigFile``, ``unit_kind``, ``schema_fields``,
``section_at``, ``section_fields``, ``canonical_path``; ``HardwareConfig``, ``freeze`` and
``thaw`` are ``edgesim.hardware``'s.

This module is the one place that says which key holds what. A key holding a human quantity
carries a ``Unit`` (its kind in ``edgesim.units``, the unit its ``HardwareConfig`` field is kept
in, whether zero is allowed, its physical range and that field's name); a plain key copied into
``HardwareConfig`` carries an ``Attr`` naming the field and, when a number, its range as pydantic
``Field(ge=..., le=...)``. Every number has a range, stated where its key is declared, so the
engine never sees a value it cannot compute with (the ``_SIZE``, ``_TIME``, ... limits below).
``edgesim.config`` builds a ``HardwareConfig`` by walking these fields, and ``edgesim.sweep.grid``
reads range ends in ``unit_kind(key)``; a new hardware field is one line here (with its range)
and its value in the YAMLs (``HardwareConfig`` has the fields its builder gives it).

>>> unit_kind("sram.size"), unit_kind("dram.bandwidth"), unit_kind("prefetch.depth")
('size', 'bandwidth', None)
>>> unit_kind("energy.mac.int4")
'energy'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo

from edgesim.errors import UnitError
from edgesim.hardware import HardwareConfig, freeze, thaw
from edgesim.units import parse_quantity

__all__ = ["Attr", "ConfigFile", "HardwareConfig", "Unit", "canonical_path", "freeze",
           "schema_fields", "section_at", "section_fields", "thaw", "unit_kind"]

#: ``--set dram.x=...`` is read as ``--set offchip.x=...``.
ALIASES = {"dram": "offchip"}


@dataclass(frozen=True)
class Unit:
    """Schema metadata of a key holding a human quantity of ``kind`` (``edgesim.units.KINDS``).

    ``to``: the unit of the ``HardwareConfig`` field (None: the SI base unit of the kind);
    ``positive``: zero is an error too; ``attr``: the ``HardwareConfig`` field (None when the
    section's ``Attr`` collects it); ``scaled``: quoted at the reference node and multiplied by
    ``technology.energy_scale`` for the chip's node. ``lo``, ``hi`` (inclusive) and ``below``
    (exclusive): the physical range, in the kind's SI base unit.
    """

    kind: str
    to: str | None = None
    positive: bool = False
    attr: str | None = None
    scaled: bool = False
    lo: float | None = None
    hi: float | None = None
    below: float | None = None

    def bounds(self) -> dict[str, float | None]:
        """``lo``, ``hi``, ``below`` as keyword arguments of ``edgesim.units.parse_quantity``."""
        return {"lo": self.lo, "hi": self.hi, "below": self.below}


# The physical ranges, in SI base units (checked at validation, before any simulation).
_MAX_BYTES = 2**60                         #: sizes and bandwidths: at most 2^60 B (B/s)
_SIZE = {"hi": _MAX_BYTES}
_BANDWIDTH = {"lo": 1, "hi": _MAX_BYTES}    #: 1 B/s .. 2^60 B/s
_BURST = {"lo": 1, "hi": 2**30}             #: 1 B .. 1 GiB
_CLOCK = {"lo": 10**3, "hi": 10**12}        #: 1 kHz .. 1 THz
_TIME = {"below": 1}                        #: latencies: below 1 s
_PER_EVENT = {"below": 1}                   #: energies: below 1 J per MAC, bit or byte
_POWER = {"below": 1000}                    #: leakage: below 1 kW
_NODE = {"ge": 1, "le": 1000}               #: technology nodes: 1 .. 1000 nm
_VDD = {"ge": 0.1, "le": 5}                 #: supply voltages: 0.1 .. 5 V
_DIM = {"gt": 0, "le": 2**16}               #: array rows and columns
_RATE = {"gt": 0, "le": 2**32}              #: MACs per cycle
_COUNT = {"le": 2**16}                      #: small counts (prefetch depth)


@dataclass(frozen=True)
class Attr:
    """Schema metadata: the value (a section: its mapping) is ``HardwareConfig`` field ``name``."""

    name: str


def _quantity_input(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a number with a unit such as '512 KiB', got {value!r}")
    return value


def _q(kind: str, attr: str | None = None, *, to: str | None = None, positive: bool = False,
       scaled: bool = False, lo: float | None = None, hi: float | None = None,
       below: float | None = None) -> Any:
    """The annotation of a quantity key (``lo``/``hi``/``below``: its range in SI base units)."""
    return Annotated[Any, AfterValidator(_quantity_input),
                     Unit(kind, to=to, positive=positive, attr=attr, scaled=scaled, lo=lo,
                          hi=hi, below=below)]


_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_Precision = Literal["int8", "int4", "fp16", "binary"]  # == workload.PRECISIONS (tested)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``true``/``false`` are not numbers: pydantic would take them as 1/0 in an int or
        float field (``compute.array.rows: true`` was 1)."""
        if isinstance(value, bool):
            f = cls.model_fields.get(info.field_name or "")
            if f is not None and not _takes_bool(f.annotation):
                raise ValueError(f"{str(value).lower()} is a boolean; expected a number")
        return value


def _takes_bool(annotation: Any) -> bool:
    """True when a field's type admits a bool (``bool``, ``bool | None``, ``Any``)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_takes_bool(a) for a in get_args(annotation))


class _Technology(_Section):
    node_nm: Annotated[float, Field(**_NODE), Attr("node_nm")]
    vdd_v: Annotated[float, Field(**_VDD), Attr("vdd_v")]
    source: _Text


class _MacsPerCycle(_Section):
    int8: Annotated[int, Field(**_RATE)]
    int4: Annotated[int, Field(**_RATE)]
    fp16: Annotated[int, Field(**_RATE)]
    binary: Annotated[int, Field(**_RATE)]


class _Array(_Section):
    rows: Annotated[int, Field(**_DIM), Attr("array_rows")]
    cols: Annotated[int, Field(**_DIM), Attr("array_cols")]
    #: how ops fold onto the array (``edgesim.sim.mapping``)
    dataflow: Annotated[Literal["weight_stationary", "output_stationary"],
                        Attr("array_dataflow")] = "weight_stationary"
    #: consecutive folds overlap: a fold's weight load, fill and drain hide under the
    #: streaming of the fold before it (double-buffered weights and accumulators)
    pipelined: Annotated[bool, Attr("array_pipelined")] = False
    #: what a fold's fixed cost is: ``systolic`` (fill and drain, rows + cols - 2 cycles) or
    #: ``broadcast`` (dot-product micro-blocks, a write-back per channel slice; ``sim.mapping``);
    #: ``mcu``: no array, a CPU running NN kernels, costed by ``compute.kernels`` (``sim.mcu``)
    kind: Annotated[Literal["systolic", "broadcast", "mcu"], Attr("array_kind")] = "systolic"
    #: where a depthwise conv runs: the ``vector`` unit or the MAC ``array``
    depthwise: Annotated[Literal["vector", "array"], Attr("array_depthwise")] = "vector"
    #: broadcast: output pixels of a micro-block along Q (``rows`` of them in all)
    ublock_width: Annotated[int, Field(**_DIM), Attr("array_ublock_width")] = 1
    #: broadcast: cycles of one kernel step per micro-block (it consumes that many
    #: dot-product bricks)
    step_cycles: Annotated[int, Field(**_DIM), Attr("array_step_cycles")] = 1
    #: broadcast: the fewest cycles a kernel step over one slice of ``cols`` channels takes
    #: (the accumulators' write-back)
    writeback_cycles: Annotated[int, Field(ge=0, le=2**16), Attr("array_writeback_cycles")] = 0

    @field_validator("ublock_width")
    @classmethod
    def _ublock_divides_rows(cls, v: int, info: ValidationInfo) -> int:
        rows = info.data.get("rows")
        if rows is not None and rows % v:
            raise ValueError(f"{v} does not divide compute.array.rows ({rows}); a micro-block "
                             "is a whole number of rows")
        return v


class _Vector(_Section):
    #: elements per cycle of the unit running ops without MACs and depthwise convs;
    #: None: one per array column (edgesim default, an assumption)
    elements_per_cycle: Annotated[Annotated[float, Field(ge=2**-10, le=2**32)] | None,
                                  Attr("vector_elements_per_cycle")] = None


_CyclesPerElement = Annotated[float, Field(ge=0, le=2**16)]


class _Ops(_Section):
    """The unit and rate of each op class that does not fold onto the array (``sim.mapping``).

    Rates are cycles per element (output elements; ``pool``: input elements); None runs the
    class on the vector unit at ``compute.vector.elements_per_cycle`` over its input elements
    (edgesim's earlier behaviour). ``output``: cycles per OFM element of a broadcast array's
    output stage. ``command``: the fewest cycles an op of a rated class takes. ``softmax``: the
    commands (element-wise/LUT passes) a fused softmax runs as (0: it is free). ``fuse_eltwise``:
    an element-wise op reading the output of the MAC op before it is chained into it, free.
    ``int32``: cycles per element of a softmax's int32 element-wise commands; set, the softmax
    is costed as its lowering (``edgesim.sim.mapping.SOFTMAX_LOWERINGS``; ``softmax`` then
    names one), each command at least its command-issue bound over an OFM block of ``block``
    = (pixels, depth granule); the commands ``chain`` lets join the one before them cost only
    ``chain_int32`` per element on that one, for the output it writes to the chaining buffer
    (at most ``chain_ifms`` inputs not chained; ``scalar_immediate``: a scalar constant is a
    register value, read from no memory).
    """

    output: Annotated[_CyclesPerElement, Attr("output_cycles_per_element")] = 0.0
    eltwise: Annotated[_CyclesPerElement | None, Attr("eltwise_cycles_per_element")] = None
    pool: Annotated[_CyclesPerElement | None, Attr("pool_cycles_per_element")] = None
    resize: Annotated[_CyclesPerElement | None, Attr("resize_cycles_per_element")] = None
    lut: Annotated[_CyclesPerElement | None, Attr("lut_cycles_per_element")] = None
    command: Annotated[int, Field(ge=0, le=2**20), Attr("command_cycles")] = 0
    softmax: Annotated[int, Field(ge=0, le=2**10), Attr("softmax_commands")] = 0
    fuse_eltwise: Annotated[bool, Attr("fuse_eltwise")] = False
    int32: Annotated[_CyclesPerElement | None, Attr("int32_cycles_per_element")] = None
    block: Annotated[tuple[Annotated[int, Field(**_DIM)], Annotated[int, Field(**_DIM)]],
                     Attr("command_block")] = (1, 1)
    chain_int32: Annotated[_CyclesPerElement | None, Attr("chain_int32_cycles_per_element")] = None
    chain: Annotated[int, Field(ge=1, le=2**10), Attr("chain_commands")] = 1
    chain_ifms: Annotated[int, Field(ge=0, le=2**10), Attr("chain_ifms")] = 0
    scalar_immediate: Annotated[bool, Attr("scalar_immediate")] = False
    source: _Text

    @field_validator("int32")
    @classmethod
    def _softmax_lowering(cls, v: float | None, info: ValidationInfo) -> float | None:
        from edgesim.sim.mapping import SOFTMAX_LOWERINGS
        softmax = info.data.get("softmax")
        if v is not None and softmax not in (None, 0, *SOFTMAX_LOWERINGS):
            raise ValueError(f"with compute.ops.int32 set, compute.ops.softmax ({softmax}) must "
                             f"be 0 or one of {sorted(SOFTMAX_LOWERINGS)} (the lowerings' "
                             "command counts)")
        return v


_DEFAULT_OPS = _Ops(source="edgesim default: every op without MACs on the vector unit, a fused "
                           "activation free, nothing else fused (assumption)")


_Triple = tuple[Annotated[int, Field(**_DIM)], Annotated[int, Field(**_DIM)],
                Annotated[int, Field(**_DIM)]]


class _Block(_Section):
    """The NPU's output-block buffer (Ethos-U's SHRAM), which decides how an op that reads its
    input in place from off-chip memory re-reads it (``edgesim.sim.tiling.output_block``).

    ``buffer``: 0 (the default) states no block buffer; else the bytes that hold a block's
    double-buffered input window and accumulators;
    ``bank``: its allocation unit; ``ifm_granule``/``acc_granule``: banks an input window and
    the accumulators are rounded up to; ``acc_bytes``: bytes of one accumulator; ``ublock``
    (height, width, depth) and ``max`` (height, width, depth): a block's sides are multiples of
    the first and at most the second; ``split_depth``: a block of fewer channels than the op's
    output takes whole multiples of it; ``ifm_depth``: the channels of one input slice;
    ``acc_buffer``: 0 (the default) keeps the accumulators in ``buffer``; else the bytes of a
    separate accumulator RAM that holds them (double-buffered), ``buffer`` the input alone;
    ``sub_kernel`` (height, width): the largest kernel piece one pass over a block takes (0:
    any); a block of a larger kernel reads its input window once per piece; ``latency``:
    cycles of the SRAM latency before a conv's first input block and after its last output
    block (each also moves its bytes over the SRAM port; ``edgesim.sim.plan.edge_cycles``).
    """

    buffer: _q("size", **_SIZE) = "0 B"
    acc_buffer: _q("size", **_SIZE) = "0 B"
    bank: _q("size", positive=True, **_SIZE) = "1 KiB"
    ifm_granule: Annotated[int, Field(**_DIM)] = 1
    acc_granule: Annotated[int, Field(**_DIM)] = 1
    acc_bytes: Annotated[int, Field(**_DIM)] = 4
    ublock: _Triple = (1, 1, 1)
    max: _Triple = (1, 1, 1)
    split_depth: Annotated[int, Field(**_DIM)] = 1
    ifm_depth: Annotated[int, Field(**_DIM)] = 1
    sub_kernel: tuple[Annotated[int, Field(ge=0, le=2**16)],
                      Annotated[int, Field(ge=0, le=2**16)]] = (0, 0)
    latency: Annotated[int, Field(ge=0, le=2**20)] = 0
    source: _Text


_DEFAULT_BLOCK = _Block(source="edgesim default: no block buffer stated")


_Pair = tuple[Annotated[int, Field(**_DIM)], Annotated[int, Field(**_DIM)]]


class _Pooling(_Section):
    """Where 2-D pools and a softmax's max/sum reductions run (``edgesim.sim.mapping.Pooling``).

    ``unit``: ``vector`` (the default: pools at ``compute.ops.pool``, else on the vector unit)
    or ``array`` (the MAC engine, one step per kernel element: Ethos-U). The rest is read only
    with ``array``: ``sub_kernel`` (height, width), the largest kernel piece one pass takes;
    ``min_steps``, the fewest steps of a piece; ``block`` (height, width, depth), the largest
    OFM block; ``delay``, cycles per piece when a block is one micro-block; ``latency``,
    cycles of the SRAM latency of the first IFM and the last OFM block transfer;
    ``max_output``, cycles per OFM element of a max pool's output stage (other pools take
    ``compute.ops.output``); ``ublock`` (height, width, depth), the OFM micro-block of a pool
    when it is not the array's (``rows / ublock_width`` x ``ublock_width`` x ``cols``), and
    then of a depthwise conv on the array too (``edgesim.sim.mapping.broadcast_cycles``).
    """

    unit: Annotated[Literal["vector", "array"], Field()] = "vector"
    sub_kernel: _Pair = (8, 8)
    min_steps: Annotated[int, Field(**_DIM)] = 4
    block: _Triple = (1, 1, 1)
    delay: Annotated[int, Field(ge=0, le=2**10)] = 0
    latency: Annotated[int, Field(ge=0, le=2**16)] = 0
    max_output: _CyclesPerElement = 0.0
    ublock: _Triple | None = None
    source: _Text


_DEFAULT_POOLING = _Pooling(source="edgesim default: pools on the vector unit or at "
                                   "compute.ops.pool")


_InstrPer = Annotated[float, Field(ge=0, le=2**16)]


class _Kernels(_Section):
    """A CPU's NN kernels (``compute.array.kind: mcu``; ``edgesim.sim.mcu``): instructions per
    MAC of each op class's inner loop, per im2col element and copied run, per requantised
    output, per element of ops without MACs, per nonzero of a sparse kernel; the cycles per
    instruction of the mix; a per-op overhead; the data cache and the flash the weights are
    read from in place (wait states, flash word, bus latency, output pixels per weight pass).
    """

    cpi: Annotated[float, Field(gt=0, le=64)]
    conv: _InstrPer
    pointwise: _InstrPer
    depthwise: _InstrPer
    fc: _InstrPer
    im2col_element: _InstrPer
    im2col_run: _InstrPer
    requant: _InstrPer
    eltwise: _InstrPer
    pool: _InstrPer
    act: _InstrPer
    softmax: _InstrPer
    sparse_nonzero: _InstrPer
    op_overhead: Annotated[int, Field(ge=0, le=2**24)]
    dcache: _q("size", **_SIZE)
    cache_line: _q("size", positive=True, **_BURST)
    flash_wait_states: Annotated[int, Field(ge=0, le=64)]
    flash_word: _q("size", positive=True, **_BURST)
    bus_latency_cycles: Annotated[int, Field(ge=0, le=2**16)]
    weight_pass_pixels: Annotated[int, Field(**_DIM)]
    source: _Text


_DEFAULT_KERNELS = _Kernels(
    cpi=1, conv=1, pointwise=1, depthwise=1, fc=1, im2col_element=0, im2col_run=0, requant=0,
    eltwise=1, pool=1, act=1, softmax=1, sparse_nonzero=1, op_overhead=0, dcache="0 B",
    cache_line="32 B", flash_wait_states=0, flash_word="16 B", bus_latency_cycles=0,
    weight_pass_pixels=1,
    source="edgesim default: unused (read only when compute.array.kind is mcu, which must "
           "state its own kernels)")


class _Compute(_Section):
    precision: Annotated[_Precision, Attr("precision")]
    activation_bits: Annotated[int, Field(gt=0, le=64), Attr("act_bits")]
    macs_per_cycle: Annotated[_MacsPerCycle, Attr("macs_per_cycle")]
    array: _Array
    vector: _Vector = _Vector()
    ops: _Ops = _DEFAULT_OPS
    block: Annotated[_Block, Attr("block")] = _DEFAULT_BLOCK
    pooling: Annotated[_Pooling, Attr("pooling")] = _DEFAULT_POOLING
    skip_zero_weights: Annotated[bool, Attr("skip_zero_weights")]
    #: the weight encodings whose compute walks only the stored nonzeros (the hardware, or its
    #: kernels, decodes the format and skips zeros); another encoding runs every MAC unless
    #: ``skip_zero_weights`` (zero-gating of every encoding). Each must be in ``formats``.
    skip_formats: Annotated[tuple[_Text, ...], Attr("skip_formats")] = ()
    #: a CPU's NN kernels (read when ``array.kind`` is ``mcu``)
    kernels: Annotated[_Kernels, Attr("kernels")] = _DEFAULT_KERNELS
    source: _Text


class _Sram(_Section):
    """``energy_model: fixed`` (the default): ``read_energy``/``write_energy``/``leakage`` are this
    macro's figures at the chip's node, taken as written. ``energy_model: sqrt``: they are quoted
    for an SRAM of ``reference_size`` at ``reference_node_nm``/``reference_vdd_v`` and scaled to
    ``size`` and the chip's node by ``edgesim.technology.sram_energy``."""

    size: _q("size", "sram_bytes", positive=True, **_SIZE)
    #: a size, or a percentage of ``size`` (``25%``, in [0, 100)); built by ``edgesim.config``
    activation_reserve: _q("size", "act_reserve_bytes", **_SIZE)
    #: SRAM bytes per clock cycle the compute units can read and write; 0: no port cap
    port_width: _q("size", "sram_port_bytes", **_SIZE) = 0
    reference_size: _q("size", "sram_reference_bytes", **_SIZE) = "0 B"
    reference_node_nm: Annotated[Annotated[float, Field(**_NODE)] | None,
                                 Attr("sram_reference_node_nm")] = None
    reference_vdd_v: Annotated[Annotated[float, Field(**_VDD)] | None,
                               Attr("sram_reference_vdd_v")] = None
    energy_model: Annotated[Literal["fixed", "sqrt"], Attr("sram_energy_model")] = "fixed"
    read_energy: _q("energy_per_byte", "sram_quoted_read_pj_per_byte", to="pJ/B", **_PER_EVENT)
    write_energy: _q("energy_per_byte", "sram_quoted_write_pj_per_byte", to="pJ/B",
                     **_PER_EVENT)
    leakage: _q("power", "sram_quoted_leak_w", **_POWER)
    source: _Text

    @field_validator("energy_model")
    @classmethod
    def _reference_given(cls, model: str, info: ValidationInfo) -> str:
        """``sqrt`` needs the reference point: a positive size, a node and a voltage."""
        if model != "sqrt":
            return model
        missing = [k for k in ("reference_node_nm", "reference_vdd_v")
                   if info.data.get(k) is None]
        size = info.data.get("reference_size", "0 B")
        try:
            parse_quantity(size, "size", where="sram.reference_size", positive=True)
        except UnitError:
            missing.insert(0, "reference_size (a positive size)")
        if missing:
            raise ValueError("energy_model sqrt scales a reference SRAM: set "
                             + ", ".join(f"sram.{k}" for k in missing))
        return model


_Port = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                         pattern=r"^[A-Za-z0-9_]+$")]


#: Bus transactions in flight (``offchip.max_reads`` ...): a positive count, or None.
_Outstanding = Annotated[int | None, Field(gt=0, le=2**16)]


class _Offchip(_Section):
    """The off-chip memory named ``offchip``: weights and the activation arena by default.

    ``write_latency``: the latency of a write (None: ``latency``, reads and writes alike).
    ``port``: the bus port it sits on (``AXI1`` unless given); transfers on one port queue,
    on different ports they overlap (``edgesim.sim.engine``).
    ``max_reads`` / ``max_writes``: bursts one stream keeps in flight (None: no limit, the
    stream runs at ``bandwidth``); a stream then moves at most ``burst x in flight x
    utilisation / latency`` (``edgesim.sim.plan.stream_bytes_per_s``). ``scale_reads``: bursts
    in flight on the channel that reads each op's per-channel bias and scale records (None:
    they come with the weights at no extra time).
    """

    kind: Annotated[Literal["dram", "flash"], Attr("offchip_kind")]
    bandwidth: _q("bandwidth", "offchip_bytes_per_s", positive=True, **_BANDWIDTH)
    latency: _q("time", "offchip_latency_s", **_TIME)
    write_latency: _q("time", "offchip_write_latency_s", **_TIME) = None
    #: capacity (None: not stated); a flash-only device whose weights exceed it says so
    size: _q("size", "offchip_bytes", positive=True, **_SIZE) = None
    burst: _q("size", "offchip_burst_bytes", positive=True, **_BURST)
    read_energy: _q("energy_per_bit", "offchip_read_pj_per_bit", to="pJ/bit", **_PER_EVENT)
    write_energy: _q("energy_per_bit", "offchip_write_pj_per_bit", to="pJ/bit", **_PER_EVENT)
    port: Annotated[_Port, Attr("offchip_port")] = "AXI1"
    max_reads: _Outstanding = None
    max_writes: _Outstanding = None
    scale_reads: _Outstanding = None
    source: _Text


class _Memory(_Section):
    """One more off-chip memory under ``memories.<name>`` (keys as ``offchip``; port needed)."""

    kind: Literal["dram", "flash"]
    bandwidth: _q("bandwidth", positive=True, **_BANDWIDTH)
    latency: _q("time", **_TIME)
    write_latency: _q("time", **_TIME) = None
    burst: _q("size", positive=True, **_BURST)
    read_energy: _q("energy_per_bit", to="pJ/bit", **_PER_EVENT)
    write_energy: _q("energy_per_bit", to="pJ/bit", **_PER_EVENT)
    port: _Port
    max_reads: _Outstanding = None
    max_writes: _Outstanding = None
    scale_reads: _Outstanding = None
    source: _Text


class _Placement(_Section):
    """Where data lives (Vela's memory modes, calibration/vela/README.md).

    ``weights``: the memory weights are read from (``offchip`` or a name in ``memories``).
    ``arena``: the memory of the activation arena: ``offchip`` or another off-chip memory
    (the SRAM's ``activation_reserve`` caches it, the rest spills there, the network's input
    is read from and its output written to it: Vela's Dedicated_Sram), or ``sram`` (the arena
    is the SRAM's ``activation_reserve``: nothing moves off-chip while it fits, Vela's
    Shared_Sram). ``spills``: where activations that do not fit go (None: the arena's memory;
    ``offchip`` when the arena is ``sram``). ``input``: how an op reads an input that lies in
    an off-chip arena (the network's input): ``staged`` (copied into SRAM once, then read from
    there) or ``in_place`` (read from off-chip per output block, with the halo its kernel
    needs, at the burst efficiency of its runs: Vela's Dedicated_Sram; needs
    ``compute.block``).
    """

    weights: Annotated[_Port, Attr("placement_weights")] = "offchip"
    arena: Annotated[_Port, Attr("placement_arena")] = "offchip"
    spills: Annotated[_Port | None, Attr("placement_spills")] = None
    input: Annotated[Literal["staged", "in_place"], Attr("placement_input")] = "staged"
    source: _Text


_DEFAULT_PLACEMENT = _Placement(
    source="edgesim default: weights and the activation arena in the off-chip memory, the "
           "SRAM caching both (one off-chip memory)")


class _MacEnergy(_Section):
    int8: _q("energy", to="pJ", scaled=True, **_PER_EVENT)
    int4: _q("energy", to="pJ", scaled=True, **_PER_EVENT)
    fp16: _q("energy", to="pJ", scaled=True, **_PER_EVENT)
    binary: _q("energy", to="pJ", scaled=True, **_PER_EVENT)


class _Energy(_Section):
    reference_node_nm: Annotated[float, Field(**_NODE), Attr("energy_reference_node_nm")]
    reference_vdd_v: Annotated[float, Field(**_VDD), Attr("energy_reference_vdd_v")]
    mac: Annotated[_MacEnergy, Attr("mac_pj")]
    index_decode: _q("energy", "index_decode_pj", to="pJ", scaled=True, **_PER_EVENT) = 0
    #: per byte of operand or partial sum latched in a PE register (``edgesim.sim.energy``)
    pe_register: _q("energy_per_byte", "register_pj_per_byte", to="pJ/B", scaled=True,
                    **_PER_EVENT) = 0
    #: the active power of a whole board (a board-level config: the core, its memories and
    #: regulators), charged x latency beside the per-access parts (``edgesim.sim.energy``)
    board_power: _q("power", "board_w", **_POWER) = 0
    source: _Text


_PrefetchMode = Literal["next", "none", "speculative"]  # == sim.PREFETCH_MODES (tested)


class _Prefetch(_Section):
    #: default 2, the section's default (so ``--set prefetch.mode=none`` on a config without
    #: the section keeps its depth)
    depth: Annotated[NonNegativeInt, Field(**_COUNT), Attr("prefetch_depth")] = 2
    #: whether the DMA fetches kept weights ahead (``edgesim.sim.PREFETCH_MODES``: ``next``
    #: up to ``depth`` ops ahead, ``none``, or ``speculative`` on a routed model's likeliest
    #: path); ``edgesim run/sweep --prefetch M`` is ``--set prefetch.mode=M``
    mode: Annotated[_PrefetchMode, Attr("prefetch_mode")] = "next"
    source: _Text


_DEFAULT_PREFETCH = _Prefetch(
    source="edgesim default: weights of up to 2 ops ahead (assumption)")


class ConfigFile(_Section):
    """The whole YAML file (every section needs a non-empty ``source:``)."""

    name: Annotated[_Text, Attr("name")]
    description: Annotated[_Text, Attr("description")]
    source: _Text
    clock: _q("frequency", "clock_hz", positive=True, **_CLOCK)
    technology: _Technology
    compute: _Compute
    sram: _Sram
    offchip: _Offchip
    #: more off-chip memories by name (``edgesim.config`` parses their quantities)
    memories: Annotated[dict[_Port, _Memory], Attr("memories")] = {}
    placement: _Placement = _DEFAULT_PLACEMENT
    energy: _Energy
    prefetch: _Prefetch = _DEFAULT_PREFETCH
    #: the compiler schedule the engine follows (``edgesim.sim.plan``): ``optimal`` (per op the
    #: tiling with the fewest off-chip bytes, weights prefetched across ops: a lower bound) or
    #: ``vela`` (what Arm's Vela compiles: weights streamed per OFM stripe when an op's working
    #: set outgrows the cache, a weight stream waits for the op before it)
    schedule: Annotated[Literal["optimal", "vela"], Attr("schedule")] = "optimal"
    #: the weight encodings the hardware decodes (checked against ``edgesim.encodings``)
    formats: Annotated[tuple[_Text, ...], Attr("formats")] = ("dense",)


# --------------------------------------------------------------------------- walking the schema

def _sub_model(info: FieldInfo | None) -> type[BaseModel] | None:
    ann = info.annotation if info is not None else None
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def named_model(info: FieldInfo | None) -> type[BaseModel] | None:
    """The section model of a mapping of named sections (``memories``), or None."""
    args = get_args(info.annotation) if info is not None else ()
    if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1]
    return None


def section_at(path: Sequence[str]) -> type[BaseModel] | None:
    """The schema model of the section at ``path`` (``()`` is the top level), or None.

    ``("memories", "dram")`` is a memory's section, whatever its name.
    """
    return _section_at(tuple(path))


@lru_cache(maxsize=4096)   # the schema is fixed: a sweep builds a config per point
def _section_at(path: tuple[str, ...]) -> type[BaseModel] | None:
    cls: type[BaseModel] = ConfigFile
    i = 0
    while i < len(path):
        info = cls.model_fields.get(path[i])
        named = named_model(info)
        if named is not None:
            if i + 1 == len(path):
                return None
            cls, i = named, i + 2
            continue
        sub = _sub_model(info)
        if sub is None:
            return None
        cls, i = sub, i + 1
    return cls


#: ``meta`` answers by (id of the field, kind), with the field kept so that an id is never
#: taken for another object's
_META: dict[tuple[int, type], tuple[FieldInfo, Any]] = {}


def meta(info: FieldInfo, kind: type) -> Any:
    """The ``Unit`` or ``Attr`` of a schema field, or None."""
    hit = _META.get((id(info), kind))
    if hit is not None and hit[0] is info:
        return hit[1]
    found = next((m for m in info.metadata if isinstance(m, kind)), None)
    if len(_META) < 4096:
        _META[id(info), kind] = (info, found)
    return found


def schema_fields(cls: type[BaseModel] = ConfigFile, prefix: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    """Every field of the schema as ``(path, FieldInfo)``, sections before their keys, in order.

    >>> [".".join(p) for p, _ in schema_fields()][:5]
    ['name', 'description', 'source', 'clock', 'technology']
    """
    return iter(_schema_fields(cls, prefix))


@lru_cache(maxsize=64)   # the schema is fixed: walked once per section, not once per config
def _schema_fields(cls: type[BaseModel], prefix: tuple[str, ...]
                   ) -> tuple[tuple[tuple[str, ...], FieldInfo], ...]:
    return tuple(_walk_fields(cls, prefix))


def _walk_fields(cls: type[BaseModel], prefix: tuple[str, ...]
                 ) -> Iterator[tuple[tuple[str, ...], FieldInfo]]:
    for name, info in cls.model_fields.items():
        path = (*prefix, name)
        yield path, info
        sub = _sub_model(info)
        if sub is not None:
            yield from _walk_fields(sub, path)


def section_fields() -> dict[str, str | tuple[tuple[str, str], ...]]:
    """Where a ``HardwareConfig`` holds each section's values, by the section's dotted path
    (``""``: the top level): the name of the field holding the whole section as a mapping
    (``"compute.pooling"`` -> ``"pooling"``), else ``(key, field)`` for each of its keys that
    gives a field (``"compute.array"`` -> ``(("rows", "array_rows"), ...)``). What
    ``HardwareConfig.section`` reads (``edgesim.checked_configs.sections``: stored with the
    shipped configs, so that a run builds no schema).

    >>> section_fields()["compute.ops"][:2]
    (('output', 'output_cycles_per_element'), ('eltwise', 'eltwise_cycles_per_element'))
    """
    sections = [((), ConfigFile, None), *((p, _sub_model(i), meta(i, Attr))
                                          for p, i in schema_fields() if _sub_model(i))]
    out: dict[str, str | tuple[tuple[str, str], ...]] = {}
    for path, cls, attr in sections:
        if attr is not None:
            out[".".join(path)] = attr.name
            continue
        keys = []
        for key, info in cls.model_fields.items():
            unit = meta(info, Unit)
            name = unit.attr if unit is not None else getattr(meta(info, Attr), "name", None)
            if name is not None:
                keys.append((key, name))
        out[".".join(path)] = tuple(keys)
    return out


def canonical_path(key: str | Sequence[str]) -> tuple[str, ...]:
    """A dotted key (or its parts) with whitespace stripped and ``dram.`` read as ``offchip.``."""
    parts = [p.strip() for p in (key.split(".") if isinstance(key, str) else key)]
    if parts:
        parts[0] = ALIASES.get(parts[0], parts[0])
    return tuple(parts)


def unit_kind(key: str | Sequence[str]) -> str | None:
    """The unit kind of the quantity at ``key`` (``"sram.size"`` -> ``"size"``), else None.

    None for keys that hold plain values (counts, names, flags), for sections and for keys the
    schema does not have.
    """
    path = canonical_path(key)
    cls = section_at(path[:-1])
    info = cls.model_fields.get(path[-1]) if cls is not None and path else None
    unit = meta(info, Unit) if info is not None else None
    return unit.kind if unit is not None else None
