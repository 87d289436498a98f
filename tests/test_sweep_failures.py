"""Sweeps never lose finished work: failing points, corrupt / read-only / tampered stores, CSV
cells that a spreadsheet would run; the table built and written in pieces is the one-piece
table, byte for byte, and holds the frame, not its rows."""

from __future__ import annotations

import functools
import json
import sqlite3
import stat
from pathlib import Path

import pandas as pd
import pytest

import edgesim.sim
from edgesim.cli import main
from edgesim.sweep import run as sweep_run
from edgesim.sweep import sweep
from edgesim.sweep.executors import ExecutorSpec
from edgesim.sweep.store import StoreError, csv_safe
from edgesim.testing import TINY_CONFIG, error_line, tiny_workload

GRID = ["sram.size=2KiB,3KiB,4KiB,8KiB"]
BAD_SRAM = 3 * 1024   # the point made to fail below



@pytest.fixture
def failing_engine(monkeypatch):
    """``simulate`` raises for the 3 KiB point only; records the SRAM size of every call."""
    real = edgesim.sim.simulate
    calls: list[int] = []

    def simulate(hw, workload, **kwargs):
        calls.append(hw.sram_bytes)
        if hw.sram_bytes == BAD_SRAM:
            raise ZeroDivisionError("planted failure")
        return real(hw, workload, **kwargs)

    monkeypatch.setattr(edgesim.sim, "simulate", simulate)
    return calls


def _sweep(config, out, **kwargs):
    return sweep(config, [tiny_workload()], GRID, inputs=3, out_dir=out, executor="serial",
                 **kwargs)


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# --------------------------------------------------------------------------- a failing point

def test_failing_point_is_a_failed_row_and_the_others_are_committed(tiny_yaml, tmp_path,
                                                                    failing_engine):
    df = _sweep(tiny_yaml, tmp_path)
    assert df["status"].tolist() == ["ok", "failed", "ok", "ok"]
    bad = df[df.status == "failed"].iloc[0]
    assert bad["error"] == "ZeroDivisionError: planted failure"
    assert bad["sram_bytes"] == BAD_SRAM                  # the point's own columns are kept
    assert pd.isna(bad["weight_dram_bytes_cold"])
    assert pd.isna(bad["latency_s_steady"])
    assert df[df.status == "ok"]["weight_dram_bytes_cold"].notna().all()
    db = tmp_path / "results.sqlite"
    assert _count(db, "results") == 3
    assert _count(db, "failed") == 1
    on_disk = pd.read_csv(tmp_path / "sweep.csv")
    assert on_disk["status"].tolist() == ["ok", "failed", "ok", "ok"]
    assert sweep_run.failed_points(df).startswith("1 of 4 sweep rows failed (points 1); ")


def test_rerun_retries_only_the_failed_point(tiny_yaml, tmp_path, failing_engine):
    _sweep(tiny_yaml, tmp_path)
    failing_engine.clear()
    again = _sweep(tiny_yaml, tmp_path)
    assert failing_engine == [BAD_SRAM]                    # the finished ones are not rerun
    assert again["status"].tolist() == ["ok", "failed", "ok", "ok"]


def test_a_retried_point_that_succeeds_replaces_its_failure(tiny_yaml, tmp_path,
                                                            failing_engine, monkeypatch):
    _sweep(tiny_yaml, tmp_path)
    monkeypatch.undo()                                     # the engine is whole again
    fixed = _sweep(tiny_yaml, tmp_path)
    assert (fixed["status"] == "ok").all()
    assert _count(tmp_path / "results.sqlite", "failed") == 0
    clean = _sweep(tiny_yaml, tmp_path / "clean")
    pd.testing.assert_frame_equal(fixed, clean)


