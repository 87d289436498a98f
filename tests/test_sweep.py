"""Sweeps: the tidy table, laws over SRAM size, resume, kill-and-resume, Dask vs process pool."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import edgesim.sim
from edgesim.cli import main
from edgesim.errors import ConfigError, EdgesimError
from edgesim.sweep import load_detail, sweep
from edgesim.sweep import run as sweep_run
from edgesim.sweep.executors import ExecutorSpec
from edgesim.testing import error_line, tiny_workload

REPO = Path(__file__).resolve().parent.parent



# tiny workload: block a = 1000 B (op 1), block b = 2000 B (op 3); 3000 B in all.
# The tiny config reserves 1 KiB of its SRAM for activations: weight SRAM = sram.size - 1024 B.
SIZES = "sram.size=2KiB,3KiB,4KiB,8KiB"


def test_one_row_per_point_model_policy_in_grid_order(tiny_yaml, tmp_path):
    df = sweep(tiny_yaml, [tiny_workload()], [SIZES, "dram.bandwidth=1GB/s,2GB/s"],
               policies=("lru", "belady"), inputs=4, out_dir=tmp_path / "out",
               executor="serial")
    assert len(df) == 4 * 2 * 2
    assert df["point"].tolist() == sorted(df["point"].tolist())
    assert df["policy"].tolist()[:2] == ["lru", "belady"]
    assert df["sram.size"].tolist()[:4] == ["2KiB", "2KiB", "2KiB", "2KiB"]
    assert df["offchip.bandwidth"].tolist()[:4] == ["1GB/s", "1GB/s", "2GB/s", "2GB/s"]
    for col in ("weight_dram_bytes_cold", "weight_dram_bytes_steady", "act_dram_bytes_steady",
                "latency_s_steady", "latency_s_p50", "latency_s_p99", "energy_j_steady",
                "energy_mac_j_steady", "energy_offchip_j_steady", "energy_leak_j_steady",
                "model", "family", "total_params", "stored_weight_bytes", "sram_bytes"):
        assert col in df.columns, col
    on_disk = pd.read_csv(tmp_path / "out" / "sweep.csv")
    assert len(on_disk) == len(df)
    assert (tmp_path / "out" / "results.sqlite").is_file()


def test_closed_form_bytes_and_laws(tiny_yaml, tmp_path):
    df = sweep(tiny_yaml, [tiny_workload()], [SIZES], policies=("lru", "belady"), inputs=5,
               out_dir=tmp_path, executor="serial")
    lru, belady = df[df.policy == "lru"], df[df.policy == "belady"]
    # cold: nothing is on chip, all 3000 B move. Steady state under LRU:
    #   2 KiB (1024 B for weights): a (1000 B) stays, b (2000 B) never fits: 2000 B a time
    #   3 KiB (2048 B): a and b fit only one at a time and evict each other: 3000 B a time
    #   4 KiB, 8 KiB (>= 3000 B for weights): everything stays: 0 B
    assert lru["weight_dram_bytes_cold"].tolist() == [3000, 3000, 3000, 3000]
    assert lru["weight_dram_bytes_steady"].tolist() == [2000.0, 3000.0, 0.0, 0.0]
    # law: the offline-optimal policy never moves more bytes when SRAM grows, and never more
    # than LRU
    steady = belady["weight_dram_bytes_steady"].tolist()
    assert steady == sorted(steady, reverse=True)
    assert (belady["weight_dram_bytes_steady"].to_numpy()
            <= lru["weight_dram_bytes_steady"].to_numpy()).all()
    # law: energy is the sum of its parts
    parts = df[[f"{c}_steady" for c in ("energy_mac_j", "energy_array_j", "energy_sram_j",
                                        "energy_offchip_j", "energy_decode_j",
                                        "energy_leak_j")]].sum(axis=1)
    assert (abs(parts - df["energy_j_steady"]) <= 1e-12 * df["energy_j_steady"]).all()


def test_rerun_skips_finished_points(tiny_yaml, tmp_path, monkeypatch):
    first = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
                  out_dir=tmp_path, executor="serial")
    calls = []
    real = sweep_run.simulate_point

    def counting(task, wref):
        calls.append(task.hw.sram_bytes)
        return real(task, wref)

    monkeypatch.setattr(sweep_run, "simulate_point", counting)
    again = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
                  out_dir=tmp_path, executor="serial")
    assert calls == []
    pd.testing.assert_frame_equal(first, again)
    # a larger grid over the same folder computes only its new point (8 KiB = 8192 B)
    bigger = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,4KiB,8KiB"], inputs=3,
                   out_dir=tmp_path, executor="serial")
    assert calls == [8192]
    pd.testing.assert_frame_equal(bigger.iloc[:2].drop(columns="point"),
                                  first.drop(columns="point"))


def test_equal_points_share_one_key(tiny_yaml, tmp_path):
    # 2 KiB and 2048 B resolve to the same config: one stored row, two table rows
    df = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,2048B"], inputs=2,
               out_dir=tmp_path, executor="serial")
    assert len(df) == 2
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 1


def test_detail_keeps_every_inference(tiny_yaml, tmp_path):
    sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3, out_dir=tmp_path,
          executor="serial", detail=True)
    detail = load_detail(tmp_path)
    assert len(detail) == 2 * 3
    assert set(detail["input"]) == {0, 1, 2}
    assert (tmp_path / "detail.csv").is_file()


def test_bad_grid_fails_before_any_work(tiny_yaml, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("traced or simulated before the grid was checked")

    monkeypatch.setattr(sweep_run, "_workloads", boom)
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match=r"^--set sram.size=1MiB..2MiB: .*step"):
        sweep(tiny_yaml, ["dense_r50"], ["sram.size=1MiB..2MiB"], out_dir=out)
    assert not out.exists()


def test_bad_arguments_are_errors(tiny_yaml, tmp_path):
    with pytest.raises(EdgesimError, match="policy 'fifo'"):
        sweep(tiny_yaml, [tiny_workload()], [], policies=("fifo",), out_dir=tmp_path)
    with pytest.raises(EdgesimError, match="unknown executor 'mpi'; expected one of process, "
                       "dask, serial, a Dask scheduler address"):
        sweep(tiny_yaml, [tiny_workload()], [], executor="mpi", out_dir=tmp_path)
    with pytest.raises(EdgesimError, match="workers must be a whole number >= 1, got 0"):
        sweep(tiny_yaml, [tiny_workload()], [], executor=ExecutorSpec(workers=0),
              out_dir=tmp_path)
    with pytest.raises(EdgesimError, match="at least one model"):
        sweep(tiny_yaml, [], [], out_dir=tmp_path)
    # evaluated or not is the sweep's, not a model's: the table has a top1 column or none
    from edgesim.request import model_request
    with pytest.raises(EdgesimError, match="model 'b' is not evaluated but 'a' is"):
        sweep(tiny_yaml, [model_request("a", data="x.pt", evaluate=True), "b"], [],
              out_dir=tmp_path)


def test_an_executor_is_a_name_an_address_or_a_spec():
    assert ExecutorSpec.of("serial") == ExecutorSpec("serial")
    assert ExecutorSpec.of("tcp://10.0.0.5:8786") == ExecutorSpec("dask", "tcp://10.0.0.5:8786")
    spec = ExecutorSpec("process", workers=3)
    assert ExecutorSpec.of(spec) is spec
    with pytest.raises(EdgesimError, match="scheduler 'tcp://h:1' needs the dask executor"):
        ExecutorSpec("process", "tcp://h:1")


def test_prefetch_mode_is_swept_as_a_config_key(tiny_yaml, tmp_path):
    # "none" fetches an op's weights only after the op before it ends, "next" while it
    # computes: at the same point none is never faster, and in the cold inference (every
    # weight fetched off-chip) b's 2000 B arrive during a's compute only with "next"
    grid = ["prefetch.mode=none,next", "sram.size=3KiB,8KiB"]
    df = sweep(tiny_yaml, [tiny_workload()], grid, inputs=3, out_dir=tmp_path,
               executor="serial")
    assert df["prefetch"].tolist() == df["prefetch.mode"].tolist() == ["none"] * 2 + ["next"] * 2
    none, nxt = (df[df.prefetch == m].set_index("sram.size") for m in ("none", "next"))
    assert (none["latency_s_steady"] >= nxt["latency_s_steady"]).all()
    assert (none["latency_s_cold"] > nxt["latency_s_cold"]).all()


def test_the_memo_switch_is_read_here_and_sent_with_each_task(tiny_yaml, tmp_path, monkeypatch):
    sent = []
    real = sweep_run.simulate_point

    def spy(task, wref):
        sent.append(task.memo)
        return real(task, wref)

    monkeypatch.setattr(sweep_run, "simulate_point", spy)
    args = (tiny_yaml, [tiny_workload()], [SIZES])
    monkeypatch.setenv("EDGESIM_NO_MEMO", "1")
    off = sweep(*args, inputs=6, out_dir=tmp_path / "off", executor="serial")
    monkeypatch.delenv("EDGESIM_NO_MEMO")
    on = sweep(*args, inputs=6, out_dir=tmp_path / "on", executor="serial")
    assert sent == [False] * 4 + [True] * 4
    pd.testing.assert_frame_equal(off, on)    # the memo gives the same rows


def test_process_pool_equals_serial(tiny_yaml, tmp_path):
    args = (tiny_yaml, [tiny_workload()], [SIZES])
    pool = sweep(*args, policies=("lru", "pinned"), inputs=4, out_dir=tmp_path / "pool",
                 executor=ExecutorSpec("process", workers=2))
    serial = sweep(*args, policies=("lru", "pinned"), inputs=4, out_dir=tmp_path / "serial",
                   executor="serial")
    pd.testing.assert_frame_equal(pool, serial)


@pytest.mark.slow
def test_dask_local_cluster_equals_process_pool(tiny_yaml, tmp_path, monkeypatch, capfd,
                                                caplog):
    import distributed  # in the dev extra, so CI always runs this
    args = (tiny_yaml, [tiny_workload()], [SIZES])
    pool = sweep(*args, policies=("lru", "belady"), inputs=4, out_dir=tmp_path / "pool",
                 executor=ExecutorSpec("process", workers=2))
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        dask = sweep(*args, policies=("lru", "belady"), inputs=4, out_dir=tmp_path / "dask",
                     executor=cluster.scheduler_address)   # an address: Dask there
        # a task that raises on a worker is its row's one-line error, and nothing more on
        # stderr (Dask's worker logged six lines with the traceback per failed task)
        def fail(*a, **k):
            raise ZeroDivisionError("planted failure")
        monkeypatch.setattr(edgesim.sim, "simulate", fail)   # the workers are threads here
        capfd.readouterr()
        failed = sweep(*args, inputs=4, out_dir=tmp_path / "failed",
                       executor=ExecutorSpec("dask", cluster.scheduler_address))
        assert set(failed["error"]) == {"ZeroDivisionError: planted failure"}
        assert "Compute Failed" not in capfd.readouterr().err + caplog.text
    pd.testing.assert_frame_equal(pool, dask)
    assert (tmp_path / "pool" / "sweep.csv").read_bytes() == \
        (tmp_path / "dask" / "sweep.csv").read_bytes()


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    from edgesim.sweep import sweep
    from edgesim.sweep.executors import ExecutorSpec
    from edgesim.testing import tiny_workload
    sweep(sys.argv[1], [tiny_workload()], [sys.argv[2]], inputs=int(sys.argv[3]),
          out_dir=sys.argv[4], executor=ExecutorSpec("process", workers=1), progress=False)
""")


