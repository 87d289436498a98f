"""Plots: the Pareto front rule, and every kind writes a non-empty PNG and SVG."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from edgesim.cli import main
from edgesim.errors import DataError, EdgesimError
from edgesim.plot import pareto_front, plot
from edgesim.sim import simulate
from edgesim.sweep import sweep
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


@pytest.mark.parametrize("kind", ["pareto", "bytes-vs-sram", "energy-breakdown"])
def test_sweep_plots_write_png_and_svg(sweep_dir, kind):
    _written(plot(kind, sweep_dir))


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
