"""What a simulation produces: named rows per inference and per op, a summary, ``Result``.

Public names: ``InferenceRow``, ``LayerRow``, ``INFERENCE_COLUMNS``, ``LAYER_COLUMNS``,
``SUMMARY_METRICS``, ``Result``, ``summarize``.

Rows are NamedTuples: cheap to build, positional like the tuples they replace, and named.
The column tuples are the rows' field names, so the order of a table is the order of its row
type. Units are in the names: bytes, cycles, seconds (``_s``), joules (``_j``).

>>> INFERENCE_COLUMNS[:3]
('input', 'path', 'weight_dram_bytes')
>>> summarize([])
{'inputs': 0}
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, NamedTuple

import numpy as np

__all__ = ["INFERENCE_COLUMNS", "LAYER_COLUMNS", "SUMMARY_METRICS", "InferenceRow", "LayerRow",
           "Result", "summarize"]


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


INFERENCE_COLUMNS: tuple[str, ...] = InferenceRow._fields
LAYER_COLUMNS: tuple[str, ...] = LayerRow._fields

#: Columns ``summarize`` describes (cold, steady-state mean, p50, p99).
SUMMARY_METRICS = ("weight_dram_bytes", "act_dram_bytes", "latency_s", "energy_j",
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


def summarize(rows: list[InferenceRow]) -> dict[str, Any]:
    """Cold (first inference), steady-state mean, p50 and p99 (inferences 2..N) per metric.

    With a single inference the steady-state figures are those of the cold one.
    """
    out: dict[str, Any] = {"inputs": len(rows)}
    if not rows:
        return out
    steady = rows[1:] if len(rows) > 1 else rows
    for m in SUMMARY_METRICS:
        k = INFERENCE_COLUMNS.index(m)
        col = np.fromiter((r[k] for r in steady), dtype=float, count=len(steady))
        out[m] = {
            "cold": rows[0][k],
            "steady_mean": float(col.mean()),
            "p50": float(np.percentile(col, 50)),
            "p99": float(np.percentile(col, 99)),
        }
    return out
