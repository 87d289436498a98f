"""A cold run of each MLPerf Tiny model from its ``.tflite`` against a shipped-trace registry run
(a benchmark, not a test).

    python benchmarks/bench_import.py [--repeat 5] [--models DIR]

Every measurement is one fresh process (``python -m edgesim run ethos_u55 --model M --inputs 8``
with an empty private ``EDGESIM_CACHE``), timed with ``os.wait4``: CPU time (user + sys of the
child) and wall time. A row is the median of ``--repeat`` runs, interleaved across the rows so a
change of background load lands on all of them. The reference row runs the registry model
``dense_r50`` from the trace shipped inside the package (no torch either). Each file row imports
the ``.tflite`` (``edgesim.frontends.tflite``: no torch is installed or imported: the script
checks ``torch`` is absent from the child's modules) and simulates it; the target (issue 18) is
within 1.5x of the reference's CPU time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT.parent / "shared" / "models" / "mlperf_tiny"
TARGET = 1.5
#: The child: the CLI, then a check that torch was never imported.
CHILD = ("import sys; from edgesim.cli import main; code = main(sys.argv[1:]); "
         "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(code)")


def one(model: str) -> tuple[float, float]:
    """(CPU s, wall s) of one cold run of ``model`` in a fresh process."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "EDGESIM_CACHE": cache}
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", CHILD, "run", "ethos_u55", "--model", model,
                              "--inputs", "8"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err = p.stderr.read().decode()
        p.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"edgesim run --model {model} failed: {err.strip()[-300:]}")
        return usage.ru_utime + usage.ru_stime, wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--models", type=Path, default=MODELS)
    a = ap.parse_args(argv)
    files = sorted(a.models.glob("*.tflite"))
    if not files:
        raise SystemExit(f"no .tflite files in {a.models}")
    rows = ["dense_r50", *map(str, files)]
    cpu: dict[str, list[float]] = {r: [] for r in rows}
    wall: dict[str, list[float]] = {r: [] for r in rows}
    for _ in range(a.repeat):
        for r in rows:
            c, w = one(r)
            cpu[r].append(c)
            wall[r].append(w)
    ref = statistics.median(cpu["dense_r50"])
    print(f"# cold `edgesim run ethos_u55 --model M --inputs 8`, empty cache, median of "
          f"{a.repeat}; load average {os.getloadavg()[0]:.2f}; Python {sys.version.split()[0]}")
    print(f"{'model':44s} {'CPU s':>7s} {'wall s':>7s} {'x ref':>6s}")
    worst = 0.0
    for r in rows:
        c, w = statistics.median(cpu[r]), statistics.median(wall[r])
        name = Path(r).name if r.endswith(".tflite") else f"{r} (shipped trace)"
        ratio = c / ref
        worst = max(worst, ratio) if r != "dense_r50" else worst
        print(f"{name:44s} {c:7.3f} {w:7.3f} {ratio:6.2f}")
    print(f"# worst file / reference: {worst:.2f}x (target <= {TARGET}x): "
          f"{'PASS' if worst <= TARGET else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
