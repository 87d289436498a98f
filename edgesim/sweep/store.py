"""The results of a sweep on disk: one SQLite row per finished task, so a rerun resumes.

Public names: ``Store``, ``StoreError``, ``point_key``, ``check_row``, ``csv_safe``,
``write_csv``, ``load_results``, ``load_detail``, ``detail_frame``, ``RESULTS_FILE``,
``CSV_FILE``, ``DETAIL_FILE``.

``out_dir/results.sqlite`` holds table ``results`` (key -> the row as JSON) and ``detail``
(key -> that task's per-inference rows as JSON); ``Store.put`` commits a row and its detail in
one transaction the moment a task finishes, so a sweep killed at any moment loses only the tasks
in flight; ``failed`` (key -> the row of a task that raised, with its error). A corrupt,
read-only or foreign file is refused in one line naming it (``StoreError``) and never
overwritten; rows read back are checked (``check_row``). ``sweep.csv`` is written by
``write_csv``, whose text cells never start a spreadsheet formula (``csv_safe``).
``point_key`` is the key: a hash of everything a result depends on.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim.errors import EdgesimError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CSV_FILE", "DETAIL_FILE", "RESULTS_FILE", "Store", "StoreError", "check_row",
           "csv_safe", "detail_frame", "load_detail", "load_results", "point_key", "write_csv"]

RESULTS_FILE = "results.sqlite"
CSV_FILE = "sweep.csv"
DETAIL_FILE = "detail.csv"
#: Config fields left out of the key: they name or document the config, they do not change it.
_KEY_IGNORES = ("file", "sources", "description", "resolved")


def point_key(hw, model: str, digest: str, inputs: int, policy: str, prefetch: str,
              evaluation: Any = None) -> str:
    """The store key of one task: a hash of everything its result depends on.

    The hardware enters as its resolved numbers (so ``2MiB`` and ``2048KiB`` are one point),
    the model as its name and ``Workload.digest()`` (which covers precision, formats, seed and the
    input stream), plus the stream length, policy, prefetch mode and the edgesim version; in an
    evaluated sweep, ``evaluation`` (what the top-1 was computed from: data fingerprint, weights,
    seed) too, so a sweep with ``--eval`` never reuses a row without ``top1``.
    """
    from edgesim import __version__
    identity = {k: v for k, v in hw.to_dict().items() if k not in _KEY_IGNORES}
    parts = [identity, model, digest, inputs, policy, prefetch, __version__]
    if evaluation is not None:
        parts.append(evaluation)
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class StoreError(EdgesimError):
    """The store file is corrupt, read-only, tampered with or not a sweep store."""


#: How to start afresh, said by every ``StoreError``: the file itself is never overwritten.
_AFRESH = "it is left as it is: move it aside or pass a new --out"
#: Columns whose stored values are names (text), checked to be strings.
_TEXT_COLUMNS = ("config", "model", "family", "policy", "prefetch", "status", "error")
_SQLITE_MAGIC = b"SQLite format 3\x00"


class Store:
    """The SQLite file of finished tasks; every ``put`` is its own committed transaction.

    Table ``results`` holds finished rows; ``failed`` the rows of tasks that raised (their
    error in the ``error`` column): a rerun retries those, and a success replaces them. A file
    that is not a readable, writable sweep store is refused with ``StoreError`` naming it, and
    never written to.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._refuse_unusable()
        try:
            self.db = sqlite3.connect(path, timeout=30)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            (check,) = self.db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise StoreError(f"{path}: corrupt sweep store (sqlite quick_check: "
                                 f"{_cut(check)}); {_AFRESH}")
            self._check_tables()
            self.db.execute("PRAGMA journal_mode=WAL")
            for table, col in (("results", "row"), ("detail", "rows"), ("failed", "row")):
                self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, "
                                f"{col} TEXT NOT NULL)")
            self.db.commit()
        except sqlite3.Error as exc:
            self.db.close()
            raise self._error(exc) from None
        except StoreError:
            self.db.close()
            raise

    def _refuse_unusable(self) -> None:
        """A file that is not SQLite, or that its owner made read-only, before sqlite opens it."""
        p = self.path
        if not p.exists():
            return
        if not p.is_file():
            raise StoreError(f"{p}: not a file (expected a sweep store); {_AFRESH}")
        st = p.stat()
        if not st.st_mode & stat.S_IWUSR or not os.access(p, os.W_OK):
            raise StoreError(f"{p}: the sweep store is read-only (mode {st.st_mode & 0o777:o}); "
                             f"{_AFRESH}, or make it writable to resume")
        if st.st_size:
            try:
                with p.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise StoreError(f"{p}: cannot read the sweep store ({exc.strerror}); "
                                 f"{_AFRESH}") from None
            if head != _SQLITE_MAGIC:
                raise StoreError(f"{p}: not an SQLite file (corrupt sweep store); {_AFRESH}")

    def _check_tables(self) -> None:
        """Tables this store knows must have the columns it reads."""
        want = {"results": ["key", "row"], "detail": ["key", "rows"], "failed": ["key", "row"]}
        have = {name for (name,) in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, cols in want.items():
            if table in have:
                got = [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]
                if got != cols:
                    raise StoreError(f"{self.path}: table {table} has columns {got}, expected "
                                     f"{cols} (not a sweep store); {_AFRESH}")

    def _error(self, exc: sqlite3.Error) -> StoreError:
        what = "read-only" if "readonly" in str(exc) else "unusable"
        return StoreError(f"{self.path}: {what} sweep store ({_cut(str(exc))}); {_AFRESH}")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finished(self, *, detail: bool) -> set[str]:
        """Keys with a stored row (and, when ``detail``, stored per-inference rows too).

        Failed tasks are not finished: a rerun retries them (a fixed engine, or a transient
        failure such as a killed worker, then fills them in; a deterministic failure fails
        again, quickly, and stays recorded)."""
        try:
            keys = {k for (k,) in self.db.execute("SELECT key FROM results")}
            if detail:
                keys &= {k for (k,) in self.db.execute("SELECT key FROM detail")}
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return keys

    def put(self, key: str, row: Mapping[str, Any], detail_rows: str | None) -> None:
        """Commit a finished task's row (and detail): one transaction, replacing a failure."""
        try:
            with self.db:  # one transaction: the row and its detail, or neither
                self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                                (key, json.dumps(row, sort_keys=False)))
                self.db.execute("DELETE FROM failed WHERE key = ?", (key,))
                if detail_rows is not None:
                    self.db.execute("INSERT OR REPLACE INTO detail VALUES (?, ?)",
                                    (key, detail_rows))
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def fail(self, key: str, row: Mapping[str, Any]) -> None:
        """Commit the row of a task that raised (``status`` failed, its ``error``)."""
        try:
            with self.db:
                self.db.execute("INSERT OR REPLACE INTO failed VALUES (?, ?)",
                                (key, json.dumps(row, sort_keys=False)))
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def rows(self, keys: Sequence[str],
             expect: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The stored rows of ``keys``, in that order (a key given twice, twice); a key with
        no finished row gives its failed row. Every row is checked (``check_row``), and
        against ``expect[i]`` (columns the i-th row must have with these values) when given:
        a row that is not what this sweep wrote is a ``StoreError`` naming the store."""
        try:
            got = dict(self.db.execute("SELECT key, row FROM results"))
            failed = dict(self.db.execute("SELECT key, row FROM failed"))
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        out = []
        for i, k in enumerate(keys):
            text = got.get(k, failed.get(k))
            if text is None:
                raise StoreError(f"{self.path}: no stored row for key {k}; {_AFRESH}")
            row = check_row(text, f"{self.path}: row {k}")
            for col, want in (expect[i] if expect is not None else {}).items():
                if row.get(col) != want:
                    raise StoreError(f"{self.path}: row of point {row.get('point')} (key {k}) "
                                     f"has {col} = {_cut(repr(row.get(col)))}, expected "
                                     f"{_cut(repr(want))} (tampered?); {_AFRESH}")
            out.append(row)
        return out

    def detail(self, keys: Sequence[str]) -> list[str]:
        try:
            got = dict(self.db.execute("SELECT key, rows FROM detail"))
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return [got[k] for k in keys if k in got]

    def close(self) -> None:
        self.db.close()


def _cut(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def check_row(text: str, where: str) -> dict[str, Any]:
    """A stored row parsed and checked: a mapping with the metric columns, each a finite
    number >= 0 (empty in a failed row), text columns strings, ``status`` ok or failed.
    Rows written before ``status`` existed are ok rows. ``StoreError`` names ``where``."""
    from edgesim.sweep.rows import HW_COLUMNS, STATUSES, metric_columns

    def bad(col: str, value: Any, expected: str) -> StoreError:
        return StoreError(f"{where}: {col} = {_cut(repr(value))}, expected {expected} "
                          f"(tampered?); {_AFRESH}")
    try:
        row = json.loads(text)
    except (ValueError, RecursionError):
        raise StoreError(f"{where}: not a JSON row (tampered?); {_AFRESH}") from None
    if not isinstance(row, dict):
        raise bad("row", type(row).__name__, "a mapping of columns")
    row.setdefault("status", "ok")
    row.setdefault("error", "")
    where = f"{where} (point {row.get('point')!r})"
    if row["status"] not in STATUSES:
        raise bad("status", row["status"], " or ".join(STATUSES))
    point = row.get("point")
    if type(point) is not int or point < 0:
        raise bad("point", point, "a whole number >= 0")
    for col in _TEXT_COLUMNS:
        if not isinstance(row.get(col), str):
            raise bad(col, row.get(col), "text")
    for col in (*HW_COLUMNS, "inputs", "total_params", "stored_weight_bytes"):
        if col in row and not (_is_number(row[col]) and row[col] >= 0):
            raise bad(col, row[col], "a finite number >= 0")
    if "top1" in row and not (_is_number(row["top1"]) and 0 <= row["top1"] <= 1):
        raise bad("top1", row["top1"], "a fraction 0..1")
    failed = row["status"] == "failed"
    for col in metric_columns():
        if col not in row:
            raise bad(col, "(missing)", "a number")
        v = row[col]
        if failed and v is None:
            continue
        if not (_is_number(v) and v >= 0):
            raise bad(col, v, "a finite number >= 0")
    return row


#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """``value``, with a leading ``'`` when it is text a spreadsheet would run as a formula.

    >>> csv_safe("=HYPERLINK(1)"), csv_safe("-1"), csv_safe(-1), csv_safe("dense_r50")
    ("'=HYPERLINK(1)", "'-1", -1, 'dense_r50')
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV at ``path``, text cells escaped with ``csv_safe``."""
    import pandas as pd
    text_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    safe = df.copy()
    for c in text_cols:
        safe[c] = safe[c].map(csv_safe)
    from edgesim.outputs import write_atomically
    write_atomically(path, safe.to_csv(index=False, float_format="%.12g", lineterminator="\n"),
                     "--out")


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
    path = Path(out_dir) / CSV_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {CSV_FILE}; run `edgesim sweep ... --out {out_dir}`")
    return read_table(path, "a sweep table written by `edgesim sweep`")


def read_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV file as a DataFrame; an empty or unparsable file is one line naming it."""
    import pandas as pd
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise EdgesimError(f"{path}: not {what} ({reason})") from None
    except OSError as exc:
        raise EdgesimError(f"{path}: cannot read ({exc.strerror})") from None


def load_detail(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Every per-inference row stored in ``out_dir/results.sqlite`` (``detail=True`` sweeps)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {RESULTS_FILE}")
    with Store(path) as store:
        try:
            blobs = [b for (b,) in store.db.execute("SELECT rows FROM detail ORDER BY key")]
        except sqlite3.Error as exc:
            raise store._error(exc) from None
    return detail_frame(blobs)
