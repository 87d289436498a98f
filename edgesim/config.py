"""Hardware configs: YAML file -> validated pydantic model -> immutable ``HardwareConfig``.

Public names: ``HardwareConfig``, ``load_config``, ``read_config``, ``config_from_dict``,
``parse_override``, ``apply_overrides``, ``shipped_configs``, ``config_table``, ``unit_kind``,
``HWCONFIG_DIR``.

The pipeline is three steps, each of which can fail with one line naming the file and the key:

1. read the YAML (syntax errors give the line; duplicate keys are errors; a file above
   ``MAX_FILE_BYTES``, nesting deeper than ``MAX_DEPTH`` and aliases ``*name`` are refused before
   anything is built) and apply ``--set`` overrides to the raw mapping (``apply_overrides``);
2. check the structure with the pydantic schema (``edgesim.schema``; ``extra="forbid"``:
   unknown keys, missing keys, wrong types, unknown precision or off-chip kind, numbers out of
   their range). Errors show at most ``MAX_SHOWN`` keys or problems and values cut short;
3. walk the schema: parse every human quantity once in the unit kind its field declares
   (``edgesim.units``) and check its range (``edgesim.schema.Unit``), check cross-field rules
   (activation reserve < SRAM size, known weight encodings), scale the per-MAC energies from the
   reference node to the chip's node (``edgesim.technology.energy_scale``) and freeze the result.

The YAML schema (every section needs a non-empty ``source:``) is shown in the shipped configs,
``edgesim/hwconfigs/*.yaml``.
Energies in ``energy:`` (``mac`` and ``index_decode``) are quoted at ``reference_node_nm`` /
``reference_vdd_v`` and scaled; SRAM and off-chip energies are taken as written (off-chip energy
does not follow logic scaling, docs/references.md B6).

>>> hw = load_config("npu_small", ["sram.size=2MiB"])
>>> hw.sram_bytes, hw.weight_sram_bytes, hw.period_ps
(2097152, 1572864, 2000)
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from edgesim import encodings
from edgesim.checked_configs import HWCONFIG_DIR, locate, stored
from edgesim.errors import ConfigError, UnitError
from edgesim.schema import (
    Attr,
    ConfigFile,
    HardwareConfig,
    Unit,
    canonical_path,
    freeze,
    meta,
    named_model,
    schema_fields,
    section_at,
    unit_kind,
)
from edgesim.technology import energy_scale
from edgesim.units import SHOWN, format_quantity, parse_quantity, shown, unit_factor

_PERCENT = re.compile(r"\d{1,20}(?:\.\d{0,20})?|\.\d{1,20}")

__all__ = [
    "HWCONFIG_DIR",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_SHOWN",
    "HardwareConfig",
    "apply_overrides",
    "config_from_dict",
    "config_table",
    "load_config",
    "parse_override",
    "read_config",
    "shipped_configs",
    "unit_kind",
]

#: A config file may be at most this large (checked before it is read).
MAX_FILE_BYTES = 2**20
#: YAML mappings and lists nest at most this deep (a config needs 4).
MAX_DEPTH = 32
#: An error lists at most this many unknown keys or problems, then "and N more".
MAX_SHOWN = 5


def _section_name(path: Sequence[str]) -> str:
    return ".".join(path) if path else "the top level"


# --------------------------------------------------------------------------- step 1: YAML, --set

def _no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode,
                       deep: bool = False) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key_node.value)}", key_node.start_mark)
            seen.add(key_node.value)
    return loader.construct_mapping(node, deep=deep)


class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys."""


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def _check_events(text: str, file: str) -> None:
    """Refuse aliases and nesting deeper than ``MAX_DEPTH``, reading events only (no nodes)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{file}: line {event.start_mark.line + 1}: YAML aliases "
                              f"(*{event.anchor[:40]}) are not supported; write the "
                              "value out")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError(f"{file}: line {event.start_mark.line + 1}: YAML nested "
                                  f"more than {MAX_DEPTH} deep")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _read_yaml(text: str, file: str) -> Any:
    """The YAML document in ``text``; every problem is a one-line ``ConfigError``."""
    try:
        _check_events(text, file)
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc).split())
        raise ConfigError(f"{file}: {line}invalid YAML: {_cut(problem)}") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: int > 4300 digits
        raise ConfigError(f"{file}: invalid YAML: {_cut(' '.join(str(exc).split()))}") from None


def _arg(text: str) -> str:
    """A ``--set`` argument as errors show it: cut to ``edgesim.units.SHOWN`` characters."""
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."





def parse_override(text: str) -> tuple[tuple[str, ...], str]:
    """Split one ``--set`` argument into its key path and its (unparsed) value text.

    >>> parse_override("sram.size=2MiB")
    (('sram', 'size'), '2MiB')
    """
    key, sep, value = text.partition("=")
    path = tuple(part.strip() for part in key.split("."))
    if not sep or not all(path):
        raise ConfigError(f"--set {_arg(text)!r}: expected key=value, e.g. sram.size=2MiB")
    return path, value.strip()


def _canonical(path: tuple[str, ...]) -> tuple[str, ...]:
    return canonical_path(path)


def _check_path(path: tuple[str, ...], text: str, where: str) -> None:
    """Raise ConfigError unless ``path`` names a field of the schema."""
    for i, part in enumerate(path):
        section = path[:i]
        if section == ("memories",):
            continue        # a memory's name: any name
        cls = section_at(section)
        if cls is None:
            raise ConfigError(f"{where}: --set {_arg(text)}: {'.'.join(section)} is a value, "
                              f"not a section with key {part!r}")
        if part not in cls.model_fields:
            known = ", ".join(cls.model_fields)
            raise ConfigError(f"{where}: --set {_arg(text)}: unknown key "
                              f"{shown('.'.join(path[: i + 1]))}; "
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
    out = _copy(raw)
    for text in overrides:
        path, value_text = parse_override(text)
        path = _canonical(path)
        _check_path(path, text, where)
        try:
            value = _copy(_override_value(value_text)) if value_text else None
        except ConfigError as exc:
            problem = str(exc).removeprefix(": ").replace("invalid YAML: ", "", 1)
            raise ConfigError(f"{where}: --set {_arg(text)}: value is not valid YAML: {problem}"
                              ) from None
        created = len(path) > 1 and path[0] not in out
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{where}: {'.'.join(path[: i + 1])}: expected a mapping, "
                                  f"got {shown(child)}; cannot apply --set {_arg(text)}")
            node = child
        node[path[-1]] = value
        _note_source(out, path, value_text, created=created)
    return out


def _copy(value: Any) -> Any:
    """A copy of YAML data whose mappings and lists are new (what ``apply_overrides`` changes);
    scalars are shared. ``copy.deepcopy`` was a tenth of a sweep point's config build."""
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return copy.deepcopy(value) if isinstance(value, (dict, list, set)) else value


