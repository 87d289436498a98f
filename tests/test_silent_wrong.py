"""No silent wrong result: inputs and settings that used to be taken as something else.

Each case is a careless or hostile user's input, run boxed (``tests/hostile.py``): one error
line, exit 2, nothing outside the test's temp folder changed; or, for a cache folder that is not
ours, a run that uses no cache rather than a foreign one.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from hostile import run_cli
from usermodels import tiny_net

from edgesim import cache
from edgesim.errors import CacheError, DataError, UnitError
from edgesim.units import parse_quantity
from edgesim.zoo.data import load_inputs


@pytest.mark.parametrize("text", ["٣", "٣ B", "３ KiB", "1٠ MiB"])
def test_non_ascii_digits_are_not_numbers(text):
    # '٣' (Arabic-Indic three) and '３' (fullwidth) parsed as 3 before: offchip.burst=٣ was 3 B
    with pytest.raises(UnitError, match=r"is not a number with a unit|has unit"):
        parse_quantity(text, "size", where="offchip.burst")


def test_an_empty_home_is_not_a_cache_location(monkeypatch):
    # HOME='' put the cache in /.cache/edgesim, a folder of the whole machine
    monkeypatch.delenv("EDGESIM_CACHE", raising=False)
    for home in ("", "/"):
        monkeypatch.setenv("HOME", home)
        with pytest.raises(CacheError, match="set EDGESIM_CACHE"):
            cache.cache_dir()


def test_an_empty_home_is_one_line_from_the_cli(tmp_path):
    r = run_cli(["run", "npu_small", "--model", "dense_r50", "--inputs", "1"], tmp_path,
                env={"HOME": "", "EDGESIM_CACHE": ""})
    assert r.code == 2
    assert "set EDGESIM_CACHE" in r.error_line()


def test_a_cache_sub_folder_that_is_not_ours_is_never_written(tmp_path, monkeypatch):
    """A ``workload`` symlink inside the private cache pointing to a world-writable folder:
    entries of that kind are neither read from nor written to it (a miss, as for the root)."""
    root = tmp_path / "cache"
    root.mkdir(mode=0o700)
    elsewhere = tmp_path / "world"
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    (root / "workload").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv("EDGESIM_CACHE", str(root))
    assert cache.folder("workload") is None
    cache.save("workload", "k" * 32, {"a": 1})
    assert list(elsewhere.iterdir()) == []
    assert cache.load("workload", "k" * 32) is None
    # a world-writable real folder is refused too; a private one is used
    (root / "route").mkdir(mode=0o700)
    (root / "route").chmod(0o777)
    assert cache.folder("route") is None
    (root / "eval").mkdir(mode=0o700)
    assert cache.folder("eval") == root / "eval"


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_inputs_are_refused_for_routing(tmp_path, bad):
    # only --eval checked inputs before: a routed model routed NaNs and reported them
    x = np.zeros((3, 3, 8, 8), np.float32)
    x[1, 0, 2, 2] = bad
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(DataError, match="input 1 holds NaN or infinite values"):
        load_inputs(tmp_path / "x.npy", "image", (3, 8, 8))


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: t.to_sparse(), "is a torch.sparse_coo tensor; expected a dense"),
    (lambda t: t.to(torch.complex64), "has dtype torch.complex64; expected real"),
    (lambda t: t.masked_fill(torch.ones_like(t, dtype=bool), float("nan")),
     "holds NaN or infinite values"),
])
def test_weights_of_the_wrong_layout_or_dtype_are_one_line(tmp_path, change, expected):
    # a sparse tensor of the right shape was a traceback; complex weights lost their
    # imaginary part with only a torch warning
    sd = tiny_net().state_dict()
    sd["5.weight"] = change(sd["5.weight"])
    ckpt = tmp_path / "cwd" / "w.pt"
    ckpt.parent.mkdir(exist_ok=True)
    torch.save(sd, ckpt)
    r = run_cli(["run", "npu_small", "--model", "usermodels:tiny_net", "--weights", str(ckpt),
                 "--inputs", "1"], tmp_path, timeout=300)
    assert r.code == 2
    line = r.error_line()
    assert f"checkpoint file '{ckpt}': key '5.weight'" in line
    assert expected in line


def test_the_model_cache_folder_is_owner_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESIM_CACHE", str(tmp_path / "c"))
    d = cache.folder("model")
    assert d is not None
    assert os.stat(d).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("setting", ["compute.array.rows=true", "compute.macs_per_cycle.int8=false",
                                     "compute.array.cols=true"])
def test_booleans_are_not_numbers_in_a_config(setting):
    # pydantic took true as 1 in the 16 numeric fields that are not quantities
    from edgesim.config import load_config
    from edgesim.errors import ConfigError
    key = setting.partition("=")[0]
    with pytest.raises(ConfigError, match=rf"{re.escape(key)} \(from --set\): .*is a boolean; "
                                          "expected a number"):
        load_config("npu_small", [setting])
    assert load_config("npu_small", ["compute.array.pipelined=true"]).array_pipelined is True