def test_a_failing_task_of_a_point_message_fails_alone(failing_engine):
    # a worker runs a point's tasks as one message (simulate_points): the task that raises is
    # its one-line error, as the serial path records it; the tasks beside it still run, and
    # each matches the same task run alone
    from edgesim.testing import tiny_config
    w = tiny_workload()
    good, bad = tiny_config(sram=BAD_SRAM + 1024), tiny_config(sram=BAD_SRAM - 1024)
    tasks = [(sweep_run.PointTask(hw, pol, True, False), w)
             for hw in (good, bad) for pol in ("lru", "belady")]
    out = sweep_run.simulate_points(tasks)
    assert out[2:] == ["ZeroDivisionError: planted failure"] * 2
    for (task, wref), res in zip(tasks[:2], out[:2], strict=True):
        assert res.summary == sweep_run.simulate_point(task, wref).summary


def test_process_pool_records_an_engine_failure(tiny_yaml, tmp_path):
    # the lowest bandwidth the config accepts; if the engine computes with it, no point fails
    df = sweep(tiny_yaml, [tiny_workload()], ["offchip.bandwidth=1B/s,1GB/s"], inputs=2,
               out_dir=tmp_path, executor=ExecutorSpec("process", workers=1))
    assert len(df) == 2
    assert df["status"].iloc[1] == "ok"
    if df["status"].iloc[0] == "failed":
        assert df["error"].iloc[0]
        assert _count(tmp_path / "results.sqlite", "failed") == 1


def test_cli_names_the_failed_points_in_one_line(tiny_yaml, tmp_path, capsys, failing_engine):
    from edgesim.zoo.registry import ModelSpec, register
    register(ModelSpec("tiny_linear_fail", "dense", "torch.nn:Linear",
                       {"in_features": 16, "out_features": 8}, (16,), "test model"))
    out = tmp_path / "cli"
    code = main(["sweep", str(tiny_yaml), "--model", "tiny_linear_fail", "--set", GRID[0],
                 "--inputs", "2", "--out", str(out), "--executor", "serial"])
    err = error_line(capsys.readouterr().err)   # one line besides the stage lines
    assert code == 2
    assert "1 of 4 sweep rows failed (points 1)" in err
    assert "ZeroDivisionError: planted failure" in err
    assert len(pd.read_csv(out / "sweep.csv")) == 4


# --------------------------------------------------------------------------- unusable stores

def _refused(capsys, tiny_yaml, out: Path) -> str:
    code = main(["sweep", str(tiny_yaml), "--model", "dense_r50", "--set", GRID[0],
                 "--inputs", "2", "--out", str(out), "--executor", "serial"])
    err = error_line(capsys.readouterr().err)   # one line besides the stage lines
    assert code == 2
    return err


@pytest.mark.parametrize("content", [b"this is not a database\n" * 50,
                                     b"SQLite format 3\x00" + b"\xff" * 5000])
def test_corrupt_store_is_refused_and_left_alone(tiny_yaml, tmp_path, capsys, monkeypatch,
                                                 content):
    monkeypatch.setattr(sweep_run, "_workloads", lambda *a: pytest.fail("traced"))
    db = tmp_path / "results.sqlite"
    db.write_bytes(content)
    with pytest.raises(StoreError, match="move it aside or pass a new --out"):
        _sweep(tiny_yaml, tmp_path)
    err = _refused(capsys, tiny_yaml, tmp_path)
    assert str(db) in err
    assert db.read_bytes() == content


def test_store_of_another_schema_is_refused(tiny_yaml, tmp_path):
    db = tmp_path / "results.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE results (id INTEGER, payload BLOB)")
    before = db.read_bytes()
    with pytest.raises(StoreError, match=r"table results has columns \['id', 'payload'\]"):
        _sweep(tiny_yaml, tmp_path)
    assert db.read_bytes() == before


