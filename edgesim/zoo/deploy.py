"""Inference preparation as deployed: BatchNorm folded into the preceding conv/linear.

Public names: ``fold_batchnorm``, ``prepare``, ``find_bn_pairs``, ``skeleton``.

``fold_batchnorm(model, example=None)`` returns a deep copy in which every ``Conv1d/2d/3d`` or
``Linear`` whose output feeds only a BatchNorm has that BN folded in (eval-mode statistics):

    w' = w * g / sqrt(var + eps)        (per output channel)
    b' = (b - mean) * g / sqrt(var + eps) + beta

and the BN replaced by ``nn.Identity``. Pairs are found by running ``example`` once with forward
hooks (the BN's input must be the very tensor the conv returned, and that tensor must have no
other reader), or, without an example, by structure: consecutive children of one parent
(``conv1, bn1``; ``Sequential(conv, bn)``) where the conv's width matches the BN.

The tracer folds without a copy (``edgesim.trace.record(..., fold_bn=True)``): it finds the
pairs by the same rules in its own pass, and the rules and arithmetic are one
(``edgesim.trace.fold.foldable`` and ``folded``, which ``fold_batchnorm`` applies in place),
so the values are the same to the bit. ``skeleton`` is the module tree as deployed on the meta
device, to count its parameters.

>>> import torch
>>> from edgesim.zoo.resnet import BasicBlock, ResNet
>>> net = ResNet(BasicBlock, [1, 1], num_classes=3, width=4).eval()
>>> x = torch.randn(1, 3, 32, 32)
>>> folded = prepare(net, x)
>>> bool(torch.allclose(folded(x), net(x), atol=1e-5)), sum(isinstance(m, torch.nn.BatchNorm2d)
...                                                          for m in folded.modules())
(True, 0)
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from edgesim.trace.fold import NORMS, WEIGHTED, foldable, folded, out_features

__all__ = ["find_bn_pairs", "fold_batchnorm", "prepare", "skeleton"]


class _Readers(TorchFunctionMode):
    """Counts the torch calls returning a tensor that read each watched (conv output) tensor.

    Calls returning no tensor (``x.dim()``, ``x.shape``) are checks, not readers. Only tensors in
    ``watched`` (kept alive there, so their ids are not reused) are counted.
    """

    def __init__(self, watched: dict[int, tuple[str, torch.Tensor]]) -> None:
        super().__init__()
        self.watched = watched
        self.reads: dict[int, int] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if not isinstance(out, (torch.Tensor, list, tuple)):
            return out
        seen: set[int] = set()
        for a in (*args, *(kwargs or {}).values()):
            for t in (a if isinstance(a, (list, tuple)) else (a,)):
                if isinstance(t, torch.Tensor) and id(t) in self.watched and id(t) not in seen:
                    seen.add(id(t))
                    self.reads[id(t)] = self.reads.get(id(t), 0) + 1
        return out


def _pairs_by_hooks(model: nn.Module, example: Any) -> list[tuple[str, str]]:
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[str, torch.Tensor]] = {}   # tensor id -> (conv name, tensor)
    calls: dict[str, int] = {}
    pairs: list[tuple[str, str, int]] = []   # (conv, bn, id of the conv output)

    def after(mod: nn.Module, args: tuple, out: Any) -> None:
        name = names[mod]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(mod, WEIGHTED) and isinstance(out, torch.Tensor):
            produced[id(out)] = (name, out)
        elif isinstance(mod, NORMS) and args and id(args[0]) in produced:
            conv, t = produced[id(args[0])]
            if t is args[0] and foldable(model.get_submodule(conv), mod):
                pairs.append((conv, name, id(t)))

    handles = [m.register_forward_hook(after) for m in model.modules()
               if isinstance(m, (*WEIGHTED, *NORMS))]
    readers = _Readers(produced)
    try:
        with torch.no_grad(), readers:
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        for h in handles:
            h.remove()
    # A conv or BN called more than once (shared module) cannot be folded, nor a conv output
    # that something other than its BN reads.
    return [(c, b) for c, b, tid in pairs
            if calls[c] == 1 and calls[b] == 1 and readers.reads.get(tid, 0) == 1]


def _pairs_by_structure(model: nn.Module) -> list[tuple[str, str]]:
    pairs = []
    for parent_name, parent in model.named_modules():
        kids = list(parent.named_children())
        for (wn, w), (bn_name, bn) in itertools.pairwise(kids):
            if foldable(w, bn):
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + wn, prefix + bn_name))
    return pairs


def find_bn_pairs(model: nn.Module, example: Any = None) -> list[tuple[str, str]]:
    """``(conv_name, bn_name)`` pairs that can be folded, by hooks on ``example`` or structure."""
    if example is None:
        return _pairs_by_structure(model)
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        return _pairs_by_hooks(model, example)
    finally:
        for m, t in was_training.items():
            m.train(t)


@torch.no_grad()
def _fold(w: nn.Module, bn: nn.Module) -> None:
    # a parametrized weight (nested masks, signed-binary) is computed from its latent original:
    # scale that (per-output-channel scaling commutes with masking and with sign-binarizing)
    latent = w.parametrizations.weight.original if parametrize.is_parametrized(w, "weight") \
        else w.weight
    weight, bias = folded(w, bn, latent)
    latent.copy_(weight)
    w.bias = nn.Parameter(bias)


def fold_batchnorm(model: nn.Module, example: Any = None, *, inplace: bool = False) -> nn.Module:
    """A deep copy of ``model`` with every foldable conv/linear -> BN pair folded (``inplace``:
    ``model`` itself, for a model built for this call alone: no second copy of its weights)."""
    folded = model if inplace else copy.deepcopy(model)
    for conv_name, bn_name in find_bn_pairs(folded, example):
        _fold(folded.get_submodule(conv_name), folded.get_submodule(bn_name))
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(folded.get_submodule(parent_name), attr, nn.Identity())
    return folded


def prepare(model: nn.Module, example: Any, *, inplace: bool = False) -> nn.Module:
    """The model as deployed: eval mode, BatchNorm folded (pairs found by running ``example``;
    ``inplace``: fold ``model`` itself)."""
    return fold_batchnorm(model.eval(), example, inplace=inplace).eval()


def skeleton(model: nn.Module, pairs: list[tuple[str, str]]) -> nn.Module:
    """``model``'s module tree as deployed with ``pairs`` folded (each BN an ``nn.Identity``,
    its conv with a bias), on the meta device: the same modules and parameter shapes and no
    weights, to count parameters as deployed without copying them. ``model`` is unchanged.

    >>> net = nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.BatchNorm2d(4))
    >>> sum(p.numel() for p in skeleton(net, [("0", "1")]).parameters())   # 12 weights + 4 bias
    16
    """
    memo: dict[int, Any] = {}
    for t in (*model.parameters(), *model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, t.requires_grad) if isinstance(t, nn.Parameter) else meta
    sk = copy.deepcopy(model, memo)
    for conv_name, bn_name in pairs:
        conv = sk.get_submodule(conv_name)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.empty(out_features(conv), device="meta"))
        parent_name, _, attr = bn_name.rpartition(".")
        setattr(sk.get_submodule(parent_name), attr, nn.Identity())
    return sk
