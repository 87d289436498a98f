"""Benchmark: a realistic sweep (3 models x 2 policies x an SRAM x bandwidth grid, 1,000
inputs each) on npu_small, traces cached; what the main process costs per row.

Usage: ``python benchmarks/bench_sweep.py [--repeats 1] [--sizes 40] [--bandwidths 17]
[--inputs 1000] [--models A B ...] [--policies lru belady] [--workers N]
[--executor process|dask|serial] [--large]``

The default grid is 40 SRAM sizes (32 KiB..32 MiB, log-spaced) x 17 off-chip bandwidths
(0.5..8 GB/s, log-spaced) x ``dense_r50 sigmab_r50 sparse_r50`` x ``lru belady`` = 4,080
rows; ``--large`` is issue 22's 60,000-row case (100 x 100 points x the same 6 streams).

Traces (and routes) the models once before timing, so the cache is warm; then runs the whole
sweep ``--repeats`` times, each into a fresh folder (nothing skipped), and reports per run: the
wall time and rows per second, the main process's CPU time (``resource.getrusage``, user +
sys, measured around the sweep alone) in total and per row, and its peak resident memory
(``ru_maxrss``, KiB on Linux; the high-water mark of the whole process, so it includes the
warm-up, whose own high-water mark is printed beside it), and each worker's peak RSS as it
reports it (``df.attrs["workers"]``). Issue 22's targets: the main process at most 1 ms CPU
per row and 300 MiB at 60,000 rows, and 60,000 rows in at most 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_MODELS = ("dense_r50", "sigmab_r50", "sparse_r50")
CONFIG = "npu_small"


def log_spec(key: str, n: int, lo: float, hi: float, unit: str, whole: bool) -> str:
    """``key=v1,v2,...``: ``n`` values spaced evenly on a log axis from ``lo`` to ``hi``."""
    vals = [lo * (hi / lo) ** (k / (n - 1)) for k in range(n)] if n > 1 else [lo]
    text = [f"{round(v)}{unit}" if whole else f"{v:.6g}{unit}" for v in vals]
    return f"{key}=" + ",".join(dict.fromkeys(text))


def cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--sizes", type=int, default=40)
    p.add_argument("--bandwidths", type=int, default=17)
    p.add_argument("--large", action="store_true",
                   help="the 60,000-row case: 100 sizes x 100 bandwidths")
    p.add_argument("--inputs", type=int, default=1000)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--policies", nargs="+", default=["lru", "belady"])
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("process", "dask", "serial"), default="process")
    a = p.parse_args(argv)
    if a.large:
        a.sizes = a.bandwidths = 100

    from edgesim.sweep import sweep
    from edgesim.sweep.executors import ExecutorSpec
    from experiments import registered, traceable
    t0 = time.perf_counter()
    models = traceable(registered(a.models), CONFIG, inputs=a.inputs)
    warm_s = time.perf_counter() - t0
    grid = [log_spec("sram.size", a.sizes, 32 * 1024, 32 * 1024 * 1024, "B", True),
            log_spec("offchip.bandwidth", a.bandwidths, 0.5e9, 8e9, "B/s", False)]
    print(f"models ({len(models)}): {', '.join(models)}; policies {', '.join(a.policies)}; "
          f"{a.inputs} inputs; executor {a.executor}, workers {a.workers or 'all cores'}; "
          f"cache warm-up (not timed) {warm_s:.1f} s", flush=True)
    runs = []
    workers: dict[int, dict] = {}
    before_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            c0, start = cpu_self(), time.perf_counter()
            df = sweep(CONFIG, models, grid, policies=a.policies, inputs=a.inputs, out_dir=tmp,
                       executor=ExecutorSpec(a.executor, workers=a.workers), progress=False)
            wall, cpu = time.perf_counter() - start, cpu_self() - c0
            rows = len(df)
            failed = int((df["status"] == "failed").sum())
            runs.append((wall, cpu, rows))
            workers.update(df.attrs.get("workers", {}))
            print(f"run: {rows:,} rows ({failed} failed) in {wall:.1f} s = {rows / wall:.1f} "
                  f"rows/s; main process {cpu:.1f} s CPU = {1e3 * cpu / rows:.2f} ms/row",
                  flush=True)
            del df
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rows = runs[0][2]
    print(f"grid: {a.sizes} SRAM sizes x {a.bandwidths} bandwidths x {len(models)} models x "
          f"{len(a.policies)} policies = {rows:,} rows")
    print(f"wall time: median {wall:.1f} s over {len(runs)} runs = {rows / wall:.1f} rows/s "
          f"(60,000 rows at this rate: {60_000 / (rows / wall) / 60:.1f} min; target <= 10)")
    print(f"main process CPU: median {cpu:.2f} s = {1e3 * cpu / rows:.3f} ms/row (target <= 1)")
    print(f"peak RSS: main process {self_mib:.0f} MiB (target <= 300 at 60,000 rows; "
          f"{before_mib:.0f} MiB before the sweep: imports and warm-up)")
    worker_cpu = 0.0
    for pid, w in sorted(workers.items()):
        if pid == os.getpid():
            continue
        worker_cpu += w.get("cpu_s", 0.0)
        print(f"peak RSS: worker {pid} {w['max_rss_mib']:.0f} MiB (torch loaded: {w['torch']}, "
              f"zoo loaded: {w['zoo']}); CPU {w.get('cpu_s', 0.0):.1f} s")
    if worker_cpu and a.repeats == 1:
        # the CPU the sweep needs, whatever else the machine runs: its wall time on 2 idle
        # cores is at least (workers' CPU + the main process's) / 2
        per_row = (worker_cpu + cpu) / rows
        print(f"workers' CPU: {worker_cpu:.1f} s = {1e3 * worker_cpu / rows:.2f} ms/row; with "
              f"the main process, 60,000 rows on 2 idle cores: >= "
              f"{60_000 * per_row / 2 / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
