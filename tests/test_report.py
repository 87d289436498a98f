"""What a user reads of per-op rows: one block per distinct inference, where the time went."""

from __future__ import annotations

import pytest

from edgesim.cli import main
from edgesim.report import distinct_inferences, time_by
from edgesim.sim import simulate
from edgesim.testing import tiny_config, tiny_workload


def test_identical_inferences_are_one_block_and_a_cold_one_its_own():
    # 1 MiB keeps both weights: inference 0 fetches them, 1..3 move none (all alike)
    r = simulate(tiny_config(), tiny_workload(inputs=4), per_layer=True)
    blocks = distinct_inferences(r.layer_rows)
    assert [inputs for inputs, _ in blocks] == [[0], [1, 2, 3]]
    assert all(len(ops) == 3 for _, ops in blocks)


@pytest.mark.parametrize("key", ["bound", "kind"])
def test_time_by_group_adds_up_to_the_mean_latency_and_energy(key):
    r = simulate(tiny_config(sram=1500), tiny_workload(inputs=3), per_layer=True)
    table = time_by(r.layer_rows, key)
    mean_latency_us = sum(row.latency_s for row in r.rows) / len(r.rows) * 1e6
    mean_energy_uj = sum(row.energy_j for row in r.rows) / len(r.rows) * 1e6
    assert sum(t[2] for t in table) == pytest.approx(mean_latency_us, abs=0.01)
    assert sum(t[3] for t in table) == pytest.approx(100, abs=0.3)
    assert sum(t[4] for t in table) == pytest.approx(mean_energy_uj, abs=0.01)
    assert sum(t[5] for t in table) == pytest.approx(100, abs=0.3)
    assert sum(t[1] for t in table) == 3          # ops per inference


def test_per_layer_prints_one_inference_of_a_dense_stream(capsys):
    # dense_mbv2 does not fit npu_small's SRAM: all 8 inferences move the same bytes
    assert main(["run", "npu_small", "--model", "dense_mbv2", "--per-layer"]) == 0
    out = capsys.readouterr().out
    heads = [ln for ln in out.splitlines() if ln.startswith("# input ")]
    assert heads == ["# input 0-7 (8 of 8 inferences, path dense, cold): each op"]
    assert "# where the time and energy go, by bound" in out
    assert "# by op class" in out


def test_per_layer_of_a_routed_stream_is_one_block_per_distinct_inference(capsys):
    # sigmab_pn2 routes each input down one of four paths: blocks differ in path or state,
    # and their counts cover the stream once
    assert main(["run", "npu_small", "--model", "sigmab_pn2", "--per-layer"]) == 0
    heads = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("# input ")]
    counts = [int(h.split("(")[1].split(" of ")[0]) for h in heads]
    assert len(heads) > 1
    assert sum(counts) == 8
    assert all(" of 8 inferences, path " in h for h in heads)
