"""The frozen hardware config every simulation reads: ``HardwareConfig``, SI units in the names.

Public names: ``HardwareConfig``, ``freeze``, ``thaw``.

Built by ``edgesim.config`` (YAML -> checked schema, ``edgesim.schema`` -> this); it lives apart
from the schema so that a run of a shipped config, whose checked form is stored
(``edgesim.config.load_config``), imports neither pydantic nor yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from edgesim.technology import sram_energy

__all__ = ["HardwareConfig", "freeze", "thaw"]


class _FrozenDict(dict):
    """A read-only, hashable, picklable dict (JSON-serialisable as a plain object)."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("HardwareConfig mappings are read-only; use load_config(..., overrides)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))

    def __copy__(self) -> _FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _FrozenDict:
        return self


#: Types that are neither mappings nor sequences, told apart without an ABC check (a config
#: holds thousands of scalars; ``isinstance(v, Mapping)`` is the slow part of freezing them).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def freeze(value: Any) -> Any:
    """Mappings as read-only dicts and sequences as tuples, recursively."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict or t is _FrozenDict or isinstance(value, Mapping):
        return _FrozenDict({k: freeze(v) for k, v in value.items()})
    if t is list or t is tuple or isinstance(value, (list, tuple)):
        return tuple([freeze(v) for v in value])
    return value


def thaw(value: Any) -> Any:
    """The inverse of ``freeze``: plain dicts and lists."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict or t is _FrozenDict or isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if t is list or t is tuple or isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class HardwareConfig:
    """One accelerator, in SI units (or pJ where the name says so), immutable.

    ``mac_pj`` and ``index_decode_pj`` are already scaled from the config's reference node to
    ``node_nm``/``vdd_v``. ``sources`` maps each section (``config`` for the top level) to its
    ``source:`` text. ``resolved`` is the validated config in the YAML schema with human units.
    Build one with ``edgesim.config.load_config``; change one by loading again with overrides.
    """

    name: str
    file: str
    description: str
    clock_hz: float
    precision: str
    act_bits: int
    macs_per_cycle: Mapping[str, int]
    array_rows: int
    array_cols: int
    array_dataflow: str
    array_pipelined: bool
    array_kind: str
    array_depthwise: str
    array_ublock_width: int
    array_step_cycles: int
    array_writeback_cycles: int
    vector_elements_per_cycle: float | None
    output_cycles_per_element: float
    eltwise_cycles_per_element: float | None
    pool_cycles_per_element: float | None
    resize_cycles_per_element: float | None
    lut_cycles_per_element: float | None
    command_cycles: int
    softmax_commands: int
    fuse_eltwise: bool
    int32_cycles_per_element: float | None
    command_block: tuple[int, int]
    chain_int32_cycles_per_element: float | None
    chain_commands: int
    chain_ifms: int
    scalar_immediate: bool
    #: ``compute.block``: ``buffer`` (0: none stated) and ``bank`` in bytes, the rest as given
    block: Mapping[str, Any]
    #: ``compute.pooling`` (``edgesim.sim.mapping.Pooling``), as given
    pooling: Mapping[str, Any]
    skip_zero_weights: bool
    skip_formats: tuple[str, ...]
    #: ``compute.kernels`` (``edgesim.sim.mcu.Kernels``), sizes in bytes
    kernels: Mapping[str, Any]
    sram_bytes: int
    act_reserve_bytes: int
    sram_port_bytes: int
    sram_reference_bytes: int
    sram_reference_node_nm: float | None
    sram_reference_vdd_v: float | None
    sram_energy_model: str
    sram_quoted_read_pj_per_byte: float
    sram_quoted_write_pj_per_byte: float
    sram_quoted_leak_w: float
    offchip_kind: str
    offchip_bytes_per_s: float
    offchip_latency_s: float
    offchip_burst_bytes: int
    offchip_read_pj_per_bit: float
    offchip_write_pj_per_bit: float
    offchip_write_latency_s: float | None
    offchip_bytes: int | None
    offchip_port: str
    #: the memories by name (``offchip`` first), each a mapping of ``kind``, ``bytes_per_s``,
    #: ``latency_s``, ``write_latency_s``, ``burst_bytes``, ``read_pj_per_bit``,
    #: ``write_pj_per_bit``, ``port``, ``max_reads``, ``max_writes``, ``scale_reads`` (built by
    #: ``edgesim.config``)
    memories: Mapping[str, Mapping[str, Any]]
    placement_weights: str
    placement_arena: str
    placement_spills: str | None
    placement_input: str
    node_nm: float
    vdd_v: float
    energy_reference_node_nm: float
    energy_reference_vdd_v: float
    mac_pj: Mapping[str, float]
    index_decode_pj: float
    register_pj_per_byte: float
    board_w: float
    prefetch_depth: int
    #: ``prefetch.mode``: a name of ``edgesim.sim.PREFETCH_MODES`` (the engine's default)
    prefetch_mode: str
    schedule: str
    formats: tuple[str, ...]
    sources: Mapping[str, str]
    resolved: Mapping[str, Any]
    #: the SRAM of ``sram_bytes`` at ``node_nm``/``vdd_v`` (``technology.sram_energy``)
    sram_read_pj_per_byte: float = field(init=False)
    sram_write_pj_per_byte: float = field(init=False)
    sram_leak_w: float = field(init=False)

    def __post_init__(self) -> None:
        quoted = (self.sram_quoted_read_pj_per_byte, self.sram_quoted_write_pj_per_byte,
                  self.sram_quoted_leak_w)
        if self.sram_energy_model == "sqrt":
            read, write, leak = sram_energy(
                *quoted, size_bytes=self.sram_bytes, reference_bytes=self.sram_reference_bytes,
                reference=(self.sram_reference_node_nm, self.sram_reference_vdd_v),
                node=(self.node_nm, self.vdd_v))
        else:
            read, write, leak = quoted
        object.__setattr__(self, "sram_read_pj_per_byte", read)
        object.__setattr__(self, "sram_write_pj_per_byte", write)
        object.__setattr__(self, "sram_leak_w", leak)

    @property
    def weight_sram_bytes(self) -> int:
        """SRAM bytes available to weights: ``sram_bytes - act_reserve_bytes``."""
        return self.sram_bytes - self.act_reserve_bytes

    @property
    def period_ps(self) -> int:
        """One clock cycle in integer picoseconds (rounded to nearest; 480 MHz -> 2083)."""
        return round(1e12 / self.clock_hz)

    @property
    def offchip_latency_ps(self) -> int:
        """Off-chip access latency in integer picoseconds (rounded to nearest)."""
        return round(self.offchip_latency_s * 1e12)

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``weight_sram_bytes`` and ``period_ps`` as plain JSON-able values."""
        out = {f.name: thaw(getattr(self, f.name)) for f in fields(self)}
        out["weight_sram_bytes"] = self.weight_sram_bytes
        out["period_ps"] = self.period_ps
        return out
