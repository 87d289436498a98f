"""Signed-binary weights: per region values in {0, +a} or {0, -a}, trained with a clipped STE.

Public names: ``DEFAULT_THRESHOLD``, ``signed_binarize``, ``SignedBinaryWeight``,
``signed_binary_``, ``to_signed_binary``, ``fine_tune_ste``, ``calibrate_thresholds``,
``sb_resnet50``, ``signed_binary_storage_report``, ``SignedBinaryFamily`` (the family hooks: a
user's dense checkpoint binarised after loading, a binarised one loaded as itself).

After Kuhar, Tumanov, Hoffman, "Signed Binary Weight Networks" (arXiv 2211.13838, REFERENCE.md A3):
weight repetition (one magnitude per region) and sparsity together. A region is ``region``
consecutive elements of one output filter's flattened (row-major) weights; the default is the
whole filter (one region per output channel).

``signed_binarize`` quantizes one tensor with a threshold ``t`` relative to each region's scale,
as a ternary/signed-binary network is trained (TWN's ``Delta = 0.7 E|w|``, Li & Liu 2016). Per
region:

1. the sign is the sign of the region's sum (= the side, positive or negative, with the larger
   total magnitude); a region summing to exactly 0 gets +1;
2. the region keeps the weights of that sign whose magnitude is at least ``Delta = t * mean|w|``
   (the mean over the whole region); every other weight becomes 0. The fraction of zeros is the
   outcome of the weights and ``t``, not a target: about 71 % for normal weights at the default
   ``t = 0.7`` (half the weights on the other side, and ``P(|w| < 0.56 sigma)`` = 42 % of the
   rest), 75 % for Laplace ones. Because ``Delta`` scales with the region, binarizing commutes
   with scaling a filter by any nonzero constant (e.g. folding a BatchNorm):
   ``signed_binarize(c * w) = c * wq``;
3. kept weights become ``sign * a`` with ``a`` = the mean |w| of the region's kept weights (the
   per-region scale).

``signed_binary_(module)`` registers a ``torch.nn.utils.parametrize`` parametrization on a conv or
linear weight: ``module.weight`` IS the binarized tensor (what ``F.conv2d`` and a tracer see),
the latent real weight is ``module.parametrizations.weight.original`` and the threshold ``t``
is a parameter of the parametrization (``module.parametrizations.weight[0].threshold``, both in
the state_dict). Backward is straight-through: to the latent weight, d wq / d w = 1 where
|w| <= clip, else 0 (clipped STE); to the threshold, each kept-or-dropped decision passes its
gradient through a box of half-width ``mean|w|`` around ``Delta`` (d keep / d t =
-1/2 there), so training on data (``fine_tune_ste``, ``calibrate_thresholds``) learns ``t``.
Binarized modules carry ``edgesim_precision = "binary"`` (a binary MAC is an add),
``edgesim_encoding = "signed_binary"`` and ``edgesim_region`` (elements per region, ``None`` = one
output channel), which the tracer reads: one scale per region, stored bytes
``encodings.signed_binary_bytes(values, region=region)``.

>>> import torch
>>> wq, signs, scales = signed_binarize(torch.tensor([[3.0, -1.0, 2.0, 0.5]]))
>>> wq.tolist(), signs.tolist(), scales.tolist()   # sign +, Delta = 0.7 * 1.625: keep 3 and 2
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
    "DEFAULT_THRESHOLD",
    "SignedBinaryFamily",
    "SignedBinaryWeight",
    "calibrate_thresholds",
    "fine_tune_ste",
    "sb_resnet50",
    "signed_binarize",
    "signed_binary_",
    "signed_binary_storage_report",
    "to_signed_binary",
]

#: Threshold relative to a region's mean |w| below which a weight becomes 0 (TWN's 0.7).
DEFAULT_THRESHOLD = 0.7

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


def _check_threshold(threshold: float, where: str = "weight") -> float:
    t = float(threshold)
    if not t >= 0.0 or t == float("inf"):
        raise ModelError(f"signed-binary {where}: threshold={threshold}; expected a finite "
                         f"t >= 0 (a weight is kept when |w| >= t * mean|w| of its region)")
    return t


def _binarize(r: torch.Tensor, t: torch.Tensor | float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows of ``r`` (one region each) -> (wq rows, signs, scales, keep, mean|w|).

    The sign and keep decisions are made in float64 (the region sums, means and ``Delta``), so
    which weights are kept does not hang on float32 rounding, which differs between CPUs."""
    r64 = r.detach().to(torch.float64)
    signs64 = torch.where(r64.sum(dim=1) >= 0, 1.0, -1.0).to(torch.float64)
    mag = r64 * signs64[:, None]                   # > 0 where the weight has the region's sign
    mean = r64.abs().mean(dim=1)
    delta = torch.as_tensor(t, dtype=torch.float64) * mean
    keep = (mag > 0) & (mag >= delta[:, None])
    count = keep.sum(dim=1)
    total = torch.where(keep, mag, torch.zeros_like(mag)).sum(dim=1)
    scales = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    signs, scales = signs64.to(r.dtype), scales.to(r.dtype)
    wq = torch.where(keep, (signs * scales)[:, None], torch.zeros_like(r))
    return wq, signs, scales, keep, mean.to(r.dtype)


