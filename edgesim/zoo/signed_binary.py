"""Signed-binary weights: per region values in {0, +a} or {0, -a}, trained with a clipped STE.

Public names: ``DEFAULT_SPARSITY``, ``signed_binarize``, ``SignedBinaryWeight``,
``signed_binary_``, ``to_signed_binary``, ``fine_tune_ste``, ``sb_resnet50``,
``signed_binary_storage_report``.

After Kuhar, Tumanov, Hoffman, "Signed Binary Weight Networks" (arXiv 2211.13838, REFERENCE.md A3):
weight repetition (one magnitude per region) and sparsity (about 69 % zeros) together. A region is
``region`` consecutive elements of one output filter's flattened (row-major) weights; the default
is the whole filter (one region per output channel).

``signed_binarize`` quantizes one tensor. Per region:

1. the sign is the sign of the region's sum (= the side, positive or negative, with the larger
   total magnitude); a region summing to exactly 0 gets +1;
2. the candidates are the weights of that sign; region i keeps its k_i candidates of largest
   |w| (a per-region magnitude threshold; all candidates when it has fewer than k_i), where
   k_i = floor((i + 1) * t + 1/2) - floor(i * t + 1/2) and t = (1 - sparsity) * region size,
   i.e. t rounded, with the rounding spread evenly over the regions so that the tensor keeps
   floor(R * t + 1/2) = round((1 - sparsity) * n) weights in all (R regions, n elements).
   Because the choice is made inside each region, binarizing commutes with scaling a filter by
   any nonzero constant (e.g. folding a BatchNorm): ``signed_binarize(c * w) = c * wq``;
3. kept weights become ``sign * a`` with ``a`` = the mean |w| of the region's kept weights (the
   per-region scale); all others become 0.

``signed_binary_(module)`` registers a ``torch.nn.utils.parametrize`` parametrization on a conv or
linear weight: ``module.weight`` IS the binarized tensor (what ``F.conv2d`` and a tracer see),
the latent real weight is ``module.parametrizations.weight.original`` (what the state_dict holds).
The backward pass is a clipped straight-through estimator: d wq / d w = 1 where |w| <= clip, else
0. Binarized modules carry ``edgesim_precision = "binary"`` (a binary MAC is an add),
``edgesim_encoding = "signed_binary"`` and ``edgesim_region`` (elements per region, ``None`` = one
output channel), which the tracer reads: one scale per region, stored bytes
``encodings.signed_binary_bytes(values, region=region)``.

>>> import torch
>>> wq, signs, scales = signed_binarize(torch.tensor([[3.0, -1.0, 2.0, 0.5]]), sparsity=0.5)
>>> wq.tolist(), signs.tolist(), scales.tolist()   # sign +, keep 2 of 4: 3 and 2, a = 2.5
([[2.5, 0.0, 2.5, 0.0]], [1.0], [2.5])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from edgesim import encodings
from edgesim.errors import ModelError

__all__ = [
    "DEFAULT_SPARSITY",
    "SignedBinaryWeight",
    "fine_tune_ste",
    "sb_resnet50",
    "signed_binarize",
    "signed_binary_",
    "signed_binary_storage_report",
    "to_signed_binary",
]

#: Target fraction of zero weights in a binarized tensor (the paper's 69 %).
DEFAULT_SPARSITY = 0.69

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _region_size(shape: Sequence[int], region: int | None, where: str) -> int:
    """Elements per region of a tensor of ``shape``; checks ``region`` divides a filter."""
    if len(shape) == 0:
        raise ModelError(f"signed_binarize {where}: expected a weight with an output-channel "
                         f"axis, got a 0-d tensor")
    cols = int(np.prod(shape[1:], dtype=np.int64))
    if region is None:
        return cols
    if isinstance(region, bool) or not isinstance(region, int) or region < 1:
        raise ModelError(f"signed_binarize {where}: region={region!r}; expected a positive "
                         f"integer number of elements")
    if cols % region:
        raise ModelError(f"signed_binarize {where}: region={region} does not divide the "
                         f"{cols} elements of one output filter (shape {tuple(shape)}); "
                         f"expected a divisor of {cols}")
    return region


def _check_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 <= s < 1.0:
        raise ModelError(f"signed-binary sparsity={sparsity}; expected 0 <= sparsity < 1")
    return s


@torch.no_grad()
def signed_binarize(w: torch.Tensor, region: int | None = None,
                    sparsity: float = DEFAULT_SPARSITY, *, where: str = "weight",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Signed-binarize ``w``; returns ``(wq, signs, scales)``.

    ``wq`` has ``w``'s shape and dtype with values in {0, +a_r} or {0, -a_r} per region r;
    ``signs`` (+1/-1) and ``scales`` (a_r >= 0, 0 for a region with nothing kept) have one entry
    per region, regions in flattened order (``out_channels * filter_size / region`` of them).
    ``region`` (default: one output filter) must divide the filter size; ``sparsity`` is the
    target fraction of zeros (see the module docstring for the rule). ``where`` names the tensor
    in error messages.
    """
    size = _region_size(tuple(w.shape), region, where)
    s = _check_sparsity(sparsity)
    r = w.detach().reshape(-1, size)
    signs = torch.where(r.sum(dim=1) >= 0, 1.0, -1.0).to(w.dtype)
    mag = r * signs[:, None]                       # > 0 where the weight has the region's sign
    cand = mag > 0
    t = (1.0 - s) * size
    edges = torch.floor(torch.arange(r.shape[0] + 1, dtype=torch.float64) * t + 0.5)
    k = (edges[1:] - edges[:-1]).to(torch.int64)          # weights to keep per region
    ranked = torch.where(cand, mag, torch.full_like(mag, -1.0))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(size).expand_as(order).contiguous())
    keep = cand & (rank < k[:, None])
    count = keep.sum(dim=1)
    total = torch.where(keep, mag, torch.zeros_like(mag)).sum(dim=1)
    scales = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    wq = torch.where(keep, (signs * scales)[:, None], torch.zeros_like(r))
    return wq.reshape(w.shape), signs, scales


