"""The results of a sweep on disk: one SQLite row per finished task, so a rerun resumes.

Public names: ``Store``, ``StoreError``, ``point_key``, ``check_row``, ``csv_safe``,
``write_csv``, ``load_results``, ``load_detail``, ``detail_frame``, ``RESULTS_FILE``,
``CSV_FILE``, ``DETAIL_FILE``, ``APPLICATION_ID``, ``STORE_VERSION``.

``out_dir/results.sqlite`` holds table ``results`` (key -> the row as JSON) and ``detail``
(key -> that task's per-inference rows as JSON); ``Store.put`` commits a row and its detail in
one transaction the moment a task finishes, so a sweep killed at any moment loses only the tasks
in flight; ``failed`` (key -> the row of a task that raised, with its error). A corrupt,
read-only or foreign file is refused in one line naming it (``StoreError``) and never
written to; rows read back are checked (``check_row``).

A store is stamped ``PRAGMA application_id = APPLICATION_ID`` and ``user_version =
STORE_VERSION`` when it is created. An existing file (a symlink's target, when it is one) is
checked through a read-only connection before anything opens it for writing: it must pass
``quick_check``, carry this id and version, and hold exactly the store's tables and their
primary-key indexes (any other table, index, view or trigger, or another declaration of a
store table, is refused, the file left byte for byte as it was). A store written before the
id existed (id and version 0, no entry but the store's own) is taken as ours: it is stamped
and resumed. ``sweep.csv`` is written by
``write_csv``, whose text cells never start a spreadsheet formula (``csv_safe``).
``point_key`` is the key: a hash of everything a result depends on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sqlite3
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from edgesim.errors import EdgesimError
from edgesim.report import csv_safe

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["APPLICATION_ID", "CSV_FILE", "DETAIL_FILE", "RESULTS_FILE", "STORE_VERSION", "Store",
           "StoreError", "check_row", "csv_safe", "detail_frame", "load_detail", "load_results",
           "point_key", "write_csv"]

RESULTS_FILE = "results.sqlite"
CSV_FILE = "sweep.csv"
DETAIL_FILE = "detail.csv"
#: Config fields left out of the key: they name or document the config, they do not change it.
_KEY_IGNORES = ("file", "sources", "description", "resolved")


def point_key(hw, model: str, digest: str, inputs: int, policy: str,
              evaluation: Any = None) -> str:
    """The store key of one task: a hash of everything its result depends on.

    The hardware enters as its resolved numbers (so ``2MiB`` and ``2048KiB`` are one point),
    the model as its name and ``Workload.digest()`` (which covers precision, formats, seed and the
    input stream), plus the stream length, policy and the edgesim version (the prefetch mode is
    the hardware's ``prefetch_mode``); in an evaluated sweep, ``evaluation`` (what the top-1
    was computed from: data fingerprint, weights, seed) too, so a sweep with ``--eval`` never
    reuses a row without ``top1``.
    """
    from edgesim import __version__
    parts = [model, digest, inputs, policy, __version__]
    if evaluation is not None:
        parts.append(evaluation)
    # json.dumps([identity, *parts]), with the hardware's part written once per config
    text = "[" + ", ".join([_hw_text(hw), *(json.dumps(p, sort_keys=True, default=str)
                                            for p in parts)]) + "]"
    return hashlib.sha256(text.encode()).hexdigest()[:40]


#: ``_hw_text`` of the last two configs, by id (the config kept, so an id is never taken for
#: another's): a sweep keys every (model, policy) of a point with one config, whose JSON is
#: most of the key's cost.
_HW_TEXTS: dict[int, tuple[Any, str]] = {}


def _hw_text(hw) -> str:
    """The JSON of the hardware's part of a store key: its fields, less ``_KEY_IGNORES``."""
    hit = _HW_TEXTS.get(id(hw))
    if hit is not None and hit[0] is hw:
        return hit[1]
    # ``hw.to_dict()`` without thawing: frozen mappings and tuples write as dicts and lists
    identity = {f.name: getattr(hw, f.name) for f in dataclasses.fields(hw)
                if f.name not in _KEY_IGNORES}
    identity.update(weight_sram_bytes=hw.weight_sram_bytes, period_ps=hw.period_ps)
    text = json.dumps(identity, sort_keys=True, default=str)
    if len(_HW_TEXTS) >= 2:
        _HW_TEXTS.clear()
    _HW_TEXTS[id(hw)] = (hw, text)
    return text