def _committed(db_path: Path) -> int:
    if not db_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted(tiny_yaml, tmp_path, monkeypatch):
    # no memo (EDGESIM_NO_MEMO) and 400 inputs make each of the 10 points take a noticeable
    # time, so the sweep is killed with some points committed and others not
    grid, inputs, total = "sram.size=1KiB..10KiB:+1KiB", 400, 10
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGESIM_NO_MEMO": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tiny_yaml), grid,
                             str(inputs), str(killed)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_at_kill = 0
    try:
        for _ in range(3000):  # at most ~60 s of 20 ms polls
            done_at_kill = _committed(killed / "results.sqlite")
            if done_at_kill >= 2:
                break
            try:
                proc.wait(timeout=0.02)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its pool workers
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert 0 < _committed(killed / "results.sqlite") < total
    monkeypatch.setenv("EDGESIM_NO_MEMO", "1")
    resumed = sweep(tiny_yaml, [tiny_workload()], [grid], inputs=inputs, out_dir=killed,
                    executor="serial")
    monkeypatch.delenv("EDGESIM_NO_MEMO")   # with the memo: the same table
    clean = sweep(tiny_yaml, [tiny_workload()], [grid], inputs=inputs,
                  out_dir=tmp_path / "clean", executor="serial")
    pd.testing.assert_frame_equal(resumed, clean)
    assert (killed / "sweep.csv").read_bytes() == (tmp_path / "clean" / "sweep.csv").read_bytes()
    assert _committed(killed / "results.sqlite") == total  # none lost, none repeated


