"""experiments/formats.py: bytes per weight block under every encoding, checked against the trace.

The script runs in a subprocess, as a user runs it. Two tiny models defined here are loaded by
it as ``test_formats_script:tiny_nested`` and ``test_formats_script:tiny_sb``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "experiments" / "formats.py"
ENCODINGS = ("dense", "bitmap", "csr", "csc", "rle", "signed_binary", "nested")


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def tiny_nested() -> nn.Module:
    """The tiny net with 3 nested sub-networks keeping 20 / 50 / 80 % of each weight."""
    from edgesim.zoo.nested import NestedModel, nested_levels
    net = _net()
    return NestedModel(net, nested_levels(net, densities=(0.2, 0.5, 0.8)))


def tiny_sb() -> nn.Module:
    """The tiny net signed-binarized, first conv int8, classifier binary."""
    from edgesim.zoo.signed_binary import to_signed_binary
    return to_signed_binary(_net(), keep_first_last_int8=(True, False))


tiny_nested.input_shape = (3, 8, 8)  # type: ignore[attr-defined]
tiny_sb.input_shape = (3, 8, 8)  # type: ignore[attr-defined]


def _run(*args: str, out: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    extra = ["--out", str(out)] if out is not None else []
    return subprocess.run([sys.executable, str(SCRIPT), *args, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _table(tmp_path: Path, *args: str) -> pd.DataFrame:
    out = tmp_path / "blocks.csv"
    proc = _run(*args, out=out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "total" in proc.stdout
    return pd.read_csv(out)


def _consistent(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Laws every table obeys; returns (block rows, total row)."""
    blocks, total = df[df["block"] != "total"], df[df["block"] == "total"].iloc[0]
    assert list(df["block"]).count("total") == 1
    for _, r in blocks.iterrows():
        # the tracer's choice, re-measured here on the rebuilt tensor, is the tracer's bytes
        assert r[r["encoding"]] == r["stored_bytes"], r["block"]
        # best is the smallest encoding of the row
        assert r["best"] == min(r[e] for e in ENCODINGS if pd.notna(r[e]))
        assert 0 <= r["nonzeros"] <= r["elements"]
    for col in ("elements", "nonzeros", "stored_bytes", "dense_bytes", "best"):
        assert total[col] == blocks[col].sum()
    for e in ENCODINGS:  # each block in encoding e where it applies, dense elsewhere
        assert total[e] == blocks[e].fillna(blocks["dense_bytes"]).sum()
    # every block can be stored dense: the dense column is the model's dense bytes
    assert total["dense"] == total["dense_bytes"]
    return blocks, total


@pytest.mark.slow
def test_quick_model_matches_the_trace(tmp_path):
    torch.set_num_threads(1)
    df = _table(tmp_path, "--quick")
    blocks, total = _consistent(df)
    from edgesim import api
    info = api.model_info(api.workload("dense_r50_c100"))
    # the script traces the same model as the API: same blocks, same bytes
    assert len(blocks) == len(api.workload("dense_r50_c100").blocks)
    assert total["stored_bytes"] == info["stored_weight_bytes"]
    assert total["dense"] == info["dense_weight_bytes"]
    assert total["elements"] == info["total_params"]
    # biases are int32, stored dense: 4 bytes per value, no other encoding
    bias = blocks[blocks["block"].str.endswith(".bias")]
    assert (bias["bits"] == 32).all()
    assert (bias["dense"] == 4 * bias["elements"]).all()
    assert bias[["bitmap", "csr", "rle"]].isna().all().all()
    # a dense int8 weight: the bitmap adds 1 bit per weight to (almost) the same values, so it
    # never beats dense on a tensor with less than 1/8 zeros (here ~1 %)
    w = blocks[blocks["bits"] == 8]
    assert (w["bitmap"] > w["dense"]).all()