class StoreError(EdgesimError):
    """The store file is corrupt, read-only, tampered with or not a sweep store."""


#: How to start afresh, said by every ``StoreError``: the file itself is never overwritten.
_AFRESH = "it is left as it is: move it aside or pass a new --out"
#: Columns whose stored values are names (text), checked to be strings.
_TEXT_COLUMNS = ("config", "model", "family", "policy", "prefetch", "status", "error")
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: ``PRAGMA application_id`` of a sweep store: "EdSw" in ASCII.
APPLICATION_ID = 0x45645377
#: ``PRAGMA user_version`` of the store layout this edgesim writes.
STORE_VERSION = 1
#: The store's tables and the name of each one's value column (the key column is ``key``).
_TABLES = {"results": "row", "detail": "rows", "failed": "row"}
#: A refusal names at most this many of the entries edgesim did not make.
_SHOWN = 3


def _schema() -> set[tuple[str, str, str, str | None]]:
    """``sqlite_master`` of a sweep store: (type, name, tbl_name, sql) of every entry."""
    out: set[tuple[str, str, str, str | None]] = set()
    for table, col in _TABLES.items():
        out.add(("table", table, table,
                 f"CREATE TABLE {table} (key TEXT PRIMARY KEY, {col} TEXT NOT NULL)"))
        out.add(("index", f"sqlite_autoindex_{table}_1", table, None))   # the primary key's
    return out


