"""Every script in experiments/ runs with --quick and writes its tables and figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(script: str, results: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / script), str(results),
                           "--quick", "--workers", "1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _figure(path: Path) -> None:
    for suffix in (".png", ".svg"):
        f = path.with_suffix(suffix)
        assert f.is_file(), f
        assert f.stat().st_size > 1000


@pytest.mark.slow
def test_sram_sweep_quick(tmp_path):
    _run("sram_sweep.py", tmp_path)
    out = tmp_path / "sram_sweep"
    knee = pd.read_csv(out / "knee.csv")
    assert set(knee["config"]) == {"npu_small", "ethos_u55", "nvdla_small"}
    for config in ("npu_small", "ethos_u55", "nvdla_small"):
        _figure(out / f"{config}_bytes_vs_sram")
        df = pd.read_csv(out / config / "sweep.csv")
        # law: a dense model moves its whole stored model per inference while SRAM cannot hold
        # it (32 KiB), so steady bytes at 32 KiB = stored bytes, plus what tiling re-fetches
        dense = df[(df["family"] == "dense") & (df["sram.size"] == "32KiB")]
        once = dense["weight_dram_bytes_steady"] - dense["weight_refetch_bytes_steady"]
        assert (once == dense["stored_weight_bytes"]).all()


@pytest.mark.slow
def test_pareto_quick(tmp_path):
    _run("pareto.py", tmp_path)
    out = tmp_path / "pareto"
    for name in ("pareto_latency_energy", "pareto_bytes_energy", "energy_breakdown"):
        _figure(out / name)
    front = pd.read_csv(out / "front.csv")
    df = pd.read_csv(out / "sweep" / "sweep.csv")
    assert 1 <= len(front) <= len(df)
    # the front holds the fastest point and the most frugal one
    assert front["latency_s_steady"].min() == pytest.approx(df["latency_s_steady"].min())
    assert front["energy_j_steady"].min() == pytest.approx(df["energy_j_steady"].min())


@pytest.mark.slow
def test_paper_tables_quick(tmp_path):
    text = _run("paper_tables.py", tmp_path)
    out = tmp_path / "paper_tables"
    for name in ("routed", "sparsity", "nested"):
        assert (out / f"{name}.csv").is_file()
    assert "# routed" in text
    sparsity = pd.read_csv(out / "sparsity.csv")
    assert len(sparsity) > 0, "the sparsity table is empty"
    assert (sparsity["stored_weight_bytes"] <= sparsity["dense_weight_bytes"]).all()
    routed = pd.read_csv(out / "routed.csv")
    assert len(routed) > 0, "the routed table is empty"
    # a routed tree runs fewer params per inference than it stores
    assert (routed["mean_path_params"] < routed["tree_params"]).all()
    # every channel lives in a node, but a weight entry only where a node keeps both of its
    # channels: weight coverage <= channel coverage = 1, and the entries in no node are counted
    assert (routed["channel_coverage"] == 1.0).all()
    assert ((routed["weight_coverage"] > 0) & (routed["weight_coverage"] <= 1.0)).all()
    assert (routed["uncovered_weights"] >= 0).all()
    # the routing balance: inputs per path add up to the stream
    for inputs in routed["path_inputs"]:
        assert sum(int(c) for c in str(inputs).split("/")) > 0
