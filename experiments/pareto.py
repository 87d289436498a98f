"""Which model and memory system win? Pareto fronts of latency, energy and weight traffic.

Usage: ``python experiments/pareto.py RESULTS [--quick]``

Sweeps SRAM size x off-chip bandwidth on npu_small for every registered model (``--quick``: the
cheapest ones, 2 x 2 points) under LRU (and Belady, the offline bound, in the full run). Writes,
under ``RESULTS/pareto/``: the sweep folder, ``pareto_latency_energy.{png,svg}`` (steady-state
latency vs energy per inference), ``pareto_bytes_energy.{png,svg}`` (weight bytes vs energy),
``energy_breakdown.{png,svg}`` and ``front.csv``: the rows on the overall latency-energy front.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIG = "npu_small"
FULL_GRID = ("sram.size=32KiB..32MiB:x4", "dram.bandwidth=1GB/s,2GB/s,4GB/s,8GB/s")
QUICK_GRID = ("sram.size=256KiB,32MiB", "dram.bandwidth=1GB/s,4GB/s")


def main(argv: Sequence[str] | None = None) -> int:
    from edgesim.plot import pareto_front, plot_energy_breakdown, plot_pareto
    from edgesim.sweep import sweep
    from edgesim.sweep.executors import ExecutorSpec
    from experiments import arguments, registered, traceable
    a = arguments(__doc__.splitlines()[0], argv)
    out = Path(a.results) / "pareto"
    models = traceable(registered(quick=a.quick), CONFIG, inputs=a.inputs)
    if not models:
        print("no results: no registered model could be traced", file=sys.stderr)
        return 1
    policies = ("lru",) if a.quick else ("lru", "belady")
    df = sweep(CONFIG, models, QUICK_GRID if a.quick else FULL_GRID, policies=policies,
               inputs=a.inputs, out_dir=out / "sweep",
               executor=ExecutorSpec(a.executor, a.scheduler, a.workers))
    plot_pareto(df, out / "pareto_latency_energy")
    plot_pareto(df, out / "pareto_bytes_energy", x="weight_dram_bytes_steady")
    plot_energy_breakdown(df, out / "energy_breakdown")
    front = df[pareto_front(df, "latency_s_steady", "energy_j_steady")]
    cols = ["model", "policy", "sram.size", "offchip.bandwidth", "latency_s_steady",
            "energy_j_steady", "weight_dram_bytes_steady"]
    front = front[cols].sort_values(["latency_s_steady", "energy_j_steady"])
    front.to_csv(out / "front.csv", index=False)
    print(front.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
