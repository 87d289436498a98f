"""Bounded by construction: outputs of any length in flat memory, and no input, checkpoint or
count argument that makes edgesim allocate without limit.

Each case is what a careless or hostile user would try; the command-line ones run boxed
(``tests/hostile.py``: a temp folder for everything, an address-space cap, a timeout) and assert
one error line, exit code 2 and nothing changed outside the temp folder.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from edgesim import api
from edgesim.cli import main
from edgesim.report import render

# ---------------------------------------------------------------------------------------------
# long outputs: --format json and --timeline are written as the rows come
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [[], ["--per-layer"], ["--timeline", "tl.csv"]])
def test_streamed_json_is_the_run_rendered_whole(capsys, tmp_path, monkeypatch, extra):
    # the JSON document written row by row is byte for byte the whole Run rendered at once
    monkeypatch.chdir(tmp_path)
    assert main(["run", "npu_small", "--model", "dense_r50", "--inputs", "3",
                 "--format", "json", *extra]) == 0
    streamed = capsys.readouterr().out
    whole = api.run("npu_small", "dense_r50", inputs=3,
                    per_layer=bool(extra))
    assert streamed == render(None, "json", json_obj=whole.to_dict()) + "\n"
    doc = json.loads(streamed)
    assert len(doc["inferences"]) == 3
    assert ("layers" in doc) == bool(extra)
    assert main(["run", "npu_small", "--model", "dense_r50", "--inputs", "3",
                 "--format", "json", "--out", "o.json", *extra]) == 0
    assert (tmp_path / "o.json").read_text() == streamed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["o.json"] + (["tl.csv"] if "--timeline" in extra else []))


def test_timeline_is_the_per_layer_csv(capsys, tmp_path):
    tl = tmp_path / "tl.csv"
    assert main(["run", "npu_small", "--model", "dense_r50", "--inputs", "3",
                 "--timeline", str(tl)]) == 0
    capsys.readouterr()
    assert main(["run", "npu_small", "--model", "dense_r50", "--inputs", "3",
                 "--per-layer", "--format", "csv"]) == 0
    assert tl.read_text() == capsys.readouterr().out


def _peak(args: list[str], capsys) -> int:
    tracemalloc.start()
    try:
        assert main(args) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        capsys.readouterr()


@pytest.mark.parametrize("how", [["--format", "json"], ["--format", "json", "--out", "o.json"],
                                 ["--timeline", "tl.csv", "--format", "csv", "--out", "o.csv"]])
def test_long_outputs_take_flat_memory(capsys, tmp_path, monkeypatch, how):
    # a kept inference row costs ~6 KB in the JSON document (1.2 GB at 200,000 inputs before
    # it was streamed), a kept per-op row ~0.5 KB (x 6 ops of tiny_net): 10x the inputs may
    # add a few bytes per input (the path sequence), not a row
    monkeypatch.chdir(tmp_path)
    model = "usermodels:tiny_net" if "--timeline" in how else "dense_r50"
    assert main(["run", "npu_small", "--model", model, "--inputs", "1"]) == 0   # traced once
    small, large = (_peak(["run", "npu_small", "--model", model, "--inputs", str(n), *how],
                          capsys) for n in (300, 3_000))
    assert (large - small) / 2_700 < 100, (small, large)