def test_read_only_store_is_refused_and_left_alone(tiny_yaml, tmp_path, capsys):
    _sweep(tiny_yaml, tmp_path)
    db = tmp_path / "results.sqlite"
    before = db.read_bytes()
    db.chmod(stat.S_IRUSR | stat.S_IRGRP)
    try:
        err = _refused(capsys, tiny_yaml, tmp_path)
        assert f"{db}: the sweep store is read-only (mode 440)" in err
        assert "move it aside or pass a new --out" in err
        assert db.read_bytes() == before
    finally:
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)


# --------------------------------------------------------------------------- tampered rows

def _tamper(db: Path, column: str, value) -> None:
    with sqlite3.connect(db) as con:
        key, text = con.execute("SELECT key, row FROM results ORDER BY key").fetchone()
        row = json.loads(text)
        row[column] = value
        con.execute("UPDATE results SET row = ? WHERE key = ?", (json.dumps(row), key))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("weight_dram_bytes_cold", -5, "weight_dram_bytes_cold = -5, expected a finite number >= 0"),
    ("latency_s_steady", "fast", "latency_s_steady = 'fast', expected a finite number >= 0"),
    ("energy_j_cold", True, "energy_j_cold = True, expected a finite number >= 0"),
    ("model", "=HYPERLINK(\"http://x\")", "has model = '=HYPERLINK"),
    ("policy", 3, "policy = 3, expected text"),
    ("status", "maybe", "status = 'maybe', expected ok or failed"),
])
def test_tampered_row_is_one_line_naming_store_and_point(tiny_yaml, tmp_path, column, value,
                                                         message):
    _sweep(tiny_yaml, tmp_path)
    db = tmp_path / "results.sqlite"
    _tamper(db, column, value)
    with pytest.raises(StoreError) as info:
        _sweep(tiny_yaml, tmp_path)
    text = str(info.value)
    assert text.startswith(str(db))
    assert "point " in text
    assert message in text
    assert "\n" not in text


def test_tampered_row_never_reaches_the_csv(tiny_yaml, tmp_path):
    _sweep(tiny_yaml, tmp_path)
    before = (tmp_path / "sweep.csv").read_bytes()
    _tamper(tmp_path / "results.sqlite", "act_dram_bytes_steady", -1.0)
    with pytest.raises(StoreError):
        _sweep(tiny_yaml, tmp_path)
    assert (tmp_path / "sweep.csv").read_bytes() == before


# --------------------------------------------------------------------------- CSV escaping

@pytest.mark.parametrize("text", ["=1+2", "+1", "-1", "@SUM(A1)", "\tx", "\rx"])
def test_formula_like_text_is_escaped(text):
    assert csv_safe(text) == "'" + text


@pytest.mark.parametrize("value", ["dense_r50", "2KiB", "", -1, 3.5, None])
def test_other_cells_are_unchanged(value):
    assert csv_safe(value) == value


def test_sweep_csv_escapes_text_columns_only(tiny_yaml, tmp_path):
    cfg = dict(TINY_CONFIG, name="=cmd|' /C calc'!A0")
    df = sweep(cfg, [tiny_workload()], GRID, inputs=3, out_dir=tmp_path, executor="serial")
    assert df["config"].iloc[0] == cfg["name"]            # the table keeps the name
    on_disk = pd.read_csv(tmp_path / "sweep.csv")
    assert (on_disk["config"] == "'" + cfg["name"]).all()
    assert on_disk["sram_bytes"].tolist() == df["sram_bytes"].tolist()


