"""Shared fixtures: a private workload cache per test session; one torch thread, seed 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Traces made by the tests go to a fresh cache, never the user's ~/.cache/edgesim.

    Set EDGESIM_TEST_CACHE to reuse a cache across test sessions (faster local reruns).
    """
    old = os.environ.get("EDGESIM_CACHE")
    os.environ["EDGESIM_CACHE"] = os.environ.get(
        "EDGESIM_TEST_CACHE", str(tmp_path_factory.mktemp("edgesim-cache")))
    yield
    if old is None:
        os.environ.pop("EDGESIM_CACHE", None)
    else:
        os.environ["EDGESIM_CACHE"] = old


@pytest.fixture(autouse=True)
def _one_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["compiled", "python"])
def passes(request, monkeypatch):
    """The engine's and the policies' compiled passes (``edgesim/sim/_kernel.c``, an optional
    extension: the case is skipped where it could not be built) or the Python passes they are
    held to."""
    from edgesim.sim import engine, residency
    if request.param == "python":
        monkeypatch.setattr(residency, "_kernel", None)
        monkeypatch.setattr(engine, "_kernel", None)
    elif residency._kernel is None:
        pytest.skip("the compiled passes were not built on this machine")
    return request.param


@pytest.fixture
def tiny_yaml(tmp_path) -> Path:
    """``edgesim.testing.TINY_CONFIG`` written as a YAML file (what a sweep reads)."""
    import yaml

    from edgesim.testing import TINY_CONFIG
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``--dist loadgroup``, pyproject's addopts): the tests that read a
    module- or session-scoped fixture of their own module run in one worker, so the fixture
    (a trained model, a built wheel) is made once, not once per worker. A test that names its
    own ``xdist_group`` keeps it."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None or item.get_closest_marker("xdist_group"):
            continue
        module = getattr(item, "module", None)
        for name in item.fixturenames:
            defs = info.name2fixturedefs.get(name) or ()
            if defs and defs[-1].scope in ("module", "session") and module is not None \
                    and getattr(defs[-1].func, "__module__", None) == module.__name__:
                item.add_marker(pytest.mark.xdist_group(module.__name__))
                break
