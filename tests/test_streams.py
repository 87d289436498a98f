"""Long streams: summaries built on the fly, rows written as produced, memory flat in N."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.sim import SUMMARY_METRICS, simulate, summarize
from edgesim.sim.result import _mean, _percentile
from edgesim.testing import tiny_config, tiny_workload


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 50), min_size=1, max_size=300),
       q=st.sampled_from([0, 1, 25, 50, 75, 99, 100]))
def test_percentile_of_counts_is_numpys(values, q):
    # the multiset as sorted (value, count) pairs gives numpy's linear-interpolation
    # percentile and its mean, to rounding
    scaled = [v * 0.37 for v in values]
    items = sorted({v: scaled.count(v) for v in scaled}.items())
    cum = list(itertools.accumulate(c for _, c in items))
    assert np.isclose(_percentile(items, cum, q), np.percentile(scaled, q), rtol=1e-12, atol=0)
    assert np.isclose(_mean(items, cum[-1]), np.mean(scaled), rtol=1e-12, atol=0)


def test_rows_streamed_out_match_the_kept_rows_and_the_summary():
    hw, w = tiny_config(sram=1500), tiny_workload(inputs=50)
    kept = simulate(hw, w)
    seen = []
    streamed = simulate(hw, w, on_row=seen.append, keep_rows=False)
    assert streamed.rows == []
    assert seen == kept.rows
    assert streamed.summary == kept.summary == summarize(kept.rows)
    assert set(SUMMARY_METRICS) <= set(streamed.summary)


def test_a_writer_taking_repeated_rows_renumbered_writes_the_kept_rows_bytes():
    # ``simulate`` hands a memo hit's row to ``on_row.renumbered(i, row)`` (the very row
    # met before, under another input number) when the writer has that method, as
    # ``cli.run._Rows`` does: the rows it stands for are the kept rows, and what
    # ``RowWriter.numbered`` writes of them (text reused by the row's identity) is the
    # row-by-row bytes, in CSV and JSON lines.
    import io

    from edgesim.report import RowWriter
    hw, w = tiny_config(sram=1500), tiny_workload(inputs=50)
    kept = simulate(hw, w).rows

    class Writer:
        def __init__(self) -> None:
            self.pairs: list = []
            self.renumbered_rows = 0

        def __call__(self, row) -> None:
            self.pairs.append((row[0], row))

        def renumbered(self, i, row) -> None:
            self.renumbered_rows += 1
            self.pairs.append((i, row))

    got = Writer()
    simulate(hw, w, on_row=got, keep_rows=False)
    assert got.renumbered_rows > 40   # the memo hits went that way
    assert [(i, *r[1:]) for i, r in got.pairs] == [tuple(r) for r in kept]
    for fmt in ("csv", "jsonl"):
        one, numbered = io.StringIO(), io.StringIO()
        plain = RowWriter(kept[0]._fields, fmt, one)
        for r in kept:
            plain(r)
        writer = RowWriter(kept[0]._fields, fmt, numbered)
        writer.numbered(got.pairs[:17])
        writer.numbered(got.pairs[17:])
        assert numbered.getvalue() == one.getvalue(), fmt


def _peak(policy: str, n: int) -> int:
    hw, w = tiny_config(sram=1500), tiny_workload(inputs=n)
    tracemalloc.start()
    simulate(hw, w, policy=policy, keep_rows=False, on_row=lambda row: None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def test_memory_per_inference_does_not_grow_with_the_stream():
    # 10x the inputs may add a few bytes per input (the engine's chunk of the path sequence
    # and belady's window of next inferences, both up to 65,536 inputs long: at 20,000 inputs
    # they span the stream) but not a row's ~300 bytes
    for policy in ("lru", "pinned", "belady"):
        small, large = _peak(policy, 2_000), _peak(policy, 20_000)
        assert (large - small) / 18_000 < 64, (policy, small, large)


def test_a_bounded_memo_gives_the_same_rows(monkeypatch):
    # a memo that starts over every 2 situations still gives exactly the rows of no memo
    from edgesim.sim import engine
    hw = tiny_config(sram=1500)
    w = tiny_workload(inputs=30)
    free = simulate(hw, w, memo=False).rows
    monkeypatch.setattr(engine, "MEMO_LIMIT", 2)
    for policy in ("lru", "belady"):
        bounded = simulate(hw, w, policy=policy)
        assert bounded.meta["memo_entries"] <= 2
        assert bounded.rows == simulate(hw, w, policy=policy, memo=False).rows
    assert simulate(hw, w).rows == free


def test_the_summary_is_numpys_over_the_steady_rows():
    # a routed stream (the shipped sigmab_r50 routes of 64 inputs: four paths) has rows of
    # several values; cold is row 0, mean and percentiles numpy's over rows 1..63
    from edgesim import api
    from edgesim.config import load_config
    hw = load_config("npu_small")
    w = api.workload("sigmab_r50", inputs=64, formats=hw.formats)
    res = simulate(hw, w)
    # (a run for the summary alone counts each distinct inference's row: the same summary)
    assert simulate(hw, w, keep_rows=False).summary == res.summary
    df = res.inferences
    varied = 0
    for m in SUMMARY_METRICS:
        col = df[m].to_numpy(dtype=float)
        got = res.summary[m]
        varied += len(set(col[1:])) > 1
        assert got["cold"] == col[0]
        assert np.isclose(got["steady_mean"], col[1:].mean(), rtol=1e-12, atol=0), m
        for q in (50, 99):
            assert np.isclose(got[f"p{q}"], np.percentile(col[1:], q), rtol=1e-12, atol=0), m
    assert varied >= 3   # the check sees metrics that differ from row to row


def test_chunked_csv_and_jsonl_are_the_row_by_row_bytes():
    # RowWriter.many (chunks, a row's tail text reused when its cells are the same objects)
    # writes what one call per row writes: awkward floats, equal values of other types or
    # signs (0.0 / -0.0, 1 / 1.0 / True: equal as keys, not as text), text a spreadsheet runs
    # (csv_safe), quotes, commas and newlines, empty and missing cells
    import io

    from edgesim.report import RowWriter, render
    nan, tail = float("nan"), ("p,1", 0.1 + 0.2, -0.0, 2**63, "=cmd")
    cells = [0.1 + 0.2, 1e-300, 5e-324, 1e16, 123456789012.5, -0.0, 0.0, nan, float("inf"),
             -float("inf"), 1 / 3, 1, 1.0, True, 2**63, "a,b", 'say "x"', "two\nlines", "",
             None, "=1+1", "-2", "@x"]
    rows = [(i, *tail) for i in range(5)]                       # the same tail objects
    rows += [(c, c, "x", 0.0, c, c) for c in cells]             # equal keys, other types
    rows += [(i, *tail[:2], 0.0, *tail[3:]) for i in range(3)]  # -0.0 then 0.0
    rows += [(c, *tail) for c in cells]                          # every kind of first cell
    cols = ["input", "a", "b", "c", "d", "e"]
    for fmt in ("csv", "jsonl"):
        one, many = io.StringIO(), io.StringIO()
        w = RowWriter(cols, fmt, one, safe=True)
        for r in rows:
            w(r)
        chunked = RowWriter(cols, fmt, many, safe=True)
        chunked.many(rows[:7])
        chunked.many(rows[7:])
        assert many.getvalue() == one.getvalue(), fmt
        plain = io.StringIO()
        RowWriter(cols, fmt, plain).many(rows)
        assert plain.getvalue().rstrip("\n") == render(cols, fmt, rows=rows)
    # and the rows of a real stream (memo hits: the same row under a new input number)
    rows = simulate(tiny_config(sram=1500), tiny_workload(inputs=40)).rows
    for fmt in ("csv", "jsonl"):
        one, many = io.StringIO(), io.StringIO()
        w = RowWriter(rows[0]._fields, fmt, one)
        for r in rows:
            w(r)
        RowWriter(rows[0]._fields, fmt, many).many(rows)
        assert many.getvalue() == one.getvalue()
