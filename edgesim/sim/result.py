"""What a simulation produces: named rows per inference and per op, a summary, ``Result``.

Public names: ``InferenceRow``, ``LayerRow``, ``INFERENCE_COLUMNS``, ``LAYER_COLUMNS``,
``SUMMARY_METRICS``, ``Result``, ``Summary``, ``summarize``.

Rows are NamedTuples: cheap to build, positional like the tuples they replace, and named.
The column tuples are the rows' field names, so the order of a table is the order of its row
type. Units are in the names: bytes, cycles, seconds (``_s``), joules (``_j``).

>>> INFERENCE_COLUMNS[:3]
('input', 'path', 'weight_dram_bytes')
>>> summarize([])
{'inputs': 0}
"""

from __future__ import annotations

import itertools
import math
import operator
from bisect import bisect_right
from functools import cached_property
from typing import Any, NamedTuple

__all__ = ["INFERENCE_COLUMNS", "LAYER_COLUMNS", "SUMMARY_METRICS", "InferenceRow", "LayerRow",
           "Result", "Summary", "summarize"]


class InferenceRow(NamedTuple):
    """One inference of a stream (built by ``edgesim.sim.engine``)."""

    input: int
    path: str
    weight_dram_bytes: int       # weight bytes read off-chip (kept + streamed + speculative)
    weight_stream_bytes: int     # of those, bytes streamed in tiles and not kept
    spec_wasted_bytes: int       # bytes of a wrong speculative guess
    weight_refetch_bytes: int    # of weight_dram_bytes, re-reads per input stripe (tiling)
    act_dram_bytes: int          # activation spills: written out + read back (+ re-reads)
    act_reread_bytes: int        # of act_dram_bytes, input re-reads per weight tile (tiling)
    sram_read_bytes: int
    sram_write_bytes: int
    macs: int                    # executed MACs (effective ones when zeros are skipped)
    compute_cycles: int
    stall_cycles: int            # cycles - compute_cycles
    cycles: int
    latency_s: float
    energy_j: float              # the sum of the six parts that follow
    energy_mac_j: float
    energy_array_j: float        # PE registers of the MAC array
    energy_sram_j: float
    energy_offchip_j: float
    energy_decode_j: float
    energy_leak_j: float
    bound: str                   # where most of its time went (``edgesim.sim.bound``)


class LayerRow(NamedTuple):
    """One op of one inference (``per_layer=True``); times in seconds from the inference start,
    ``None`` for an op that moved nothing."""

    input: int
    path: str
    op: int
    name: str
    kind: str
    precision: str
    encoding: str                # encodings of the op's blocks, "csr+dense"; "" without weights
    weight_sparsity: float | None
    rule: str
    weight_bytes: int            # stored bytes of the op's blocks
    weight_dram_bytes: int
    weight_stream_bytes: int
    weight_refetch_bytes: int    # of weight_dram_bytes, re-reads per input stripe
    act_dram_bytes: int
    act_reread_bytes: int        # of act_dram_bytes, input re-reads per weight tile
    tiling: str                  # loop order and tiles: "once", "weights_outer/3", ...
    macs: int
    compute_cycles: int
    util: float                  # macs / (compute_cycles x peak MACs/cycle); 0.0 without MACs
    dma_start_s: float | None
    dma_end_s: float | None
    compute_start_s: float
    compute_end_s: float
    stall_s: float
    bound: str                   # what decided the op's end (``edgesim.sim.bound``)
    energy_j: float              # the op's share of the inference's energy_j (they add up)


INFERENCE_COLUMNS: tuple[str, ...] = InferenceRow._fields
LAYER_COLUMNS: tuple[str, ...] = LayerRow._fields

#: Columns ``summarize`` describes (cold, steady-state mean, p50, p99).
SUMMARY_METRICS = ("weight_dram_bytes", "weight_refetch_bytes", "act_dram_bytes",
                   "act_reread_bytes", "latency_s", "energy_j",
                   "energy_mac_j", "energy_array_j", "energy_sram_j", "energy_offchip_j",
                   "energy_decode_j", "energy_leak_j", "stall_cycles", "spec_wasted_bytes")