@torch.no_grad()
def signed_binarize(w: torch.Tensor, region: int | None = None,
                    threshold: float = DEFAULT_THRESHOLD, *, where: str = "weight",
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Signed-binarize ``w``; returns ``(wq, signs, scales)``.

    ``wq`` has ``w``'s shape and dtype with values in {0, +a_r} or {0, -a_r} per region r;
    ``signs`` (+1/-1) and ``scales`` (a_r >= 0, 0 for a region with nothing kept) have one entry
    per region, regions in flattened order (``out_channels * filter_size / region`` of them).
    ``region`` (default: one output filter) must divide the filter size; ``threshold`` is ``t``
    of the rule (module docstring): a weight is kept when it has its region's sign and
    ``|w| >= t * mean|w|`` of the region. ``where`` names the tensor in error messages.
    """
    size = _region_size(tuple(w.shape), region, where)
    t = _check_threshold(threshold, where)
    wq, signs, scales, _, _ = _binarize(w.detach().reshape(-1, size), t)
    return wq.reshape(w.shape), signs, scales


class _SignedBinarySTE(torch.autograd.Function):
    """Forward: ``signed_binarize(w, t)``; backward: the clipped STE to ``w`` and the box
    surrogate to ``t`` (module docstring)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, t: torch.Tensor, size: int,
                clip: float) -> torch.Tensor:
        r = w.detach().reshape(-1, size)
        wq, signs, scales, _, mean = _binarize(r, t.detach())
        ctx.save_for_backward(w, t, signs, scales, mean)
        ctx.size, ctx.clip = size, clip
        return wq.reshape(w.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        w, t, signs, scales, mean = ctx.saved_tensors
        grad_w = grad * (w.abs() <= ctx.clip).to(grad.dtype)
        r = w.detach().reshape(-1, ctx.size)
        mag = r * signs[:, None]
        near = (mag > 0) & ((mag - t * mean[:, None]).abs() <= mean[:, None])
        g = grad.reshape(-1, ctx.size) * (signs * scales)[:, None]
        grad_t = -0.5 * (g * near.to(g.dtype)).sum()
        return grad_w, grad_t.reshape(t.shape).to(t.dtype), None, None


class SignedBinaryWeight(nn.Module):
    """Parametrization: latent weight -> signed-binarized weight; ``threshold`` (``t``) is a
    parameter, learned through the straight-through backward when training."""

    def __init__(self, region: int | None = None, threshold: float = DEFAULT_THRESHOLD,
                 clip: float = 1.0, where: str = "weight") -> None:
        super().__init__()
        self.region = region
        self.threshold = nn.Parameter(torch.tensor(_check_threshold(threshold, where)))
        self.clip = float(clip)
        self.where = where

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        size = _region_size(tuple(w.shape), self.region, self.where)
        if torch.is_grad_enabled():
            return _SignedBinarySTE.apply(w, self.threshold.clamp(min=0.0), size, self.clip)
        # inference (and tracing): t as a number, so the binarized tensor is made of the latent
        # weight alone (the tracer names a block by the parameters a tensor is made of)
        wq, _, _, _, _ = _binarize(w.reshape(-1, size), max(0.0, self.threshold.detach().item()))
        return wq.reshape(w.shape)


def signed_binary_(module: nn.Module, *, region: int | None = None,
                   threshold: float = DEFAULT_THRESHOLD, clip: float = 1.0,
                   name: str = "weight") -> nn.Module:
    """Binarize ``module.weight`` in place (a parametrization) and tag the module for the tracer.

    ``name`` is the module's qualified name, used in error messages.
    """
    if not isinstance(module, _WEIGHTED):
        raise ModelError(f"signed_binary_ {name}: {type(module).__name__} is not a conv or "
                         f"linear module")
    _region_size(tuple(module.weight.shape), region, name)
    parametrize.register_parametrization(
        module, "weight", SignedBinaryWeight(region, threshold, clip, where=name))
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
                     threshold: float = DEFAULT_THRESHOLD,
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
    _check_threshold(threshold)
    for n, m in chosen:
        _region_size(tuple(m.weight.shape), region, n)
    for n, m in chosen:
        signed_binary_(m, region=region, threshold=threshold, clip=clip, name=n)
    return model


def _thresholds(model: nn.Module) -> list[nn.Parameter]:
    return [m.threshold for m in model.modules() if isinstance(m, SignedBinaryWeight)]


def fine_tune_ste(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                  epochs: int = 1, lr: float = 1e-4, threshold_lr: float = 1e-2,
                  steps: int | None = None, train_weights: bool = True,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                  ) -> list[float]:
    """Train through the straight-through backward with Adam; returns the loss of each step.

    The latent weights (and every other parameter) learn at ``lr``, the thresholds at
    ``threshold_lr`` (kept >= 0); ``train_weights=False`` learns the thresholds alone. Stops
    after ``steps`` steps when given; leaves the model in train mode.
    """
    if epochs < 1 or (steps is not None and steps < 1):
        raise ModelError(f"fine_tune_ste: epochs={epochs}, steps={steps}; expected >= 1")
    thresholds = _thresholds(model)
    ids = {id(p) for p in thresholds}
    groups = [{"params": thresholds, "lr": threshold_lr}]
    if train_weights:
        groups.append({"params": [p for p in model.parameters()
                                  if p.requires_grad and id(p) not in ids], "lr": lr})
    opt = torch.optim.Adam([g for g in groups if g["params"]])
    losses: list[float] = []
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for t in thresholds:
                    t.clamp_(min=0.0)
            losses.append(float(loss.detach()))
            if steps is not None and len(losses) >= steps:
                return losses
    return losses


def calibrate_thresholds(model: nn.Module,
                         batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                         epochs: int = 1, lr: float = 1e-2) -> nn.Module:
    """Learn the thresholds on ``batches`` (the latent weights stay as loaded): what the
    ``signed_binary`` family does with ``--data`` for a user's checkpoint. Returns the model
    in eval mode."""
    fine_tune_ste(model, batches, epochs=epochs, threshold_lr=lr, train_weights=False)
    return model.eval()


def _resnet50_dense(*, num_classes: int = 1000, **_: Any) -> nn.Module:
    from edgesim.zoo.resnet import resnet50
    return resnet50(num_classes=num_classes)


def sb_resnet50(seed: int = 0, *, num_classes: int = 1000, region: int | None = None,
                threshold: float = DEFAULT_THRESHOLD,
                keep_first_last_int8: bool | tuple[bool, bool] = (True, False),
                base: nn.Module | None = None,
                calib: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None) -> nn.Module:
    """A signed-binary ResNet-50: ``base`` (a user's dense ResNet-50) or a seeded random init.

    By default the stem conv stays int8 and the classifier is binarized too: with the 2.05 M
    classifier weights dense int8 the model cannot reach 1/6 of dense int8 ResNet-50 (2.05 MB of
    int8 fc + 23.4 M conv weights at >= 1 bit = 5.0 MB > 25.6 MB / 6 = 4.3 MB). Pass
    ``keep_first_last_int8=True`` for int8 first and last layers. ``calib`` batches, when
    given, learn the thresholds (``calibrate_thresholds``).
    """
    torch.manual_seed(seed)
    net = base if base is not None else _resnet50_dense(num_classes=num_classes)
    net = to_signed_binary(net, region=region, threshold=threshold,
                           keep_first_last_int8=keep_first_last_int8)
    return calibrate_thresholds(net, calib) if calib is not None else net


sb_resnet50.edgesim_dense = _resnet50_dense  # type: ignore[attr-defined]


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


# -- family hooks (edgesim.zoo.family) ---------------------------------------------------------

from edgesim.zoo.family import Family  # noqa: E402  (appended section: the family's hooks)


class SignedBinaryFamily(Family):
    """Signed-binary models. With ``--weights``, a dense checkpoint is loaded into the dense
    model and binarized (thresholds learned on ``--data`` when given); a binarized one (latent
    weights and thresholds) loads as itself (``edgesim.zoo.sensitivity.transformed_build``)."""

    name = "signed_binary"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        if weights is None:
            return super().build(spec, weights, seed, data)
        from edgesim.zoo.sensitivity import transformed_build
        return transformed_build(spec, weights, seed, data, what="signed-binary model")