def _note_source(raw: dict[str, Any], path: tuple[str, ...], value_text: str, *,
                 created: bool) -> None:
    """Append ``key=value set on the command line`` to the source of the overridden section."""
    if path[-1] == "source":
        return
    owner = raw[path[0]] if len(path) > 1 and section_at(path[:1]) is not None else raw
    if not isinstance(owner, dict):
        return
    note = f"{'.'.join(path)}={value_text} set on the command line"
    current = owner.get("source")
    if isinstance(current, str) and current.strip():
        owner["source"] = f"{current}; {note}"
    elif created and owner is not raw:
        owner["source"] = note  # a section created by --set (e.g. prefetch.depth=4)


# --------------------------------------------------------------------------- step 2: explain

def _unknown_keys(raw: Mapping[Any, Any], file: str, overridden: set[str],
                  path: tuple[str, ...] = ()) -> None:
    """Refuse keys the schema does not have, naming at most ``MAX_SHOWN`` of them.

    Runs before pydantic, which would build one error (and one list of known keys) per key.
    """
    cls = section_at(path)
    if cls is None:
        return
    unknown = [k for k in raw if not isinstance(k, str) or k not in cls.model_fields]
    if unknown:
        keys = [".".join((*path, k if isinstance(k, str) and len(k) <= 40 else shown(k, 40)))
                for k in unknown[:MAX_SHOWN]]
        more = f" and {len(unknown) - MAX_SHOWN} more" if len(unknown) > MAX_SHOWN else ""
        raise ConfigError(f"{file}: {', '.join(_key(k.split('.'), overridden) for k in keys)}"
                          f"{more}: unknown key{'s' if len(unknown) > 1 else ''}; known keys of "
                          f"{_section_name(path)}: {', '.join(cls.model_fields)}")
    for key, value in raw.items():
        if not isinstance(value, Mapping):
            continue
        if named_model(cls.model_fields[key]) is not None:
            for name, sub in value.items():
                if isinstance(name, str) and isinstance(sub, Mapping):
                    _unknown_keys(sub, file, overridden, (*path, key, name))
        else:
            _unknown_keys(value, file, overridden, (*path, key))