@pytest.mark.slow
def test_nested_levels_are_prefix_segments(tmp_path):
    df = _table(tmp_path, "test_formats_script:tiny_nested@2")
    blocks, _ = _consistent(df)
    # each of the 3 masked weights is one block per level, stored in the nested layout
    levels = blocks[blocks["block"].str.contains("#L")]
    assert len(levels) == 3 * 3
    assert (levels["encoding"] == "nested").all()
    # sub-network k = levels 1..k: 20 / 50 / 80 % of each weight; so level 2 holds 30 %
    # (+/- values quantized to zero) and the level-1 block carries the tensor's dense bytes
    assert levels["dense"].isna().all()   # dense does not apply to one level's segment
    for pname, g in levels.groupby(levels["block"].str.rsplit("#", n=1).str[0]):
        g = g.sort_values("block")
        n = int(g["elements"].sum())   # the blocks together count the tensor once
        # dense int8: 1 byte per weight + one fp32 scale per output channel (8, 16, 10 filters)
        filters = {"net.0": 8, "net.3": 16, "net.7": 10}[pname.split(".parametrizations")[0]]
        assert g["dense_bytes"].iloc[0] == n + 4 * filters
        assert g["dense_bytes"].iloc[1:].eq(0).all(), pname
        assert g["nonzeros"].iloc[1] <= round(0.3 * n) + 1
    nested = pd.read_csv(tmp_path / "blocks_nested.csv")
    row = nested[nested["layer"] == "total"].iloc[0]
    # one stream of N nested sub-networks is smaller than N separately stored ones
    assert row["stream_bytes"] < row["separate_bytes"]
    assert 0 < row["saving"] < 1


@pytest.mark.slow
def test_signed_binary_blocks(tmp_path):
    df = _table(tmp_path, "test_formats_script:tiny_sb")
    blocks, _ = _consistent(df)
    binary = blocks[blocks["bits"] == 1]
    assert len(binary) == 2          # the second conv and the classifier; the stem stays int8
    # a {0,+a}/{0,-a} per-filter tensor: signed_binary applies; it stores a sign bit per filter
    # more than 1-bit dense with one signed fp32 scale per filter (K filters: ceil(K / 8) bytes)
    rows = binary.set_index("block")
    k = {"3.parametrizations.weight.original": 16, "7.parametrizations.weight.original": 10}
    for bid, filters in k.items():
        r = rows.loc[bid]
        assert r["signed_binary"] == r["dense"] + (filters + 7) // 8
        assert r["dense"] == (r["elements"] + 7) // 8 + 4 * filters
    assert blocks[blocks["bits"] == 8]["signed_binary"].isna().all()


def test_bad_model_is_one_line_exit_2():
    proc = _run("dens_r50")
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "\n" not in err
    assert "Traceback" not in err
    assert "unknown model 'dens_r50'; did you mean dense_r50" in err


@pytest.mark.slow
def test_routed_tree_lists_its_whole_catalogue(tmp_path):
    torch.set_num_threads(1)
    df = _table(tmp_path, "sigmab_r50_c100")
    blocks, total = _consistent(df)
    from edgesim import api
    w = api.workload("sigmab_r50_c100")
    # every block of every root-to-leaf path, once: the tree as stored off-chip
    assert set(blocks["block"]) == set(w.blocks)
    assert total["stored_bytes"] == w.stored_bytes
    assert total["elements"] == w.total_params


def test_a_tflite_file_lists_its_stored_integers_under_every_encoding(tmp_path):
    """A conv whose int8 weights are half zeros: the dense column is the stored int8 bytes
    plus one fp32 scale per channel, bitmap is one bit per weight plus the nonzeros (plus the
    scales), and the best is the smallest generic encoding of each block."""
    import numpy as np

    sys.path.insert(0, str(REPO / "tests"))
    from tflite_files import CONV, INT32, Op, T, conv_opts, write
    w = np.zeros((8, 3, 3, 4), np.int8)
    w[:, :, :, :2] = 127                            # 2 of every 4 input channels zero
    ts = [T((1, 6, 6, 4), scales=(0.1,)), T((8, 3, 3, 4), data=w, scales=(0.01,) * 8),
          T((8,), INT32, np.ones(8, np.int32)), T((1, 6, 6, 8), scales=(0.1,))]
    path = write(tmp_path / "half.tflite", ts, [Op(CONV, (0, 1, 2), (3,), conv_opts())], [0],
                 [3])
    out = tmp_path / "t.csv"
    env = {**os.environ, "EDGESIM_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, str(SCRIPT), str(path), "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(out).set_index("block")
    weight = df.loc["conv_2d_0.weight"]
    assert weight["elements"] == 288
    assert weight["nonzeros"] == 144
    assert weight["dense"] == 288 + 8 * 4                 # int8 values + 8 fp32 scales
    assert weight["bitmap"] == 288 // 8 + 144 + 8 * 4     # mask bits, nonzeros, scales
    assert weight["best"] == min(weight[e] for e in ("dense", "bitmap", "csr", "csc", "rle"))
    assert df.loc["conv_2d_0.bias", "dense"] == 8 * 4      # int32 biases, dense
