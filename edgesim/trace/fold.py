"""BatchNorm folding in the trace's one pass: which conv/linear -> BN pairs fold, and the folded
tensors.

Public names: ``WEIGHTED``, ``NORMS``, ``out_features``, ``foldable``, ``folded`` (the rules and
arithmetic, shared with ``edgesim.zoo.deploy``), ``Fold``, ``FoldWatch``.

Folding costs no second pass and no copy of the model. While the recorder's pass runs,
``FoldWatch`` notes the dataflow ``edgesim.zoo.deploy.find_bn_pairs`` decides pairs by: calls
per conv/linear and BN module, the BN that reads a conv's output, and how many torch calls read
that output. After the pass, ``FoldWatch.decide`` picks the pairs that fold by the same rules
(each module ran once, the conv output's one reader is its BN, the conv read its weight as a
parameter or through the weight's parametrization); the recorder drops each such BN op and makes
the conv's blocks from ``Fold.tensors``: the same values, bit for bit, as tracing a model that
``deploy.fold_batchnorm`` folded.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["NORMS", "WEIGHTED", "Fold", "FoldWatch", "foldable", "folded", "out_features"]

#: Modules a BatchNorm folds into, and the BatchNorms that fold.
WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def out_features(m: nn.Module) -> int:
    """Output channels of a conv, output features of a linear."""
    return m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features


def foldable(w: nn.Module, bn: nn.Module) -> bool:
    """True when ``bn`` can fold into ``w``: a conv/linear and a BatchNorm with running
    statistics over as many features as ``w`` has outputs."""
    return (isinstance(w, WEIGHTED) and isinstance(bn, NORMS) and bn.running_mean is not None
            and bn.running_var is not None and bn.num_features == out_features(w))


@torch.no_grad()
def folded(w: nn.Module, bn: nn.Module, latent: torch.Tensor,
           dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``bn`` (eval statistics) folded into ``w``, as new tensors (``w`` and ``bn`` unchanged):
    ``(latent * s, (b - mean) * s + beta)`` with ``s = gamma / sqrt(var + eps)`` per output
    channel. ``latent`` is what a fold scales: ``w.weight``, or the original of a parametrized
    weight. The bias is in ``dtype`` (default: that of ``w.weight``).

    >>> conv, bn = nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2, eps=0.0).eval()
    >>> with torch.no_grad():
    ...     _ = conv.weight.fill_(1.0), bn.running_var.fill_(4.0), bn.bias.fill_(0.5)
    >>> weight, bias = folded(conv, bn, conv.weight)
    >>> weight.flatten().tolist(), bias.tolist()     # 1 / sqrt(4), (0 - 0) / 2 + 0.5
    ([0.5, 0.5], [0.5, 0.5])
    """
    inv = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    view = (-1,) + (1,) * (latent.dim() - 1)
    weight = latent * inv.reshape(view).to(latent.dtype)
    old = w.bias if w.bias is not None else torch.zeros_like(bn.running_mean)
    bias = (old - bn.running_mean) * inv + shift
    return weight, bias.to(w.weight.dtype if dtype is None else dtype)


@dataclass(slots=True, eq=False)
class Fold:
    """A BN folded into a conv: the block ids it changes (the conv's latent weight and its
    bias), the dtype of the weight the conv reads, and the folded bias once computed."""

    conv: nn.Module
    bn: nn.Module
    latent: str
    bias: str
    dtype: torch.dtype
    folded_bias: torch.Tensor | None = None

    def tensor(self, bid: str, latent: torch.Tensor) -> torch.Tensor:
        """Block ``bid`` (the latent weight or the bias) as folded, from the conv's ``latent``
        parameter: computed when first asked (one conv at a time, so no copy of the model's
        weights is held), the bias kept for its read."""
        if bid == self.bias and self.folded_bias is not None:
            return self.folded_bias
        weight, self.folded_bias = folded(self.conv, self.bn, latent, self.dtype)
        return weight if bid == self.latent else self.folded_bias


