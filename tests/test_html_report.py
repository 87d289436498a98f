"""``edgesim report``: one self-contained HTML file (no URL outside it), figures embedded."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest

from edgesim.cli import main
from edgesim.sweep import sweep
from edgesim.testing import TINY_CONFIG, error_line, tiny_workload

#: A reference a browser would fetch: a src or href that is a URL with a scheme other than data.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?!data:|#)[a-z][a-z0-9+.-]*:""", re.I)
PNG = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _self_contained(text: str, figures: int) -> None:
    assert not EXTERNAL.search(text)
    assert "http://" not in text
    assert "https://" not in text
    pngs = PNG.findall(text)
    assert len(pngs) == figures
    for data in pngs:                                # each figure is a whole PNG
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "r.html"
    assert main(["report", "npu_small", "--model", "dense_pn2", "--inputs", "2",
                 "--set", "sram.size=1MiB", "--out", str(out)]) == 0
    return out


def test_a_run_report_is_one_file_with_its_figures_inside(run_report):
    text = run_report.read_text()
    _self_contained(text, figures=2)                 # the timeline and the roofline
    for section in ("Summary", "Where the time and energy go", "Timeline", "Roofline",
                    "Per op"):
        assert f"<h2>{section}</h2>" in text
    assert "sram.size=1MiB" in text                  # the header names every --set
    assert "dense_pn2 on npu_small" in text


def test_a_sweep_report_draws_its_front_with_labelled_points(tmp_path, capsys):
    sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=1KiB..4KiB:x2"], inputs=2,
          out_dir=tmp_path, executor="serial")
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.html").read_text()
    _self_contained(text, figures=3)                 # Pareto, bytes vs SRAM, energy
    assert "<h2>Pareto front</h2>" in text
    assert "wrote" in capsys.readouterr().out


def test_a_run_report_needs_a_model(capsys):
    assert main(["report", "npu_small"]) == 2
    assert "needs --model M" in error_line(capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium to render with")
def test_a_browser_renders_the_report_without_a_console_message(run_report, tmp_path):
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
         "--window-size=1300,3000", "--virtual-time-budget=5000", "--enable-logging=stderr",
         "--v=0", run_report.as_uri()], capture_output=True, text=True, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CONSOLE" not in done.stderr              # no script error, no failed load
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
