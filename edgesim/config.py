"""Hardware configs: YAML file -> validated pydantic model -> immutable ``HardwareConfig``.

Public names: ``HardwareConfig``, ``load_config``, ``parse_override``, ``apply_overrides``,
``shipped_configs``, ``config_table``, ``HWCONFIG_DIR``.

The pipeline is three steps, each of which can fail with one line naming the file and the key:

1. read the YAML (syntax errors give the line; duplicate keys are errors) and apply ``--set``
   overrides to the raw mapping (``apply_overrides``);
2. check the structure with pydantic models (``extra="forbid"``: unknown keys, missing keys,
   wrong types, unknown precision or off-chip kind);
3. parse every human quantity once (``edgesim.units``), check cross-field rules (activation
   reserve < SRAM size, known weight encodings), scale the per-MAC energies from the reference
   node to the chip's node (``edgesim.technology.energy_scale``) and freeze the result.

The YAML schema (every section needs a non-empty ``source:``) is shown in the shipped configs,
``edgesim/hwconfigs/*.yaml``.
Energies in ``energy:`` (``mac`` and ``index_decode``) are quoted at ``reference_node_nm`` /
``reference_vdd_v`` and scaled; SRAM and off-chip energies are taken as written (off-chip energy
does not follow logic scaling, REFERENCE.md B6).

>>> hw = load_config("npu_small", ["sram.size=2MiB"])
>>> hw.sram_bytes, hw.weight_sram_bytes, hw.period_ps
(2097152, 1572864, 2000)
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StringConstraints,
    ValidationError,
)

from edgesim import encodings
from edgesim.errors import ConfigError, UnitError
from edgesim.technology import energy_scale
from edgesim.units import format_quantity, parse_quantity
from edgesim.workload import PRECISIONS

__all__ = [
    "HWCONFIG_DIR",
    "HardwareConfig",
    "apply_overrides",
    "config_from_dict",
    "config_table",
    "load_config",
    "parse_override",
    "shipped_configs",
]

#: The repository's shipped hardware configs.
HWCONFIG_DIR = Path(__file__).resolve().parent / "hwconfigs"

#: ``--set dram.x=...`` is read as ``--set offchip.x=...``.
_ALIASES = {"dram": "offchip"}


# --------------------------------------------------------------------------- schema (step 2)

def _quantity_input(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"expected a number with a unit such as '512 KiB', got {value!r}")
    return value


_Quantity = Annotated[Any, AfterValidator(_quantity_input)]
_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
_Precision = Literal["int8", "int4", "fp16", "binary"]  # == workload.PRECISIONS (tested)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Technology(_Section):
    node_nm: PositiveFloat
    vdd_v: PositiveFloat
    source: _Text


class _MacsPerCycle(_Section):
    int8: PositiveInt
    int4: PositiveInt
    fp16: PositiveInt
    binary: PositiveInt


class _Array(_Section):
    rows: PositiveInt
    cols: PositiveInt


class _Compute(_Section):
    precision: _Precision
    activation_bits: PositiveInt
    macs_per_cycle: _MacsPerCycle
    array: _Array
    skip_zero_weights: bool
    source: _Text


class _Sram(_Section):
    size: _Quantity
    activation_reserve: _Quantity
    read_energy: _Quantity
    write_energy: _Quantity
    leakage: _Quantity
    source: _Text


class _Offchip(_Section):
    kind: Literal["dram", "flash"]
    bandwidth: _Quantity
    latency: _Quantity
    burst: _Quantity
    read_energy: _Quantity
    write_energy: _Quantity
    source: _Text


class _MacEnergy(_Section):
    int8: _Quantity
    int4: _Quantity
    fp16: _Quantity
    binary: _Quantity


class _Energy(_Section):
    reference_node_nm: PositiveFloat
    reference_vdd_v: PositiveFloat
    mac: _MacEnergy
    index_decode: _Quantity = 0
    source: _Text


class _Prefetch(_Section):
    depth: NonNegativeInt
    source: _Text


_DEFAULT_PREFETCH = _Prefetch(
    depth=2, source="edgesim default: weights of up to 2 ops ahead (assumption)")


class _ConfigFile(_Section):
    name: _Text
    description: _Text
    source: _Text
    clock: _Quantity
    technology: _Technology
    compute: _Compute
    sram: _Sram
    offchip: _Offchip
    energy: _Energy
    prefetch: _Prefetch = _DEFAULT_PREFETCH
    formats: tuple[_Text, ...] = ("dense",)


def _model_at(path: Sequence[str]) -> type[BaseModel] | None:
    """The schema model of the section at ``path`` (``()`` is the top level), or None."""
    cls: type[BaseModel] = _ConfigFile
    for part in path:
        field = cls.model_fields.get(part)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def _section_name(path: Sequence[str]) -> str:
    return ".".join(path) if path else "the top level"


# --------------------------------------------------------------------------- frozen mappings

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


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _FrozenDict({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


# --------------------------------------------------------------------------- the result

@dataclass(frozen=True, slots=True)
class HardwareConfig:
    """One accelerator, in SI units (or pJ where the name says so), immutable.

    ``mac_pj`` and ``index_decode_pj`` are already scaled from the config's reference node to
    ``node_nm``/``vdd_v``. ``sources`` maps each section (``config`` for the top level) to its
    ``source:`` text. ``resolved`` is the validated config in the YAML schema with human units.
    Build one with ``load_config``; change one by loading again with overrides.
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
    skip_zero_weights: bool
    sram_bytes: int
    act_reserve_bytes: int
    sram_read_pj_per_byte: float
    sram_write_pj_per_byte: float
    sram_leak_w: float
    offchip_kind: str
    offchip_bytes_per_s: float
    offchip_latency_s: float
    offchip_burst_bytes: int
    offchip_read_pj_per_bit: float
    offchip_write_pj_per_bit: float
    node_nm: float
    vdd_v: float
    mac_pj: Mapping[str, float]
    index_decode_pj: float
    prefetch_depth: int
    formats: tuple[str, ...]
    sources: Mapping[str, str]
    resolved: Mapping[str, Any]

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
        out = {f.name: _thaw(getattr(self, f.name)) for f in fields(self)}
        out["weight_sram_bytes"] = self.weight_sram_bytes
        out["period_ps"] = self.period_ps
        return out