def test_frame_is_the_frame_of_the_rows(tiny_yaml, tmp_path, failing_engine):
    # rows of several layouts: ok, failed (empty metrics) and one written before the status
    # and error columns existed (check_row appends them) and without total_params (a missing
    # column, NaN): the frame Store.frame builds from tuples is the one pandas builds from the
    # rows as dicts
    from edgesim.sweep.store import Store
    _sweep(tiny_yaml, tmp_path)
    db = tmp_path / "results.sqlite"
    with sqlite3.connect(db) as con:
        key, text = con.execute("SELECT key, row FROM results ORDER BY key").fetchone()
        row = json.loads(text)
        del row["status"], row["error"], row["total_params"]
        con.execute("UPDATE results SET row = ? WHERE key = ?", (json.dumps(row), key))
        keys = [k for (k,) in con.execute("SELECT key FROM results UNION ALL "
                                           "SELECT key FROM failed ORDER BY key")]
    con.close()
    keys = [*keys, key]                          # a key twice gives its row twice
    with Store(db) as store:
        frame = store.frame(keys)
        pd.testing.assert_frame_equal(frame, pd.DataFrame(store.rows(keys)))
    assert len(frame) == 5
    assert set(frame["status"]) == {"ok", "failed"}
    assert frame["total_params"].isna().sum() == 2   # the altered row, and it again


# --------------------------------------------------------------------------- tables in pieces

def _row(point: int, **changes) -> dict:
    """A stored row of the tiny config (metrics: 1 cold, 0.5 steady), with ``changes``."""
    return {**_base_row(), "point": point, **changes}


@functools.cache
def _base_row() -> dict:
    from edgesim.sim import SUMMARY_METRICS
    from edgesim.sweep.rows import SweepRow
    from edgesim.testing import tiny_config
    s = {"cold": 1, "steady_mean": 0.5, "p50": 0.5, "p99": 1}
    return SweepRow.build(0, {"sram.size": "4KiB"}, tiny_config(sram="4 KiB"),
                          {"name": "m", "family": "dense", "total_params": 10, "paths": 1},
                          "m", "lru", "next", 2, {m: s for m in SUMMARY_METRICS}).columns()


def _mixed_rows(text_in_numbers: bool) -> list[tuple[str, dict, str]]:
    """Rows whose columns change kind after the first pieces: an int column with an empty
    cell (a failed row) and a float late, a column only later rows have (``top1``), an int
    past int64, floats that need ``%.12g``, text with commas, quotes, newlines and formula
    characters; with ``text_in_numbers``, a number column that holds text in one row and one
    whose ints span more than int64 or uint64 holds (objects in the whole table)."""
    rows = [("put", _row(0), ""), ("put", _row(1, config='a,"b"'), ""),
            ("put", _row(2, sram_bytes=0.1 + 0.2, model="=1+2"), ""),
            ("fail", _row(3, status="failed", error='ValueError: x, "y"\nz',
                          **{c: None for c in _row(0) if c.endswith(("_cold", "_steady",
                                                                        "_p50", "_p99"))}), ""),
            ("put", _row(4, top1=0.25, family="-dense"), ""),
            ("put", _row(5, total_params=2**63, clock_hz=1e20 / 3), ""),
            ("put", _row(6, inputs=3), "")]
    if text_in_numbers:
        rows.append(("put", _row(7, paths="12"), ""))
        rows[0][1]["offset"], rows[5][1]["offset"] = -1, 2**63
    return [(kind, row, f"k{i}") for i, (kind, row, _) in enumerate(rows)]


def _one_piece_csv(df: pd.DataFrame) -> bytes:
    """The CSV ``write_csv`` wrote before it wrote in pieces: the whole frame, escaped, at once."""
    safe = df.copy()
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            safe[c] = safe[c].map(csv_safe)
    return safe.to_csv(index=False, float_format="%.12g", lineterminator="\n").encode()


