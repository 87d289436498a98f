"""Sweeps: many hardware points x models x policies, resumable, on local processes or Dask.

Public names: ``sweep``, ``load_results``, ``load_detail``, ``point_key``, ``EXECUTORS``,
``Axis``, ``parse_axis``, ``parse_grid``, ``grid_points``, ``SweepRow``.

Modules, in the order a sweep uses them:

* ``grid``: ``--set key=spec`` ranges, expanded and checked against the config before any work;
* ``run``: the ``sweep`` verb and the per-point task (``simulate_point``);
* ``executors``: where tasks run (a pool of clean worker processes, Dask, this process);
* ``rows``: the row schema of the table (``SweepRow``);
* ``store``: the SQLite file of finished tasks (``results.sqlite``), so a rerun resumes.

``edgesim.sweep(...)``, the module called, is ``sweep``.
``sweep(config, models, ["sram.size=32KiB..32MiB:x2"], out_dir="out")`` traces each model once
per trace key of the grid (disk-cached), simulates every (point, model, policy) and returns the
tidy table, also written to ``out/sweep.csv``. The command line is ``edgesim.cli.sweep``.
"""

from edgesim import _callable_module
from edgesim.sweep.executors import EXECUTORS
from edgesim.sweep.grid import Axis, grid_points, parse_axis, parse_grid
from edgesim.sweep.rows import SweepRow
from edgesim.sweep.run import sweep
from edgesim.sweep.store import load_detail, load_results, point_key

__all__ = ["EXECUTORS", "Axis", "SweepRow", "grid_points", "load_detail", "load_results",
           "parse_axis", "parse_grid", "point_key", "sweep"]

_callable_module(__name__, "sweep")
