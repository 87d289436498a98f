"""`edgesim columns`: every column the CSV and JSON outputs emit is explained, with its unit."""

from __future__ import annotations

import pytest

from edgesim import api
from edgesim.cli import main
from edgesim.cli.columns import COLUMNS, describe
from edgesim.sim import INFERENCE_COLUMNS, LAYER_COLUMNS, SUMMARY_METRICS
from edgesim.sweep.rows import SweepRow
from edgesim.testing import tiny_config, tiny_workload


def _emitted() -> set[str]:
    """The columns of run's CSV (per inference and per op), the keys of its JSON and the
    columns of a sweep row with a swept key."""
    r = api.run(tiny_config(), tiny_workload(inputs=2), per_layer=True)
    doc = r.to_dict()
    keys = set(doc) | set(doc["model"]) | set(doc["run"])
    keys |= {k for v in doc["summary"].values() if isinstance(v, dict) for k in v}
    keys |= {"top1", "correct", "inputs", "data"}            # "accuracy" of --eval (api.evaluate)
    s = {"cold": 1, "steady_mean": 0.5, "p50": 0.5, "p99": 1}
    row = SweepRow.build(0, {"sram.size": "4KiB"}, tiny_config(), r.model, "m", "lru", "next", 2,
                         {m: s for m in SUMMARY_METRICS}, {"top1": 0.5})
    return set(INFERENCE_COLUMNS) | set(LAYER_COLUMNS) | keys | set(row.columns())


def test_every_emitted_column_is_explained_with_a_unit():
    missing = sorted(c for c in _emitted() if describe(c) is None)
    assert missing == []
    for unit, meaning in COLUMNS.values():
        assert unit
        assert len(meaning) > 10


def test_a_column_the_outputs_lack_is_not_explained():
    # the check above can fail: a name nobody emits is not described
    assert describe("weight_dram_megabytes") is None


def test_the_listing_fits_100_columns(capsys):
    assert main(["columns"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "stall_cycles" in out


def test_a_sweep_metric_is_its_metric_with_the_statistic(capsys):
    assert main(["columns", "latency_s_p99"]) == 0
    out = " ".join(capsys.readouterr().out.split())      # the meaning is wrapped
    assert "latency_s_p99 s wall-clock time" in out
    assert "(99th percentile over inferences 2..N)" in out


def test_an_unknown_column_says_did_you_mean(capsys):
    assert main(["columns", "latncy_s"]) == 2
    assert "did you mean latency_s?" in capsys.readouterr().err


@pytest.mark.parametrize("column", ["energy_j", "latency_s", "weight_dram_bytes"])
def test_the_main_metrics_state_their_formula(column):
    unit, meaning = describe(column)
    assert unit in ("J", "s", "B")
    assert "=" in meaning
