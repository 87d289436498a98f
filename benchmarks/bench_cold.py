"""Cold and cached edgesim against nn-dataflow and ZigZag on ResNet-50 (a benchmark, not a test).

    python benchmarks/bench_cold.py [--repeat 3] [--zigzag-repeat 1] [--skip-zigzag] [--skip-nnd]
                                    [--skip-user-model] [--nnd-python PATH]

Every measurement is one fresh process, timed by this script with ``os.wait4`` on that child:
wall time (``time.perf_counter`` around it), CPU time (the child's user + sys, its reaped
children included) and peak RSS (the child's ``ru_maxrss``, KiB on Linux). A row is the median of
``--repeat`` runs (ZigZag: ``--zigzag-repeat``, default 1, since one run costs about 3.5
CPU-minutes). The runs of one repetition are interleaved across the tools, so a change in the
machine's background load lands on all of them alike. Each row is measured twice: **idle** (no
load of ours; other users of the machine are not stopped, so the 1-minute load average is printed
with every condition) and **busy** (a ``python -c "while True: pass"`` busy loop, not pinned,
runs for the whole condition: on a 2-core machine it takes the other core). Python's own
bytecode caches and the OS page cache are warm in every row (``PYTHONDONTWRITEBYTECODE`` is
removed from the children's environment and one untimed run of each command writes them):
"cold" means an empty edgesim trace cache, nothing else.

The rows:

* **edgesim cold, registry**: ``python -m edgesim run npu_small --model dense_r50`` with an
  empty private ``EDGESIM_CACHE`` (a fresh temp folder per run). Registry models ship
  pre-traced inside the package (``edgesim/shipped``), so this run may trace nothing.
* **edgesim cold, user model**: the same with ``--model edgesim.zoo.resnet:resnet50``, the same
  ResNet-50 as a ``package.module:factory`` user model, which is not shipped: the run builds the
  model, traces it (one torch thread, the default) and simulates it. This is the cold cost of a
  model edgesim has never seen.
* **edgesim cached, registry / user model**: the second run of each, in the cache the first run
  of that repetition filled (the first run is not timed).
* **numpy import**: ``python -c "import numpy"``, the floor of any process that simulates
  (its OpenBLAS threads at their default, as a user's shell would start it).
* **nn-dataflow** 2.1 (Gao et al., ASPLOS'17/'19; ``pip install nn-dataflow sympy==1.5.1`` in its
  own venv ``.bench-venvs/nnd`` or ``--nnd-python``, never a project dependency) searching the
  dataflow of its bundled
  ``resnet50`` (v1: stride on the first 1x1, 3.86 GMAC) for one inference on a machine close to
  npu_small: ``python -m nn_dataflow.tools.nn_dataflow_search resnet50 --batch 1 --word 8
  --nodes 1 1 --array 16 16 --regf 512 --gbuf 524288 --dram-bw 8 -p 1``, i.e. one node, a 16x16
  PE array (npu_small's 256 MACs), 8-bit words (npu_small is int8), a 512 KiB global buffer
  (npu_small's SRAM), 8 B/cycle of DRAM (npu_small's 4 GB/s at 500 MHz), 512 B of register file
  per PE (Eyeriss's, nn-dataflow's own verification setup in tests/dataflow_test; npu_small names
  no register file) and one search process (``-p 1``; its default is cpu_count // 2 = 1 here).
  Energy costs and everything else are the tool's defaults (goal: energy, Eyeriss row-stationary
  mapping). Two rows: the default exhaustive loop-blocking search, and ``--solve-loopblocking``
  (the analytical bypass solver of the TETRIS paper), which reaches the same optimum here
  (31,628,190,288 cost units, 20,656,773 cycles) in a fraction of the time.
* **ZigZag** (``pip install zigzag-dse six`` in ``.bench-venvs/zigzag``; zigzag-dse 3.9.1 imports
  ``six`` without declaring it) through its API ``get_hardware_performance_zigzag`` with its
  defaults (LOMA temporal mapping search, lpf_limit 6, 3 spatial mappings generated, uneven
  mappings) and ``opt="latency"``, progress bar off, outputs to a temp folder. Accelerator and
  mapping: its shipped edge-sized example ``inputs/hardware/edge_tpu_like.yaml`` with
  ``inputs/mapping/edge_tpu_like.yaml`` (an 8x8x4x4 = 1,024-MAC array, 4x npu_small's; 32 KiB
  weight SRAM + 2 MiB activation SRAM; DRAM 64 bit = 8 B/cycle, npu_small's rate). ZigZag ships
  no ResNet-50 (only an 18), so the driver below writes ResNet-50 v1.5 (edgesim's ``resnet50``:
  stride on the 3x3, 4.09 GMAC) as ZigZag's workload list, layer by layer: 53 convs and the fc,
  2 pools, 16 residual adds (72 layers), int8 weights and inputs, 16-bit partial sums.

Ratios are baseline time / edgesim time (higher: edgesim faster), of CPU time and of wall time,
for each edgesim row against each baseline in the same condition. The issue-12 target, "cold
dense_r50 >= 5x faster than nn-dataflow, >= 50x ZigZag, with the other core busy or not", is
checked on CPU time for both cold rows (the registry run as named, and the user-model run that
traces) against each nn-dataflow row and ZigZag. The issue-22 targets: the cold registry run in
at most 0.3 s CPU, and at least 8x nn-dataflow's ``--solve-loopblocking`` (CPU).

Prints the date, the machine's load and the tools' versions, a line per run as it ends, then
Markdown tables for the README.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():       # a git worktree of the project: the interpreter running this
    PYTHON = Path(sys.executable)
NND_PYTHON = ROOT / ".bench-venvs" / "nnd" / "bin" / "python"
#: The children's environment: bytecode caches written and read, as an installed package's.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ZIGZAG_PYTHON = ROOT / ".bench-venvs" / "zigzag" / "bin" / "python"
USER_MODEL = "edgesim.zoo.resnet:resnet50"

NND_ARGS = ("resnet50", "--batch", "1", "--word", "8", "--nodes", "1", "1", "--array", "16", "16",
            "--regf", "512", "--gbuf", "524288", "--dram-bw", "8", "-p", "1")

#: Run in ZigZag's venv: ResNet-50 v1.5 (as edgesim.zoo.resnet.resnet50) on edge_tpu_like.
ZIGZAG_DRIVER = '''
import tempfile
from importlib.resources import files

from zigzag import api

PREC = {"W": 8, "I": 8, "O": 16, "O_final": 8}


def conv(i, src, k, c, o, f, s, name):
    return {"id": i, "name": name, "operator_type": "Conv",
            "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
            "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
            "loop_dims": ["B", "K", "C", "OY", "OX", "FY", "FX"],
            "loop_sizes": [1, k, c, o, o, f, f],
            "operand_precision": PREC, "operand_source": {"I": src, "W": i}}


def pool(i, src, g, o, f, s, name):
    return {"id": i, "name": name, "operator_type": "Pooling",
            "equation": "O[b][g][oy][ox]+=W[fx][fy]*I[b][g][iy][ix]",
            "dimension_relations": [f"ix={s}*ox+1*fx", f"iy={s}*oy+1*fy"],
            "loop_dims": ["B", "G", "OY", "OX", "FX", "FY"], "loop_sizes": [1, g, o, o, f, f],
            "operand_precision": {**PREC, "W": 0}, "operand_source": {"I": src, "W": i}}


def add(i, a, b, g, o, name):
    return {"id": i, "name": name, "operator_type": "Add",
            "equation": "O[b][g][oy][ox]=W[b][g][oy][ox]+I[b][g][oy][ox]",
            "loop_dims": ["B", "G", "OY", "OX"], "loop_sizes": [1, g, o, o],
            "operand_precision": PREC, "operand_source": {"W": a, "I": b}}


def resnet50():
    layers = [conv(0, 0, 64, 3, 112, 7, 2, "conv1"), pool(1, 0, 64, 56, 3, 2, "maxpool")]
    prev, cin, size = 1, 64, 56
    for stage, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
        for b in range(blocks):
            s = 2 if b == 0 and stage > 0 else 1
            o, n, i = size // s, f"layer{stage + 1}.{b}", len(layers)
            layers.append(conv(i, prev, planes, cin, size, 1, 1, n + ".conv1"))
            layers.append(conv(i + 1, i, planes, planes, o, 3, s, n + ".conv2"))
            layers.append(conv(i + 2, i + 1, planes * 4, planes, o, 1, 1, n + ".conv3"))
            short = prev
            if b == 0:
                layers.append(conv(i + 3, prev, planes * 4, cin, o, 1, s, n + ".downsample"))
                short = i + 3
            layers.append(add(len(layers), short, i + 2, planes * 4, o, n + ".add"))
            prev, cin, size = len(layers) - 1, planes * 4, o
    layers.append(pool(len(layers), prev, cin, 1, 7, 1, "avgpool"))
    layers.append(conv(len(layers), len(layers) - 1, 1000, cin, 1, 1, 1, "fc"))
    return layers


inputs = files("zigzag") / "inputs"
with tempfile.TemporaryDirectory() as d:
    energy, latency, _ = api.get_hardware_performance_zigzag(
        workload=resnet50(), accelerator=str(inputs / "hardware" / "edge_tpu_like.yaml"),
        mapping=str(inputs / "mapping" / "edge_tpu_like.yaml"), opt="latency",
        dump_folder=d, loma_show_progress_bar=False)
print(f"{len(resnet50())} layers, {energy:.4g} pJ, {latency:.4g} cycles")
'''


@dataclass
class Run:
    """One process: wall and CPU seconds, peak RSS in KiB, and its standard output."""

    wall_s: float
    cpu_s: float
    rss_kib: int
    stdout: str


@dataclass
class Row:
    """The runs of one (case, condition) and a note on what the tool answered."""

    case: str
    condition: str
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    skipped: str = ""

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def add(self, run: Run) -> None:
        """Keep ``run`` and print it at once, so an interrupted benchmark leaves its numbers."""
        self.runs.append(run)
        print(f"# {self.case}, {self.condition}: wall {run.wall_s:.2f} s, CPU {run.cpu_s:.2f} s,"
              f" peak RSS {run.rss_kib / 1024:.0f} MiB", flush=True)


def measure(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run ``cmd`` to its end in a fresh process; its rusage alone, via ``os.wait4``."""
    env = ENV if env is None else env
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[:4]}... exited {p.returncode}: {err.read()[-2000:]}")
        return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, out.read())


