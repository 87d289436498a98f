"""The command line: outputs a user reads, and one-line errors with exit code 2 for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgesim.cli import build_parser, main
from edgesim.testing import stderr_lines

ROOT = Path(__file__).resolve().parent.parent
NPU = str(ROOT / "edgesim" / "hwconfigs" / "npu_small.yaml")
USER = "usermodels:tiny_net"


def _err(capsys) -> str:
    """The error on stderr, which must be one line; the progress lines of the stages that ran
    before it (``edgesim: building ...``, one per stage) are set aside."""
    raw = capsys.readouterr().err
    assert "Traceback" not in raw
    err = "\n".join(stderr_lines(raw))
    assert "\n" not in err, f"error is more than one line: {raw!r}"
    return err


@pytest.fixture
def bad_yaml(tmp_path) -> Path:
    p = tmp_path / "broken.yaml"
    p.write_text("name: broken\nclock: [500 MHz\n")
    return p


@pytest.fixture
def unknown_key_yaml(tmp_path) -> Path:
    raw = yaml.safe_load(Path(NPU).read_text())
    raw["sram"]["colour"] = "blue"
    p = tmp_path / "unknown.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "missing.yaml", "--model", USER], "missing.yaml"),
    (["run", NPU, "--model", USER, "--set", "offchip.bandwidth=4 GB"], "offchip.bandwidth"),
    (["run", NPU, "--model", USER, "--set", "dram.bandwidth=4GB"], "offchip.bandwidth"),
    (["run", NPU, "--model", USER, "--set", "sram.size=0B"], "sram.size"),
    (["run", NPU, "--model", USER, "--set", "sram.size=-1KiB"], "sram.size"),
    # a unitless size is refused like a unitless clock (it was taken as 2 bytes): which unit
    (["run", NPU, "--model", USER, "--set", "sram.size=2"], "2 has no unit; give one, e.g. 2MiB"),
    (["run", NPU, "--model", USER, "--set", "clock=500"], "has no unit; give one, e.g. 500MHz"),
    (["run", NPU, "--model", USER, "--set", "sram.colour=blue"], "sram.colour"),
    (["run", NPU, "--model", "dens_r50"], "did you mean dense_r50"),
    (["run", NPU, "--model", "nosuchpkg.mod:fn"], "nosuchpkg.mod"),
    (["run", NPU, "--model", "usermodels:broken_net"], "always fails"),
    (["run", NPU, "--model", USER, "--weights", "nope.pt"], "nope.pt"),
    (["run", NPU, "--model", USER, "--inputs", "0"], "--inputs"),
    (["run", NPU, "--model", USER, "--policy", "fifo"], "fifo"),
    (["run", NPU, "--model", USER, "--set", "model.level=2"], "nested"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, expected):
    assert main(args) == 2
    assert expected in _err(capsys)


def test_malformed_yaml_names_the_file_and_line(capsys, bad_yaml):
    assert main(["run", str(bad_yaml), "--model", USER]) == 2
    err = _err(capsys)
    assert "broken.yaml" in err
    assert "line" in err


def test_unknown_yaml_key_is_named(capsys, unknown_key_yaml):
    assert main(["run", str(unknown_key_yaml), "--model", USER]) == 2
    err = _err(capsys)
    assert "unknown.yaml" in err
    assert "sram.colour" in err


def test_checkpoint_with_wrong_shapes_names_key_and_shapes(capsys, tmp_path):
    from usermodels import save_wrong_checkpoint
    ckpt = tmp_path / "wrong.pt"
    save_wrong_checkpoint(ckpt)
    assert main(["run", NPU, "--model", USER, "--weights", str(ckpt)]) == 2
    err = _err(capsys)
    assert "wrong.pt" in err
    assert "5.weight" in err


def test_checkpoint_that_is_not_a_state_dict(capsys, tmp_path):
    ckpt = tmp_path / "junk.pt"
    ckpt.write_bytes(b"not a checkpoint")
    assert main(["run", NPU, "--model", USER, "--weights", str(ckpt)]) == 2
    assert "junk.pt" in _err(capsys)


def test_checkpoint_of_a_whole_pickled_model_says_save_the_state_dict(capsys, tmp_path):
    import torch
    from usermodels import tiny_net
    ckpt = tmp_path / "whole.pt"
    torch.save(tiny_net(), ckpt)          # the model object, not model.state_dict()
    assert main(["run", NPU, "--model", USER, "--weights", str(ckpt)]) == 2
    err = _err(capsys)
    assert "\x1b" not in err             # torch's message carries terminal colour codes
    assert err.endswith("save the weights with torch.save(model.state_dict(), PATH) and pass "
                        "that file")      # the whole advice, not a message cut mid-sentence
    assert "whole.pt" in err


def test_run_table_has_one_row_per_input(capsys):
    assert main(["run", NPU, "--model", USER, "--inputs", "3"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("input"))
    assert lines[header].split()[:3] == ["input", "path", "weight"]   # "weight kB": the unit
    assert [line.split()[0] for line in lines[header + 1:header + 4]] == ["0", "1", "2"]
    assert "# summary" in out


def test_run_json_has_model_hardware_inferences_summary(capsys, tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", NPU, "--model", USER, "--inputs", "2", "--format", "json",
                 "--out", str(out)]) == 0
    obj = json.loads(out.read_text())
    assert set(obj) >= {"model", "hardware", "inferences", "summary"}
    assert set(obj["model"]) >= {"name", "family", "total_params", "active_params",
                                 "stored_weight_bytes", "dense_weight_bytes"}
    # tiny_net after BN folding: conv 8x3x3x3 = 216 + bias 8; fc 8x10 = 80 + bias 10 -> 314
    assert obj["model"]["total_params"] == 314
    assert len(obj["inferences"]) == 2
    assert obj["hardware"]["name"] == "npu_small"
    # SRAM holds the whole model: the warm inference moves no weights
    assert obj["inferences"][1]["weight_dram_bytes"] == 0
    assert obj["inferences"][0]["weight_dram_bytes"] == obj["model"]["stored_weight_bytes"]


def test_run_csv_and_per_layer(capsys):
    assert main(["run", NPU, "--model", USER, "--inputs", "2", "--format", "csv",
                 "--per-layer"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("input,path,op,name,kind")
    assert len(lines) > 3


def test_identical_runs_give_identical_bytes(capsys):
    outs = []
    for _ in range(2):
        assert main(["run", NPU, "--model", USER, "--inputs", "4", "--format", "csv",
                     "--policy", "belady"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]


def test_configs_lists_the_shipped_configs(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for name in ("npu_small", "ethos_u55", "ethos_u65", "nvdla_small", "stm32h7", "edgetpu"):
        assert name in out


def test_python_m_edgesim_entry_point():
    r = subprocess.run([sys.executable, "-m", "edgesim", "run", NPU, "--model", "dens_r50"],
                       capture_output=True, text=True, cwd=ROOT, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("edgesim: error: unknown model 'dens_r50'")
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("config", "name"), [
    ("npu_small", "npu_small"),             # a shipped config by name
    ("npu_small.yaml", "npu_small"),        # ... or by its file name
    ("own/mine.yaml", "mine"),              # one's own file, relative to the directory
])
def test_run_finds_the_config_from_any_directory(capsys, tmp_path, monkeypatch, config, name):
    raw = yaml.safe_load(Path(NPU).read_text())
    raw["name"] = "mine"
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "mine.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # neither the package nor a clone
    assert main(["run", config, "--model", USER, "--inputs", "2", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["hardware"]["name"] == name


def test_policy_and_prefetch_choices_are_the_simulators_tables():
    from edgesim.cli._common import policies, prefetch_modes
    parser = build_parser()
    for policy in policies():
        assert parser.parse_args(["run", "x", "--model", "m", "--policy", policy]).policy == policy
    for mode in prefetch_modes():
        assert parser.parse_args(["run", "x", "--model", "m", "--prefetch", mode]).prefetch == mode
    assert set(policies()) >= {"lru", "pinned", "belady"}
    assert set(prefetch_modes()) >= {"next", "none", "speculative"}


def test_every_command_module_has_add_parser_and_main():
    import importlib

    from edgesim.cli import COMMANDS
    for name in COMMANDS:
        mod = importlib.import_module(f"edgesim.cli.{name}")
        assert callable(mod.add_parser), name
        assert callable(mod.main), name
    # --help lists them in table order
    assert "{" + ",".join(COMMANDS) + "}" in build_parser().format_help()


# --------------------------------------------------------------------------- flags that do nothing

@pytest.fixture
def no_work(monkeypatch):
    """Tracing, building, fingerprinting or reading the cache fails the test: the flags must be
    refused before any of it."""
    import edgesim.build
    import edgesim.cache

    def boom(*args, **kwargs):
        raise AssertionError("work was done before the flags were checked")

    for name in ("build_workload", "route", "built_model"):
        monkeypatch.setattr(edgesim.build, name, boom)
    for name in ("load", "file_fingerprint"):
        monkeypatch.setattr(edgesim.cache, name, boom)


@pytest.mark.parametrize("data", ["inputs.pt", "missing/inputs.pt"])
def test_data_on_a_dense_model_names_the_flag(capsys, tmp_path, no_work, data):
    path = tmp_path / data
    if path.parent == tmp_path:
        path.write_bytes(b"x")
    assert main(["run", NPU, "--model", "dense_r50", "--data", str(path)]) == 2
    err = _err(capsys)
    assert f"--data {path}" in err
    assert "dense_r50" in err
    assert "does not use input data" in err


def test_data_missing_for_a_routed_model(capsys, tmp_path, no_work):
    path = tmp_path / "nope.pt"
    assert main(["run", NPU, "--model", "sigmab_r50", "--data", str(path)]) == 2
    assert f"--data {path}: no such file or folder" in _err(capsys)


def test_weights_folder_is_refused_without_walking_it(capsys, tmp_path, no_work, monkeypatch):
    def no_walk(*args, **kwargs):
        raise AssertionError("the folder was walked")

    monkeypatch.setattr(Path, "rglob", no_walk)
    monkeypatch.setattr(Path, "iterdir", no_walk)
    assert main(["run", NPU, "--model", USER, "--weights", str(tmp_path)]) == 2
    assert f"--weights {tmp_path}: is a folder; expected a checkpoint file" in _err(capsys)
    assert main(["run", NPU, "--model", USER, "--weights", "/"]) == 2
    assert "--weights /: is a folder" in _err(capsys)


def test_run_csv_escapes_text_a_spreadsheet_would_run(capsys, tmp_path):
    # tests/formula_models.py: one linear layer named "=1+2"
    timeline = tmp_path / "timeline.csv"
    assert main(["run", NPU, "--model", "formula_models:formula_net", "--per-layer",
                 "--format", "csv", "--inputs", "1", "--timeline", str(timeline)]) == 0
    out = capsys.readouterr().out.splitlines()
    head, row = out[0].split(","), out[1].split(",")
    assert row[head.index("name")] == "'=1+2"
    assert int(row[head.index("weight_bytes")]) > 0     # numbers are not escaped
    assert "'=1+2" in timeline.read_text()


def test_weights_larger_than_a_flash_only_device_give_one_note(capsys):
    # stm32h7 keeps weights in its flash; with a 100 B flash the user model's weights do not
    # fit: the run still answers (exit 0) and says so once, in one line
    code = main(["run", "stm32h7", "--model", USER, "--set", "offchip.size=100B",
                 "--inputs", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 0
    notes = [line for line in err if line.startswith("edgesim: note: ")]
    assert len(notes) == 1, err
    assert "do not fit the 100 B flash of stm32h7" in notes[0]


def test_csv_and_json_lines_stream_the_rows_a_table_would_show(capsys, monkeypatch, tmp_path):
    # CSV and JSON lines are written row by row as the simulation produces them; they hold
    # exactly the rows of the Python API, and a table of more rows than TABLE_ROWS shows the
    # summary alone
    from edgesim import api
    from edgesim.cli import run as run_cli
    from edgesim.report import render
    rows = api.run(NPU, USER, inputs=5).result.rows
    cols = list(rows[0]._fields)
    assert main(["run", NPU, "--model", USER, "--inputs", "5", "--format", "csv"]) == 0
    assert capsys.readouterr().out == render(cols, "csv", rows=rows) + "\n"
    out = tmp_path / "rows.jsonl"
    assert main(["run", NPU, "--model", USER, "--inputs", "5", "--format", "jsonl",
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(line)["input"] for line in lines] == [0, 1, 2, 3, 4]
    assert json.loads(lines[4])["weight_dram_bytes"] == rows[4].weight_dram_bytes
    monkeypatch.setattr(run_cli, "TABLE_ROWS", 3)
    assert main(["run", NPU, "--model", USER, "--inputs", "5"]) == 0
    text = capsys.readouterr().out
    assert "# 5 inferences: too many rows for a table" in text
    assert "# summary" in text
