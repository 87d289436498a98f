"""Routes are cached per routing batch: any ``--inputs N`` reuses the batches already routed.

A routed stand-in (two paths chosen by the sign of channel 0's mean) is registered for each
test; ``build.route`` is wrapped to record which batches it was asked to route.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgesim import api, build
from edgesim.request import model_request
from edgesim.zoo.registry import REGISTRY, ModelSpec

SHAPE = (3, 8, 8)
NAME = "route_cache_two_path"


class TwoPath(nn.Module):
    """Path 1 when channel 0's mean is positive, else path 0; each path one linear head."""

    num_paths = 2

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList([nn.Linear(3, 3), nn.Linear(3, 3)])

    def path_names(self) -> list[str]:
        return ["neg", "pos"]

    def route(self, x: torch.Tensor) -> torch.Tensor:
        return (self.pool(x)[:, 0] > 0).long()

    def forward_path(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return self.heads[i](self.pool(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[0](self.pool(x))


def two_path() -> nn.Module:
    return TwoPath()


@pytest.fixture
def routed(tmp_path, monkeypatch):
    """The stand-in registered, a private cache, and the list of batches ``build.route`` got."""
    monkeypatch.setenv("EDGESIM_CACHE", str(tmp_path / "cache"))
    REGISTRY[NAME] = ModelSpec(NAME, "dense", "test_route_cache:two_path", {}, SHAPE,
                               "routed stand-in", dynamic=True)
    asked: list[tuple[int, int]] = []
    real = build.route

    def spy(spec, *, batches, **kwargs):
        asked.extend(batches)
        return real(spec, batches=batches, **kwargs)
    monkeypatch.setattr(build, "route", spy)
    yield asked
    REGISTRY.pop(NAME, None)


def _seq(n: int, data: str | None = None, use_cache: bool = True) -> np.ndarray:
    return np.asarray(api.workload(model_request(NAME, data=data), inputs=n,
                                   use_cache=use_cache).sequence)


def test_batches_of_a_stream():
    # 130 inputs in batches of 64: 64 + 64 + 2
    assert build.ROUTE_BATCH == 64
    assert build.route_batches(130) == [(0, 64), (1, 64), (2, 2)]
    assert build.route_batches(64) == [(0, 64)]
    assert build.route_batches(0) == []


def test_a_shorter_or_longer_stream_reuses_the_routed_batches(routed):
    first = _seq(100)
    assert routed == [(0, 64), (1, 36)]
    routed.clear()
    assert np.array_equal(_seq(70), first[:70])     # batches 0 and 1 (6 of its 36): cached
    assert routed == []
    longer = _seq(130)
    # batch 1 held 36 of the 64 inputs now needed: routed again; batch 2 is new
    assert routed == [(1, 64), (2, 2)]
    assert np.array_equal(longer[:100], first)
    assert {0, 1} <= set(longer.tolist())            # the stand-in takes both paths


def test_the_cached_stream_is_the_uncached_one(routed):
    cached = _seq(100)
    routed.clear()
    assert np.array_equal(_seq(100, use_cache=False), cached)
    assert routed == [(0, 64), (1, 36)]


def test_a_data_file_is_routed_in_order(routed, tmp_path):
    x = torch.randn((150, *SHAPE), generator=torch.Generator().manual_seed(4))
    path = tmp_path / "inputs.pt"
    torch.save(x, path)
    got = _seq(150, data=str(path))
    assert np.array_equal(got, TwoPath().route(x).numpy())
    routed.clear()
    other = tmp_path / "other.pt"
    torch.save(-x, other)   # other data: other batches, every path flipped
    assert np.array_equal(_seq(150, data=str(other)), 1 - got)
    assert routed == [(0, 64), (1, 64), (2, 22)]
