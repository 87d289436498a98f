"""The shipped hardware configs in their checked form, so that a run reads no YAML and builds
no schema.

Public names: ``HWCONFIG_DIR``, ``STORE``, ``locate``, ``load``, ``stored``, ``sections``,
``store_entries``, ``write_store``.

``edgesim.config`` reads a config in three steps (YAML, the pydantic schema, quantities parsed
and frozen); importing yaml and pydantic and building the schema cost ~0.15 s CPU, a third of a
first answer (issue 22). The result of those steps for each shipped config is kept in
``edgesim/hwconfigs/checked.json`` (``STORE``), keyed by the SHA-256 of the YAML's bytes and of
the source of the modules that turn YAML into a ``HardwareConfig`` (``CODE``). A file whose
bytes or whose reading code changed is not in the store, and is read in full again:
the store can make a run faster, never different (``tests/test_hwconfigs.py`` checks every
stored entry against a full read, and that the store is current: ``write_store()`` rewrites it).
The store also keeps, under the key ``sections:`` + that code digest, where a
``HardwareConfig`` holds each schema section's values (``edgesim.schema.section_fields``),
which ``HardwareConfig.section`` reads (``sections``).

>>> load("npu_small").sram_bytes == stored(locate("npu_small")[0]).sram_bytes
True
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from edgesim.hardware import HardwareConfig, freeze, thaw

__all__ = ["CODE", "HWCONFIG_DIR", "STORE", "load", "locate", "sections", "store_entries",
           "stored", "write_store"]

_PACKAGE = Path(__file__).resolve().parent
#: The shipped hardware configs.
HWCONFIG_DIR = _PACKAGE / "hwconfigs"
#: The checked form of the shipped configs.
STORE = HWCONFIG_DIR / "checked.json"
#: The modules whose source decides a config's checked form.
CODE = ("config.py", "schema.py", "hardware.py", "units.py", "technology.py", "encodings.py")


def locate(path: str | Path) -> tuple[Path, str]:
    """The file ``path`` names and the name errors and ``HardwareConfig.file`` give it:
    ``path`` itself, or the shipped config it names when no such file exists (its bare name
    ``npu_small``, its file name ``npu_small.yaml`` or its old place in a clone,
    ``hwconfigs/npu_small.yaml``), named by its place in the package wherever installed."""
    p = Path(path)
    if not p.exists():
        bare = len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "hwconfigs")
        if bare and p.suffix in ("", ".yaml"):
            shipped = HWCONFIG_DIR / f"{p.stem}.yaml"
            if shipped.exists():
                return shipped, f"edgesim/hwconfigs/{shipped.name}"
    return p, str(p)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    h = hashlib.sha256()
    for name in CODE:
        h.update((_PACKAGE / name).read_bytes())
    return h.hexdigest()


def _key(data: bytes) -> str:
    """The store key of a config file's bytes under today's reading code."""
    return hashlib.sha256(data).hexdigest() + ":" + _code_digest()


@lru_cache(maxsize=1)
def _entries() -> dict[str, Any]:
    try:
        return json.loads(STORE.read_text())
    except (OSError, ValueError):
        return {}      # no store (a source tree mid-edit): every file is read in full


#: The store key of ``sections()`` is this prefix and the code digest.
_SECTIONS = "sections:"


@lru_cache(maxsize=1)
def sections() -> dict[str, str | tuple[tuple[str, str], ...]]:
    """``edgesim.schema.section_fields()``: from the store when it was written by today's
    reading code (then the schema is not built and pydantic not imported), else from the
    schema itself."""
    entry = _entries().get(_SECTIONS + _code_digest())
    if entry is None:
        from edgesim.schema import section_fields
        return section_fields()
    return {path: where if isinstance(where, str) else tuple(tuple(kf) for kf in where)
            for path, where in entry.items()}


def stored(path: Path, file: str | None = None) -> HardwareConfig | None:
    """The checked config of the file ``path`` (named ``file``, default ``str(path)``) from the
    store, or None when its bytes or the reading code are not those stored."""
    try:
        with path.open("rb") as fh:
            data = fh.read(2**20 + 1)
    except OSError:
        return None
    fields = _entries().get(_key(data))
    if fields is None:
        return None
    return HardwareConfig(file=str(path) if file is None else file,
                          **{k: freeze(v) for k, v in fields.items()})


def load(path: str | Path, overrides: Sequence[str] = ()) -> HardwareConfig:
    """``edgesim.config.load_config(path, overrides)``, from the store when it holds the file
    (no overrides, or only ``prefetch.mode=M``, what ``--prefetch M`` sets): then neither yaml
    nor pydantic is imported."""
    mode = _mode_override(overrides)
    if (not overrides or mode is not None) and not isinstance(path, HardwareConfig):
        p, file = locate(path)
        hw = stored(p, file) if p.is_file() else None
        if hw is not None and mode is not None:
            hw = _with_mode(hw, mode, _has_section(p.read_bytes(), b"prefetch"))
        if hw is not None:
            return hw
    from edgesim.config import load_config
    return load_config(path, overrides)


def _mode_override(overrides: Sequence[str]) -> str | None:
    """The mode of a lone ``prefetch.mode=M`` override whose M is a prefetch mode, else None."""
    if len(overrides) != 1:
        return None
    key, sep, value = overrides[0].partition("=")
    if not sep or tuple(k.strip() for k in key.split(".")) != ("prefetch", "mode"):
        return None
    from edgesim.sim import PREFETCH_MODES
    return value.strip() if value.strip() in PREFETCH_MODES else None


def _has_section(data: bytes, name: bytes) -> bool | None:
    """Whether a YAML file has the top-level section ``name``: None when a line-wise look
    cannot tell (the name appears, but not as a block key at the start of a line)."""
    if re.search(rb"(?m)^" + re.escape(name) + rb"[ \t]*:", data):
        return True
    return False if name not in data else None


def _with_mode(hw: HardwareConfig, mode: str, present: bool | None) -> HardwareConfig | None:
    """``hw`` as ``--set prefetch.mode=M`` on its file reads it (``config.apply_overrides``):
    the mode, and the section's source noting the override (the note alone when the file has
    no such section and the override creates it); None when ``present`` is unknown."""
    if present is None:
        return None
    note = f"prefetch.mode={mode} set on the command line"
    sources = thaw(hw.sources)
    sources["prefetch"] = f"{sources['prefetch']}; {note}" if present else note
    resolved = thaw(hw.resolved)
    resolved["prefetch"] = {**resolved["prefetch"], "mode": mode, "source": sources["prefetch"]}
    return replace(hw, prefetch_mode=mode, sources=freeze(sources), resolved=freeze(resolved))


def store_entries() -> dict[str, Any]:
    """The store as ``write_store`` writes it: each shipped config read in full, by key, and
    ``edgesim.schema.section_fields()``."""
    from dataclasses import fields

    from edgesim.config import config_from_dict, read_config, shipped_configs
    from edgesim.schema import section_fields
    out: dict[str, Any] = {_SECTIONS + _code_digest(): thaw(section_fields())}
    for path in shipped_configs():
        raw, file = read_config(path)
        hw = config_from_dict(raw, file=file)
        out[_key(path.read_bytes())] = {f.name: thaw(getattr(hw, f.name)) for f in fields(hw)
                                        if f.init and f.name != "file"}
    return dict(sorted(out.items()))


def write_store() -> Path:
    """Rewrite ``STORE`` from the shipped configs (after a change to one or to ``CODE``)."""
    STORE.write_text(json.dumps(store_entries(), separators=(",", ":")) + "\n")
    _entries.cache_clear()
    sections.cache_clear()
    return STORE