class Result:
    """What a simulation produced: per-inference rows, optional per-op rows, a summary.

    ``rows`` / ``layer_rows`` are ``InferenceRow`` / ``LayerRow`` tuples; ``inferences`` and
    ``layers`` are the same as DataFrames, built on first use (so a command that only prints
    rows never imports pandas).
    """

    def __init__(self, rows: list[InferenceRow], layer_rows: list[LayerRow] | None,
                 summary: dict[str, Any], meta: dict[str, Any] | None = None) -> None:
        self.rows = rows
        self.layer_rows = layer_rows
        self.summary = summary
        self.meta = dict(meta or {})

    @cached_property
    def inferences(self):
        import pandas as pd
        return pd.DataFrame.from_records(self.rows, columns=list(INFERENCE_COLUMNS))

    @cached_property
    def layers(self):
        if self.layer_rows is None:
            return None
        import pandas as pd
        return pd.DataFrame.from_records(self.layer_rows, columns=list(LAYER_COLUMNS))


class Summary:
    """``summarize`` built one row at a time, in memory bounded by the distinct values.

    A stream's rows repeat (the engine's memo gives identical situations identical rows), so
    keeping, per metric, how often each steady-state value occurs gives the mean and exact
    percentiles of a million inferences in a few kilobytes.
    """

    __slots__ = ("cold", "counts", "n")

    def __init__(self) -> None:
        self.n = 0
        self.cold: InferenceRow | None = None
        #: steady-state rows' metric values (a tuple, in ``SUMMARY_METRICS`` order) -> count:
        #: one dict lookup per row; split per metric in ``result``
        self.counts: dict[tuple[Any, ...], int] = {}

    def add(self, row: InferenceRow, times: int = 1) -> None:
        """Count one inference, or ``times`` with this row's metrics (the first counted is
        the cold one)."""
        if times <= 0:
            return
        self.n += times
        if self.cold is None:
            self.cold = row
            times -= 1
            if not times:
                return
        v = _metrics(row)
        self.counts[v] = self.counts.get(v, 0) + times

    def result(self) -> dict[str, Any]:
        """Cold, steady-state mean, p50 and p99 per metric (``summarize``'s dict)."""
        out: dict[str, Any] = {"inputs": self.n}
        if self.cold is None:
            return out
        per_metric: list[dict[Any, int]] = [{} for _ in SUMMARY_METRICS]
        for values, n in self.counts.items():
            for c, v in zip(per_metric, values, strict=True):
                c[v] = c.get(v, 0) + n
        for m, c, k in zip(SUMMARY_METRICS, per_metric, _METRIC_INDEX, strict=True):
            items = sorted(c.items()) if c else [(self.cold[k], 1)]
            cum = list(itertools.accumulate(n for _, n in items))
            out[m] = {"cold": self.cold[k], "steady_mean": _mean(items, cum[-1]),
                      "p50": _percentile(items, cum, 50), "p99": _percentile(items, cum, 99)}
        return out


_METRIC_INDEX = tuple(INFERENCE_COLUMNS.index(m) for m in SUMMARY_METRICS)
_metrics = operator.itemgetter(*_METRIC_INDEX)


def _mean(items: list[tuple[Any, int]], n: int) -> float:
    """Mean of a multiset given as sorted (value, count) pairs, ``n`` counts in all (exactly
    rounded sum)."""
    return math.fsum(float(v) * c for v, c in items) / n


def _percentile(items: list[tuple[Any, int]], cum: list[int], q: float) -> float:
    """The q-th percentile of a multiset of sorted (value, count) pairs (``cum``: their counts
    summed, ``itertools.accumulate``), interpolated linearly between order statistics as
    ``numpy.percentile`` does by default (index (n - 1) q / 100)."""
    n = cum[-1]
    h = (n - 1) * q / 100
    lo = math.floor(h)
    # order statistic r: the value of the first pair whose counts so far pass r
    a = float(items[bisect_right(cum, lo)][0])
    b = float(items[bisect_right(cum, min(lo + 1, n - 1))][0])
    t = h - lo
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def summarize(rows: list[InferenceRow]) -> dict[str, Any]:
    """Cold (first inference), steady-state mean, p50 and p99 (inferences 2..N) per metric.

    With a single inference the steady-state figures are those of the cold one (``Summary``).
    """
    s = Summary()
    for row in rows:
        s.add(row)
    return s.result()
