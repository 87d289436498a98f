"""How much SRAM before weight traffic collapses? Every registered model on three configs.

Usage: ``python experiments/sram_sweep.py RESULTS [--quick]``

Sweeps SRAM size from 32 KiB to 32 MiB (x2; ``--quick``: 32 KiB, 1 MiB, 32 MiB) on npu_small,
ethos_u55 and nvdla_small (all three size their activation reserve as a share of the SRAM, so
every size is valid) for every registered model (``--quick``: the cheapest ones). Writes, under
``RESULTS/sram_sweep/``: one sweep folder per config (``sweep.csv``, ``results.sqlite``), the
figure ``<config>_bytes_vs_sram.{png,svg}`` and ``knee.csv``: per config and model, the smallest
swept SRAM with zero steady-state weight bytes, and the bytes at the smallest size.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = ("npu_small", "ethos_u55", "nvdla_small")
FULL_SIZES = "sram.size=32KiB..32MiB:x2"
QUICK_SIZES = "sram.size=32KiB,1MiB,32MiB"


def knee_table(df):
    """Per (config, model): stored bytes, the first SRAM size with 0 steady bytes, and more."""
    import pandas as pd
    rows = []
    for (config, model), g in df.groupby(["config", "model"], sort=False):
        g = g.sort_values("sram_bytes")
        zero = g[g["weight_dram_bytes_steady"] == 0]
        rows.append({"config": config, "model": model, "family": g["family"].iloc[0],
                     "stored_weight_bytes": int(g["stored_weight_bytes"].iloc[0]),
                     "first_sram_with_zero_steady_bytes": (zero["sram.size"].iloc[0]
                                                           if len(zero) else "-"),
                     "steady_bytes_at_smallest_sram": float(
                         g["weight_dram_bytes_steady"].iloc[0])})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    import pandas as pd

    from edgesim.plot import plot_bytes_vs_sram
    from edgesim.sweep import sweep
    from edgesim.sweep.executors import ExecutorSpec
    from experiments import arguments, registered, traceable
    a = arguments(__doc__.splitlines()[0], argv)
    out = Path(a.results) / "sram_sweep"
    sizes = QUICK_SIZES if a.quick else FULL_SIZES
    names = registered(quick=a.quick)
    tables = []
    for config in CONFIGS:
        models = traceable(names, config, inputs=a.inputs)
        if not models:
            print(f"note: no model traces on {config}; skipped", file=sys.stderr)
            continue
        df = sweep(config, models, [sizes], inputs=a.inputs, out_dir=out / config,
                   executor=ExecutorSpec(a.executor, a.scheduler, a.workers))
        plot_bytes_vs_sram(df, out / f"{config}_bytes_vs_sram")
        tables.append(df)
    if not tables:
        print("no results: no registered model could be traced", file=sys.stderr)
        return 1
    knee = knee_table(pd.concat(tables, ignore_index=True))
    knee.to_csv(out / "knee.csv", index=False)
    print(knee.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
