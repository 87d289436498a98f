"""Inference preparation as deployed: BatchNorm folded into the preceding conv/linear.

Public names: ``fold_batchnorm``, ``prepare``, ``find_bn_pairs``.

``fold_batchnorm(model, example=None)`` returns a deep copy in which every ``Conv1d/2d/3d`` or
``Linear`` whose output feeds only a BatchNorm has that BN folded in (eval-mode statistics):

    w' = w * g / sqrt(var + eps)        (per output channel)
    b' = (b - mean) * g / sqrt(var + eps) + beta

and the BN replaced by ``nn.Identity``. Pairs are found by running ``example`` once with forward
hooks (the BN's input must be the very tensor the conv returned, and that tensor must have no
other reader), or, without an example, by structure: consecutive children of one parent
(``conv1, bn1``; ``Sequential(conv, bn)``) where the conv's width matches the BN.

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
from torch.overrides import TorchFunctionMode

__all__ = ["find_bn_pairs", "fold_batchnorm", "prepare"]

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _out_features(m: nn.Module) -> int:
    return m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features


def _foldable(w: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(w, _WEIGHTED) and isinstance(bn, _BN) and bn.running_mean is not None
            and bn.running_var is not None and bn.num_features == _out_features(w))


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
        if isinstance(mod, _WEIGHTED) and isinstance(out, torch.Tensor):
            produced[id(out)] = (name, out)
        elif isinstance(mod, _BN) and args and id(args[0]) in produced:
            conv, t = produced[id(args[0])]
            if t is args[0] and _foldable(model.get_submodule(conv), mod):
                pairs.append((conv, name, id(t)))

    handles = [m.register_forward_hook(after) for m in model.modules()
               if isinstance(m, (*_WEIGHTED, *_BN))]
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
            if _foldable(w, bn):
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
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    view = (-1,) + (1,) * (w.weight.dim() - 1)
    # a parametrized weight (nested masks, signed-binary) is computed from its latent original:
    # scale that (per-output-channel scaling commutes with masking and with sign-binarizing)
    parametrized = getattr(getattr(w, "parametrizations", None), "weight", None)
    target = parametrized.original if parametrized is not None else w.weight
    target.mul_(inv.reshape(view).to(target.dtype))
    old = w.bias if w.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (old - bn.running_mean) * inv + shift
    w.bias = nn.Parameter(new_bias.to(w.weight.dtype))


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