def test_cli_sweep_writes_table_and_store(tiny_yaml, tmp_path, capsys):
    from edgesim.zoo.registry import ModelSpec, register
    register(ModelSpec("tiny_linear_sweep", "dense", "torch.nn:Linear",
                       {"in_features": 16, "out_features": 8}, (16,), "test model"))
    out = tmp_path / "cli"
    code = main(["sweep", str(tiny_yaml), "--model", "tiny_linear_sweep",
                 "--set", "sram.size=1KiB..4KiB:x2", "--inputs", "3", "--out", str(out),
                 "--workers", "1", "--prefetch", "none"])
    assert code == 0
    df = pd.read_csv(out / "sweep.csv")
    assert df["sram.size"].tolist() == ["1 KiB", "2 KiB", "4 KiB"]
    assert (df["model"] == "tiny_linear_sweep").all()
    # --prefetch is the config's prefetch.mode at every point, not an axis of its own
    assert (df["prefetch"] == "none").all()
    assert "prefetch.mode" not in df.columns
    got = capsys.readouterr()
    assert "3 rows" in got.out
    # piped (capsys is not a terminal): stage lines as it goes, and the tasks done at the end
    assert "edgesim: 3 points x 1 model x 1 policy = 3 tasks" in got.err
    assert "edgesim: sweep: 3 of 3 tasks, " in got.err


