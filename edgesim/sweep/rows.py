"""The row schema of a sweep table, built in one place.

Public names: ``SweepRow``, ``DetailHead``, ``HW_COLUMNS``, ``PERCENTILE_METRICS``.

A ``SweepRow`` is one (grid point, model, policy). Its columns, in order: ``point``, one column
per swept key (the value as configured), ``config``, the hardware numbers of ``HW_COLUMNS``, the
model fields of ``api.model_info`` (``model``, ``family``, ``total_params``, ...), ``policy``,
``prefetch``, ``inputs``, ``top1`` (only in an evaluated sweep: the model's top-1 over the
labelled data, a fraction 0..1) and, for each metric of ``edgesim.sim.SUMMARY_METRICS``,
``<metric>_cold`` and ``<metric>_steady`` (mean over inferences 2..N), plus ``_p50``/``_p99``
for the metrics of ``PERCENTILE_METRICS``, then ``status`` (``ok`` or ``failed``) and ``error``
(empty, or the one-line error of a failed task, whose metric columns are empty). Units are in
the names.

>>> from edgesim.testing import tiny_config
>>> hw = tiny_config(sram="4 KiB")
>>> s = {"cold": 1, "steady_mean": 0.5, "p50": 0.5, "p99": 1}
>>> row = SweepRow.build(0, {"sram.size": "4KiB"}, hw, {"name": "m", "family": "dense"}, "m",
...                      "lru", "next", 2, {m: s for m in SUMMARY_METRICS})
>>> list(row.columns())[:9]
['point', 'sram.size', 'config', 'sram_bytes', 'weight_sram_bytes', 'offchip_bytes_per_s', \
'clock_hz', 'model', 'family']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from edgesim.sim import SUMMARY_METRICS

__all__ = ["HW_COLUMNS", "PERCENTILE_METRICS", "STATUSES", "DetailHead", "SweepRow",
           "metric_columns"]

#: Hardware fields that every row carries (numbers, for plotting), in this order.
HW_COLUMNS = ("sram_bytes", "weight_sram_bytes", "offchip_bytes_per_s", "clock_hz")
#: Metrics that also get p50 and p99 columns.
PERCENTILE_METRICS = ("latency_s", "energy_j")
#: Values of the ``status`` column.
STATUSES = ("ok", "failed")


def metric_columns() -> list[str]:
    """The metric columns of a row, in table order (``<metric>_cold``, ``_steady``, ...)."""
    cols: list[str] = []
    for m in SUMMARY_METRICS:
        cols += [f"{m}_cold", f"{m}_steady"]
        if m in PERCENTILE_METRICS:
            cols += [f"{m}_p50", f"{m}_p99"]
    return cols


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One (point, model, policy) of a sweep; ``columns()`` is the table row."""

    point: int
    params: Mapping[str, str]
    config: str
    hardware: tuple[Any, ...]          # the values of HW_COLUMNS
    model: str
    info: Mapping[str, Any]            # api.model_info without "name"
    policy: str
    prefetch: str
    inputs: int
    metrics: tuple[tuple[str, Any], ...]   # (column, value) per summary metric column
    status: str = "ok"
    error: str = ""
    accuracy: tuple[tuple[str, Any], ...] = ()   # (("top1", value),) in an evaluated sweep

    @classmethod
    def build(cls, point: int, params: Mapping[str, str], hw, info: Mapping[str, Any],
              model: str, policy: str, prefetch: str, inputs: int,
              summary: Mapping[str, Any], accuracy: Mapping[str, Any] | None = None) -> SweepRow:
        """The row of one task from its hardware, model info and ``simulate`` summary (and the
        model's ``api.evaluate`` answer in an evaluated sweep)."""
        metrics: list[tuple[str, Any]] = []
        for m in SUMMARY_METRICS:
            s = summary[m]
            metrics += [(f"{m}_cold", s["cold"]), (f"{m}_steady", s["steady_mean"])]
            if m in PERCENTILE_METRICS:
                metrics += [(f"{m}_p50", s["p50"]), (f"{m}_p99", s["p99"])]
        return cls(point, dict(params), hw.name, tuple(getattr(hw, c) for c in HW_COLUMNS),
                   model, {k: v for k, v in info.items() if k != "name"}, policy, prefetch,
                   inputs, tuple(metrics), accuracy=_accuracy(accuracy))

    @classmethod
    def failed(cls, point: int, params: Mapping[str, str], hw, info: Mapping[str, Any],
               model: str, policy: str, prefetch: str, inputs: int, error: str,
               accuracy: Mapping[str, Any] | None = None) -> SweepRow:
        """The row of a task that raised ``error``: metric columns empty (None); the top-1 of
        an evaluated sweep is the model's, which the failure does not change."""
        return cls(point, dict(params), hw.name, tuple(getattr(hw, c) for c in HW_COLUMNS),
                   model, {k: v for k, v in info.items() if k != "name"}, policy, prefetch,
                   inputs, tuple((c, None) for c in metric_columns()), "failed", error,
                   _accuracy(accuracy))

    def columns(self) -> dict[str, Any]:
        """The row as ``{column: value}`` in table order (what the store keeps)."""
        return {"point": self.point, **self.params, "config": self.config,
                **dict(zip(HW_COLUMNS, self.hardware, strict=True)), "model": self.model,
                **self.info, "policy": self.policy, "prefetch": self.prefetch,
                "inputs": self.inputs, **dict(self.accuracy), **dict(self.metrics),
                "status": self.status, "error": self.error}


def _accuracy(acc: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """The accuracy columns of a row: ``top1`` of an evaluation, none without one."""
    return () if acc is None else (("top1", float(acc["top1"])),)


class DetailHead(NamedTuple):
    """The columns that lead each stored per-inference row: which task it belongs to."""

    key: str
    point: int
    model: str
    policy: str
