"""Plots: the Pareto front rule, every kind writes a non-empty PNG and SVG, and each figure
answers its question: points say which configuration they are, no value is a mean of
configurations, titles follow the axes, series are told apart, a run names itself."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pandas as pd
import pytest

from edgesim import api
from edgesim.cli import main
from edgesim.errors import DataError, EdgesimError
from edgesim.plot import STYLES, pareto_front, plot, roofline_points, sram_lines
from edgesim.report import render
from edgesim.sim import simulate
from edgesim.sweep import load_results, sweep
from edgesim.testing import TINY_CONFIG, tiny_config, tiny_workload


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    small = tiny_workload()
    other = dataclasses.replace(small, name="tiny_b")
    sweep(TINY_CONFIG, [small, other], ["sram.size=1KiB..16KiB:x2"],
          policies=("lru", "belady"), inputs=3, out_dir=out, executor="serial")
    return out


@pytest.fixture(scope="module")
def grid_dir(tmp_path_factory):
    """SRAM x bandwidth: two keys swept, one model, one policy."""
    out = tmp_path_factory.mktemp("grid")
    sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=1KiB..4KiB:x2",
                                           "offchip.bandwidth=1GB/s,4GB/s"],
          policies=("lru",), inputs=2, out_dir=out, executor="serial")
    return out


@pytest.fixture(scope="module")
def run_json(tmp_path_factory):
    """A run's ``--per-layer --format json`` document (it names the model and the config)."""
    doc = api.run(tiny_config(sram="2 KiB"), tiny_workload(inputs=2), per_layer=True).to_dict()
    path = tmp_path_factory.mktemp("run") / "run.json"
    path.write_text(render(None, "json", json_obj=doc))
    return path


@pytest.fixture(scope="module")
def timeline_csv(tmp_path_factory):
    res = simulate(tiny_config(sram="2 KiB"), tiny_workload(inputs=2), per_layer=True)
    path = tmp_path_factory.mktemp("run") / "events.csv"
    res.layers.to_csv(path, index=False)
    return path


def test_pareto_front_keeps_exactly_the_undominated():
    # (1,4) (2,2) (4,1) trade off; (3,3) is beaten by (2,2); (2,2) twice: ties both kept
    df = pd.DataFrame({"x": [1, 2, 4, 3, 2], "y": [4, 2, 1, 3, 2]})
    assert pareto_front(df, "x", "y").tolist() == [True, True, True, False, True]


def test_pareto_front_of_one_point_is_that_point():
    assert pareto_front(pd.DataFrame({"x": [5], "y": [7]}), "x", "y").tolist() == [True]


def _written(paths):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    for p in paths:
        assert p.is_file()
        assert p.stat().st_size > 1000
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:2000]


def test_pareto_on_bytes(sweep_dir, tmp_path):
    _written(plot("pareto", sweep_dir, y="weight_dram_bytes_steady", out=tmp_path / "p"))


def test_timeline_writes_png_and_svg(timeline_csv):
    paths = plot("timeline", timeline_csv)
    _written(paths)
    assert paths[0].name == "events_timeline.png"


def test_unknown_column_names_the_columns(sweep_dir):
    with pytest.raises(DataError, match="column 'nope' is not in the table"):
        plot("pareto", sweep_dir, x="nope")


@pytest.mark.parametrize(("asked", "meant"), [("energy", "energy_j_steady"),
                                              ("latncy_s_steady", "latency_s_steady")])
def test_unknown_column_says_did_you_mean(sweep_dir, asked, meant):
    # a few close names, not the table's ~60 columns cut mid-name
    with pytest.raises(DataError) as exc:
        plot("pareto", sweep_dir, y=asked)
    message = str(exc.value)
    assert f"did you mean {meant}" in message
    assert len(message) < 300


def test_timeline_needs_an_event_log(sweep_dir):
    with pytest.raises(DataError, match="lacks columns"):
        plot("timeline", sweep_dir / "sweep.csv")


def test_missing_sweep_folder_is_an_error(tmp_path):
    with pytest.raises(EdgesimError, match=r"no sweep\.csv"):
        plot("pareto", tmp_path)


