"""``edgesim compare``: B - A per op and in total; a run compared with itself is all zeros."""

from __future__ import annotations

import json

import pytest

from edgesim import api
from edgesim.cli import main
from edgesim.cli.compare import compare
from edgesim.testing import error_line, tiny_config, tiny_workload


def _run(sram):
    return api.run(tiny_config(sram=sram), tiny_workload(inputs=3), per_layer=True)


def test_a_config_compared_with_itself_is_all_zeros(capsys):
    assert main(["compare", "npu_small", "npu_small", "--model", "dense_mbv2", "--inputs", "2",
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert all(t["delta"] == 0 and t["delta_%"] == 0 for t in doc["totals"])
    assert all(b["delta_us"] == 0 for b in doc["by_bound"])
    assert len(doc["ops"]) == 99
    assert all(o["bound"] == "=" and o["d_offchip_bytes"] == o["d_time_us"] == o["d_cycles"]
               == o["d_energy_uj"] == 0 for o in doc["ops"])
    assert doc["bound"]["a"] == doc["bound"]["b"]


def test_per_op_deltas_add_up_to_the_total_deltas():
    # 1500 B of weight SRAM keeps a (1000 B) but streams b (2000 B) every inference; 1 MiB
    # keeps both: in the steady state B moves 2000 B less, all of it at op b
    out = compare(_run(1500), _run("1 MiB"))
    totals = {t["metric"]: t for t in out["totals"]}
    ops = {o["op"]: o for o in out["ops"]}
    assert totals["weight_dram_bytes"]["delta"] == -2000
    assert ops["b"]["d_offchip_bytes"] == -2000
    assert sum(o["d_offchip_bytes"] for o in ops.values()) == (
        totals["weight_dram_bytes"]["delta"] + totals["act_dram_bytes"]["delta"])
    assert sum(o["d_time_us"] for o in ops.values()) == pytest.approx(
        totals["latency_s"]["delta"] * 1e6, abs=1e-3)
    assert sum(o["d_energy_uj"] for o in ops.values()) == pytest.approx(
        totals["energy_j"]["delta"] * 1e6, abs=1e-5)
    assert ops["b"]["bound"] == "weights>compute"        # its weights no longer hold it


@pytest.mark.parametrize(("args", "needle"), [
    (["npu_small", "--model", "dense_mbv2"], "(two values: none)"),
    (["npu_small", "ethos_u55", "--model", "dense_mbv2", "--policy", "lru", "belady"],
     "(two values: CONFIG, --policy)"),
    (["a", "b", "c", "--model", "dense_mbv2"], "CONFIG takes one or two values, got 3"),
])
def test_what_to_compare_is_one_setting_with_two_values(capsys, args, needle):
    assert main(["compare", *args]) == 2
    assert needle in error_line(capsys.readouterr().err)