def _explain(exc: ValidationError, file: str, overridden: set[str]) -> str:
    errors = exc.errors()
    parts = []
    for err in errors[:MAX_SHOWN]:
        loc = tuple(shown(p, 40) if not isinstance(p, str) or len(p) > 40 else p
                    for p in err["loc"])
        key = _key(loc, overridden)
        kind = err["type"]
        if kind == "missing":
            parts.append(f"{key}: missing (required)")
        elif kind == "extra_forbidden":
            cls = section_at(loc[:-1])
            known = ", ".join(cls.model_fields) if cls is not None else "?"
            parts.append(f"{key}: unknown key; known keys of {_section_name(loc[:-1])}: {known}")
        else:
            msg = _cut(err["msg"].removeprefix("Value error, "))
            parts.append(f"{key}: {shown(err['input'], 60)}: {msg}")
    if len(errors) > MAX_SHOWN:
        parts.append(f"and {len(errors) - MAX_SHOWN} more problems")
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

    def q(self, key: str, value: Any, unit: Unit) -> Any:
        """``value`` of ``key`` in the unit its schema field declares (a value parsed before
        is taken from ``_PARSED``)."""
        memo = (key, type(value), value, unit)
        got = _PARSED.get(memo)
        if got is None:
            got = parse_quantity(value, unit.kind, where=self.where(key), positive=unit.positive,
                                 to=unit.to, **unit.bounds())
            if len(_PARSED) < _MEMO_SIZE:
                _PARSED[memo] = got
        return got


    def reserve(self, value: Any, size_bytes: int) -> int:
        """``sram.activation_reserve`` as bytes: a size, or a percentage of ``sram.size``."""
        key = "sram.activation_reserve"
        if isinstance(value, str) and value.strip().endswith("%"):
            number = value.strip()[:-1].strip()
            if not _PERCENT.fullmatch(number):   # no exponents: nothing big to compute
                raise UnitError(f"{self.where(key)}: {shown(value)} is not a percentage like "
                                "'25%'")
            percent = Fraction(number)
            if not 0 <= percent < 100:
                raise ConfigError(f"{self.where(key)}: {shown(value)} must be >= 0% and < 100%")
            return int(size_bytes * percent / 100)  # floor: whole bytes
        reserve = parse_quantity(value, "size", where=self.where(key), hi=2**60)
        if reserve > size_bytes:  # equal is allowed: no SRAM left for weights (all streamed)
            raise ConfigError(
                f"{self.where(key)}: {shown(value)} ({reserve} B) must not exceed sram.size "
                f"({size_bytes} B); write it as a percentage (e.g. 25%) to follow sram.size")
        return reserve


#: Quantities parsed so far, by (key, value type, value, unit): a sweep builds one config per
#: grid point from the same few texts (each point re-parsed ~25 quantities, most of the 5-15
#: ms of a point: issue 22). Only a value that parsed is kept; one that fails raises each time,
#: naming its file.
_PARSED: dict[tuple[Any, ...], Any] = {}
_MEMO_SIZE = 8192


@lru_cache(maxsize=_MEMO_SIZE)
def _override_value(text: str) -> Any:
    """The YAML value of a ``--set`` value text (parsed once per text)."""
    return _read_yaml(text, "")


@lru_cache(maxsize=_MEMO_SIZE, typed=True)
def _formatted(value: float, kind: str) -> str:
    return format_quantity(value, kind)


@lru_cache(maxsize=1)
def _fields() -> tuple[tuple[tuple[str, ...], Any, Unit | None, Attr | None], ...]:
    """``schema_fields()`` with each field's ``Unit`` and ``Attr``."""
    return tuple((path, info, meta(info, Unit), meta(info, Attr))
                 for path, info in schema_fields())

def _value_at(m: BaseModel, path: Sequence[str]) -> Any:
    for part in path:
        m = getattr(m, part)
    return m


