"""The results of a sweep on disk: one SQLite row per finished task, so a rerun resumes.

Public names: ``Store``, ``point_key``, ``load_results``, ``load_detail``, ``detail_frame``,
``RESULTS_FILE``, ``CSV_FILE``, ``DETAIL_FILE``.

``out_dir/results.sqlite`` holds table ``results`` (key -> the row as JSON) and ``detail``
(key -> that task's per-inference rows as JSON); ``Store.put`` commits a row and its detail in
one transaction the moment a task finishes, so a sweep killed at any moment loses only the tasks
in flight. ``point_key`` is the key: a hash of everything a result depends on.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim.errors import EdgesimError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSV_FILE", "DETAIL_FILE", "RESULTS_FILE", "Store", "detail_frame", "load_detail",
           "load_results", "point_key"]

RESULTS_FILE = "results.sqlite"
CSV_FILE = "sweep.csv"
DETAIL_FILE = "detail.csv"
#: Config fields left out of the key: they name or document the config, they do not change it.
_KEY_IGNORES = ("file", "sources", "description", "resolved")


def point_key(hw, model: str, digest: str, inputs: int, policy: str, prefetch: str) -> str:
    """The store key of one task: a hash of everything its result depends on.

    The hardware enters as its resolved numbers (so ``2MiB`` and ``2048KiB`` are one point),
    the model as its name and ``Workload.digest()`` (which covers precision, formats, seed and the
    input stream), plus the stream length, policy, prefetch mode and the edgesim version.
    """
    from edgesim import __version__
    identity = {k: v for k, v in hw.to_dict().items() if k not in _KEY_IGNORES}
    text = json.dumps([identity, model, digest, inputs, policy, prefetch, __version__],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class Store:
    """The SQLite file of finished tasks; every ``put`` is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                        "row TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS detail (key TEXT PRIMARY KEY, "
                        "rows TEXT NOT NULL)")
        self.db.commit()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finished(self, *, detail: bool) -> set[str]:
        """Keys with a stored row (and, when ``detail``, stored per-inference rows too)."""
        keys = {k for (k,) in self.db.execute("SELECT key FROM results")}
        if detail:
            keys &= {k for (k,) in self.db.execute("SELECT key FROM detail")}
        return keys

    def put(self, key: str, row: Mapping[str, Any], detail_rows: str | None) -> None:
        with self.db:  # one transaction: the row and its detail, or neither
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                            (key, json.dumps(row, sort_keys=False)))
            if detail_rows is not None:
                self.db.execute("INSERT OR REPLACE INTO detail VALUES (?, ?)",
                                (key, detail_rows))

    def rows(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The stored rows of ``keys``, in that order (a key given twice, twice)."""
        got = dict(self.db.execute("SELECT key, row FROM results"))
        return [json.loads(got[k]) for k in keys]

    def detail(self, keys: Sequence[str]) -> list[str]:
        got = dict(self.db.execute("SELECT key, rows FROM detail"))
        return [got[k] for k in keys if k in got]

    def close(self) -> None:
        self.db.close()


def detail_frame(blobs: Sequence[str]) -> pd.DataFrame:
    """The per-inference rows of stored detail blobs: key, point, model, policy, then the row."""
    import pandas as pd

    from edgesim.sim import INFERENCE_COLUMNS
    frames = []
    for blob in blobs:
        obj = json.loads(blob)
        df = pd.DataFrame(obj["rows"], columns=list(INFERENCE_COLUMNS))
        for i, (k, v) in enumerate(obj["head"].items()):
            df.insert(i, k, v)
        frames.append(df)
    cols = ["key", "point", "model", "policy", *INFERENCE_COLUMNS]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def load_results(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The sweep table written to ``out_dir`` (``sweep.csv``)."""
    import pandas as pd
    path = Path(out_dir) / CSV_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {CSV_FILE}; run `edgesim sweep ... --out {out_dir}`")
    return pd.read_csv(path)


def load_detail(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Every per-inference row stored in ``out_dir/results.sqlite`` (``detail=True`` sweeps)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {RESULTS_FILE}")
    db = sqlite3.connect(path)
    try:
        blobs = [b for (b,) in db.execute("SELECT rows FROM detail ORDER BY key")]
    finally:
        db.close()
    return detail_frame(blobs)
