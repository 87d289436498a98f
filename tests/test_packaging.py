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
    assert shipped == CONFIGS
    assert len(CONFIGS) >= 6
    assert "edgesim/zoo/registry.py" in names


@pytest.mark.slow
def test_main_command_runs_from_an_installed_wheel_in_a_fresh_venv(wheel, tmp_path):
    # a fresh venv, the wheel installed normally (not editable), run from a directory that is
    # not the clone: configs are found by name, the zoo comes from the package
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    _pip("install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel), cwd=tmp_path,
         python=python)
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
    assert len([x for x in lines[2:10] if x.split()[0].isdigit()]) == 8   # 8 inputs, one row each
    where = subprocess.run([python, "-c", "import edgesim; print(edgesim.__file__)"], cwd=work,
                           env=env, capture_output=True, text=True, timeout=120).stdout
    assert str(venv) in where                       # the installed copy, not the clone
    found = subprocess.run([python, "-c", "import importlib.util as u; "
                            "print(u.find_spec('models') is None)"], cwd=work, env=env,
                           capture_output=True, text=True, timeout=120).stdout
    assert found.strip() == "True"                  # no top-level 'models' package
