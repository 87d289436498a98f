"""Sweep workers: clean processes (no torch, no zoo), and one trace per model and precision."""

from __future__ import annotations

import os
import sys

from edgesim.sweep import sweep
from edgesim.sweep.executors import ExecutorSpec
from edgesim.sweep.run import workload_options
from edgesim.testing import tiny_workload


def test_pool_workers_import_neither_torch_nor_the_zoo(tiny_yaml, tmp_path):
    import torch  # noqa: F401  (the parent has torch loaded, as after tracing)

    import edgesim.zoo.registry  # noqa: F401
    assert "torch" in sys.modules
    df = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB,3KiB,4KiB,8KiB"],
               policies=("lru", "belady"), inputs=4, out_dir=tmp_path,
               executor=ExecutorSpec("process", workers=2))
    workers = df.attrs["workers"]
    assert workers  # every task reported the process it ran in
    assert os.getpid() not in workers
    for pid, stats in workers.items():
        assert not stats["torch"], f"worker {pid} has torch loaded"
        assert not stats["zoo"], f"worker {pid} has edgesim.zoo loaded"
        assert stats["max_rss_mib"] > 0


def test_serial_sweep_reports_this_process(tiny_yaml, tmp_path):
    df = sweep(tiny_yaml, [tiny_workload()], ["sram.size=2KiB"], inputs=2, out_dir=tmp_path,
               executor="serial")
    assert list(df.attrs["workers"]) == [os.getpid()]


def test_points_differing_only_in_sram_share_one_workload():
    from edgesim.config import load_config
    a = load_config("npu_small", ["sram.size=64KiB"])
    b = load_config("npu_small", ["sram.size=4MiB", "dram.bandwidth=1GB/s"])
    assert workload_options(a) == workload_options(b)
    c = load_config("npu_small", ["compute.precision=int4"])
    assert workload_options(c) != workload_options(a)


def _tiny_model(name: str):
    # prefers csr: under formats [dense] and [dense,csr] the hardware decodes different encodings
    from edgesim.zoo.registry import ModelSpec, register
    return register(ModelSpec(name, "dense", "torch.nn:Linear",
                              {"in_features": 16, "out_features": 8}, (16,), "test model",
                              encodings=("csr", "dense")))


def test_sweep_over_two_format_lists_traces_each_model_once(tiny_yaml, tmp_path, monkeypatch):
    from edgesim import build
    monkeypatch.setenv("EDGESIM_CACHE", str(tmp_path / "cache"))
    names = [_tiny_model("tiny_linear_fmt_a").name, _tiny_model("tiny_linear_fmt_b").name]
    traced = []
    real = build.build_workload

    def counting(spec, **kwargs):
        traced.append(spec.name)
        return real(spec, **kwargs)

    monkeypatch.setattr(build, "build_workload", counting)
    df = sweep(tiny_yaml, names, ["formats=[dense],[dense,csr]", "sram.size=2KiB,4KiB"],
               inputs=2, out_dir=tmp_path / "out", executor="serial")
    assert df["formats"].tolist()[::2] == ["[dense]"] * 2 + ["[dense,csr]"] * 2
    assert sorted(traced) == names
