"""Benchmark: how soon a big sweep grid starts storing rows, and what memory planning takes.

Usage: ``python benchmarks/bench_grid.py [--points 100000] [--executor serial|process]
[--workers N] [--after 10] [--limit 3600] [--repo PATH]``

Runs ``edgesim sweep npu_small --model dense_r50 --inputs 1`` over a grid of ``--points``
points (``sram.size=1MiB..NMiB:+1MiB`` x ``offchip.bandwidth=1GB/s..100GB/s:+1GB/s``; N is
``points / 100``) in a subprocess, into a fresh folder, and polls it every 50 ms for:

* the time until ``results.sqlite`` exists (the store is opened: planning is over, or the
  part of it done before any work);
* the time until its first stored row (read through a read-only connection);
* the rows stored ``--after`` seconds after the first one (the rate a run keeps);
* the peak resident memory of the sweep's main process (``VmHWM`` of ``/proc/PID/status``,
  read at each poll, so a short peak between polls can be missed).

The run is stopped (SIGKILL of its process group) ``--after`` seconds after its first row, or at
``--limit`` seconds when no row came; ``--after 0`` lets it finish, and reports its wall time
and the rows stored. ``--repo`` runs another checkout of edgesim (e.g. the
version before a change, unpacked with ``git archive``) with this machine's environment.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_RUN = "import sys; from edgesim.cli import main; sys.exit(main(sys.argv[1:]))"


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.Error:   # not created yet, or locked for a moment
        return 0


def _hwm_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--executor", choices=("serial", "process"), default="serial")
    p.add_argument("--workers", type=int)
    p.add_argument("--after", type=float, default=10.0)
    p.add_argument("--limit", type=float, default=3600.0)
    p.add_argument("--repo", type=Path, default=REPO)
    a = p.parse_args(argv)
    sizes = max(1, a.points // 100)
    sets = [f"sram.size=1MiB..{sizes}MiB:+1MiB", "offchip.bandwidth=1GB/s..100GB/s:+1GB/s"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        db = out / "results.sqlite"
        cmd = [sys.executable, "-c", _RUN, "sweep", "npu_small", "--model", "dense_r50",
               "--inputs", "1", "--out", str(out), "--executor", a.executor]
        for s in sets:
            cmd += ["--set", s]
        if a.workers:
            cmd += ["--workers", str(a.workers)]
        env = {**os.environ, "PYTHONPATH": str(a.repo.resolve())}
        start = time.perf_counter()
        # run in the temp folder: a `python -c` puts its working folder first on sys.path,
        # which would shadow --repo with an edgesim in the current folder
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        store_s = first_s = None
        hwm = 0.0
        rows_after = 0
        try:
            while proc.poll() is None:
                now = time.perf_counter() - start
                hwm = max(hwm, _hwm_mib(proc.pid) or 0.0)
                if store_s is None and db.exists():
                    store_s = now
                if first_s is None and _rows(db):
                    first_s = now
                if first_s is not None and a.after and now >= first_s + a.after:
                    rows_after = _rows(db)
                    break
                if first_s is None and now >= a.limit:
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        end_s = time.perf_counter() - start
        if not a.after:
            rows_after = _rows(db)
        if proc.returncode not in (0, -signal.SIGKILL):
            print(proc.stderr.read().decode()[-2000:], file=sys.stderr)

    def show(t: float | None) -> str:
        return "never" if t is None else f"{t:.1f} s"
    print(f"edgesim at {a.repo}; grid {' x '.join(sets)} = {sizes * 100:,} points, dense_r50, "
          f"1 input, executor {a.executor}")
    print(f"store opened after: {show(store_s)}")
    print(f"first stored row after: {show(first_s)}")
    if first_s is not None and a.after:
        print(f"rows stored {a.after:.0f} s after the first: {rows_after:,}")
    if not a.after:
        print(f"finished (exit {proc.returncode}) after {end_s:.1f} s, {rows_after:,} rows")
    print(f"peak RSS of the main process until stopped: {hwm:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
