"""The Python API end to end on the real ResNet-50: the issue's "must hold" statements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgesim import api
from edgesim.config import load_config
from edgesim.sim import simulate

ROOT = Path(__file__).resolve().parent.parent
NPU = str(ROOT / "edgesim" / "hwconfigs" / "npu_small.yaml")


@pytest.fixture(scope="module")
def r50():
    return api.workload("dense_r50")


def test_dense_r50_counts(r50):
    info = api.model_info(r50)
    # torchvision's 25,557,032 less the 53,120 BatchNorm affine parameters and 26,560 BN
    # channels' worth of mean/var buffers are not parameters; folding adds one int32 bias per
    # conv output channel (26,560) in place of BN's gamma/beta (2 x 26,560):
    # 25,557,032 - 2 x 26,560 + 26,560 = 25,530,472 stored values.
    assert info["total_params"] == 25_530_472
    # int8 weights (25,502,912 B) + one fp32 scale per output channel (27,560 x 4 B) + int32
    # biases (27,560 x 4 B): 25,502,912 + 110,240 + 110,240 = 25,723,392 B (about 25.7 MB).
    assert info["stored_weight_bytes"] == 25_723_392
    assert sum(op.macs for op in r50.paths[0].ops if op.weights) == 4_089_184_256


def test_every_inference_moves_the_whole_model_when_sram_is_smaller(r50):
    run = api.run(NPU, "dense_r50", inputs=4)
    assert (run.inferences.weight_dram_bytes == run.model["stored_weight_bytes"]).all()


def test_sram_holding_the_model_moves_it_once(r50):
    run = api.run(NPU, "dense_r50", inputs=4, overrides=["sram.size=64MiB"])
    moved = list(run.inferences.weight_dram_bytes)
    assert moved == [run.model["stored_weight_bytes"], 0, 0, 0]


def test_latency_meets_the_roofline_on_every_shipped_config(r50):
    from edgesim.config import shipped_configs
    for path in shipped_configs():
        hw = load_config(path)
        df = simulate(hw, r50.with_inputs(2)).inferences
        for row in df.itertuples():
            compute = row.macs / (hw.macs_per_cycle[hw.precision] * hw.clock_hz)
            transfer = (row.weight_dram_bytes + row.act_dram_bytes) / hw.offchip_bytes_per_s
            assert row.latency_s >= max(compute, transfer) * (1 - 1e-12), path.name


@pytest.mark.parametrize(("call", "shown"), [
    (f"r = api.run({NPU!r}, 'dense_r50', inputs=2); print(r.result.rows[0][2])", "25723392"),
    ("from edgesim.cli import main; assert main(['run', 'npu_small', '--model', 'dense_r50', "
     "'--inputs', '2']) == 0",
     "# dense_r50 (dense, input 3x224x224) on npu_small: 25,530,472 params stored"),
], ids=["api", "cli"])
def test_cached_run_imports_neither_torch_nor_pandas(r50, call, shown):
    # the fixture traced dense_r50 into this session's cache (now JSON + .npy entries); a new
    # process answers from it without torch, nor pandas: rows are printed without a DataFrame
    code = (f"import sys; from edgesim import api; {call}; "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'pandas' not in sys.modules, 'pandas was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ}, check=False)
    assert out.returncode == 0, out.stderr
    assert shown in out.stdout


def test_model_level_suffix_needs_a_nested_model():
    from edgesim.errors import ModelError
    with pytest.raises(ModelError, match="@"):
        api.parse_model_name("nested_r50@x")
    assert api.parse_model_name("nested_r50@2") == ("nested_r50", 2)
    assert api.parse_model_name("pkg.mod:factory") == ("pkg.mod:factory", None)


def test_sweep_and_plot_are_verbs_of_the_package(tmp_path, monkeypatch):
    import edgesim
    from edgesim.testing import TINY_CONFIG, tiny_workload
    df = edgesim.sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
                       out_dir=tmp_path, executor="serial")
    # tiny_workload holds 3000 weight bytes: 4 KiB keeps them, 2 KiB streams b's 2000 again
    assert df["weight_dram_bytes_steady"].tolist() == [2000.0, 0.0]
    from edgesim.sweep import load_results  # still the sub-package as well
    assert len(load_results(tmp_path)) == 2
    import edgesim.plot
    calls = []
    monkeypatch.setattr(edgesim.plot, "plot", lambda *a, **k: calls.append((a, k)) or ["p"])
    assert edgesim.plot("pareto", tmp_path, y="top1") == ["p"]   # the module called: its plot
    assert calls == [(("pareto", tmp_path), {"y": "top1"})]


def test_an_nn_module_object_runs_and_its_errors_are_short():
    import torch.nn as nn
    net = nn.Sequential(*[nn.Linear(64, 64, bias=False) for _ in range(30)])
    with pytest.raises(api.ModelError) as exc:
        api.run(NPU, net)                     # no input shape: one short line, not the module
    assert "Sequential object" in str(exc.value)
    assert "Linear(" not in str(exc.value)
    assert len(str(exc.value)) < 200
    r = api.run(NPU, api.model_request(net, input_shape=(64,)), inputs=2)
    # 30 layers x (64 x 64 int8 weights + 64 fp32 per-channel scales) = 30 x 4352
    assert r.model["stored_weight_bytes"] == 30 * (64 * 64 + 64 * 4)
    assert len(r.inferences) == 2


def test_a_sweep_from_a_script_without_a_main_guard_runs_the_script_once(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(
        "import edgesim\n"
        "from edgesim.sweep.executors import ExecutorSpec\n"
        "from edgesim.testing import TINY_CONFIG, tiny_workload\n"
        "print('script body ran')\n"
        f"df = edgesim.sweep(TINY_CONFIG, [tiny_workload()], ['sram.size=1KiB,2KiB'], "
        f"inputs=2, out_dir={str(tmp_path / 'out')!r}, "
        "executor=ExecutorSpec('process', workers=2))\n"
        "print(len(df), 'rows')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    # a spawned / fork-server worker re-imports the main script unless told not to
    assert done.stdout.count("script body ran") == 1
    assert "2 rows" in done.stdout
