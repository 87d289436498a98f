"""Bounded by construction: outputs of any length in flat memory, and no input, checkpoint or
count argument that makes edgesim allocate without limit.

Each case is what a careless or hostile user would try; the command-line ones run boxed
(``tests/hostile.py``: a temp folder for everything, an address-space cap, a timeout) and assert
one error line, exit code 2 and nothing changed outside the temp folder.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hostile import run_cli
from sigmab_trees import huge_tree_checkpoint

from edgesim import api
from edgesim.cli import main
from edgesim.errors import DataError
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
    # The row writers hold one chunk of rows (cli.run._Rows.CHUNK, 4,096 rows of ~0.5-1 KB:
    # bounded, but more than a 3,000-input stream fills); at 64 rows a chunk, what remains of
    # the difference is growth with the stream.
    from edgesim.cli import run as cli_run
    monkeypatch.setattr(cli_run._Rows, "CHUNK", 64)
    monkeypatch.chdir(tmp_path)
    model = "usermodels:tiny_net" if "--timeline" in how else "dense_r50"
    assert main(["run", "npu_small", "--model", model, "--inputs", "1"]) == 0   # traced once
    small, large = (_peak(["run", "npu_small", "--model", model, "--inputs", str(n), *how],
                          capsys) for n in (300, 3_000))
    assert (large - small) / 2_700 < 100, (small, large)


# ---------------------------------------------------------------------------------------------
# image inputs: the size an image is scaled to is checked from its header
# ---------------------------------------------------------------------------------------------

def _png(path: Path, width: int, height: int) -> Path:
    """A black 8-bit grey PNG of width x height, written row by row (a strip compresses to a
    few hundred bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    z = zlib.compressobj(9)
    row = bytes(width + 1)                  # filter byte 0, then the pixels
    body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize(("width", "height"), [(400_000, 1), (1, 400_000), (2**26, 1),
                                               (8192, 16)])
def test_a_thin_image_is_refused_before_it_is_scaled(tmp_path, width, height):
    # a 1 x 400,000 px strip is ~0.5 KB on disk but would be scaled to 224 x 89,600,000 px to
    # cover 224 x 224 (240 GB as float32): refused from the header, naming the file
    from edgesim.zoo.data import MAX_SCALED_PIXELS, load_inputs
    f = _png(tmp_path / "in" / "strip.png", width, height)
    assert f.stat().st_size < 200_000
    with pytest.raises(DataError, match=r"strip\.png: image of .* pixels would be scaled to"):
        load_inputs(tmp_path / "in", shape=(3, 224, 224))
    # the bound: the largest scaled image still read
    assert MAX_SCALED_PIXELS == 2**24


def test_images_near_the_input_shape_are_still_read(tmp_path):
    from edgesim.zoo.data import load_inputs
    _png(tmp_path / "in" / "a.png", 640, 480)
    _png(tmp_path / "in" / "b.png", 2240, 224)      # a 10:1 panorama: scaled to 2240 x 224
    assert tuple(load_inputs(tmp_path / "in", shape=(3, 224, 224)).shape) == (2, 3, 224, 224)


def test_cli_refuses_a_strip_image_in_one_line(tmp_path):
    _png(tmp_path / "data" / "0" / "strip.png", 400_000, 1)
    got = run_cli(["run", "npu_small", "--model", "dense_r50", "--eval", "--data",
                   str(tmp_path / "data")], tmp_path, memory=3 << 30)
    assert got.code == 2
    assert "strip.png: image of 400000 x 1 pixels would be scaled to" in got.error_line()


# ---------------------------------------------------------------------------------------------
# a tree checkpoint of allowed values whose model would fill memory
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_refuses_a_huge_tree_checkpoint_in_one_line(tmp_path):
    ckpt = huge_tree_checkpoint(tmp_path / "tree.pt")
    for cmd in (["run", "npu_small", "--model", "sigmab_r50_c100"],
                ["finetune", "sigmab_r50_c100", "--checkpoint", str(tmp_path / "out.pt")]):
        got = run_cli([*cmd, "--weights", str(ckpt)], tmp_path)
        assert got.code == 2
        assert "tree.pt: the tree holds" in got.error_line()
        assert not (tmp_path / "out.pt").exists()


# ---------------------------------------------------------------------------------------------
# count arguments: every one has an upper bound, stated in its help
# ---------------------------------------------------------------------------------------------

def _options():
    from edgesim.cli import COMMANDS, build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in COMMANDS:
        if name == "sweep":      # the sweep's own flags are the sweep store's (issue 17, item 4)
            continue
        for action in sub.choices[name]._actions:
            yield name, action


def test_every_count_argument_is_bounded_and_says_so():
    checked = []
    for name, action in _options():
        assert action.type is not int, f"{name} {action.option_strings}: an unbounded int"
        if getattr(action.type, "__name__", "") == "integer" and action.dest != "seed":
            assert "at most" in (action.help or ""), f"{name} {action.option_strings}"
            checked.append(f"{name} {action.option_strings[0]}")
    assert {"run --inputs", "finetune --samples", "finetune --steps", "finetune --batch",
            "finetune --epochs", "finetune --log-every", "plot --input"} <= set(checked)


def test_the_command_line_states_the_limits_finetune_checks():
    from edgesim.cli import finetune as cli
    from edgesim.zoo.sigmab import train
    assert cli.LIMITS == train.LIMITS
    assert cli.MAX_SAMPLE_BYTES == train.MAX_SAMPLE_BYTES


@pytest.mark.parametrize(("args", "expected"), [
    (["--samples", "1000000000"], "argument --samples: expected an integer in 1..100_000"),
    (["--steps", "99999999999"], "argument --steps: expected an integer in 1..10_000_000"),
    (["--batch", "1" + "0" * 40], "argument --batch: expected an integer in 1..1_024"),
    (["--epochs", "0"], "argument --epochs: expected an integer in 1..10_000"),
    (["--log-every", "-1"], "argument --log-every: expected an integer in 1..10_000_000"),
])
def test_finetune_refuses_huge_counts_in_one_line(tmp_path, args, expected):
    got = run_cli(["finetune", "sigmab_r50_c100", "--checkpoint", str(tmp_path / "t.pt"),
                   *args], tmp_path, memory=1 << 30, timeout=60)
    assert got.code == 2
    assert expected in got.error_line()
    assert not (tmp_path / "t.pt").exists()


def test_synthetic_samples_are_bounded_by_their_bytes(tmp_path):
    # 100,000 samples of 3 x 224 x 224 would be 56 GiB of float32: refused before any is drawn
    from edgesim.errors import ModelError
    from edgesim.zoo.sigmab.train import finetune
    with pytest.raises(ModelError, match=r"--samples 100000: 100,000 synthetic inputs of "
                       r"3x224x224 take 56\.1 GiB; at most 1 GiB \(1,783 samples"):
        finetune("sigmab_r50", checkpoint=str(tmp_path / "t.pt"), samples=100_000)
    with pytest.raises(ModelError, match=r"--steps 0: expected a whole number in 1\.\."):
        finetune("sigmab_r50", checkpoint=str(tmp_path / "t.pt"), steps=0)
    assert list(tmp_path.iterdir()) == []
