"""The wheel: what it installs, and that the main command runs from it in a fresh venv.

The package ships its hardware configs as data and installs one top-level package, ``edgesim``
(the zoo is ``edgesim.zoo``), so a normal ``pip install .`` works from any directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p.name for p in (ROOT / "edgesim" / "hwconfigs").glob("*.yaml"))


def _pip(*args: str, cwd: Path, python: str = sys.executable) -> None:
    subprocess.run([python, "-m", "pip", *args], cwd=cwd, check=True, capture_output=True,
                   text=True, timeout=900)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # built from a copy of the sources: setuptools leaves build/ behind, and a stale build/lib
    # in the clone would put removed modules into the next wheel
    src = tmp_path_factory.mktemp("src") / "edgesim"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".hypothesis", ".ruff_cache"))
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "-q", "-w", str(out), str(src), cwd=out)
    (whl,) = out.glob("edgesim-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_holds_one_top_level_package_and_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"edgesim"}
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("edgesim/hwconfigs/"))
    # the configs, and their checked form a shipped run reads instead of the YAML
    # (edgesim.checked_configs)
    assert shipped == sorted([*CONFIGS, "checked.json"])
    assert len(CONFIGS) >= 6
    assert "edgesim/zoo/registry.py" in names


@pytest.mark.slow
def test_main_command_runs_from_an_installed_wheel_in_a_fresh_venv(wheel, tmp_path):
    # a fresh venv, the wheel installed normally (not editable), run from a directory that is
    # not the clone: configs are found by name, the zoo comes from the package
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    _pip("install", "-q", str(wheel), cwd=tmp_path, python=python)   # the README's first line
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["EDGESIM_CACHE"] = str(tmp_path / "cache")
    listed = subprocess.run([str(venv / "bin" / "edgesim"), "configs"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert all(c.removesuffix(".yaml") in listed.stdout for c in CONFIGS)
    done = subprocess.run([str(venv / "bin" / "edgesim"), "run", "npu_small", "--model",
                           "sigmab_r50"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# sigmab_r50 (sigmab, input 3x224x224) on npu_small")
    table = lines[:lines.index("")]            # the header, then one row per input
    assert len([x for x in table if x.split()[0].isdigit()]) == 8   # 8 inputs, one row each
    where = subprocess.run([python, "-c", "import edgesim; print(edgesim.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=120).stdout
    assert str(venv) in where                       # the installed copy, not the clone
    found = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('models') is None)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120).stdout
    assert found.strip() == "True"                  # no top-level 'models' package
    # torch is an extra: the plain install has none, yet runs a TFLite file and says in one
    # line what a PyTorch model needs
    no_torch = subprocess.run([python, "-c", "import importlib.util as u; "
                               "print(u.find_spec('torch') is None)"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120).stdout
    assert no_torch.strip() == "True"
    model = _small_tflite(work / "net.tflite")
    done = subprocess.run([str(venv / "bin" / "edgesim"), "run", "ethos_u55", "--model",
                           str(model), "--inputs", "2", "--format", "csv"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 3       # header + two inferences
    (work / "mine.py").write_text("import torch\ndef net():\n    return torch.nn.Linear(2, 2)\n")
    refused = subprocess.run([str(venv / "bin" / "edgesim"), "run", "npu_small", "--model",
                              "mine:net"], cwd=work, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2
    assert "pip install 'edgesim[torch]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def _small_tflite(path: Path) -> Path:
    """A conv + fully connected int8 TFLite file (``tests/tflite_files``), written here."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests"))
    from tflite_files import CONV, FC, INT32, RESHAPE, Op, T, conv_opts, fc_opts, write
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (8, 3, 3, 3)).astype(np.int8)
    f = rng.integers(-127, 128, (4, 8 * 8 * 8)).astype(np.int8)
    ts = [T((1, 8, 8, 3), scales=(0.1,)), T((8, 3, 3, 3), data=w, scales=(0.01,) * 8),
          T((8,), INT32, np.zeros(8, np.int32)), T((1, 8, 8, 8), scales=(0.1,)),
          T((1, 512), scales=(0.1,)), T((4, 512), data=f, scales=(0.01,) * 4),
          T((4,), INT32, np.zeros(4, np.int32)), T((1, 4), scales=(0.1,))]
    ops = [Op(CONV, (0, 1, 2), (3,), conv_opts(0, 1, 1)), Op(RESHAPE, (3,), (4,)),
           Op(FC, (4, 5, 6), (7,), fc_opts())]
    return write(path, ts, ops, [0], [7])
