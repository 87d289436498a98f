"""The discrete-event core the engine runs on: SimPy's ``Environment`` and ``Event``.

Public names: ``Environment``, ``Event``.

They are SimPy's own classes (``simpy.core``, ``simpy.events``), imported without running the
package's ``simpy/__init__.py``, which imports ``importlib.metadata`` (and through it email,
zipfile, ...) only to set ``simpy.__version__``: ~0.02 s of a first answer's ~0.3 s CPU
(issue 22). The package module stands in while its submodules load and is then removed again,
so a later ``import simpy`` (a test, a user) runs ``simpy/__init__.py`` as usual and finds the
same submodules: ``simpy.Environment is edgesim.sim.des.Environment``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["Environment", "Event"]


def _submodules(*names: str) -> list:
    """``simpy.<name>`` for each name, with ``simpy``'s ``__init__`` not run unless it already
    was."""
    if "simpy" in sys.modules:
        return [importlib.import_module(f"simpy.{n}") for n in names]
    spec = importlib.util.find_spec("simpy")
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError("No module named 'simpy'", name="simpy")
    sys.modules["simpy"] = importlib.util.module_from_spec(spec)   # not executed
    try:
        return [importlib.import_module(f"simpy.{n}") for n in names]
    finally:
        del sys.modules["simpy"]


_core, _events = _submodules("core", "events")
Environment = _core.Environment
Event = _events.Event