@dataclass(slots=True, eq=False)
class _Out:
    """A conv/linear module's output: the module and how many torch calls read it."""

    conv: str
    reads: int = 0


class FoldWatch:
    """The dataflow of one pass that folds are decided by (see the module docstring)."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        self.modules = modules
        self.calls: Counter[str] = Counter()
        # outputs of conv/linear modules, by tensor id (forgotten when the tensor dies)
        self.outs: dict[int, tuple[weakref.ref, _Out]] = {}
        self.pairs: list[tuple[_Out, str]] = []

    def module_out(self, name: str, mod: nn.Module, args: Sequence[Any], out: Any) -> None:
        """After a module call: count conv/linear and BN calls, watch a conv's output, note
        the BN that reads it (``foldable``)."""
        if not isinstance(mod, (*WEIGHTED, *NORMS)):
            return
        self.calls[name] += 1
        if isinstance(mod, WEIGHTED):
            if isinstance(out, torch.Tensor):
                key = id(out)
                self.outs[key] = (weakref.ref(out, lambda _r, k=key: self.outs.pop(k, None)),
                                  _Out(name))
            return
        seen = self.outs.get(id(args[0])) if args else None
        if seen is not None and seen[0]() is args[0] and foldable(
                self.modules[seen[1].conv], mod):
            self.pairs.append((seen[1], name))

    def count_reads(self, args: Sequence[Any]) -> None:
        """One read of each watched conv output among ``args`` (and one level inside them)."""
        if not self.outs:
            return
        seen: set[int] = set()
        for a in args:
            for t in (a if isinstance(a, (list, tuple)) else (a,)):
                if isinstance(t, torch.Tensor) and id(t) not in seen:
                    out = self.outs.get(id(t))
                    if out is not None and out[0]() is t:
                        seen.add(id(t))
                        out[1].reads += 1

    def decide(self, raws: Sequence[Any]) -> tuple[dict[str, Fold], set[int], list[tuple]]:
        """``(folds, dropped, biases)``: the folds by the block ids they change, the indices of
        the BN ops folded away, and ``(raw, weight_read, bias_id, features)`` for each folded
        conv that reads no bias yet (it reads the folded one right after its weight). ``raws``
        have ``meta["module"]``, ``ins``, ``outs`` and ``reads`` (with ``bid``, ``ids``,
        ``dtype``)."""
        by_module: dict[str, list[int]] = {}
        for i, r in enumerate(raws):
            by_module.setdefault(r.meta["module"], []).append(i)
        folds: dict[str, Fold] = {}
        dropped: set[int] = set()
        biases: list[tuple] = []
        for out, bn_name in self.pairs:
            conv_name = out.conv
            if self.calls[conv_name] != 1 or self.calls[bn_name] != 1 or out.reads != 1:
                continue
            bn_ops = by_module.get(bn_name, [])
            if len(bn_ops) != 1 or len(raws[bn_ops[0]].ins) != 1 \
                    or len(raws[bn_ops[0]].outs) != 1:
                continue
            conv, bn = self.modules[conv_name], self.modules[bn_name]
            prefix = f"{conv_name}." if conv_name else ""
            latent = (f"{prefix}parametrizations.weight.original"
                      if parametrize.is_parametrized(conv, "weight") else f"{prefix}weight")
            bias = f"{prefix}bias"
            found = [(r, read) for i in by_module.get(conv_name, ())
                     for r in (raws[i],) for read in r.reads if read.bid == latent]
            if len(found) != 1 or found[0][1].ids is not None:
                continue
            raw, weight_read = found[0]
            bias_reads = [read for read in raw.reads if read.bid == bias]
            if (len(bias_reads) != (conv.bias is not None)
                    or any(read.ids is not None for read in bias_reads)):
                continue
            if not bias_reads:
                biases.append((raw, weight_read, bias, out_features(conv)))
            folds[latent] = folds[bias] = Fold(conv, bn, latent, bias, weight_read.dtype)
            dropped.add(bn_ops[0])
        return folds, dropped, biases
