"""Progress where people wait: a bar per counted step on a terminal; piped, a line at most
every few seconds with the count, the time and the rate (and a sweep's last line)."""

from __future__ import annotations

import pytest

from edgesim.cli._common import CliProgress


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line]


def test_piped_routing_prints_a_line_at_most_every_interval(capsys):
    clock = Clock()
    shown = CliProgress(False, None, every=10, clock=clock)
    for t, done in ((0, 16), (4, 32), (11, 48), (12, 64), (19, 80), (25, 96)):
        clock.t = t
        shown.progress.count("route", done, 136)
    # the clock starts at the first count: lines at 11 s and at 25 s (14 s after the last)
    assert _lines(capsys.readouterr().err) == [
        "edgesim: routing: 48 of 136 inputs, 11 s, 4.4 inputs/s",     # 48 / 11 s
        "edgesim: routing: 96 of 136 inputs, 25 s, 3.8 inputs/s"]     # 96 / 25 s


def test_piped_routing_of_few_inputs_is_not_silent(capsys):
    clock = Clock()
    shown = CliProgress(False, None, every=10, clock=clock)
    shown.progress.count("route", 0, 8)
    clock.t = 30                       # 8 inputs of a large model: still a line while it runs
    shown.progress.count("route", 4, 8)
    assert _lines(capsys.readouterr().err) == [
        "edgesim: routing: 4 of 8 inputs, 30 s, 0.1 inputs/s"]


def test_a_piped_sweep_ends_with_its_count_and_time(capsys):
    clock = Clock()
    shown = CliProgress(False, None, every=10, clock=clock)
    for done in range(1, 23):
        clock.t = done * 0.1
        shown.progress.count("sweep", done, 22)
    # done before the interval: no line until the last task, then one; the clock started at
    # the first count (0.1 s), the last came at 2.2 s: 22 tasks / 2.1 s = 10.5 tasks/s
    assert _lines(capsys.readouterr().err) == [
        "edgesim: sweep: 22 of 22 tasks, 2 s, 10.5 tasks/s"]


def test_a_short_stream_shows_no_simulation_count(capsys):
    clock = Clock()
    shown = CliProgress(False, 8, every=0, clock=clock)
    clock.t = 5
    shown.progress.count("simulate", 4, None)      # 8 inferences take milliseconds
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("total", [8, 300])
def test_a_terminal_draws_a_bar_whatever_the_count(capsys, total):
    shown = CliProgress(True, None)
    shown.progress.count("route", total // 2, total)
    shown.progress.count("route", total, total)
    shown.close()
    err = capsys.readouterr().err        # a tqdm bar of inputs (cleared when closed)
    assert f"/{total}" in err
    assert "input" in err
