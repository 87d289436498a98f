"""Benchmark: 40 SRAM sizes x 6 models x 1,000 inputs on npu_small, traces cached.

Usage: ``python benchmarks/bench_sweep.py [--repeats 3] [--sizes 40] [--inputs 1000]
[--models A B ...] [--workers N] [--executor process|dask|serial]``

Traces (and routes) the swept models once before timing (only those: the first ``--count`` of
the list that trace), so the cache is warm; then runs the whole sweep ``--repeats`` times, each
into a fresh folder (nothing skipped), and reports the median wall time and the peak resident
memory of this process (``resource.getrusage``; ru_maxrss is in KiB on Linux) and of each worker
process, as the workers report it (``df.attrs["workers"]``, with whether torch or the zoo was
loaded there).
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

#: Six models across the families, the first registered ones of this list are used.
DEFAULT_MODELS = ("dense_r50", "sigmab_r50", "sparse_r50", "nested_r50", "sb_r50", "dense_pn2",
                  "sigmab_pn2", "sparse_swint", "dense_r50_c100", "sigmab_r50_c100")
CONFIG = "npu_small"


def sizes_spec(n: int, lo: int = 32 * 1024, hi: int = 32 * 1024 * 1024) -> str:
    """``n`` SRAM sizes spaced evenly on a log axis from ``lo`` to ``hi`` bytes, as a list."""
    sizes = [round(lo * (hi / lo) ** (k / (n - 1))) for k in range(n)] if n > 1 else [lo]
    return "sram.size=" + ",".join(f"{s}B" for s in sizes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, default=40)
    p.add_argument("--inputs", type=int, default=1000)
    p.add_argument("--models", nargs="+")
    p.add_argument("--count", type=int, default=6, help="models to use (default 6)")
    p.add_argument("--workers", type=int)
    p.add_argument("--executor", choices=("process", "dask", "serial"), default="process")
    a = p.parse_args(argv)

    from edgesim.sweep import sweep
    from experiments import registered, traceable
    names = registered(a.models or [m for m in DEFAULT_MODELS])
    t0 = time.perf_counter()
    models: list[str] = []
    for n in names:  # trace only until --count models are ready
        if len(models) == a.count:
            break
        models += traceable([n], CONFIG, inputs=a.inputs)
    warm_s = time.perf_counter() - t0
    grid = [sizes_spec(a.sizes)]
    times = []
    rows = 0
    workers: dict[int, dict] = {}
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            df = sweep(CONFIG, models, grid, inputs=a.inputs, out_dir=tmp, executor=a.executor,
                       workers=a.workers, progress=False)
            times.append(time.perf_counter() - start)
            rows = len(df)
            workers.update(df.attrs.get("workers", {}))
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"models ({len(models)}): {', '.join(models)}")
    print(f"grid: {a.sizes} SRAM sizes 32 KiB..32 MiB x {len(models)} models x {a.inputs} inputs "
          f"= {rows} rows; executor {a.executor}, workers {a.workers or 'all cores'}")
    print(f"cache warm-up (not timed): {warm_s:.1f} s")
    print(f"wall time: median {statistics.median(times):.2f} s over {len(times)} runs "
          f"({', '.join(f'{t:.2f}' for t in times)})")
    print(f"peak RSS: main process {self_mib:.0f} MiB")
    for pid, w in sorted(workers.items()):
        if pid == os.getpid():
            continue
        print(f"peak RSS: worker {pid} {w['max_rss_mib']:.0f} MiB (torch loaded: {w['torch']}, "
              f"zoo loaded: {w['zoo']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
