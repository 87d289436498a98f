"""Speed of routing a stream through a Sigma-Branch tree (a benchmark, not a test).

    python benchmarks/bench_route.py [--repeat 3] [--inputs 256]
        [--models sigmab_r50 sigmab_r50_c100 sigmab_pn2]

For each model, on one torch thread, routes ``--inputs`` synthetic inputs in batches of
``edgesim.build.ROUTE_BATCH`` (batch b drawn with seed 1 + b, as ``edgesim.build.route`` draws
them; drawing is not timed) with ``tree.route(x)`` under ``torch.no_grad``, and compares it with
a plain batched forward pass of the same layers: the backbone, then the internal nodes of path 0
and their routers, each on the whole batch with no split (``plain_pass``; the same MACs as
routing when sibling nodes are as wide). Four passes over the stream:

* ``plain``: ``plain_pass`` per batch, glibc's allocator as it comes;
* ``plain, heap``: the same inside one ``edgesim.zoo.memory.heap_buffers`` scope (large
  buffers kept in the heap and reused);
* ``route``: ``tree.route`` per batch (each call opens its own ``heap_buffers`` scope);
* ``route, stream``: the same inside one outer scope;
* ``plain, heap, passes``: ``plain_pass`` in one scope, in passes of ``ROUTE_PASS`` inputs
  (the baseline of ``build.route``);
* ``build.route``: as ``edgesim.build.route`` routes a stream: one outer scope, each batch in
  forward passes of ``edgesim.build.ROUTE_PASS`` inputs (less memory held in the heap).

Wall ratio and CPU ratio (user + system) are a pass's over the fastest plain pass's (by CPU
time; issue 12's target: routing within 1.3x). On a shared machine the CPU times are the
steadier measure.

Each measurement runs in a fresh process (``--worker``): peak RSS (``ru_maxrss``) is a
per-process high-water mark, and glibc's allocator settings, once changed, stay changed. Times,
user and system CPU and minor page faults (``resource.getrusage``) are the medians of
``--repeat`` passes over the stream; peak RSS is the process's, model and inputs included. The
built trees come from ``$EDGESIM_CACHE/model`` (the first build of sigmab_r50 takes ~10 s).

Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ("sigmab_r50", "sigmab_r50_c100", "sigmab_pn2")
#: The passes measured, in table order: name -> (routing?, inside one heap_buffers scope?).
PASSES = {"plain": (False, False), "plain, heap": (False, True), "route": (True, False),
          "route, stream": (True, True), "plain, heap, passes": ("plain passes", True),
          "build.route": ("passes", True)}


def plain_pass(tree, x):
    """The backbone and the internal nodes of path 0 with their routers, on the whole batch ``x``
    (what ``tree.route`` computes, without splitting the batch); returns the last state."""
    arch = tree.arch
    state = arch.start(x)
    for name in tree.backbone_names:
        state = arch.run(name, tree.backbone[name], state)
    for key in tree.path_nodes(0)[:-1]:
        node = tree.nodes[key]
        for name in node.stage_names:
            state = arch.run(name, getattr(node, name), state)
        node.router(arch.features(state))
    return state


def _batches(spec, inputs: int) -> list:
    from edgesim.build import ROUTE_BATCH
    from edgesim.zoo import data as mdata

    out = []
    for b, start in enumerate(range(0, inputs, ROUTE_BATCH)):
        n = min(ROUTE_BATCH, inputs - start)
        if len(spec.input_shape) == 2:
            out.append(mdata.synthetic_points(n, points=spec.input_shape[0], seed=1 + b)[0])
        else:
            out.append(mdata.synthetic_images(n, shape=tuple(spec.input_shape), seed=1 + b)[0])
    return out


def worker(model: str, kind: str, inputs: int, repeat: int) -> dict:
    """One measurement in this process: ``kind`` is a key of ``PASSES``."""
    import torch

    torch.set_num_threads(1)
    from edgesim.build import built_model
    from edgesim.zoo.memory import heap_buffers
    from edgesim.zoo.registry import get_spec

    spec = get_spec(model)
    tree = built_model(spec, None, 0).eval()
    xs = _batches(spec, inputs)
    routing, scoped = PASSES[kind]
    from edgesim.build import ROUTE_PASS

    def passes(x):
        return torch.cat([tree.route(x[s:s + ROUTE_PASS]) for s in range(0, len(x), ROUTE_PASS)])

    def plain_passes(x):
        for s in range(0, len(x), ROUTE_PASS):
            plain_pass(tree, x[s:s + ROUTE_PASS])
    step = {"passes": passes, "plain passes": plain_passes}.get(routing) or \
        (tree.route if routing else (lambda x: plain_pass(tree, x)))
    runs = []
    for _ in range(repeat):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        with torch.no_grad(), heap_buffers() if scoped else contextlib.nullcontext():
            for x in xs:
                step(x)
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        runs.append({"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime,
                     "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt})
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return out


def measure(model: str, kind: str, inputs: int, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", model, kind, "--inputs", str(inputs),
           "--repeat", str(repeat)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inputs", type=int, default=256)
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "KIND"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        sys.stdout.write(json.dumps(worker(*a.worker, a.inputs, a.repeat)) + "\n")
        return 0

    print("| model | pass | images/s | wall ratio | CPU ratio | user s | sys s | minor faults "
          "| peak RSS |\n|---|---|---|---|---|---|---|---|---|")
    for model in a.models:
        res = {kind: measure(model, kind, a.inputs, a.repeat) for kind in PASSES}
        base = min((r for k, r in res.items() if k.startswith("plain")),
                   key=lambda r: r["user"] + r["sys"])   # the fastest plain pass
        for kind, r in res.items():
            cpu = (r["user"] + r["sys"]) / (base["user"] + base["sys"])
            print(f"| {model} | {kind} | {a.inputs / r['wall']:,.1f} | "
                  f"{r['wall'] / base['wall']:.2f}x | {cpu:.2f}x | {r['user']:.2f} | "
                  f"{r['sys']:.2f} | {r['minflt']:,.0f} | {r['rss_mib']:,.0f} MiB |", flush=True)
    print(f"\n{a.inputs} inputs in batches of 64, one torch thread, median of {a.repeat}; "
          "CPU times and faults per pass over the inputs; ratios over the fastest plain pass")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
