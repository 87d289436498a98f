"""The frozen hardware config every simulation reads: ``HardwareConfig``, SI units in the names.

Public names: ``HardwareConfig``, ``DERIVED``, ``freeze``, ``thaw``.

Built by ``edgesim.config`` (YAML -> checked schema, ``edgesim.schema`` -> this); it lives apart
from the schema so that a run of a shipped config, whose checked form is stored
(``edgesim.config.load_config``), imports neither pydantic nor yaml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field, fields, make_dataclass
from typing import Any

from edgesim.technology import sram_energy

__all__ = ["DERIVED", "HardwareConfig", "freeze", "thaw"]


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


class HardwareConfig:
    """One accelerator, in SI units (or pJ where the name says so), immutable.

    Its fields are the schema's (``edgesim.schema``): every key that names a ``HardwareConfig``
    attribute (``Unit.attr``, ``Attr``) gives one, in the schema's order, with ``file`` first
    and ``sources`` and ``resolved`` after them; the builder adds nothing else. No list of them
    is kept here: ``HardwareConfig(**fields)`` is an instance of a frozen, slotted dataclass
    made (once per set of names) of exactly the fields given, a subclass of this class, so a
    new hardware field is one schema line and its value in the YAMLs. Three fields are derived
    from them: ``sram_read_pj_per_byte``, ``sram_write_pj_per_byte`` and ``sram_leak_w``, the
    SRAM of ``sram_bytes`` at ``node_nm``/``vdd_v`` (``technology.sram_energy``).

    ``mac_pj`` and ``index_decode_pj`` are already scaled from the config's reference node to
    ``node_nm``/``vdd_v``. ``sources`` maps each section (``config`` for the top level) to its
    ``source:`` text. ``resolved`` is the validated config in the YAML schema with human units.
    ``memories`` maps each off-chip memory by name (``offchip`` first) to its ``kind``,
    ``bytes_per_s``, ``latency_s``, ``write_latency_s``, ``burst_bytes``, ``read_pj_per_bit``,
    ``write_pj_per_bit``, ``port``, ``max_reads``, ``max_writes``, ``scale_reads``.
    Build one with ``edgesim.config.load_config``; change one by loading again with overrides.

    >>> hw = HardwareConfig(name="x", sram_bytes=1024, act_reserve_bytes=256, clock_hz=5e8,
    ...                     sram_energy_model="fixed", sram_quoted_read_pj_per_byte=1.0,
    ...                     sram_quoted_write_pj_per_byte=1.0, sram_quoted_leak_w=0.0)
    >>> hw.weight_sram_bytes, hw.period_ps, isinstance(hw, HardwareConfig)
    (768, 2000, True)
    """

    __slots__ = ()

    def __new__(cls, **fields: Any) -> HardwareConfig:
        if cls is HardwareConfig:
            cls = _dataclass_of(tuple(fields))
        return object.__new__(cls)

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

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as the fields it was built from (its class is made at run time)."""
        return (_rebuild, ({f.name: getattr(self, f.name) for f in fields(self) if f.init},))

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

    def section(self, path: str) -> dict[str, Any]:
        """The values of the schema section at ``path`` (``"compute.ops"``), by its keys, as
        this config holds them: each key that gives a field (``source`` does not), in the
        schema's order; where the schema says (``edgesim.schema.section_fields``), so that
        what a section's keys build (``sim.mapping.Rates``, ``Array``, ``Pooling``, ...) is
        built by name and a new key needs no line to copy it.

        >>> from edgesim.checked_configs import load
        >>> load("npu_small").section("compute.array")["rows"]
        16
        """
        from edgesim.checked_configs import sections
        where = sections().get(path)
        if where is None:
            raise KeyError(f"no config section {path!r}; known: {', '.join(sections())}")
        if isinstance(where, str):
            return {k: v for k, v in getattr(self, where).items() if k != "source"}
        return {key: getattr(self, name) for key, name in where}

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``weight_sram_bytes`` and ``period_ps`` as plain JSON-able values."""
        out = {f.name: thaw(getattr(self, f.name)) for f in fields(self)}
        out["weight_sram_bytes"] = self.weight_sram_bytes
        out["period_ps"] = self.period_ps
        return out


#: The fields every HardwareConfig derives from the ones it is given (``__post_init__``).
DERIVED = ("sram_read_pj_per_byte", "sram_write_pj_per_byte", "sram_leak_w")

_CLASSES: dict[tuple[str, ...], type] = {}


def _dataclass_of(names: tuple[str, ...]) -> type:
    """The frozen, slotted dataclass of fields ``names`` (then ``DERIVED``), made once."""
    cls = _CLASSES.get(names)
    if cls is None:
        specs = [(n, Any) for n in names] + [(n, float, field(init=False)) for n in DERIVED]
        cls = _CLASSES[names] = make_dataclass(
            "HardwareConfig", specs, bases=(HardwareConfig,), frozen=True, slots=True,
            namespace={"__module__": __name__})
    return cls


def _rebuild(values: dict[str, Any]) -> HardwareConfig:
    return HardwareConfig(**values)