class _ClippedSTE(torch.autograd.Function):
    """Forward: the given binarized tensor; backward: grad where |w| <= clip, else 0."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, wq: torch.Tensor, clip: float) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.clip = clip
        return wq

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= ctx.clip).to(grad.dtype), None, None


class SignedBinaryWeight(nn.Module):
    """Parametrization: latent weight -> signed-binarized weight, clipped STE backward."""

    def __init__(self, region: int | None = None, sparsity: float = DEFAULT_SPARSITY,
                 clip: float = 1.0, where: str = "weight") -> None:
        super().__init__()
        self.region = region
        self.sparsity = _check_sparsity(sparsity)
        self.clip = float(clip)
        self.where = where

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        wq, _, _ = signed_binarize(w, self.region, self.sparsity, where=self.where)
        return _ClippedSTE.apply(w, wq, self.clip)


def signed_binary_(module: nn.Module, *, region: int | None = None,
                   sparsity: float = DEFAULT_SPARSITY, clip: float = 1.0,
                   name: str = "weight") -> nn.Module:
    """Binarize ``module.weight`` in place (a parametrization) and tag the module for the tracer.

    ``name`` is the module's qualified name, used in error messages.
    """
    if not isinstance(module, _WEIGHTED):
        raise ModelError(f"signed_binary_ {name}: {type(module).__name__} is not a conv or "
                         f"linear module")
    _region_size(tuple(module.weight.shape), region, name)
    parametrize.register_parametrization(
        module, "weight", SignedBinaryWeight(region, sparsity, clip, where=name))
    module.edgesim_precision = "binary"
    module.edgesim_encoding = "signed_binary"
    module.edgesim_region = region
    return module


def _first_last(keep: bool | tuple[bool, bool]) -> tuple[bool, bool]:
    if isinstance(keep, bool):
        return keep, keep
    first, last = keep
    return bool(first), bool(last)


def to_signed_binary(model: nn.Module, *, region: int | None = None,
                     sparsity: float = DEFAULT_SPARSITY,
                     keep_first_last_int8: bool | tuple[bool, bool] = True,
                     clip: float = 1.0) -> nn.Module:
    """Binarize every conv/linear of ``model`` in place and return it.

    The first prunable module (the stem conv) and the last (the classifier) are left untouched
    (int8 at deployment) when ``keep_first_last_int8`` is True; a pair ``(first, last)`` chooses
    each separately. Raises ``ModelError`` naming the layer whose filter size ``region`` does
    not divide (before changing anything).
    """
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    if not mods:
        raise ModelError(f"to_signed_binary: {type(model).__name__} has no conv or linear layer")
    keep_first, keep_last = _first_last(keep_first_last_int8)
    chosen = [(n, m) for i, (n, m) in enumerate(mods)
              if not ((i == 0 and keep_first) or (i == len(mods) - 1 and keep_last))]
    _check_sparsity(sparsity)
    for n, m in chosen:
        _region_size(tuple(m.weight.shape), region, n)
    for n, m in chosen:
        signed_binary_(m, region=region, sparsity=sparsity, clip=clip, name=n)
    return model


def fine_tune_ste(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                  epochs: int = 1, lr: float = 1e-4, steps: int | None = None,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                  ) -> list[float]:
    """Fine-tune the latent weights through the STE with Adam; returns the loss of each step.

    Stops after ``steps`` steps when given; leaves the model in train mode.
    """
    if epochs < 1 or (steps is not None and steps < 1):
        raise ModelError(f"fine_tune_ste: epochs={epochs}, steps={steps}; expected >= 1")
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses: list[float] = []
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            if steps is not None and len(losses) >= steps:
                return losses
    return losses


def sb_resnet50(seed: int = 0, *, num_classes: int = 1000, region: int | None = None,
                sparsity: float = DEFAULT_SPARSITY,
                keep_first_last_int8: bool | tuple[bool, bool] = (True, False)) -> nn.Module:
    """A seeded (random init, no pretrained weights) signed-binary ResNet-50.

    By default the stem conv stays int8 and the classifier is binarized too: with the 2.05 M
    classifier weights dense int8 the model cannot reach 1/6 of dense int8 ResNet-50 (2.05 MB of
    int8 fc + 23.4 M conv weights at >= 1 bit = 5.0 MB > 25.6 MB / 6 = 4.3 MB). Pass
    ``keep_first_last_int8=True`` for int8 first and last layers.
    """
    from edgesim.zoo.resnet import resnet50

    torch.manual_seed(seed)
    net = resnet50(num_classes=num_classes)
    return to_signed_binary(net, region=region, sparsity=sparsity,
                            keep_first_last_int8=keep_first_last_int8)


def _int8_dense_bytes(w: torch.Tensor) -> int:
    """Dense int8 bytes with one fp32 scale per output channel."""
    vals = np.zeros(tuple(w.shape), dtype=np.int8)
    return encodings.stored_bytes(vals, "dense", bits=8, scales=int(w.shape[0]) if w.ndim else 1)


@torch.no_grad()
def signed_binary_storage_report(model: nn.Module) -> list[dict[str, Any]]:
    """Stored bytes of every conv/linear as deployed, vs the same model dense int8.

    One row per conv/linear module and a last row ``layer="total"``. Columns: ``layer``,
    ``encoding`` (``signed_binary`` for binarized modules, else ``dense`` int8 with one fp32
    scale per output channel), ``elements``, ``nonzeros``, ``weight_bytes``
    (``encodings.signed_binary_bytes``: 1 sign bit and one fp32 scale per region + 1 mask bit per
    weight), ``bias_bytes`` (int32: the module's own bias, or the folded BatchNorm that follows
    it, whose shift becomes a per-channel bias: 4 bytes per output channel), ``bytes`` (weight +
    bias) and ``dense_int8_bytes`` (the same module dense int8 with per-channel scales, + the same
    biases). The total row also has ``sparsity`` (zeros / elements over all rows).
    """
    mods = [(n, m) for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    bn_after = _bn_followers(model)
    rows: list[dict[str, Any]] = []
    for n, m in mods:
        w = m.weight
        binary = getattr(m, "edgesim_encoding", None) == "signed_binary"
        out_ch = int(w.shape[0])
        has_bias = getattr(m, "bias", None) is not None or n in bn_after
        bias_bytes = 4 * out_ch if has_bias else 0
        if binary:
            vals = torch.sign(w).to(torch.int8).cpu().numpy()
            wbytes = encodings.signed_binary_bytes(vals, region=getattr(m, "edgesim_region", None))
            nnz = int(np.count_nonzero(vals))
        else:
            wbytes = _int8_dense_bytes(w)
            nnz = int(torch.count_nonzero(w))
        dense = _int8_dense_bytes(w)
        rows.append({"layer": n, "encoding": "signed_binary" if binary else "dense",
                     "elements": int(w.numel()), "nonzeros": nnz, "weight_bytes": wbytes,
                     "bias_bytes": bias_bytes, "bytes": wbytes + bias_bytes,
                     "dense_int8_bytes": dense + bias_bytes})
    keys = ("elements", "nonzeros", "weight_bytes", "bias_bytes", "bytes", "dense_int8_bytes")
    total: dict[str, Any] = {"layer": "total", "encoding": "mixed"}
    total.update({k: sum(r[k] for r in rows) for k in keys})
    total["sparsity"] = 1.0 - total["nonzeros"] / total["elements"] if total["elements"] else 0.0
    rows.append(total)
    return rows


def _bn_followers(model: nn.Module) -> set[str]:
    """Names of conv/linear modules directly followed by a BatchNorm sibling (folded at
    deployment): consecutive children of one parent, e.g. ``conv1, bn1`` or
    ``Sequential(conv, bn)``."""
    out: set[str] = set()
    for pname, parent in model.named_modules():
        prev: tuple[str, nn.Module] | None = None
        for cname, child in parent.named_children():
            if prev is not None and isinstance(prev[1], _WEIGHTED) and isinstance(child, _BN):
                out.add(f"{pname}.{prev[0]}" if pname else prev[0])
            prev = (cname, child)
    return out