def test_cli_bad_grid_is_one_line(tiny_yaml, tmp_path, capsys):
    code = main(["sweep", str(tiny_yaml), "--model", "dense_r50", "--set", "sram.size=1GB/s",
                 "--out", str(tmp_path / "x")])
    err = error_line(capsys.readouterr().err)    # the stage lines before it set aside
    assert code == 2
    assert "--set sram.size=1GB/s" in err
    code = main(["sweep", str(tiny_yaml), "--model", "dense_r50", "--prefetch", "none",
                 "--set", "prefetch.mode=next,none", "--out", str(tmp_path / "x")])
    assert code == 2
    assert error_line(capsys.readouterr().err) == (
        "edgesim: error: --prefetch none and --set prefetch.mode=next,none: give the prefetch "
        "mode once")


@pytest.mark.slow
def test_must_hold_dense_drops_to_zero_and_routed_moves_less(tmp_path):
    # 16 SRAM sizes on npu_small (75 % of the SRAM holds weights): 2, 5, ..., 47 MiB. dense_r50
    # stores 25.7 MB, so from 34 MiB (25.5 MiB for weights) on it stays on chip and its steady
    # state moves 0 B; below that LRU cycles through the whole model every inference. The
    # routed tree (sigmab_r50) runs one root-to-leaf path per input, about half the params.
    from edgesim.zoo.registry import REGISTRY
    routed = "sigmab_r50" if "sigmab_r50" in REGISTRY else next(
        n for n, s in REGISTRY.items() if s.dynamic)
    df = sweep("npu_small", ["dense_r50", routed], ["sram.size=2MiB..47MiB:+3MiB"],
               inputs=64, out_dir=tmp_path, executor=ExecutorSpec(workers=2))
    assert df["point"].nunique() == 16
    dense = df[df.model == "dense_r50"].set_index("point")
    tree = df[df.model == routed].set_index("point")
    holds = dense["weight_sram_bytes"] >= dense["stored_weight_bytes"]
    assert holds.any()
    assert (~holds).any()
    assert (dense.loc[holds, "weight_dram_bytes_steady"] == 0).all()
    below = dense.index[~holds]
    assert (dense.loc[below, "weight_dram_bytes_steady"] > 0).all()
    assert (tree.loc[below, "weight_dram_bytes_steady"]
            < dense.loc[below, "weight_dram_bytes_steady"]).all()
