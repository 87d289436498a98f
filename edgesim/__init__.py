"""edgesim: how many weight bytes cross the off-chip bus per inference, and what they cost.

Public names (imported lazily, so ``import edgesim`` does not import torch):
``run``, ``sweep``, ``plot``, ``workload``, ``evaluate``, ``finetune``, ``models``, ``configs``,
``model_request``, ``load_config``, ``simulate``.

``edgesim.sweep`` and ``edgesim.plot`` are both the sub-module (``from edgesim.sweep import
load_results``) and the verb: calling the module calls its function (``edgesim.sweep(config,
models, grid, out_dir=...)`` is ``edgesim.sweep.sweep``, ``edgesim.plot(kind, folder)`` is
``edgesim.plot.plot``).

>>> import edgesim
>>> edgesim.__version__
'0.1.0'
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "configs", "evaluate", "finetune", "load_config", "model_request",
           "models", "plot", "run", "simulate", "sweep", "workload"]


def _callable_module(name: str, verb: str) -> None:
    """Make the module ``name`` callable as its function ``verb`` (``edgesim.sweep(...)``)."""
    import sys
    import types
    module = sys.modules[name]

    class VerbModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, verb)(*args, **kwargs)

    VerbModule.__call__.__doc__ = f"``{name}.{verb}``"
    module.__class__ = VerbModule


def __getattr__(name: str):
    if name in ("sweep", "plot"):      # the sub-module, callable as its verb
        import importlib
        return importlib.import_module(f"edgesim.{name}")
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
