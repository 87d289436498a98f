"""Output errors anywhere are one line: a closed or full standard output, a full disk under a
streamed ``--out`` or ``--timeline`` or a plot, and a closed standard error keeps exit code 2.

Standard output cases run as a separate process (``tests/hostile.py``) writing to ``/dev/full``
or with the descriptor closed; a full disk is a write that raises ``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from hostile import run_cli

from edgesim.cli import main
from edgesim.testing import error_line, stderr_lines

RUN = ["run", "npu_small", "--model", "dense_r50", "--inputs", "3"]


@pytest.mark.parametrize("fmt", ["json", "csv", "jsonl", "table"])
def test_a_full_standard_output_is_one_line(tmp_path, fmt):
    with open("/dev/full", "w") as full:
        got = run_cli([*RUN, "--format", fmt], tmp_path, stdout=full)
    assert got.code == 2
    assert got.error_line() == ("edgesim: error: standard output: cannot write (No space left "
                                "on device)")


def test_a_closed_standard_output_is_one_line(tmp_path):
    got = run_cli([*RUN, "--format", "csv"], tmp_path, closed=(1,))
    assert got.code == 2
    assert got.error_line() == "edgesim: error: standard output: cannot write (it is closed)"


def test_a_closed_standard_error_keeps_exit_code_2(tmp_path):
    got = run_cli(["run", "npu_small", "--model", "dens_r50"], tmp_path, closed=(2,),
                  stderr=subprocess.DEVNULL)
    assert got.code == 2
    with open("/dev/full", "w") as full:     # stdout failing too: still 2
        got = run_cli([*RUN, "--format", "json"], tmp_path, closed=(2,), stdout=full,
                      stderr=subprocess.DEVNULL)
    assert got.code == 2


def test_a_reader_that_stops_is_not_an_error(tmp_path):
    p = subprocess.Popen(
        ["sh", "-c", f"'{os.sys.executable}' -m edgesim run npu_small --model dense_r50 "
         "--inputs 50000 --format csv | head -1 >/dev/null; echo ${PIPESTATUS:-0}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _out, err = p.communicate(timeout=120)
    assert "Traceback" not in err
    assert stderr_lines(err) == []


class _Full:
    """A file whose writes fail as on a full disk."""

    def __init__(self, fh) -> None:
        self.fh = fh

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()

    def __getattr__(self, name):
        return getattr(self.fh, name)


@pytest.fixture
def full_disk(monkeypatch):
    """Every file ``edgesim.outputs`` writes (through ``os.fdopen``) is on a full disk."""
    import edgesim.outputs as outputs
    real = os.fdopen
    monkeypatch.setattr(outputs.os, "fdopen", lambda fd, *a, **k: _Full(real(fd, *a, **k)))


def _one_line(capsys) -> str:
    return error_line(capsys.readouterr().err)


@pytest.mark.parametrize(("flag", "fmt"), [("--out", "csv"), ("--out", "jsonl"),
                                           ("--out", "json"), ("--out", "table"),
                                           ("--timeline", "csv")])
def test_a_full_disk_under_an_output_file_is_one_line(tmp_path, capsys, full_disk, flag, fmt):
    target = tmp_path / "o.txt"
    assert main([*RUN, "--format", fmt, flag, str(target)]) == 2
    line = _one_line(capsys)
    assert line.startswith(f"edgesim: error: {flag} ")
    assert line.endswith("cannot write (No space left on device)")
    assert list(tmp_path.iterdir()) == []            # no file, no temporary left behind


def test_a_full_disk_under_a_plot_is_one_line(tmp_path, capsys, monkeypatch):
    tl = tmp_path / "tl.csv"
    assert main([*RUN, "--timeline", str(tl)]) == 0
    capsys.readouterr()
    import edgesim.outputs as outputs
    real = os.fdopen
    monkeypatch.setattr(outputs.os, "fdopen", lambda fd, *a, **k: _Full(real(fd, *a, **k)))
    assert main(["plot", "timeline", str(tl), "--out", str(tmp_path / "fig")]) == 2
    line = _one_line(capsys)
    assert line.startswith("edgesim: error: --out ")
    assert "No space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tl.csv"]
