"""experiments/digits.py --quick: the four methods trained on real data (scikit-learn digits)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sklearn  # noqa: F401 - in the dev extra: a machine without it fails here, never skips

REPO = Path(__file__).resolve().parent.parent
METHODS = {"dense", "sigmab", "mix_and_match", "nested", "signed_binary"}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digits")
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGESIM_CACHE": str(out / "cache")}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / "digits.py"), str(out),
                           "--quick"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "digits"


@pytest.mark.slow
def test_every_method_learns_the_digits(results):
    df = pd.read_csv(results / "results.csv")
    assert set(df["method"]) == METHODS
    # chance on 10 balanced classes is 10 %; the dense net is trained to > 90 %
    assert (df["top1"] > 0.10).all(), df[["method", "variant", "top1"]]
    assert (df.loc[df["method"] == "dense", "top1"] > 0.90).all()
    # three nested levels, each with its own accuracy and a prefix of one stream
    nested = df[(df["method"] == "nested") & (df["sram"] == "64KiB")].sort_values("variant")
    assert list(nested["variant"]) == ["level 1", "level 2", "level 3"]
    assert nested["stored_weight_bytes"].nunique() == 1
    assert nested["weight_bytes_per_inference"].is_monotonic_increasing
    # top-1 is counted on the held-out split: correct / inputs
    assert (df["top1"] == (df["correct"] / df["test_inputs"]).round(4)).all()


@pytest.mark.slow
def test_weight_traffic_laws(results):
    df = pd.read_csv(results / "results.csv")
    for _, r in df.iterrows():
        # an inference never moves more weight bytes than are stored
        assert 0 <= r["weight_bytes_per_inference"] <= r["stored_weight_bytes"]
    small = df[df["sram"] == "64KiB"].set_index("method")
    # at 64 KiB nothing fits: a one-path model moves its whole stored weights every inference
    assert small.loc["dense", "weight_bytes_per_inference"] == \
        small.loc["dense", "stored_weight_bytes"]
    # a routed tree reads one path, less than it stores
    assert small.loc["sigmab", "weight_bytes_per_inference"] < \
        small.loc["sigmab", "stored_weight_bytes"]
    # pruning and binarising store fewer bytes than the dense net
    for method in ("mix_and_match", "signed_binary"):
        assert small.loc[method, "stored_weight_bytes"] < small.loc["dense", "stored_weight_bytes"]


@pytest.mark.slow
def test_outputs(results):
    for suffix in (".png", ".svg"):
        f = (results / "pareto").with_suffix(suffix)
        assert f.is_file(), f
        assert f.stat().st_size > 1000, f
    strategies = pd.read_csv(results / "strategies.csv")
    assert len(strategies) == 3
    assert (strategies["sparsity"] > 0.5).all()
    summary = pd.read_csv(results / "summary.csv", keep_default_na=False)
    assert len(summary) == len(pd.read_csv(results / "results.csv"))   # one seed: a row each


def test_summary_gives_the_spread_over_seeds():
    # Two seeds: per model the mean, min and max over them; Mix-and-Match's winners (another
    # strategy per seed) are one row, its seeds' strategies listed.
    sys.path.insert(0, str(REPO))
    from experiments.digits import summarise

    rows = []
    for seed, (dense, mm, strategy) in enumerate(((350, 340, "magnitude/aggressive"),
                                                   (354, 346, "product/conservative"))):
        for method, variant, c, stored in (("dense", "", dense, 700),
                                           ("mix_and_match", strategy, mm, 300 + 100 * seed)):
            rows.append({"seed": seed, "method": method, "variant": variant,
                         "top1": round(c / 360, 4), "weight_sparsity": 0.0,
                         "weight_bytes_per_inference": stored, "stored_weight_bytes": stored,
                         "latency_us": 1.0, "energy_uj": 2.0, "sram": "64KiB",
                         "path_inputs": "360"})
    s = summarise(pd.DataFrame(rows)).set_index("method")
    assert list(s.index) == ["dense", "mix_and_match"]
    assert s.loc["dense", "seeds"] == "0 1"
    # mean of 350/360 = 0.9722 and 354/360 = 0.9833 is 0.97775, shown to 4 digits
    assert (s.loc["dense", "top1_min"], s.loc["dense", "top1_max"]) == (0.9722, 0.9833)
    assert s.loc["dense", "top1_mean"] == pytest.approx(0.9778, abs=1e-4)
    assert s.loc["mix_and_match", "variant"] == "validation winner"
    assert s.loc["mix_and_match", "variants"] == "magnitude/aggressive; product/conservative"
    assert s.loc["mix_and_match", "stored_weight_bytes_mean"] == 350
    assert s.loc["dense", "variants"] == ""
