"""A sweep store is ours or refused: foreign databases, symlinks to them, stores with triggers,
indexes or views added, another application id or user_version. Each is one line, exit 2, and
the file is left byte for byte (and mtime) as it was; stores of this and the previous edgesim
resume."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from edgesim.cli import main
from edgesim.sweep import run as sweep_run
from edgesim.sweep import sweep
from edgesim.sweep.store import APPLICATION_ID, STORE_VERSION, StoreError
from edgesim.testing import error_line, tiny_workload

GRID = ["sram.size=2KiB,4KiB"]


def _sweep(config, out):
    return sweep(config, [tiny_workload()], GRID, inputs=3, out_dir=out, executor="serial")


def _state(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def _foreign(path: Path) -> None:
    """Another program's database: its own table and a row, default (rollback) journal."""
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
        con.execute("INSERT INTO accounts VALUES (1, 'someone')")
    con.close()


def _store(tiny_yaml, out: Path) -> Path:
    """A finished sweep's store."""
    _sweep(tiny_yaml, out)
    return out / "results.sqlite"


def _alter(db: Path, *sql: str) -> None:
    con = sqlite3.connect(db)
    with con:
        for statement in sql:
            con.execute(statement)
    con.close()


def _refused_by_cli(capsys, tiny_yaml, out: Path) -> str:
    code = main(["sweep", str(tiny_yaml), "--model", "dense_r50", "--set", GRID[0],
                 "--inputs", "2", "--out", str(out), "--executor", "serial"])
    err = error_line(capsys.readouterr().err)   # one line besides the stage lines
    assert code == 2
    assert err.startswith("edgesim: error: ")
    return err


def _check_refused(tiny_yaml, capsys, out: Path, db: Path, found: str) -> None:
    """Refused by the API and the CLI in one line naming the file and ``found``; untouched."""
    real = Path(os.path.realpath(db))
    before = _state(real)
    listing = sorted(os.listdir(real.parent))
    with pytest.raises(StoreError) as info:
        _sweep(tiny_yaml, out)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(str(db))
    assert found in text
    assert "move it aside or pass a new --out" in text
    err = _refused_by_cli(capsys, tiny_yaml, out)
    assert str(db) in err
    assert found in err
    assert _state(real) == before
    assert sorted(os.listdir(real.parent)) == listing   # no journal, WAL or CSV file made


# --------------------------------------------------------------------------- not ours

def test_foreign_database_is_refused_and_left_alone(tiny_yaml, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_run, "_workloads", lambda *a: pytest.fail("traced"))
    out = tmp_path / "out"
    out.mkdir()
    db = out / "results.sqlite"
    _foreign(db)
    _check_refused(tiny_yaml, capsys, out, db, "table 'accounts'")
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert [n for (n,) in con.execute("SELECT name FROM sqlite_master")] == ["accounts"]


def test_foreign_database_through_a_symlink_is_refused(tiny_yaml, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    target = other / "app.db"
    _foreign(target)
    out = tmp_path / "out"
    out.mkdir()
    link = out / "results.sqlite"
    link.symlink_to(target)
    _check_refused(tiny_yaml, capsys, out, link, "table 'accounts'")
    assert link.is_symlink()
    with pytest.raises(StoreError, match=f"-> {target}"):   # the error names the real file
        _sweep(tiny_yaml, out)


def test_store_with_a_trigger_is_refused(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "out"
    db = _store(tiny_yaml, out)
    _alter(db, "CREATE TRIGGER drop_rows AFTER INSERT ON results BEGIN "
               "DELETE FROM results; END")
    _check_refused(tiny_yaml, capsys, out, db, "trigger 'drop_rows'")


@pytest.mark.parametrize(("sql", "found"), [
    ("CREATE INDEX by_row ON results(row)", "index 'by_row'"),
    ("CREATE VIEW everything AS SELECT * FROM results", "view 'everything'"),
    ("CREATE TABLE notes (x)", "table 'notes'"),
])
def test_store_with_an_added_entry_is_refused(tiny_yaml, tmp_path, capsys, sql, found):
    out = tmp_path / "out"
    db = _store(tiny_yaml, out)
    _alter(db, sql)
    _check_refused(tiny_yaml, capsys, out, db, found)


def test_store_table_declared_otherwise_is_refused(tiny_yaml, tmp_path, capsys):
    # same columns, but a default on the value column: not the table the store made
    out = tmp_path / "out"
    db = _store(tiny_yaml, out)
    _alter(db, "DROP TABLE failed",
           "CREATE TABLE failed (key TEXT PRIMARY KEY, row TEXT NOT NULL DEFAULT '{}')")
    _check_refused(tiny_yaml, capsys, out, db, "table failed has another declaration")


@pytest.mark.parametrize(("pragma", "found"), [
    ("application_id = 1234", "application_id 0x000004d2"),
    ("application_id = -1", "application_id 0xffffffff"),
    (f"user_version = {STORE_VERSION + 1}", f"user_version {STORE_VERSION + 1}"),
])
def test_store_with_another_id_or_version_is_refused(tiny_yaml, tmp_path, capsys, pragma,
                                                     found):
    out = tmp_path / "out"
    db = _store(tiny_yaml, out)
    _alter(db, f"PRAGMA {pragma}")
    _check_refused(tiny_yaml, capsys, out, db, found)


def test_user_version_without_the_id_is_refused(tiny_yaml, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    db = out / "results.sqlite"
    _alter(db, "PRAGMA user_version = 3")   # an otherwise empty database of another program
    _check_refused(tiny_yaml, capsys, out, db, "user_version 3 without edgesim's")


# --------------------------------------------------------------------------- ours

def test_new_store_is_stamped_and_resumes(tiny_yaml, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = _sweep(tiny_yaml, out)
    with sqlite3.connect(out / "results.sqlite") as con:
        assert con.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert con.execute("PRAGMA user_version").fetchone() == (STORE_VERSION,)
    monkeypatch.setattr(sweep_run, "simulate_point", lambda *a: pytest.fail("simulated"))
    pd.testing.assert_frame_equal(_sweep(tiny_yaml, out), first)


def test_store_of_the_previous_version_is_stamped_and_resumes(tiny_yaml, tmp_path,
                                                              monkeypatch):
    out = tmp_path / "out"
    first = _sweep(tiny_yaml, out)
    db = out / "results.sqlite"
    _alter(db, "PRAGMA application_id = 0", "PRAGMA user_version = 0")  # as it wrote them
    monkeypatch.setattr(sweep_run, "simulate_point", lambda *a: pytest.fail("simulated"))
    pd.testing.assert_frame_equal(_sweep(tiny_yaml, out), first)
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)


def test_store_through_a_symlink_resumes_in_its_target(tiny_yaml, tmp_path, monkeypatch):
    first = _sweep(tiny_yaml, tmp_path / "a")
    out = tmp_path / "b"
    out.mkdir()
    (out / "results.sqlite").symlink_to(tmp_path / "a" / "results.sqlite")
    monkeypatch.setattr(sweep_run, "simulate_point", lambda *a: pytest.fail("simulated"))
    pd.testing.assert_frame_equal(_sweep(tiny_yaml, out), first)
    assert (out / "results.sqlite").is_symlink()


def test_empty_file_becomes_a_store(tiny_yaml, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.sqlite").touch()
    assert len(_sweep(tiny_yaml, out)) == 2
