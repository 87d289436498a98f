"""The model request: parsed and checked once, the input shape the user means, user modules
found in the current folder, and one line when torch is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgesim import api
from edgesim.cli import main
from edgesim.errors import DataError, ModelError
from edgesim.request import model_request, parse_input_shape
from edgesim.testing import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
USER = "usermodels:tiny_net"     # conv 3->8 3x3 pad 1, BN, ReLU, global pool, fc 8->10


def _conv_macs(w: api.Workload) -> int:
    (op,) = [op for op in w.paths[0].ops if op.kind == "conv"]
    return op.macs


@pytest.mark.parametrize(("text", "shape"), [("3x32x32", (3, 32, 32)), ("1x49x10", (1, 49, 10)),
                                             ("3,8,8", (3, 8, 8)), ((3, 4, 4), (3, 4, 4))])
def test_input_shapes_parse(text, shape):
    assert parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["", "3x", "axb", "0x32x32", "-3x32x32", "3x32x32.5",
                                  "1x" * 10 + "1", "3x100000x100000", "9" * 50, (3, True)])
def test_bad_input_shapes_are_one_line(text):
    with pytest.raises(ModelError, match=r"^--input-shape "):
        parse_input_shape(text)


def test_a_level_in_the_name_and_the_option_must_agree():
    assert model_request("nested_r50@3").level == 3
    assert model_request("nested_r50@3", level=3).level == 3
    with pytest.raises(ModelError, match="disagree"):
        model_request("nested_r50@3", level=2)
    with pytest.raises(ModelError, match="whole level number"):
        model_request("nested_r50@x")


@pytest.mark.parametrize(("name", "expected"), [
    ("nested_r50@7", "level 7 out of range 1..3"),     # the registry says 3 levels
    ("dense_r50@2", "has no nesting levels")])
def test_a_level_the_registry_refuses_fails_before_building(name, expected):
    # spec_of builds nothing: the check is with the request (it took 37 s of building before)
    from edgesim.frontends.pytorch import spec_of
    with pytest.raises(ModelError, match=expected):
        spec_of(model_request(name))


def test_a_model_file_takes_no_weights_level_or_eval(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"not read here")
    assert model_request(str(f)).format == "tflite"
    for kwargs, flag in (({"weights": str(f)}, "--weights"), ({"level": 2}, "model.level"),
                         ({"evaluate": True, "data": str(f)}, "--eval")):
        with pytest.raises(ModelError, match=f"^{flag}: model .* holds its weights"):
            model_request(str(f), **kwargs)


def test_a_fifo_named_as_a_model_file_is_refused_unread(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="is a FIFO; expected a regular file"):
        model_request(str(fifo))


def test_the_input_shape_sets_the_traced_shape():
    # the conv of tiny_net: K=8, C=3, R=S=3, 'same' padding, so P x Q = H x W:
    # MACs = 8 * 3 * 3 * 3 * H * W = 216 * H * W
    assert _conv_macs(api.workload(USER)) == 216 * 16 * 16          # the factory's attribute
    assert _conv_macs(api.workload(model_request(USER, input_shape="3x32x32"))) == 216 * 32 * 32
    assert api.workload(model_request(USER, input_shape=(3, 8, 8))).meta["input_shape"] == [
        3, 8, 8]


def test_data_of_another_shape_is_traced_at_the_data_shape(tmp_path):
    """A routed model reads --data: with no --input-shape, the data's shape is traced."""
    from edgesim.frontends.pytorch import spec_of
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 3, 24, 24), dtype=np.float32))
    spec = spec_of(model_request("sigmab_r50_c100", data=str(x)))
    assert spec.input_shape == (3, 24, 24)
    # the flag wins over the data
    spec = spec_of(model_request("sigmab_r50_c100", data=str(x), input_shape="3x32x32"))
    assert spec.input_shape == (3, 32, 32)