def test_cli_plot(sweep_dir, tmp_path, capsys):
    out = tmp_path / "knee"
    assert main(["plot", "bytes-vs-sram", str(sweep_dir), "--out", str(out)]) == 0
    _written([out.with_suffix(".png"), out.with_suffix(".svg")])
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["", "\"unterminated\n"], ids=["empty", "broken"])
@pytest.mark.parametrize("kind", ["pareto", "timeline"])
def test_an_empty_or_broken_csv_is_one_line(tmp_path, capsys, kind, content):
    (tmp_path / "sweep.csv").write_text(content)
    source = tmp_path if kind == "pareto" else tmp_path / "sweep.csv"
    assert main(["plot", kind, str(source)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "sweep.csv" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("kind", "axis"), [("pareto", ["--x", "model"]),
                                            ("bytes-vs-sram", ["--y", "policy"])])
def test_a_text_column_on_an_axis_is_one_line(sweep_dir, tmp_path, capsys, kind, axis):
    # 'could not convert string to float' was a traceback
    code = main(["plot", kind, str(sweep_dir), *axis, "--out", str(tmp_path / "f")])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"column '{axis[1]}' holds text" in err
    assert "an axis needs a numeric column such as" in err
    assert not list(tmp_path.glob("f.*"))


def test_styles_tell_twenty_series_apart_and_neighbours_differ_in_colour():
    assert len(set(STYLES[:20])) == 20
    assert len(set(STYLES)) == len(STYLES) >= 80
    assert all(a[0] != b[0] for a, b in itertools.pairwise(STYLES))


def test_bytes_vs_sram_draws_each_bandwidth_apart_never_a_mean(grid_dir):
    # 3 sizes x 2 bandwidths of one model: two curves of three points, each point a row
    df = load_results(grid_dir)
    lines, others = sram_lines(df.assign(_y=df["latency_s_steady"]), "sram_bytes")
    assert others == ["offchip.bandwidth"]
    assert len(lines) == 2
    rows = set(zip(df["sram_bytes"], df["latency_s_steady"], strict=True))
    for label, g in lines:
        assert "offchip.bandwidth=" in label
        assert len(g) == 3
        assert set(zip(g["sram_bytes"], g["_y"], strict=True)) <= rows


def test_rows_no_swept_key_tells_apart_are_refused_in_one_line(grid_dir, tmp_path, capsys):
    df = load_results(grid_dir)
    twice = pd.concat([df, df.assign(prefetch="none")], ignore_index=True)
    with pytest.raises(DataError, match="differ in prefetch"):
        sram_lines(twice.assign(_y=twice["latency_s_steady"]), "sram_bytes")


def _svg(paths):
    return paths[1].read_text()


def test_pareto_front_points_say_their_grid_values(grid_dir, tmp_path):
    df = load_results(grid_dir)
    front = pareto_front(df, "latency_s_steady", "energy_j_steady")
    paths = plot("pareto", grid_dir, out=tmp_path / "p")
    _written(paths)
    text = _svg(paths)
    for _, row in df[front].iterrows():
        assert f"sram.size={row['sram.size']}, offchip.bandwidth={row['offchip.bandwidth']}" \
            in text


def test_the_title_follows_y(grid_dir, tmp_path):
    paths = plot("bytes-vs-sram", grid_dir, y="latency_s", out=tmp_path / "b")
    _written(paths)
    text = _svg(paths)
    assert "Steady-state latency per inference vs SRAM size" in text
    assert "weight traffic" not in text


def test_energy_breakdown_says_when_it_shows_some_points(sweep_dir):
    # 1, 2, 4, 8, 16 KiB: five points, four panels
    paths = plot("energy-breakdown", sweep_dir)       # the default name, in the folder
    _written(paths)
    text = _svg(paths)
    assert "at 4 of 5 grid points" in text


def test_timeline_of_a_run_document_names_model_config_and_ops(run_json, tmp_path):
    paths = plot("timeline", run_json, out=tmp_path / "t")
    _written(paths)
    text = _svg(paths)
    assert "tiny on tiny: inference 1" in text
    assert "compute, bound: weights" in text         # 2 KiB: the 3000 B do not stay
    assert ">b</text>" in text                         # the longest op, named


def test_roofline_points_never_pass_the_compute_roof(run_json, tmp_path):
    # an op takes at least ceil(MACs / peak) cycles: achieved <= 64 MACs x 1 GHz
    layers = pd.DataFrame(json.loads(run_json.read_text())["layers"])
    _, ops = roofline_points(layers, 0)
    assert len(ops) == 2                                   # a and b; relu has no MACs
    assert (ops["_achieved"] <= 64e9 * (1 + 1e-9)).all()
    _written(plot("roofline", run_json, out=tmp_path / "r"))


def test_roofline_of_an_event_log_needs_the_config(timeline_csv, tmp_path, capsys):
    assert main(["plot", "roofline", str(timeline_csv), "--out", str(tmp_path / "r")]) == 2
    assert "give --config CONFIG" in capsys.readouterr().err