def _parse_quantities(m: ConfigFile, b: _Builder) -> dict[tuple[str, ...], Any]:
    """Every quantity of the config, by path, in the unit of its field (``Unit.to``)."""
    parsed: dict[tuple[str, ...], Any] = {}
    for path, _, unit, _ in _fields():
        if unit is None:
            continue
        value = _value_at(m, path)
        if value is None:      # an optional quantity left out (``offchip.write_latency``)
            parsed[path] = None
        elif path == ("sram", "activation_reserve"):
            parsed[path] = b.reserve(value, parsed[("sram", "size")])
        else:
            parsed[path] = b.q(".".join(path), value, unit)
    return parsed


def _build(m: ConfigFile, file: str, overridden: set[str]) -> HardwareConfig:
    """The frozen config: each schema field's value under the ``HardwareConfig`` name it gives.

    A ``Unit`` field contributes its parsed quantity (times the node scale when ``scaled``); an
    ``Attr`` field its value, a section with an ``Attr`` the mapping of its keys.
    """
    b = _Builder(file, overridden)
    parsed = _parse_quantities(m, b)
    if round(1e12 / parsed[("clock",)]) < 1:
        raise ConfigError(f"{b.where('clock')}: {m.clock!r} is above 1 THz (period < 1 ps)")
    if len(set(m.formats)) != len(m.formats) or not m.formats:
        raise ConfigError(f"{b.where('formats')}: {shown(list(m.formats))} must be a non-empty "
                          "list of distinct encodings")
    known = tuple(encodings.ENCODINGS)
    for name in m.formats:
        if name not in known:
            raise ConfigError(f"{b.where('formats')}: unknown weight encoding {shown(name)}; "
                              f"known: {', '.join(known)}")
    for name in m.compute.skip_formats:
        if name not in m.formats:
            raise ConfigError(f"{b.where('compute.skip_formats')}: {shown(name)} is not a format "
                              f"the hardware decodes (formats: {', '.join(m.formats)})")
        if not encodings.CAPABILITIES[name].sparse:
            raise ConfigError(f"{b.where('compute.skip_formats')}: {shown(name)} is not sparse "
                              "(its decoder hands the array every weight, zeros too), so no "
                              "MAC can be skipped; expected sparse encodings ("
                              + ", ".join(e for e, c in encodings.CAPABILITIES.items()
                                          if c.sparse) + ")")
    if m.compute.array.kind == "mcu" and "kernels" not in m.compute.model_fields_set:
        raise ConfigError(f"{b.where('compute.kernels')}: missing; compute.array.kind mcu "
                          "needs the CPU's kernels (edgesim.sim.mcu)")
    scale = energy_scale(m.energy.reference_node_nm, m.energy.reference_vdd_v,
                         m.technology.node_nm, m.technology.vdd_v)

    def value(path: tuple[str, ...], info) -> Any:
        unit = meta(info, Unit)
        if unit is not None:
            return parsed[path] * scale if unit.scaled else parsed[path]
        if section_at(path) is not None:
            return {k: value((*path, k), sub) for k, sub in section_at(path).model_fields.items()}
        return _value_at(m, path)

    values: dict[str, Any] = {"file": file}
    sources = {"config": m.source}
    for path, info, unit, attr in _fields():
        name = unit.attr if unit is not None else attr.name if attr is not None else None
        if name is not None:
            values[name] = value(path, info)
        if path[-1] == "source" and len(path) == 2:
            sources[path[0]] = _value_at(m, path)
    values["memories"] = _memories(m, parsed, b)
    _check_placement(m, values["memories"], b)
    values["sources"] = sources
    values["resolved"] = _resolved(m, parsed)
    return HardwareConfig(**{k: freeze(v) for k, v in values.items()})


_MEMORY_FIELDS = {"bandwidth": "bytes_per_s", "latency": "latency_s",
                  "write_latency": "write_latency_s", "burst": "burst_bytes",
                  "read_energy": "read_pj_per_bit", "write_energy": "write_pj_per_bit"}


