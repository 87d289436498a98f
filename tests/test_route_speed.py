"""Routing with buffers kept in the heap (edgesim.zoo.memory): same paths, scopes that nest,
nothing done off glibc. Speed itself is measured by benchmarks/bench_route.py, not here."""

from __future__ import annotations

import contextlib
import ctypes
import sys

import pytest
import torch
from sigmab_trees import LEVELS, tiny_pointnet_tree

from edgesim.zoo import memory
from edgesim.zoo.data import synthetic_images
from edgesim.zoo.memory import heap_buffers
from edgesim.zoo.resnet import Bottleneck, ResNet
from edgesim.zoo.sigmab import SigmaTree, to_tree
from edgesim.zoo.sigmab import tree as tree_module


class FakeLibc:
    """Records the allocator calls ``heap_buffers`` makes."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake_libc(monkeypatch: pytest.MonkeyPatch) -> FakeLibc:
    libc = FakeLibc()
    monkeypatch.setattr(memory, "glibc", lambda: libc)
    return libc


@pytest.fixture
def fresh_glibc():
    """``glibc()`` looked up afresh in the test and again after it (it is cached)."""
    memory.glibc.cache_clear()
    yield
    memory.glibc.cache_clear()


@pytest.fixture(scope="module")
def resnet_tree() -> tuple[SigmaTree, torch.Tensor]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = ResNet(Bottleneck, [1, 1, 2, 1], num_classes=6, stem="cifar", width=4).eval()
    x, _ = synthetic_images(48, shape=(3, 16, 16), clusters=8, seed=0)
    return to_tree(dense, x[:16], levels=LEVELS), x


def _unscoped_route(monkeypatch: pytest.MonkeyPatch, tree: SigmaTree,
                    batches: list[torch.Tensor]) -> torch.Tensor:
    """Paths of ``tree.route`` on each batch with the heap settings left alone."""
    with monkeypatch.context() as m:
        m.setattr(tree_module, "heap_buffers", contextlib.nullcontext)
        with torch.no_grad():
            return torch.cat([tree.route(x) for x in batches])


@pytest.mark.parametrize("kind", ["resnet", "pointnet"])
def test_paths_are_the_same_with_and_without_heap_buffers(
        kind: str, resnet_tree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree, x = resnet_tree if kind == "resnet" else tiny_pointnet_tree()[1:]
    batches = list(x.split(16))
    want = _unscoped_route(monkeypatch, tree, batches)
    with torch.no_grad():
        per_call = torch.cat([tree.route(b) for b in batches])
        with heap_buffers():  # one scope over the stream, as build.route routes it
            stream = torch.cat([tree.route(b) for b in batches])
    assert torch.equal(per_call, want)
    assert torch.equal(stream, want)
    assert len(want.unique()) >= 2  # the inputs do not all take one path


def test_big_buffers_in_the_heap_hold_the_same_values() -> None:
    # 8 x 64 x 56 x 56 floats = 6.4 MB per activation: above glibc's default mmap threshold,
    # so outside the scope each op's output is mapped afresh, inside it comes from the heap
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 1)
    x = torch.randn(8, 64, 56, 56)
    with torch.no_grad():
        want = [torch.relu(conv(x + k)) for k in range(3)]
        with heap_buffers():
            got = [torch.relu(conv(x + k)) for k in range(3)]
    assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_scopes_nest_and_only_the_outermost_sets_and_restores(fake_libc: FakeLibc) -> None:
    with heap_buffers() as outer:
        assert fake_libc.calls == [
            ("mallopt", memory.M_MMAP_THRESHOLD, memory.MAX_THRESHOLD_BYTES),
            ("mallopt", memory.M_TRIM_THRESHOLD, memory.MAX_THRESHOLD_BYTES)]
        with heap_buffers() as inner:
            pass
        assert len(fake_libc.calls) == 2  # the inner scope neither set nor restored
    assert outer
    assert inner
    assert fake_libc.calls[2:] == [
        ("mallopt", memory.M_MMAP_THRESHOLD, memory.DEFAULT_THRESHOLD_BYTES),
        ("mallopt", memory.M_TRIM_THRESHOLD, memory.DEFAULT_THRESHOLD_BYTES),
        ("malloc_trim", 0)]


def test_an_error_in_the_body_still_restores_the_defaults(fake_libc: FakeLibc) -> None:
    with pytest.raises(RuntimeError, match="boom"), heap_buffers():
        raise RuntimeError("boom")
    assert fake_libc.calls[-1] == ("malloc_trim", 0)
    with heap_buffers():  # the next scope is outermost again
        pass
    assert len(fake_libc.calls) == 2 * 5


def test_off_glibc_heap_buffers_does_nothing(monkeypatch: pytest.MonkeyPatch,
                                             fresh_glibc) -> None:
    def no_library(*_args, **_kwargs):
        raise AssertionError("a C library was loaded off Linux")

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(ctypes, "CDLL", no_library)
    assert memory.glibc() is None
    with heap_buffers() as on:
        assert on is False


def test_a_c_library_that_is_not_glibc_is_left_alone(monkeypatch: pytest.MonkeyPatch,
                                                     fresh_glibc) -> None:
    class Musl:  # has malloc but none of glibc's extensions
        def malloc(self, n: int) -> int:
            return 0

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: Musl())
    assert memory.glibc() is None
    with heap_buffers() as on:
        assert on is False
