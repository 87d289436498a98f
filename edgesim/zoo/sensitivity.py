"""Which weights Mix-and-Match prunes, and the sensitivity scores that rank them.

Public names: ``prunable_weights``, ``norm_weights``, ``layer_weights``, ``magnitude_scores``,
``gradient_scores``, ``product_scores``, ``grasp_scores`` (re-exported by ``edgesim.zoo.pruning``),
``calibration_batches``, ``require_prunable``, ``Batch``, ``LossFn``.

Calibration data is any re-iterable of ``(inputs, targets)`` batches; only the first ``steps``
are used. A *layer* is named by its weight parameter (``"layer1.0.conv1.weight"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesim.errors import DataError, ModelError

__all__ = [
    "gradient_scores",
    "grasp_scores",
    "magnitude_scores",
    "norm_weights",
    "product_scores",
    "prunable_weights",
]

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)

# which weights


def _weights_of(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> dict[str, nn.Parameter]:
    out: dict[str, nn.Parameter] = {}
    for mod_name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if isinstance(mod, kinds) and isinstance(weight, nn.Parameter):
            out[f"{mod_name}.weight" if mod_name else "weight"] = weight
    return out


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Conv and Linear weights by parameter name, in module order (the pruned layers)."""
    return _weights_of(model, _PRUNABLE)


def layer_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable and norm weights together, in module order (every layer a range is given to)."""
    return _weights_of(model, _PRUNABLE + _NORMS)


def norm_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """BatchNorm/LayerNorm/GroupNorm weights by parameter name (kept at 0 % sparsity)."""
    return _weights_of(model, _NORMS)


# sensitivities


def calibration_batches(loader: Iterable[Batch], steps: int) -> list[Batch]:
    """The first ``steps`` ``(inputs, targets)`` batches of ``loader``; one-line errors."""
    if steps < 1:
        raise DataError(f"calibration steps must be >= 1, got {steps}")
    out: list[Batch] = []
    for batch in loader:
        if len(out) == steps:
            break
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise DataError(
                f"calibration batch {len(out)}: expected an (inputs, targets) pair, got "
                f"{type(batch).__name__}"
            )
        out.append((batch[0], batch[1]))
    if not out:
        raise DataError("calibration loader yielded no batches; expected (inputs, targets) pairs")
    return out


def require_prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """``prunable_weights(model)``, or a ``ModelError`` when there are none."""
    params = prunable_weights(model)
    if not params:
        raise ModelError(f"{type(model).__name__}: no Conv/Linear weights to prune")
    return params


def magnitude_scores(model: nn.Module) -> dict[str, Tensor]:
    """``|w|`` for every prunable weight."""
    return {n: p.detach().abs() for n, p in require_prunable(model).items()}


def _grads(
    model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn, params: dict[str, nn.Parameter],
) -> list[list[Tensor]]:
    """Per-batch gradients of the loss w.r.t. ``params`` (eval mode; ``.grad`` is untouched)."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for x, y in batches:
            loss = loss_fn(model(x), y)
            out.append(list(torch.autograd.grad(loss, list(params.values()), allow_unused=True)))
        return out
    finally:
        model.train(was_training)


def gradient_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """SNIP-like ``|dL/dw|``, averaged over the first ``steps`` calibration batches.

    Each batch contributes the absolute value of its own gradient (mean of ``|g_b|``), so
    gradients of opposite sign in different batches do not cancel.
    """
    params = require_prunable(model)
    per_batch = _grads(model, calibration_batches(loader, steps), loss_fn, params)
    scores = {}
    for i, (name, p) in enumerate(params.items()):
        acc = torch.zeros_like(p, requires_grad=False)
        for grads in per_batch:
            if grads[i] is not None:
                acc += grads[i].abs()
        scores[name] = acc / len(per_batch)
    return scores


def product_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """``|w| * |dL/dw|`` (the SNIP saliency; the paper's "product" sensitivity)."""
    grads = gradient_scores(model, loader, loss_fn, steps)
    return {n: p.detach().abs() * grads[n] for n, p in require_prunable(model).items()}


def grasp_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """GraSP scores ``-w * (H g)`` (Wang et al., ICLR 2020), summed over ``steps`` batches.

    ``H g`` is exact: the gradient of ``g . stopgrad(g)`` w.r.t. ``w`` (autograd double-backward),
    where ``g`` is the batch gradient. GraSP removes the weights with the **highest** score.
    """
    params = require_prunable(model)
    plist = list(params.values())
    was_training = model.training
    model.eval()
    try:
        acc = [torch.zeros_like(p, requires_grad=False) for p in plist]
        for x, y in calibration_batches(loader, steps):
            g = torch.autograd.grad(
                loss_fn(model(x), y), plist, create_graph=True, allow_unused=True
            )
            z = sum((gi * gi.detach()).sum() for gi in g if gi is not None)
            hg = torch.autograd.grad(z, plist, allow_unused=True)
            for a, p, h in zip(acc, plist, hg, strict=True):
                if h is not None:
                    a -= p.detach() * h
        return dict(zip(params, acc, strict=True))
    finally:
        model.train(was_training)