def edgesim_cmd(model: str) -> list[str]:
    return [str(PYTHON), "-m", "edgesim", "run", "npu_small", "--model", model]


def edgesim_pair(model: str) -> tuple[Run, Run]:
    """A cold run in an empty private cache, then a cached run in the cache it filled (a
    failed run raises: a benchmark does not retry what should not fail)."""
    with tempfile.TemporaryDirectory(prefix="edgesim-cold-") as cache:
        env = {**ENV, "EDGESIM_CACHE": cache}
        cold = measure(edgesim_cmd(model), env=env, cwd=ROOT)
        cached = measure(edgesim_cmd(model), env=env, cwd=ROOT)
    return cold, cached


def edgesim_note(run: Run) -> str:
    """The simulated cycles of the first inference, from the per-inference table."""
    lines = [ln for ln in run.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        head, first = lines[0].split(), lines[1].split()
        return f"{int(first[head.index('cycles')]):,} cycles per inference"
    except (IndexError, ValueError):
        return "(no cycles column in its table)"


def numpy_import() -> Run:
    return measure([str(PYTHON), "-c", "import numpy"])


def nnd(extra: tuple[str, ...], tmp: Path) -> Run:
    return measure([str(NND_PYTHON), "-m", "nn_dataflow.tools.nn_dataflow_search",
                    *NND_ARGS, *extra], cwd=tmp)


def nnd_note(run: Run) -> str:
    res = json.loads(run.stdout)
    return f"{res['total_time']:,} cycles, cost {res['total_cost']:,.0f}"


def zigzag(driver: Path, tmp: Path) -> Run:
    return measure([str(ZIGZAG_PYTHON), str(driver)], cwd=tmp)


def version(python: Path, dist: str) -> str:
    """``dist``'s installed version in the venv of ``python``, or "not installed"."""
    if not python.exists():
        return f"{dist} not installed"
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return f"{dist} {out.stdout.strip() or 'not installed'}"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


CASES = ("edgesim cold, registry dense_r50", "edgesim cached, registry dense_r50",
         f"edgesim cold, user model {USER_MODEL}", f"edgesim cached, user model {USER_MODEL}",
         "nn-dataflow, exhaustive search (default)", "nn-dataflow, --solve-loopblocking",
         "ZigZag, LOMA (edge_tpu_like)", 'python -c "import numpy"')
EDGESIM_CASES = CASES[:4]
BASELINES = CASES[4:]
NUMPY = CASES[7]


def skip_reason(python: Path, what: str, install: str) -> str:
    if python.exists():
        return ""
    return (f"{what} not installed: no {python}; make it with "
            f"`python3 -m venv {python.parent.parent} && {python.parent}/pip install {install}`")


def measure_condition(condition: str, a: argparse.Namespace, tmp: Path,
                      driver: Path) -> dict[str, Row]:
    rows = {c: Row(c, condition) for c in CASES}
    nnd_skip = "--skip-nnd given" if a.skip_nnd else skip_reason(
        NND_PYTHON, "nn-dataflow", "nn-dataflow sympy==1.5.1")
    zz_skip = "--skip-zigzag given" if a.skip_zigzag else skip_reason(
        ZIGZAG_PYTHON, "ZigZag", "zigzag-dse six")
    for c in BASELINES[:2]:
        rows[c].skipped = nnd_skip
    if a.nnd_solve_only and not nnd_skip:
        rows[BASELINES[0]].skipped = "--nnd-solve-only given"
    rows[BASELINES[2]].skipped = zz_skip
    models = [("dense_r50", EDGESIM_CASES[:2])]
    if a.skip_user_model:
        for c in EDGESIM_CASES[2:]:
            rows[c].skipped = "--skip-user-model given"
    else:
        models.append((USER_MODEL, EDGESIM_CASES[2:]))
    for rep in range(a.repeat):
        rows[NUMPY].add(numpy_import())
        for model, (cold, cached) in models:
            c_run, k_run = edgesim_pair(model)
            rows[cold].add(c_run)
            rows[cached].add(k_run)
            rows[cold].note = rows[cached].note = edgesim_note(k_run)
        if not nnd_skip:
            for c, extra in zip(BASELINES[:2], ((), ("--solve-loopblocking",)), strict=True):
                if rows[c].skipped:
                    continue
                rows[c].add(nnd(extra, tmp))
                rows[c].note = nnd_note(rows[c].runs[-1])
        if not zz_skip and rep < a.zigzag_repeat:
            try:
                rows[BASELINES[2]].add(zigzag(driver, tmp))
                rows[BASELINES[2]].note = rows[BASELINES[2]].runs[-1].stdout.strip()
            except RuntimeError as e:
                zz_skip = rows[BASELINES[2]].skipped = f"ZigZag failed: {str(e)[-300:]}"
    return rows


def ratio_cell(base: Row, es: Row) -> str:
    if base.skipped or not base.runs or not es.runs:
        return "skipped"
    return (f"{base.median('cpu_s') / es.median('cpu_s'):.1f}x "
            f"({base.median('wall_s') / es.median('wall_s'):.1f}x)")


def main() -> int:
    global NND_PYTHON
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zigzag-repeat", type=int, default=1,
                    help="ZigZag runs per condition (each ~3.5 CPU-minutes); at most --repeat")
    ap.add_argument("--skip-zigzag", action="store_true")
    ap.add_argument("--skip-nnd", action="store_true")
    ap.add_argument("--nnd-solve-only", action="store_true",
                    help="nn-dataflow's --solve-loopblocking row alone (its default search "
                    "costs ~25 CPU-s a run)")
    ap.add_argument("--skip-user-model", action="store_true",
                    help=f"no {USER_MODEL} rows (they trace with torch)")
    ap.add_argument("--nnd-python", type=Path, default=None,
                    help=f"nn-dataflow's interpreter (default {NND_PYTHON})")
    a = ap.parse_args()
    if a.nnd_python is not None:
        NND_PYTHON = a.nnd_python
    # bytecode caches written once, so every timed run reads them (as an installed package)
    for cmd in (edgesim_cmd("dense_r50"), [str(PYTHON), "-c", "import numpy"]):
        subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True)

    head = subprocess.run(["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    print(f"# bench_cold, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"{platform.python_version()}, edgesim at {head[:90]}")
    print(f"# {version(PYTHON, 'torch')}, {version(NND_PYTHON, 'nn-dataflow')}, "
          f"{version(ZIGZAG_PYTHON, 'zigzag-dse')}")
    print(f"# start: {load()}")
    results: dict[tuple[str, str], Row] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp_s:
        tmp = Path(tmp_s)
        driver = tmp / "zigzag_resnet50.py"
        driver.write_text(ZIGZAG_DRIVER)
        for condition in ("idle", "busy"):
            busy = busy_loop() if condition == "busy" else None
            try:
                if busy is not None:   # let the busy loop take its core first
                    time.sleep(1.0)
                print(f"# {condition}: {load()} at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC",
                      flush=True)
                rows = measure_condition(condition, a, tmp, driver)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
            results.update({(c, condition): r for c, r in rows.items()})
    print(f"# end: {load()} at {dt.datetime.now(dt.UTC):%H:%M:%S} UTC")
    print()
    print("| run | other core | wall s | CPU s | peak RSS MiB | runs | the tool's answer |")
    print("|---|---|---|---|---|---|---|")
    for c in CASES:
        for condition in ("idle", "busy"):
            r = results[(c, condition)]
            if r.skipped or not r.runs:
                print(f"| {c} | {condition} | - | - | - | 0 | skipped: {r.skipped} |")
                continue
            print(f"| {c} | {condition} | {r.median('wall_s'):.2f} | {r.median('cpu_s'):.2f} | "
                  f"{r.median('rss_kib') / 1024:.0f} | {len(r.runs)} | {r.note} |")
    print()
    print("Baseline time / edgesim time, CPU (wall in brackets); medians of the rows above.")
    print()
    print("| edgesim run | other core | " + " | ".join(BASELINES) + " |")
    print("|---|---|" + "---|" * len(BASELINES))
    for es in (EDGESIM_CASES[0], EDGESIM_CASES[2], EDGESIM_CASES[1], EDGESIM_CASES[3]):
        for condition in ("idle", "busy"):
            cells = [ratio_cell(results[(b, condition)], results[(es, condition)])
                     for b in BASELINES]
            print(f"| {es} | {condition} | " + " | ".join(cells) + " |")
    print()
    print("Targets, on CPU time: issue 12: >= 5x nn-dataflow, >= 50x ZigZag; issue 22: the cold "
          "registry run <= 0.3 s and >= 8x nn-dataflow --solve-loopblocking.")
    print()
    for condition in ("idle", "busy"):
        r = results[(EDGESIM_CASES[0], condition)]
        es = r.median("cpu_s")
        nnd_solve = results[(BASELINES[1], condition)]
        x = (f"{nnd_solve.median('cpu_s') / es:.1f}x nn-dataflow --solve-loopblocking "
             f"({'met' if nnd_solve.median('cpu_s') / es >= 8 else 'NOT met'})"
             if nnd_solve.runs else f"nn-dataflow not measured ({nnd_solve.skipped})")
        num = results[(NUMPY, condition)].median("cpu_s")
        print(f"* issue 22, {EDGESIM_CASES[0]}, other core {condition}: {es:.3f} s CPU "
              f"({'met' if es <= 0.3 else 'NOT met'}), {es / num:.2f}x an import of numpy "
              f"({num:.3f} s); {x}.")
    for cold in (EDGESIM_CASES[0], EDGESIM_CASES[2]):
        for condition in ("idle", "busy"):
            if not results[(cold, condition)].runs:
                continue
            es = results[(cold, condition)].median("cpu_s")
            verdict = []
            for b, goal in zip(BASELINES[:3], (5, 5, 50), strict=True):
                r = results[(b, condition)]
                if r.runs:
                    x = r.median("cpu_s") / es
                    verdict.append(f"{x:.1f}x {b} ({'met' if x >= goal else 'NOT met'})")
            print(f"* {cold} ({es:.2f} s CPU), other core {condition}: "
                  + ("; ".join(verdict) or "no baseline measured") + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