def test_data_that_differs_from_the_traced_shape_is_one_line(tmp_path):
    from edgesim.zoo.data import load_inputs
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 3, 24, 24), dtype=np.float32))
    with pytest.raises(DataError, match=r"never resized: pass --input-shape 3x24x24"):
        load_inputs(x, "image", (3, 32, 32))


def test_the_run_header_names_the_input_shape(capsys):
    assert main(["run", "npu_small", "--model", USER, "--inputs", "1",
                 "--input-shape", "3x20x20"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.startswith(f"# {USER} (dense, input 3x20x20) on npu_small")


def test_a_factory_input_shape_that_is_not_a_shape_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "badshape.py").write_text(
        "from torch import nn\n"
        "def net():\n    return nn.Linear(2, 2)\n"
        "net.input_shape = 'abc'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"the factory's input_shape 'abc' is not a shape"):
        api.workload("badshape:net")


def _script(venv_bin: str = "edgesim") -> str:
    return str(Path(sys.executable).parent / venv_bin)


def test_a_user_module_is_found_in_the_current_folder(tmp_path):
    """`edgesim run --model mymodel:factory` from the folder holding mymodel.py (the installed
    script, not `python -m`, which would put the folder on sys.path itself)."""
    (tmp_path / "mymodel.py").write_text(
        "from torch import nn\n"
        "def factory():\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, 2))\n"
        "factory.input_shape = (3, 2, 2)\n")
    env = {**os.environ, "EDGESIM_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    r = subprocess.run([_script(), "run", "npu_small", "--model", "mymodel:factory",
                        "--inputs", "1", "--format", "csv"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 2


NO_TORCH = ("import sys; sys.modules['torch'] = None; from edgesim.cli import main; "
            "sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize(("args", "step"), [
    (["run", "npu_small", "--model", USER], f"model '{USER}' (a PyTorch model)"),
    (["run", "npu_small", "--model", "dense_r50", "--input-shape", "3x32x32"],
     "tracing a PyTorch model"),
    (["finetune", "sigmab_r50_c100", "--checkpoint", "{tmp}/t.pt"],
     "finetune (soft-routing training)"),
])
def test_without_torch_a_torch_step_is_one_line(tmp_path, args, step):
    env = {**os.environ, "EDGESIM_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(ROOT / "tests")}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = subprocess.run([sys.executable, "-c", NO_TORCH, *args], env=env, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 2, r.stderr
    (line,) = stderr_lines(r.stderr)
    assert line.startswith(f"edgesim: error: {step} needs PyTorch, which is not installed; "
                           "pip install 'edgesim[torch]'"), line


def test_without_torch_a_registry_model_runs_from_its_shipped_trace(tmp_path):
    env = {**os.environ, "EDGESIM_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "run", "npu_small", "--model",
                        "sigmab_r50", "--inputs", "4", "--format", "csv"], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 5


def test_a_module_object_is_a_request_of_its_shape_and_nothing_to_load():
    import torch.nn as nn
    net = nn.Sequential(nn.Linear(8, 4))
    req = model_request(net, input_shape="8", seed=3)
    assert (req.name, req.input_shape, req.seed, req.is_file) == ("Sequential", (8,), 3, False)
    with pytest.raises(ModelError, match="weights= is for a named model"):
        model_request(net, weights="w.pt")
    # 8 x 4 int8 weights + 4 int32 biases + 4 fp32 scales = 32 + 16 + 16 B, one path
    w = api.workload(req, inputs=3)
    assert sum(b.stored_bytes for b in w.blocks.values()) == 64
    assert w.inputs == 3



def test_no_public_api_function_takes_more_than_nine_parameters():
    import inspect

    from edgesim.sweep.run import sweep
    funcs = [getattr(api, n) for n in api.__all__ if inspect.isfunction(getattr(api, n))]
    wide = {f.__name__: len(inspect.signature(f).parameters) for f in [*funcs, sweep]
            if len(inspect.signature(f).parameters) > 9}
    assert not wide, wide
