"""edgesim: how many weight bytes cross the off-chip bus per inference, and what they cost.

Public names (imported lazily, so ``import edgesim`` does not import torch):
``run``, ``workload``, ``evaluate``, ``finetune``, ``models``, ``configs``, ``model_request``,
``load_config``, ``simulate``.

>>> import edgesim
>>> edgesim.__version__
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "configs", "evaluate", "finetune", "load_config", "model_request",
           "models", "run", "simulate", "workload"]


def __getattr__(name: str):
    if name in ("run", "workload", "evaluate", "finetune", "models", "configs"):
        from edgesim import api
        return getattr(api, name)
    if name == "model_request":
        from edgesim.request import model_request
        return model_request
    if name == "load_config":
        from edgesim.config import load_config
        return load_config
    if name == "simulate":
        from edgesim.sim import simulate
        return simulate
    raise AttributeError(f"module 'edgesim' has no attribute {name!r}")