class Store:
    """The SQLite file of finished tasks; every ``put`` is its own committed transaction.

    Table ``results`` holds finished rows; ``failed`` the rows of tasks that raised (their
    error in the ``error`` column): a rerun retries those, and a success replaces them. A file
    that is not a readable, writable sweep store of this edgesim (see the module docstring) is
    refused with ``StoreError`` naming it, and never written to.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: the file itself: a symlink is followed first, and its target checked and used
        self.file = Path(os.path.realpath(path))
        self._refuse_unusable()
        if self.file.exists():
            self._inspect_read_only()   # a foreign file is refused before any write
        try:
            self.db = sqlite3.connect(self.file, timeout=30)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            # the file is empty or ours: WAL first, so that even its creation writes the WAL
            self.db.execute("PRAGMA journal_mode=WAL")
            # a commit is durable when the process dies (kill -9 keeps every committed row);
            # only a power loss may take the last ones back, and a rerun computes them again.
            # FULL would fsync each row (~9 ms a row, more than a small point's simulation)
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")  # checked again under the write lock
            if self._classify(self.db) != "ours":
                for table, col in _TABLES.items():
                    self.db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY "
                                    f"KEY, {col} TEXT NOT NULL)")
                self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self.db.execute(f"PRAGMA user_version = {STORE_VERSION}")
            self.db.commit()
        except sqlite3.Error as exc:
            self.db.close()
            raise self._error(exc) from None
        except StoreError:
            self.db.rollback()
            self.db.close()
            raise

    @property
    def _name(self) -> str:
        """The store as errors name it: its path, and the file a symlink leads to."""
        return str(self.path) if self.file == self.path.absolute() else \
            f"{self.path} (-> {self.file})"

    def _refuse_unusable(self) -> None:
        """A file that is not SQLite, or that its owner made read-only, before sqlite opens it."""
        p = self.file
        if not p.exists():
            return
        if not p.is_file():
            raise StoreError(f"{self._name}: not a file (expected a sweep store); {_AFRESH}")
        st = p.stat()
        if not st.st_mode & stat.S_IWUSR or not os.access(p, os.W_OK):
            raise StoreError(f"{self._name}: the sweep store is read-only (mode "
                             f"{st.st_mode & 0o777:o}); {_AFRESH}, or make it writable to "
                             "resume")
        if st.st_size:
            try:
                with p.open("rb") as fh:
                    head = fh.read(len(_SQLITE_MAGIC))
            except OSError as exc:
                raise StoreError(f"{self._name}: cannot read the sweep store ({exc.strerror}); "
                                 f"{_AFRESH}") from None
            if head != _SQLITE_MAGIC:
                raise StoreError(f"{self._name}: not an SQLite file (corrupt sweep store); "
                                 f"{_AFRESH}")

    def _inspect_read_only(self) -> None:
        """Check the existing file through a read-only connection: intact, and ours.

        Without a ``-wal`` file beside it no WAL connection is open on it (our stores are in
        WAL mode, from their creation on), so it is read as immutable: sqlite then makes no
        ``-shm`` or ``-wal`` file beside a file that may not be ours."""
        wal = self.file.with_name(self.file.name + "-wal")
        mode = "ro" if wal.exists() else "ro&immutable=1"
        uri = f"file:{quote(str(self.file))}?mode={mode}"
        try:
            con = sqlite3.connect(uri, uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            (check,) = con.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise StoreError(f"{self._name}: corrupt sweep store (sqlite quick_check: "
                                 f"{_cut(check)}); {_AFRESH}")
            self._classify(con)
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        finally:
            con.close()

    def _classify(self, con: sqlite3.Connection) -> str:
        """``new`` (an empty database), ``legacy`` (a store of an edgesim before the
        application id: no id, no user_version, tables of the store only) or ``ours``; any
        other file is a ``StoreError`` naming what was found in it."""
        (app,) = con.execute("PRAGMA application_id").fetchone()
        (version,) = con.execute("PRAGMA user_version").fetchone()
        entries = set(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))

        def refuse(found: str) -> StoreError:
            return StoreError(f"{self._name}: not a sweep store ({found}); {_AFRESH}")
        if app not in (0, APPLICATION_ID):
            raise refuse(f"application_id {app & 0xFFFFFFFF:#010x}, edgesim's is "
                         f"{APPLICATION_ID:#010x}")
        if app == APPLICATION_ID and version != STORE_VERSION:
            raise refuse(f"user_version {version}; this edgesim writes version {STORE_VERSION}")
        if app == 0 and version != 0:
            raise refuse(f"user_version {version} without edgesim's application_id")
        schema = _schema()
        extra = sorted(entries - schema, key=lambda e: (str(e[0]), str(e[1])))
        for kind, name, _, _ in extra:
            if kind == "table" and name in _TABLES:
                got = [r[1] for r in con.execute(f"PRAGMA table_info({name})")]
                cols = ["key", _TABLES[name]]
                detail = f"columns {got}, expected {cols}" if got != cols else \
                    "another declaration"
                raise refuse(f"table {name} has {detail}")
        if extra:
            shown = ", ".join(f"{kind} {_cut(repr(name), 40)}" for kind, name, _, _ in
                              extra[:_SHOWN])
            more = f" and {len(extra) - _SHOWN} more" if len(extra) > _SHOWN else ""
            raise refuse(f"{shown}{more} not made by edgesim")
        if app == APPLICATION_ID:
            missing = sorted(name for kind, name, _, _ in schema - entries if kind == "table")
            if missing:
                raise refuse(f"edgesim's application_id, but no table {', '.join(missing)}")
            return "ours"
        return "legacy" if entries else "new"

    def _error(self, exc: sqlite3.Error) -> StoreError:
        what = "read-only" if "readonly" in str(exc) else "unusable"
        return StoreError(f"{self._name}: {what} sweep store ({_cut(str(exc))}); {_AFRESH}")

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
        self.put_many([(key, row, detail_rows)])

    def put_many(self, entries: Sequence[tuple[str, Mapping[str, Any], str | None]]) -> None:
        """Commit finished tasks' ``(key, row, detail)`` in one transaction (``executemany``):
        all of them or none, each replacing its failure."""
        if not entries:
            return
        try:
            with self.db:  # one transaction: the rows and their detail, or none of them
                self.db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?)",
                                    [(k, json.dumps(r, sort_keys=False)) for k, r, _ in entries])
                self.db.executemany("DELETE FROM failed WHERE key = ?",
                                    [(k,) for k, _, _ in entries])
                details = [(k, d) for k, _, d in entries if d is not None]
                if details:
                    self.db.executemany("INSERT OR REPLACE INTO detail VALUES (?, ?)", details)
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
        return list(self._checked(keys, expect))

    def frame(self, keys: Sequence[str],
              expect: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
        """``pd.DataFrame(self.rows(keys, expect))``, the same frame, built a piece at a time.

        The rows are read twice, ``CHUNK_ROWS`` at a time. The first reading checks them and
        finds the columns (in order of first appearance, as ``DataFrame(list of dicts)``
        orders them) and, per column, a witness of each kind of value it holds (``_Kinds``);
        pandas infers a column's dtype from which kinds it holds, so a piece built with the
        witnesses' rows appended (and cut off again) gets each column's dtype of the whole
        table: an int column with an empty cell in a later piece is float in every piece.
        Only one piece of rows is held as Python objects at a time, and equal text cells are
        one string: what the frame holds beyond its own cells is a piece and, while the pieces
        are joined, one copy of them (60,000 rows of a realistic sweep, 55 columns: the
        process's high-water mark over this step 319 -> 169 MiB RSS, from a floor of ~105)."""
        import pandas as pd
        own = not self.db.in_transaction
        try:
            if own:
                self.db.execute("BEGIN")   # both readings see the same rows
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            layouts: dict[tuple[str, ...], None] = {}
            kinds: dict[str, _Kinds] = {}
            n = 0
            for rows in _pieces(self._checked(keys, expect)):
                n += len(rows)
                for row in rows:
                    layouts.setdefault(tuple(row))
                for col in {c for layout in layouts for c in layout} - kinds.keys():
                    kinds[col] = _Kinds()
                for col, kind in kinds.items():
                    kind.add([row.get(col, _MISSING) for row in rows])
            if not n:
                return pd.DataFrame()
            columns = list(dict.fromkeys(c for layout in layouts for c in layout))
            for layout in layouts:      # a row without a column has NaN there, as from dicts
                for col in set(columns) - set(layout):
                    kinds[col].add([_MISSING])
            witnesses = [kinds[c].witnesses() for c in columns]
            extra = [tuple(w[i % len(w)] for w in witnesses)
                     for i in range(max(len(w) for w in witnesses))]
            text = [j for j, c in enumerate(columns) if kinds[c].text]
            strings: dict[str, str] = {}
            pieces = []
            for rows in _pieces(self._checked(keys, None, check=False)):   # checked above
                records = _records(rows, columns, text, strings)
                whole = pd.DataFrame(records + extra, columns=columns)
                # a copy: a text column of ``whole`` is a view of the piece's cells as objects,
                # which would keep every number of the piece alive as a Python object
                pieces.append(whole.iloc[:len(records)].copy())
                del records, whole
        finally:
            if own:
                self.db.rollback()     # a reading: nothing to keep
        return pd.concat(pieces, ignore_index=True)

    def _checked(self, keys: Sequence[str], expect: Sequence[Mapping[str, Any]] | None,
                 check: bool = True) -> Iterator[dict[str, Any]]:
        """The rows of ``keys``, checked (``check_row``, and against ``expect``); without
        ``check``, rows already checked in this transaction, only parsed and completed."""
        batch = min(500, CHUNK_ROWS)   # keys per SELECT (at most 999 variables)
        for start in range(0, len(keys), batch):
            part = list(dict.fromkeys(keys[start:start + batch]))
            marks = ", ".join("?" * len(part))
            try:
                got = dict(self.db.execute(
                    f"SELECT key, row FROM results WHERE key IN ({marks})", part))
                failed = dict(self.db.execute(
                    f"SELECT key, row FROM failed WHERE key IN ({marks})", part))
            except sqlite3.Error as exc:
                raise self._error(exc) from None
            for i in range(start, min(start + batch, len(keys))):
                k = keys[i]
                text = got.get(k, failed.get(k))
                if text is None:
                    raise StoreError(f"{self.path}: no stored row for key {k}; {_AFRESH}")
                if not check:
                    yield _completed(json.loads(text))
                    continue
                row = check_row(text, f"{self.path}: row {k}")
                for col, want in (expect[i] if expect is not None else {}).items():
                    if row.get(col) != want:
                        raise StoreError(f"{self.path}: row of point {row.get('point')} (key "
                                         f"{k}) has {col} = {_cut(repr(row.get(col)))}, "
                                         f"expected {_cut(repr(want))} (tampered?); {_AFRESH}")
                yield row

    def detail(self, keys: Sequence[str]) -> list[str]:
        try:
            got = dict(self.db.execute("SELECT key, rows FROM detail"))
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        return [got[k] for k in keys if k in got]

    def close(self) -> None:
        self.db.close()


#: Rows read (``Store.frame``) or written (``write_csv``) at a time: what memory holds of a
#: table beyond the frame itself.
CHUNK_ROWS = 1024
#: The cell of a column a row does not have: NaN, as ``DataFrame(list of dicts)`` fills it.
_MISSING = math.nan


def _pieces(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """``rows`` in lists of ``CHUNK_ROWS``."""
    piece: list[dict[str, Any]] = []
    for row in rows:
        piece.append(row)
        if len(piece) >= CHUNK_ROWS:
            yield piece
            piece = []
    if piece:
        yield piece


class _Kinds:
    """The kinds of value a column holds, one witness each: what pandas infers a column's
    dtype from (``lib.maybe_convert_objects`` notes which kinds it sees: int, float, NaN or
    None, bool, str, other; and whether an int needs uint64 or more). A type is a kind, a
    float is a number or NaN, and the least and greatest int stand for every int."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: dict[Any, Any] = {}

    def add(self, values: Sequence[Any]) -> None:
        seen = self.seen
        for t in set(map(type, values)):
            if t is float:
                if "nan" in seen and "float" in seen:
                    continue
                floats = [v for v in values if type(v) is float]
                if "nan" not in seen and any(v != v for v in floats):
                    seen["nan"] = math.nan
                if "float" not in seen:
                    number = next((v for v in floats if v == v), None)
                    if number is not None:
                        seen["float"] = number
            elif t is int:
                ints = [v for v in values if type(v) is int]
                lo, hi = min(ints), max(ints)
                seen["min"] = min(seen.get("min", lo), lo)
                seen["max"] = max(seen.get("max", hi), hi)
            elif t not in seen:
                seen[t] = next(v for v in values if type(v) is t)

    @property
    def text(self) -> bool:
        return str in self.seen

    def witnesses(self) -> list[Any]:
        return list(self.seen.values())


def _records(rows: Sequence[dict[str, Any]], columns: Sequence[str], text: Sequence[int],
             strings: dict[str, str]) -> list[tuple[Any, ...]]:
    """``rows`` as tuples of their values in ``columns`` order (NaN where a row has no such
    column); each text cell of the columns at ``text`` is the one string of ``strings`` equal
    to it."""
    order = tuple(columns)
    records = []
    for row in rows:
        values = list(row.values()) if tuple(row) == order else \
            [row.get(c, _MISSING) for c in columns]
        for j in text:
            v = values[j]
            if type(v) is str:
                values[j] = strings.setdefault(v, v)
        records.append(tuple(values))
    return records


def _cut(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _completed(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row with the columns of rows written before ``status`` existed: ok rows."""
    row.setdefault("status", "ok")
    row.setdefault("error", "")
    return row


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
    _completed(row)
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


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """``df`` as CSV at ``path``, text cells escaped with ``csv_safe``: the bytes of
    ``df.to_csv(index=False, float_format="%.12g", lineterminator="\\n")`` with each text cell
    escaped, written ``CHUNK_ROWS`` rows at a time (memory holds one piece's text, not the
    file's, nor a copy of the frame).

    Pieces are slices of ``df``, so each column keeps its dtype, and pandas formats a number,
    a bool or a text cell by itself (it writes in pieces too): the file is the one-piece file.
    A frame with a column of another kind is written in one piece: a datetime column's format
    depends on the whole column, and an object column of text and numbers would not be text in
    a piece holding only its numbers."""
    import pandas as pd

    from edgesim.outputs import open_atomically
    text_cols = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    plain = all(_plain(df[c]) for c in df.columns)
    step = CHUNK_ROWS if plain else max(len(df), 1)
    with open_atomically(path, "--out") as fh:
        for start in range(0, max(len(df), 1), step):
            piece = df.iloc[start:start + step]
            if text_cols:
                piece = piece.copy()
                for c in text_cols:
                    piece[c] = _escaped(piece[c]) if plain else piece[c].map(csv_safe)
            piece.to_csv(fh, header=start == 0, index=False, float_format="%.12g",
                         lineterminator="\n")


def _plain(col: pd.Series) -> bool:
    """Whether pandas writes each cell of ``col`` by itself, whatever the rest of the column:
    numbers, bools, and text (NaN where empty)."""
    import pandas as pd
    if col.dtype.kind in "iufb" or isinstance(col.dtype, pd.StringDtype):
        return True
    return col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in ("string",
                                                                                   "empty")


def _escaped(col: pd.Series) -> pd.Series:
    """A text column's cells through ``csv_safe`` (as objects: a piece's cells stay text)."""
    import pandas as pd
    return pd.Series([csv_safe(v) for v in col], index=col.index, dtype=object)


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