@pytest.mark.parametrize("text_in_numbers", [False, True])
def test_a_table_built_and_written_in_pieces_is_the_one_piece_table(tmp_path, monkeypatch,
                                                                    text_in_numbers):
    # Store.frame infers each piece's dtypes with witnesses of the whole table, and write_csv
    # writes slices of the frame: for every piece size, the frame is pandas' frame of all the
    # rows as dicts and the file is the one-piece file, byte for byte
    from edgesim.sweep import store as sweep_store
    from edgesim.sweep.store import Store, write_csv
    stored = _mixed_rows(text_in_numbers)
    keys = [k for _, _, k in stored] + ["k1"]          # a key twice gives its row twice
    with Store(tmp_path / "results.sqlite") as store:
        for kind, row, key in stored:
            store.put(key, row, None) if kind == "put" else store.fail(key, row)
        whole = pd.DataFrame(store.rows(keys))
        assert whole["weight_dram_bytes_cold"].dtype == float   # ints, and one empty cell
        assert whole["total_params"].dtype == "uint64"
        assert (whole["paths"].dtype == object) == text_in_numbers
        assert whole.get("offset", pd.Series(dtype=object)).dtype == object
        reference = _one_piece_csv(whole)
        for rows in (1, 2, 3, 1024):
            monkeypatch.setattr(sweep_store, "CHUNK_ROWS", rows)
            frame = store.frame(keys)
            pd.testing.assert_frame_equal(frame, whole)
            write_csv(frame, tmp_path / f"{rows}.csv")
            assert (tmp_path / f"{rows}.csv").read_bytes() == reference, rows
        assert store.frame([]).empty
    text = reference.decode()
    assert "'=1+2" in text            # csv_safe
    assert "'-dense" in text
    assert '"a,""b"""' in text        # quoted
    assert '"ValueError: x, ""y""\nz"' in text



def test_building_and_writing_a_table_holds_the_frame_not_its_rows(tmp_path, monkeypatch):
    # issue 22: the table of a 60,000-row sweep was built from every row as Python objects
    # and written as one string of the whole file beside a copy of the frame (here ~4.4 KB a
    # row at the peak, tracemalloc). A row held as Python objects takes at least 4 times its
    # cells in the frame (per 8-byte cell: a pointer and a 24-byte float). Now the rows are
    # held one piece at a time and the file one piece's text at a time, so what the peak gains
    # per added row is the frame's cells (numbers, pointers to one string per distinct text),
    # one copy of them while the pieces are joined, and the pieces' bookkeeping (~15 KB a
    # piece, ~0.6 x the cells at 64 rows a piece): under 4 times the frame's bytes
    import gc
    import tracemalloc

    from edgesim.sweep import store as sweep_store
    from edgesim.sweep.store import Store, write_csv
    monkeypatch.setattr(sweep_store, "CHUNK_ROWS", 64)
    peaks, cells = [], []
    for n in (128, 640):
        with Store(tmp_path / f"{n}.sqlite") as store:
            keys = [f"k{i}" for i in range(n)]
            store.put_many([(k, _row(i, latency_s_cold=i / 7), None) for i, k in enumerate(keys)])
            gc.collect()
            tracemalloc.start()
            try:
                df = store.frame(keys)
                write_csv(df, tmp_path / f"{n}.csv")
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            cells.append(df.memory_usage(deep=False).sum())
            del df
    per_row = (peaks[1] - peaks[0]) / (640 - 128)
    frame_per_row = (cells[1] - cells[0]) / (640 - 128)
    assert per_row < 4 * frame_per_row, (per_row, frame_per_row)


def test_a_column_whose_format_depends_on_the_whole_column_is_written_in_one_piece(
        tmp_path, monkeypatch):
    # an object column of floats and empty cells (a concat of pieces gives one) is written by
    # pandas as floats, "%.12g"; so is a datetime column, whose format is the whole column's
    # (a date when every time is midnight): write_csv writes such a frame at once
    from edgesim.sweep import store as sweep_store
    from edgesim.sweep.store import write_csv
    monkeypatch.setattr(sweep_store, "CHUNK_ROWS", 1)
    df = pd.DataFrame({"x": pd.Series([0.1 + 0.2, None, 1 / 3], dtype=object),
                       "name": ["=a", "b", "c"]})
    write_csv(df, tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_bytes() == _one_piece_csv(df)
    assert b"0.3," in (tmp_path / "a.csv").read_bytes()
    days = pd.DataFrame({"t": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 12:00"]),
                         "n": [1, 2]})
    write_csv(days, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_bytes() == _one_piece_csv(days)
