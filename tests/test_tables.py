"""What a person reads in a terminal: the default tables fit 100 columns, in human units with
the unit in the header, and the run header names everything that set the numbers."""

from __future__ import annotations

import re

import pytest

from edgesim.cli import main, version
from edgesim.cli._human import WIDTH, scaled
from edgesim.config import config_table
from edgesim.zoo.registry import REGISTRY

CONFIGS = [row["name"] for row in config_table()]
E_NOTATION = re.compile(r"\d[eE][+-]?\d")


def _out(capsys, args: list[str]) -> str:
    assert main(args) == 0
    return capsys.readouterr().out


def _fits(out: str) -> None:
    widest = max(out.splitlines(), key=len)
    assert len(widest) <= WIDTH, widest
    assert not E_NOTATION.search(out)


@pytest.mark.parametrize("model", list(REGISTRY))
def test_the_default_run_table_of_every_registry_model_fits(capsys, model):
    _fits(_out(capsys, ["run", "npu_small", "--model", model, "--inputs", "2"]))


@pytest.mark.parametrize("config", CONFIGS)
def test_the_default_run_table_on_every_shipped_config_fits(capsys, config):
    _fits(_out(capsys, ["run", config, "--model", "sigmab_pn2", "--inputs", "2"]))


def test_wide_has_every_column_in_base_units(capsys):
    from edgesim.sim import INFERENCE_COLUMNS
    out = _out(capsys, ["run", "npu_small", "--model", "dense_pn2", "--inputs", "2", "--wide"])
    header = next(line for line in out.splitlines() if line.startswith("input"))
    assert header.split() == list(INFERENCE_COLUMNS)


def test_the_header_names_config_sets_shape_policy_and_prefetch(capsys):
    out = _out(capsys, ["run", "npu_small", "--model", "dense_pn2", "--inputs", "2",
                        "--set", "sram.size=2MiB", "--set", "offchip.bandwidth=1GB/s",
                        "--policy", "belady", "--prefetch", "none"])
    head = " ".join(line[2:] for line in out.splitlines() if line.startswith("# "))
    for part in ("dense_pn2", "input 1024x3", "on npu_small", "--set sram.size=2MiB",
                 "--set offchip.bandwidth=1GB/s", "policy belady", "prefetch none", "2 inputs"):
        assert part in head


def test_the_default_table_agrees_with_the_csv(capsys):
    # the same numbers, scaled: weight MB = weight_dram_bytes / 1e6 to the digits shown
    csv = _out(capsys, ["run", "npu_small", "--model", "dense_pn2", "--inputs", "2",
                        "--format", "csv"]).splitlines()
    cols = csv[0].split(",")
    first = dict(zip(cols, csv[1].split(","), strict=True))
    table = _out(capsys, ["run", "npu_small", "--model", "dense_pn2", "--inputs", "2"])
    lines = table.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("input"))
    header = re.split(r"\s{2,}", lines[i].strip())
    row = dict(zip(header, lines[i + 1].split(), strict=True))
    unit = next(h for h in header if h.startswith("weight ")).split()[1]
    factor = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
    shown = float(row[f"weight {unit}"].replace(",", ""))
    assert shown == pytest.approx(int(first["weight_dram_bytes"]) / factor, rel=1e-3)


@pytest.mark.parametrize(("values", "kind", "unit", "cells"), [
    ([0.0321602, 0.0055], "s", "ms", ["32.16", "5.50"]),    # largest in 1..999: ms
    ([25_723_392, 0], "B", "MB", ["25.72", "0"]),
    ([2.3e-13], "J", "nJ", ["0.0002300"]),                   # below the smallest unit: no e
    ([512], "B", "B", ["512"]),
    ([None, 4.5e-3], "J", "mJ", ["-", "4.500"]),
])
def test_scaled_picks_the_unit_that_puts_the_largest_in_1_to_999(values, kind, unit, cells):
    assert scaled(values, kind) == (unit, cells)


def test_configs_and_models_fit(capsys):
    _fits(_out(capsys, ["configs"]))
    _fits(_out(capsys, ["models"]))
    for name in CONFIGS:
        out = _out(capsys, ["configs", name])
        assert max(len(line) for line in out.splitlines()) <= WIDTH
        assert "sources:" in out


def test_configs_wide_and_csv_keep_the_sources(capsys):
    assert "source" in _out(capsys, ["configs", "--wide"]).splitlines()[0]
    assert _out(capsys, ["configs", "--format", "csv"]).splitlines()[0].endswith(",source")


def test_version(capsys):
    assert _out(capsys, ["--version"]).strip() == version()
    assert version().startswith("edgesim 0.1.0 ")
