"""The on-disk cache of traced Workloads, routing sequences and built models.

Public names: ``cache_dir``, ``make_key``, ``load``, ``save``, ``file_fingerprint``.

Entries live in ``$EDGESIM_CACHE`` (default ``~/.cache/edgesim``), one file per entry named by a
SHA-256 of its key parts. Writes are atomic (a temporary file renamed into place), so a killed
process never leaves a half-written entry. A corrupt or unreadable entry counts as a miss.

>>> make_key("dense_r50", {"precision": "int8"}) == make_key("dense_r50", {"precision": "int8"})
True
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "file_fingerprint", "load", "make_key", "save"]

#: Bump when the meaning of a cached Workload changes (tracer or IR semantics).
FORMAT_VERSION = 2


def cache_dir() -> Path:
    """The cache folder: ``$EDGESIM_CACHE`` or ``~/.cache/edgesim``."""
    env = os.environ.get("EDGESIM_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "edgesim"


def make_key(*parts: Any) -> str:
    """A stable hex key for JSON-able parts (dict keys sorted)."""
    text = json.dumps([FORMAT_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def file_fingerprint(path: str | os.PathLike | None) -> str | None:
    """Content hash of a file (or of a folder's file names, sizes and times); None for None."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    elif p.is_file():
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    else:
        return f"missing:{p}"
    return h.hexdigest()[:32]


def _path(kind: str, key: str) -> Path:
    return cache_dir() / kind / f"{key}.pkl"


def load(kind: str, key: str) -> Any | None:
    """The cached object, or None when absent or unreadable."""
    p = _path(kind, key)
    try:
        with p.open("rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None


def save(kind: str, key: str, obj: Any) -> None:
    """Store ``obj`` atomically; a cache that cannot be written is silently skipped."""
    p = _path(kind, key)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, p)
    except OSError:
        return
