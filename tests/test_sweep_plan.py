"""Planning a grid never looks hung: the config file is parsed once, a point's config is built
only when its tasks are due, at most ``WINDOW`` tasks per worker are in flight, and the rows
finished before a kill or a bad point stay stored. The table is the one a point-by-point
``load_config`` + ``simulate`` gives."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import edgesim.config
from edgesim.cli import main
from edgesim.config import load_config
from edgesim.errors import ConfigError
from edgesim.sim import simulate
from edgesim.sweep import grid as sweep_grid
from edgesim.sweep import run as sweep_run
from edgesim.sweep import sweep
from edgesim.sweep.executors import ExecutorSpec
from edgesim.sweep.rows import SweepRow
from edgesim.sweep.store import Store
from edgesim.testing import error_line, tiny_config, tiny_workload

# 40 x 25 = 1,000 points; the tiny workload moves 3000 B, so every point simulates in ~1 ms
GRID_1000 = ["sram.size=2KiB..41KiB:+1KiB", "offchip.bandwidth=1GB/s..25GB/s:+1GB/s"]
AXIS_VALUES = 40 + 25



@pytest.fixture
def counted(monkeypatch):
    """Counts of YAML file parses (``_read_yaml`` of a file, not of a ``--set`` value) and of
    config builds from the parsed file, in call order with the rows stored so far."""
    counts = {"parses": 0, "builds": 0, "puts": 0, "builds_at_first_put": None}
    read_yaml, build, put = edgesim.config._read_yaml, sweep_grid.Base.build, Store.put_many

    def counting_read(text, file):
        if file:            # a --set value is parsed with file ""
            counts["parses"] += 1
        return read_yaml(text, file)

    def counting_build(self, overrides=()):
        counts["builds"] += 1
        return build(self, overrides)

    def counting_put(self, entries):   # Store.put is put_many of one row
        if counts["builds_at_first_put"] is None and entries:
            counts["builds_at_first_put"] = counts["builds"]
        counts["puts"] += len(entries)
        return put(self, entries)

    monkeypatch.setattr(edgesim.config, "_read_yaml", counting_read)
    monkeypatch.setattr(sweep_grid.Base, "build", counting_build)
    monkeypatch.setattr(Store, "put_many", counting_put)
    return counts


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]


# --------------------------------------------------------------------------- planning cost

def test_a_1000_point_grid_parses_its_file_once(tiny_yaml, tmp_path, counted):
    df = sweep(tiny_yaml, [tiny_workload()], GRID_1000, inputs=1, out_dir=tmp_path / "out",
               executor="serial")
    assert len(df) == 1000
    assert counted["parses"] == 1
    # each axis value checked once, one point for the workloads, then one build per point
    assert counted["builds"] == AXIS_VALUES + 1 + 1000
    # the first row is stored after the axes are checked and one point is built: planning
    # before work is proportional to the axes, not to the 1,000 points
    assert counted["builds_at_first_put"] == AXIS_VALUES + 1 + 1
    assert counted["puts"] == 1000


def test_pool_keeps_a_bounded_window_in_flight(tiny_yaml, tmp_path, counted):
    grid = ["sram.size=2KiB..41KiB:+1KiB", "offchip.bandwidth=1GB/s..5GB/s:+1GB/s"]  # 200
    df = sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=tmp_path / "out",
               executor=ExecutorSpec("process", workers=1))
    assert len(df) == 200
    assert counted["parses"] == 1
    # when the first row is stored, at most WINDOW points (one task each) were planned
    planned = counted["builds_at_first_put"] - (40 + 5 + 1)
    assert 1 <= planned <= sweep_run.WINDOW * 1 + 1
    serial = sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=tmp_path / "serial",
                   executor="serial")
    pd.testing.assert_frame_equal(df, serial)


def test_main_process_memory_per_row_does_not_grow_with_rows(tiny_yaml, tmp_path, monkeypatch):
    # issue 22: a 60,000-row sweep held every future to the end (13-21 KiB per row). What the
    # planning and running of the rows still holds when they are all stored (tracemalloc:
    # this process's Python allocations since sweep.run._run began) grows by a task's key and
    # indices per row, and by what is kept per axis value (parsed quantities): from 5 x 5 to
    # 10 x 10 points, under 1 KiB per added row
    import gc
    import tracemalloc
    real, held = sweep_run._run, []

    def traced(*args, **kwargs):
        tracemalloc.start()
        try:
            return real(*args, **kwargs)
        finally:
            gc.collect()     # what is still reachable, not garbage awaiting a collection
            held.append(tracemalloc.get_traced_memory()[0])
            tracemalloc.stop()

    monkeypatch.setattr(sweep_run, "_run", traced)
    # the engine's caches first filled as a long-lived process (a worker, the earlier tests)
    # fills them: a cache that keeps what it derives per compiled plan past the plans' own
    # cache grows with the distinct configs a sweep runs (~3 KB per row, the test then fails)
    for k in range(300):
        simulate(tiny_config(sram=1000 + 10 * k), tiny_workload(inputs=2),
                 policy=("lru", "belady")[k % 2])
    for n in (5, 10):
        grid = [f"sram.size=2KiB..{n + 1}KiB:+1KiB", f"offchip.bandwidth=1GB/s..{n}GB/s:+1GB/s"]
        sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=tmp_path / str(n),
              executor="serial")
    assert (held[1] - held[0]) / (100 - 25) < 1024, held


# --------------------------------------------------------------------------- nothing lost

def test_a_kill_after_n_commits_keeps_n_rows_and_the_rerun_finishes(tiny_yaml, tmp_path,
                                                                     monkeypatch, counted):
    grid = ["sram.size=2KiB..41KiB:+1KiB", "offchip.bandwidth=1GB/s..5GB/s:+1GB/s"]  # 200
    real = sweep_run.simulate_point
    calls = []

    def killed_at_51(task, wref):
        calls.append(task.hw.sram_bytes)
        if len(calls) == 51:
            raise KeyboardInterrupt   # not an engine failure: the sweep stops here
        return real(task, wref)

    monkeypatch.setattr(sweep_run, "simulate_point", killed_at_51)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=out, executor="serial")
    assert _rows(out / "results.sqlite") == 50
    assert counted["builds"] == 40 + 5 + 1 + 51   # the later 149 points never planned
    monkeypatch.setattr(sweep_run, "simulate_point", real)
    resumed = sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=out,
                    executor="serial")
    assert counted["puts"] == 200                 # 50, then the other 150
    clean = sweep(tiny_yaml, [tiny_workload()], grid, inputs=1, out_dir=tmp_path / "c",
                  executor="serial")
    pd.testing.assert_frame_equal(resumed, clean)
    assert (out / "sweep.csv").read_bytes() == (tmp_path / "c" / "sweep.csv").read_bytes()


# reserve 3 KiB fits the tiny config's 1 MiB SRAM and 2 KiB of SRAM its 1 KiB reserve, so each
# value passes the grid check; together (the last point) the reserve exceeds the SRAM
CLASH = ["sram.activation_reserve=1KiB,3KiB", "sram.size=4KiB,2KiB"]


@pytest.mark.parametrize("executor", ["serial", "process"])
def test_a_point_the_config_rejects_keeps_the_rows_before_it(tiny_yaml, tmp_path, executor):
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        sweep(tiny_yaml, [tiny_workload()], CLASH, inputs=2, out_dir=out,
              executor=ExecutorSpec(executor, workers=1))
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("grid point 3 (sram.activation_reserve=3KiB, sram.size=2KiB): ")
    assert "must not exceed sram.size" in text
    assert _rows(out / "results.sqlite") == 3     # points 0, 1, 2


def test_cli_point_the_config_rejects_is_one_line(tiny_yaml, tmp_path, capsys):
    from edgesim.zoo.registry import ModelSpec, register
    register(ModelSpec("tiny_linear_plan", "dense", "torch.nn:Linear",
                       {"in_features": 16, "out_features": 8}, (16,), "test model"))
    code = main(["sweep", str(tiny_yaml), "--model", "tiny_linear_plan", "--inputs", "2",
                 "--out", str(tmp_path / "out"), "--executor", "serial",
                 *[arg for s in CLASH for arg in ("--set", s)]])
    err = error_line(capsys.readouterr().err)   # one line besides the stage lines
    assert code == 2
    assert err.startswith("edgesim: error: grid point 3 (")


# --------------------------------------------------------------------------- same table

def test_table_is_the_point_by_point_load_and_simulate(tiny_yaml, tmp_path):
    # the previous planning: load_config(file, point's --set) for every point, then simulate
    grid = ["sram.size=2KiB,3KiB,4KiB", "dram.bandwidth=1GB/s,3GB/s"]
    w = tiny_workload().with_inputs(3)
    df = sweep(tiny_yaml, [tiny_workload()], grid, policies=("lru", "belady"), inputs=3,
               out_dir=tmp_path, executor="serial")
    from edgesim.api import model_info
    from edgesim.sweep.grid import grid_points, parse_grid
    want = []
    for p, params in enumerate(grid_points(parse_grid(tiny_yaml, grid))):
        hw = load_config(tiny_yaml, [f"{k}={v}" for k, v in params.items()])
        for policy in ("lru", "belady"):
            res = simulate(hw, w, policy=policy, prefetch="next")
            want.append(SweepRow.build(p, params, hw, model_info(w), w.name, policy, "next", 3,
                                       res.summary).columns())
    pd.testing.assert_frame_equal(df, pd.DataFrame(want))


def test_equal_points_show_their_own_values(tiny_yaml, tmp_path):
    # 2 KiB and 2048 B are one stored row; each table row names its own point's value
    df = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,2048B"], inputs=2,
               out_dir=tmp_path, executor="serial")
    assert df["sram.size"].tolist() == ["2KiB", "2048B"]
    assert df["point"].tolist() == [0, 1]
    assert df["weight_dram_bytes_cold"].iloc[0] == df["weight_dram_bytes_cold"].iloc[1]


def test_workloads_come_from_one_point_per_workload_axis_combination():
    axes = sweep_grid.parse_grid("npu_small", ["sram.size=1MiB,2MiB,4MiB",
                                               "compute.precision=int8,int4",
                                               "dram.bandwidth=1GB/s,2GB/s",
                                               "formats=[dense],[dense,csr]"])
    reps = list(sweep_run._workload_points(axes))
    # sizes 3 x 2 x 2 x 2: point = ((s * 2 + p) * 2 + b) * 2 + f, with s = b = 0
    assert [p for p, _ in reps] == [0, 1, 4, 5]
    assert [(v["compute.precision"], v["formats"]) for _, v in reps] == [
        ("int8", "[dense]"), ("int8", "[dense,csr]"), ("int4", "[dense]"),
        ("int4", "[dense,csr]")]
    points = sweep_grid.grid_points(axes)
    assert all(points[p] == v for p, v in reps)
    # every point's workload options are those of a representative point
    base = sweep_grid.base_config("npu_small")
    reps_opts = {sweep_run._options_key(base.build([f"{k}={x}" for k, x in v.items()]))
                 for _, v in reps}
    for p in range(0, len(points), 5):
        hw = base.build([f"{k}={x}" for k, x in points[p].items()])
        assert sweep_run._options_key(hw) in reps_opts
    assert math.prod(len(a.values) for a in axes) == sweep_grid.grid_size(axes) == 24


def test_planning_says_what_it_does_when_progress_is_on(tiny_yaml, tmp_path, capsys):
    grid = ["sram.size=2KiB,4KiB", "dram.bandwidth=1GB/s,2GB/s,4GB/s"]
    sweep(tiny_yaml, [tiny_workload()], grid, inputs=2, out_dir=tmp_path / "quiet",
          executor="serial", progress=False)
    assert capsys.readouterr().err == ""
    sweep(tiny_yaml, [tiny_workload()], grid, inputs=2, out_dir=tmp_path / "said",
          executor="serial", progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("edgesim: ")]
    assert lines[0] == (f"edgesim: grid: 2 x 3 = 6 points; checking each of its 5 values "
                        f"against {tiny_yaml}")
    assert lines[1] == ("edgesim: 6 points x 1 model x 1 policy = 6 tasks, planned and run "
                        "point by point")
    assert lines[-1].startswith("edgesim: reading 6 rows back from ")