def _memories(m: ConfigFile, parsed: dict[tuple[str, ...], Any], b: _Builder
              ) -> dict[str, dict[str, Any]]:
    """Every off-chip memory by name, ``offchip`` first, quantities parsed (SI, pJ/bit).

    A memory's ``write_latency`` left out is its ``latency``. ``parsed`` gains the paths
    ``("memories", name, key)`` (for ``_resolved``).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, mem in (("offchip", m.offchip), *m.memories.items()):
        if name in out or name == "sram":
            raise ConfigError(f"{b.where('memories.' + name)}: the memory name {shown(name)} is "
                              "taken (offchip and sram are the built-in memories)")
        row: dict[str, Any] = {"kind": mem.kind, "port": mem.port.upper()}
        for key, info in type(mem).model_fields.items():
            field = _MEMORY_FIELDS.get(key)
            if field is None:
                continue
            value = getattr(mem, key)
            if name == "offchip":
                row[field] = parsed[("offchip", key)]
            else:
                row[field] = parsed[("memories", name, key)] = (
                    None if value is None else b.q(f"memories.{name}.{key}", value,
                                                   meta(info, Unit)))
        if row["write_latency_s"] is None:
            row["write_latency_s"] = row["latency_s"]
        for key in ("max_reads", "max_writes", "scale_reads"):   # counts, no unit
            row[key] = getattr(mem, key)
        out[name] = row
    return out


def _check_placement(m: ConfigFile, memories: Mapping[str, Any], b: _Builder) -> None:
    """Each placement names a memory: weights and spills an off-chip one, the arena also sram."""
    p = m.placement
    for key, name, allowed in (("weights", p.weights, tuple(memories)),
                               ("arena", p.arena, ("sram", *memories)),
                               ("spills", p.spills, tuple(memories))):
        if name is not None and name not in allowed:
            raise ConfigError(f"{b.where('placement.' + key)}: unknown memory {shown(name)}; "
                              f"expected one of {', '.join(allowed)}")


def _resolved(m: ConfigFile, parsed: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """The validated config in the YAML schema, quantities re-written in human units.

    Energies quoted at the reference node are shown as quoted (unscaled).
    """
    out = m.model_dump()
    memory_paths = [(p, meta(section_at(p[:-1]).model_fields[p[-1]], Unit))
                    for p in parsed if p[0] == "memories"]
    for path, unit in [*((f[0], f[2]) for f in _fields()), *memory_paths]:
        if unit is None:
            continue
        if parsed[path] is None:     # an optional quantity left out stays out
            node = out
            for part in path[:-1]:
                node = node[part]
            node.pop(path[-1], None)
            continue
        factor = 1.0 if unit.to is None else float(unit_factor(unit.kind, unit.to))
        base = parsed[path] if unit.kind == "size" else parsed[path] * factor
        node = out
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = _formatted(base, unit.kind)
    return json.loads(json.dumps(out))  # plain JSON types only



# --------------------------------------------------------------------------- public verbs

def load_config(path: str | Path, overrides: Sequence[str] = ()) -> HardwareConfig:
    """Read, validate and freeze one hardware config; ``overrides`` are ``key=value`` strings.

    ``path`` is a YAML file, or the bare name of a shipped config (``"npu_small"``). Every
    problem raises ``ConfigError`` (``UnitError`` for units) whose one-line message starts with
    the file name and names the key.

    A shipped config (or a file with its bytes) without overrides comes from its checked form
    (``edgesim.checked_configs``): the same config, without reading YAML.

    >>> load_config("ethos_u55").offchip_kind
    'flash'
    """
    if not overrides:
        p, file = locate(path)
        hw = stored(p, file) if p.is_file() else None
        if hw is not None:
            return hw
    raw, file = read_config(path)
    return config_from_dict(raw, overrides=overrides, file=file)


def read_config(path: str | Path) -> tuple[Any, str]:
    """Step 1 of ``load_config`` alone: the YAML document of ``path`` and the file name its
    errors give, so that many override sets (a sweep grid) read and parse the file once:
    ``config_from_dict(raw, overrides=..., file=file)`` is ``load_config(path, overrides)``.

    >>> raw, file = read_config("npu_small")
    >>> file, config_from_dict(raw, overrides=["sram.size=1MiB"], file=file).sram_bytes
    ('edgesim/hwconfigs/npu_small.yaml', 1048576)
    """
    p, file = locate(path)
    if not p.is_file():
        names = ", ".join(s.stem for s in shipped_configs())
        raise ConfigError(f"{file}: no such hardware config file (shipped configs: {names})")
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)   # never more than the limit, whatever the file
        if len(data) > MAX_FILE_BYTES:
            raise ConfigError(f"{file}: larger than {MAX_FILE_BYTES // 2**10} KiB; a hardware "
                              "config is a few KB")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    return _read_yaml(text, file), file


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
    _unknown_keys(raw, file, overridden)
    try:
        model = ConfigFile.model_validate(raw)
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