# --------------------------------------------------------------------------- step 1: YAML, --set

def _no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode,
                       deep: bool = False) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark)
            seen.add(key_node.value)
    return loader.construct_mapping(node, deep=deep)


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys."""


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def _read_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc).split())
        raise ConfigError(f"{file}: {line}invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from None


def parse_override(text: str) -> tuple[tuple[str, ...], str]:
    """Split one ``--set`` argument into its key path and its (unparsed) value text.

    >>> parse_override("sram.size=2MiB")
    (('sram', 'size'), '2MiB')
    """
    key, sep, value = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. sram.size=2MiB")
    return path, value.strip()


def _canonical(path: tuple[str, ...]) -> tuple[str, ...]:
    return (_ALIASES.get(path[0], path[0]), *path[1:])


def _check_path(path: tuple[str, ...], text: str, where: str) -> None:
    """Raise ConfigError unless ``path`` names a field of the schema."""
    for i, part in enumerate(path):
        section = path[:i]
        cls = _model_at(section)
        if cls is None:
            raise ConfigError(f"{where}: --set {text}: {'.'.join(section)} is a value, "
                              f"not a section with key {part!r}")
        if part not in cls.model_fields:
            known = ", ".join(cls.model_fields)
            raise ConfigError(f"{where}: --set {text}: unknown key {'.'.join(path[: i + 1])!r}; "
                              f"known keys of {_section_name(section)}: {known}")


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], where: str) -> dict[str, Any]:
    """A copy of the raw YAML mapping with each ``key=value`` override applied in order.

    Keys are dotted paths into the schema (``sram.size``, ``compute.macs_per_cycle.int8``);
    ``dram.`` is an alias of ``offchip.``. Values are read as YAML scalars or flow collections
    (``true``, ``2``, ``2MiB``, ``[dense, csr]``). The section's ``source`` gets a note saying
    the value was set on the command line. ``where`` (the file name) starts every error.

    >>> apply_overrides({"sram": {"size": "512 KiB", "source": "x"}}, ["sram.size=1MiB"], "f")
    {'sram': {'size': '1MiB', 'source': 'x; sram.size=1MiB set on the command line'}}
    """
    out = copy.deepcopy(raw)
    for text in overrides:
        path, value_text = parse_override(text)
        path = _canonical(path)
        _check_path(path, text, where)
        try:
            value = yaml.safe_load(value_text) if value_text else None
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"{where}: --set {text}: value is not valid YAML: {problem}"
                              ) from None
        created = len(path) > 1 and path[0] not in out
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {'.'.join(path[: i + 1])}: expected a mapping, "
                                  f"got {child!r}; cannot apply --set {text}")
            node = child
        node[path[-1]] = value
        _note_source(out, path, value_text, created=created)
    return out


def _note_source(raw: dict[str, Any], path: tuple[str, ...], value_text: str, *,
                 created: bool) -> None:
    """Append ``key=value set on the command line`` to the source of the overridden section."""
    if path[-1] == "source":
        return
    owner = raw[path[0]] if len(path) > 1 and _model_at(path[:1]) is not None else raw
    if not isinstance(owner, dict):
        return
    note = f"{'.'.join(path)}={value_text} set on the command line"
    current = owner.get("source")
    if isinstance(current, str) and current.strip():
        owner["source"] = f"{current}; {note}"
    elif created and owner is not raw:
        owner["source"] = note  # a section created by --set (e.g. prefetch.depth=4)


# --------------------------------------------------------------------------- step 2: explain

def _explain(exc: ValidationError, file: str, overridden: set[str]) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = _key(loc, overridden)
        kind = err["type"]
        if kind == "missing":
            parts.append(f"{key}: missing (required)")
        elif kind == "extra_forbidden":
            cls = _model_at(loc[:-1])
            known = ", ".join(cls.model_fields) if cls is not None else "?"
            parts.append(f"{key}: unknown key; known keys of {_section_name(loc[:-1])}: {known}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = repr(err["input"])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            parts.append(f"{key}: {shown}: {msg}")
    return f"{file}: " + "; ".join(parts)


def _key(loc: Sequence[str], overridden: set[str]) -> str:
    key = ".".join(loc) or "(top level)"
    return f"{key} (from --set)" if key in overridden else key


# --------------------------------------------------------------------------- step 3: build

class _Builder:
    """Parses quantities with ``file: key`` in every error message."""

    def __init__(self, file: str, overridden: set[str]) -> None:
        self.file = file
        self.overridden = overridden

    def where(self, key: str) -> str:
        return f"{self.file}: {_key(key.split('.'), self.overridden)}"

    def q(self, key: str, value: Any, kind: str, *, positive: bool = False,
          to: str | None = None) -> Any:
        return parse_quantity(value, kind, where=self.where(key), positive=positive, to=to)

    def reserve(self, value: Any, size_bytes: int) -> int:
        """``sram.activation_reserve`` as bytes: a size, or a percentage of ``sram.size``."""
        key = "sram.activation_reserve"
        if isinstance(value, str) and value.strip().endswith("%"):
            try:
                percent = Fraction(value.strip()[:-1].strip())
            except ValueError:
                raise UnitError(f"{self.where(key)}: {value!r} is not a percentage like '25%'"
                                ) from None
            if not 0 <= percent < 100:
                raise ConfigError(f"{self.where(key)}: {value!r} must be >= 0% and < 100%")
            return int(size_bytes * percent / 100)  # floor: whole bytes
        reserve = self.q(key, value, "size")
        if reserve > size_bytes:  # equal is allowed: no SRAM left for weights (all streamed)
            raise ConfigError(
                f"{self.where(key)}: {value!r} ({reserve} B) must not exceed sram.size "
                f"({size_bytes} B); write it as a percentage (e.g. 25%) to follow sram.size")
        return reserve


def _build(m: _ConfigFile, file: str, overridden: set[str]) -> HardwareConfig:
    b = _Builder(file, overridden)
    clock_hz = b.q("clock", m.clock, "frequency", positive=True)
    if round(1e12 / clock_hz) < 1:
        raise ConfigError(f"{b.where('clock')}: {m.clock!r} is above 1 THz (period < 1 ps)")
    sram_bytes = b.q("sram.size", m.sram.size, "size", positive=True)
    reserve_bytes = b.reserve(m.sram.activation_reserve, sram_bytes)
    scale = energy_scale(m.energy.reference_node_nm, m.energy.reference_vdd_v,
                         m.technology.node_nm, m.technology.vdd_v)
    mac_ref_pj = {p: b.q(f"energy.mac.{p}", getattr(m.energy.mac, p), "energy", to="pJ")
                  for p in PRECISIONS}
    index_ref_pj = b.q("energy.index_decode", m.energy.index_decode, "energy", to="pJ")
    if len(set(m.formats)) != len(m.formats) or not m.formats:
        raise ConfigError(f"{b.where('formats')}: {list(m.formats)!r} must be a non-empty list "
                          "of distinct encodings")
    known = tuple(encodings.ENCODINGS)
    for name in m.formats:
        if name not in known:
            raise ConfigError(f"{b.where('formats')}: unknown weight encoding {name!r}; "
                              f"known: {', '.join(known)}")
    values: dict[str, Any] = {
        "name": m.name,
        "file": file,
        "description": m.description,
        "clock_hz": clock_hz,
        "precision": m.compute.precision,
        "act_bits": m.compute.activation_bits,
        "macs_per_cycle": {p: getattr(m.compute.macs_per_cycle, p) for p in PRECISIONS},
        "array_rows": m.compute.array.rows,
        "array_cols": m.compute.array.cols,
        "skip_zero_weights": m.compute.skip_zero_weights,
        "sram_bytes": sram_bytes,
        "act_reserve_bytes": reserve_bytes,
        "sram_read_pj_per_byte": b.q("sram.read_energy", m.sram.read_energy, "energy_per_byte",
                                     to="pJ/B"),
        "sram_write_pj_per_byte": b.q("sram.write_energy", m.sram.write_energy,
                                      "energy_per_byte", to="pJ/B"),
        "sram_leak_w": b.q("sram.leakage", m.sram.leakage, "power"),
        "offchip_kind": m.offchip.kind,
        "offchip_bytes_per_s": b.q("offchip.bandwidth", m.offchip.bandwidth, "bandwidth",
                                   positive=True),
        "offchip_latency_s": b.q("offchip.latency", m.offchip.latency, "time"),
        "offchip_burst_bytes": b.q("offchip.burst", m.offchip.burst, "size", positive=True),
        "offchip_read_pj_per_bit": b.q("offchip.read_energy", m.offchip.read_energy,
                                       "energy_per_bit", to="pJ/bit"),
        "offchip_write_pj_per_bit": b.q("offchip.write_energy", m.offchip.write_energy,
                                        "energy_per_bit", to="pJ/bit"),
        "node_nm": m.technology.node_nm,
        "vdd_v": m.technology.vdd_v,
        "mac_pj": {p: e * scale for p, e in mac_ref_pj.items()},
        "index_decode_pj": index_ref_pj * scale,
        "prefetch_depth": m.prefetch.depth,
        "formats": tuple(m.formats),
        "sources": {"config": m.source, "technology": m.technology.source,
                    "compute": m.compute.source, "sram": m.sram.source,
                    "offchip": m.offchip.source, "energy": m.energy.source,
                    "prefetch": m.prefetch.source},
    }
    values["resolved"] = _resolved(m, values, mac_ref_pj, index_ref_pj)
    frozen = {k: _freeze(v) for k, v in values.items()}
    return HardwareConfig(**frozen)


def _resolved(m: _ConfigFile, v: dict[str, Any], mac_ref_pj: Mapping[str, float],
              index_ref_pj: float) -> dict[str, Any]:
    """The validated config in the YAML schema, quantities re-written in human units."""
    pj = 1e-12
    out = {
        "name": m.name,
        "description": m.description,
        "source": m.source,
        "clock": format_quantity(v["clock_hz"], "frequency"),
        "technology": m.technology.model_dump(),
        "compute": m.compute.model_dump(),
        "sram": {
            "size": format_quantity(v["sram_bytes"], "size"),
            "activation_reserve": format_quantity(v["act_reserve_bytes"], "size"),
            "read_energy": format_quantity(v["sram_read_pj_per_byte"] * pj, "energy_per_byte"),
            "write_energy": format_quantity(v["sram_write_pj_per_byte"] * pj, "energy_per_byte"),
            "leakage": format_quantity(v["sram_leak_w"], "power"),
            "source": m.sram.source,
        },
        "offchip": {
            "kind": m.offchip.kind,
            "bandwidth": format_quantity(v["offchip_bytes_per_s"], "bandwidth"),
            "latency": format_quantity(v["offchip_latency_s"], "time"),
            "burst": format_quantity(v["offchip_burst_bytes"], "size"),
            "read_energy": format_quantity(v["offchip_read_pj_per_bit"] * pj, "energy_per_bit"),
            "write_energy": format_quantity(v["offchip_write_pj_per_bit"] * pj,
                                            "energy_per_bit"),
            "source": m.offchip.source,
        },
        "energy": {
            "reference_node_nm": m.energy.reference_node_nm,
            "reference_vdd_v": m.energy.reference_vdd_v,
            "mac": {p: format_quantity(e * pj, "energy") for p, e in mac_ref_pj.items()},
            "index_decode": format_quantity(index_ref_pj * pj, "energy"),
            "source": m.energy.source,
        },
        "prefetch": m.prefetch.model_dump(),
        "formats": list(m.formats),
    }
    return json.loads(json.dumps(out))  # plain JSON types only


# --------------------------------------------------------------------------- public verbs

def _locate(path: str | Path) -> Path:
    """``path`` itself, or the shipped config it names when no such file exists.

    A shipped config is addressed by its bare name (``npu_small``), its file name
    (``npu_small.yaml``) or its old place in a clone (``hwconfigs/npu_small.yaml``).
    """
    p = Path(path)
    if p.exists():
        return p
    bare = len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "hwconfigs")
    if bare and p.suffix in ("", ".yaml"):
        shipped = HWCONFIG_DIR / f"{p.stem}.yaml"
        if shipped.exists():
            return shipped
    return p


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> HardwareConfig:
    """Read, validate and freeze one hardware config; ``overrides`` are ``key=value`` strings.

    ``path`` is a YAML file, or the bare name of a shipped config (``"npu_small"``). Every
    problem raises ``ConfigError`` (``UnitError`` for units) whose one-line message starts with
    the file name and names the key.

    >>> load_config("ethos_u55").offchip_kind
    'flash'
    """
    p = _locate(path)
    file = str(p)
    if not p.is_file():
        names = ", ".join(s.stem for s in shipped_configs())
        raise ConfigError(f"{file}: no such hardware config file (shipped configs: {names})")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return config_from_dict(_read_yaml(text, file), overrides=overrides, file=file)


def config_from_dict(raw: Any, *, overrides: Sequence[str] = (),
                     file: str = "<config>") -> HardwareConfig:
    """Validate and freeze a config given as the YAML's mapping (``file`` names it in errors).

    >>> import yaml
    >>> raw = yaml.safe_load(open(shipped_configs()[0]))
    >>> config_from_dict(raw, overrides=["sram.size=1MiB"]).sram_bytes
    1048576
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys (name, clock, compute, ...) at "
                          f"the top level, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides, file)
    overridden = {".".join(_canonical(parse_override(o)[0])) for o in overrides}
    try:
        model = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, file, overridden)) from None
    return _build(model, file, overridden)


def shipped_configs() -> list[Path]:
    """The shipped ``edgesim/hwconfigs/*.yaml`` (package data), sorted by file name."""
    return sorted(HWCONFIG_DIR.glob("*.yaml"))


def config_table() -> list[dict[str, Any]]:
    """One row per shipped config: name, file, clock, int8 MACs/cycle, SRAM, off-chip, source.

    >>> [row["name"] for row in config_table()][:2]
    ['edgetpu', 'ethos_u55']
    """
    rows = []
    for path in shipped_configs():
        hw = load_config(path)
        rows.append({
            "name": hw.name,
            "file": path.name,
            "clock": format_quantity(hw.clock_hz, "frequency"),
            "int8_macs_per_cycle": hw.macs_per_cycle["int8"],
            "sram": format_quantity(hw.sram_bytes, "size"),
            "offchip": hw.offchip_kind,
            "offchip_bandwidth": format_quantity(hw.offchip_bytes_per_s, "bandwidth"),
            "source": hw.sources["config"],
        })
    return rows

