"""experiments/benchmark_methods.py: the statistics worked by hand, MNIST-5k, the --quick run."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "experiments"))

import benchmark_methods as bm  # noqa: E402
import mnist  # noqa: E402


def test_interval_and_paired_tests_worked_by_hand():
    # values 1, 2, 3: mean 2, sd 1, 95 % half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321
    mean, half = bm.interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    # differences 1, 2, 3: t = 2 / (1 / sqrt 3) = 3.4641 on 2 df, two-sided p = 0.07418;
    # exact Wilcoxon: all 3 ranks positive, 1 of 2^3 sign patterns each side: p = 2/8
    r = bm.paired([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert r["diff_mean"] == 2.0
    assert r["t_p"] == pytest.approx(0.07418, abs=1e-5)
    assert r["wilcoxon_p"] == pytest.approx(0.25)
    # no spread: the t statistic is undefined (not p = 0); no difference at all is p = 1
    assert math.isnan(bm.paired([1.0, 2.0], [0.0, 1.0])["t_p"])
    assert bm.paired([1.0, 2.0], [1.0, 2.0])["t_p"] == 1.0


def test_mnist5k_is_five_thousand_real_digits():
    images, labels = mnist.load_mnist5k()
    assert images.shape == (5000, 28, 28)
    assert images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    # handwriting on a black background: the border is blank, the middle is not
    assert images[:, 0, :].max() == 0
    assert images[:, 10:18, 10:18].mean() > 50


def test_a_file_that_is_not_mnist_is_one_line(tmp_path):
    bad = tmp_path / "m.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(SystemExit, match=r"is not 784 pixels 0-255 and a label 0-9 per row"):
        mnist.load_mnist5k(bad)


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGESIM_CACHE": str(out / "cache"),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "experiments" / "benchmark_methods.py"),
                           str(out), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.mark.parametrize(("args", "line"), [
    (("--seeds", "1"), "benchmark_methods: --seeds 1; expected >= 2 (paired tests)"),
    (("--datasets", "cifar"), "benchmark_methods: --datasets cifar; expected a "
                              "comma-separated subset of digits,mnist5k"),
])
def test_bad_arguments_are_one_line(tmp_path, args, line):
    proc = _run(tmp_path, "--quick", *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [line]


def _runs(diffs: dict[str, list[float]]) -> pd.DataFrame:
    """Synthetic runs: dense at 0.9 on each seed, every other method at 0.9 + its diff."""
    rows = []
    for method, ds in {"dense": [0.0, 0.0, 0.0], **diffs}.items():
        for seed, d in enumerate(ds):
            rows.append({"dataset": "digits", "seed": seed, "method": method, "variant": "",
                         "correct": 0, "test_inputs": 1, "top1": 0.9 + d,
                         "active_params": 10.0, "stored_params": 10, "param_reduction": 0.0,
                         "path_inputs": "", "stored_weight_bytes": 10,
                         **{f"bytes_per_inference_{s}": 5 for s in bm.SRAMS}})
    return pd.DataFrame(rows)


def test_comparisons_pair_seeds_and_losses_are_against_dense():
    df = _runs({"mix_and_match": [-0.01, -0.02, -0.03],
                "global_magnitude": [-0.03, -0.04, -0.08]})
    comp = bm.compare(df).set_index("claim")
    r = comp.loc["M&M vs global magnitude, same sparsity"]
    # per-seed differences 0.02, 0.02, 0.05: mean 0.03; losses against dense 0.02 and 0.05
    assert r["diff_mean"] == pytest.approx(0.03)
    assert r["method_loss_vs_dense"] == pytest.approx(0.02)
    assert r["baseline_loss_vs_dense"] == pytest.approx(0.05)
    summary = bm.summarise(df).set_index("method")
    assert summary.loc["dense", "top1_ci95"] == 0.0       # no spread over seeds
    assert summary.loc["mix_and_match", "top1_mean"] == pytest.approx(0.88)


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    proc = _run(out, "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "benchmark"


METHODS = {"dense", "sigmab", "fpgm", "hrank", "narrow", "mix_and_match", "global_magnitude",
           "global_gradient", "nested", "magnitude_alone", "signed_binary", "binary"}


@pytest.mark.slow
def test_quick_run_pairs_every_method_with_its_baseline(quick):
    runs = pd.read_csv(quick / "runs.csv")
    assert set(runs["method"]) == METHODS
    assert sorted(runs["seed"].unique()) == [0, 1]
    assert (runs["top1"] == (runs["correct"] / runs["test_inputs"]).round(6)).all()
    for sram in bm.SRAMS:       # an inference never moves more weight bytes than are stored
        assert (runs[f"bytes_per_inference_{sram}"] <= runs["stored_weight_bytes"]).all()
    # FPGM and HRank at the tree's active size hold at most its mean active parameters
    for seed, part in runs.groupby("seed"):
        tree = part[part["method"] == "sigmab"]["active_params"].item()
        at = part[part["variant"] == "@tree"]
        assert len(at) == 2, seed
        assert (at["active_params"] <= tree).all(), seed
    # the single-criterion baselines prune exactly Mix-and-Match's share of weights
    mm = runs[runs["method"].isin(["mix_and_match", "global_magnitude", "global_gradient"])]
    assert mm.groupby("seed")["active_params"].nunique().eq(1).all()
    comp = pd.read_csv(quick / "comparisons.csv")
    claims = set(comp["claim"])
    assert {c for *_, c in bm.COMPARISONS} <= claims
    assert ((comp["diff_lo"] <= comp["diff_mean"]) & (comp["diff_mean"] <= comp["diff_hi"])).all()
    assert comp["wilcoxon_p"].between(0, 1).all()
    png = quick / "top1_vs_bytes.png"
    assert png.stat().st_size > 10_000
    assert (quick / "settings.md").read_text().startswith("Settings: datasets digits; seeds")
