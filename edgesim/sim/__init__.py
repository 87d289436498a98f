"""The simulator: a Workload on a HardwareConfig -> per-inference and per-op rows.

Public names: ``simulate``, ``Result``, ``InferenceRow``, ``LayerRow``, ``POLICIES``,
``PREFETCH_MODES``, ``INFERENCE_COLUMNS``, ``LAYER_COLUMNS``, ``SUMMARY_METRICS``, ``Summary``,
``summarize``, ``Residency``, ``Energy``, ``inference_energy``.

Modules, in the order a simulation uses them:

* ``plan``: the config and what is derived from it once (``Machine``), each path compiled for it;
* ``residency``: which weight bytes stay on chip (``lru``, ``pinned``, ``belady``; ``POLICIES``);
* ``engine``: the discrete-event run of a stream (``simulate``, ``PREFETCH_MODES``);
* ``energy``: every count turned into joules: per op, per inference, per op of an inference;
* ``result``: the named rows, ``Result`` and ``summarize``.

It reads a Workload and a HardwareConfig and never imports torch, the zoo or pandas (a
``Result`` builds its DataFrames on first use).
"""

from edgesim.sim.energy import Energy, inference_energy
from edgesim.sim.engine import PREFETCH_MODES, simulate
from edgesim.sim.residency import POLICIES, Residency
from edgesim.sim.result import (
    INFERENCE_COLUMNS,
    LAYER_COLUMNS,
    SUMMARY_METRICS,
    InferenceRow,
    LayerRow,
    Result,
    Summary,
    summarize,
)

__all__ = [
    "INFERENCE_COLUMNS",
    "LAYER_COLUMNS",
    "POLICIES",
    "PREFETCH_MODES",
    "SUMMARY_METRICS",
    "Energy",
    "InferenceRow",
    "LayerRow",
    "Residency",
    "Result",
    "Summary",
    "inference_energy",
    "simulate",
    "summarize",
]
