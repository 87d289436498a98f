"""``run --timeline trace.json``: Chrome / Perfetto trace events of the per-op timeline."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import pytest

from edgesim import api
from edgesim.cli import main


@pytest.mark.parametrize(("model", "extra"), [
    ("dense_mbv2", []),
    ("sigmab_pn2", ["--prefetch", "speculative"]),     # routed, with wasted guesses
])
def test_trace_events_never_overlap_on_a_track_and_add_up_to_the_busy_time(
        tmp_path, capsys, model, extra):
    path = tmp_path / "trace.json"
    assert main(["run", "npu_small", "--model", model, "--inputs", "4", "--timeline",
                 str(path), *extra]) == 0
    capsys.readouterr()
    doc = json.loads(path.read_text())
    events = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    meta = {e["args"]["name"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert f"{model} on npu_small" in meta
    assert {"compute", "stall", "off-chip 1"} <= meta
    tracks = defaultdict(list)
    for e in events:
        assert e["dur"] > 0
        tracks[e["tid"]].append((e["ts"], e["dur"]))
    for spans in tracks.values():
        spans.sort()
        for (t0, d0), (t1, _) in itertools.pairwise(spans):
            assert t0 + d0 <= t1 + 1e-6          # µs; times are whole ps
    # the array is busy from the first op's start to the last op's end of every inference
    run = api.run("npu_small", model, inputs=4,
                  overrides=[f"prefetch.mode={(extra or ['', 'next'])[1]}"])
    busy_us = sum(r.latency_s for r in run.result.rows) * 1e6
    assert sum(d for _, d in tracks[1]) == pytest.approx(busy_us, rel=1e-9)
    assert max(t + d for t, d in tracks[1]) == pytest.approx(busy_us, rel=1e-9)
