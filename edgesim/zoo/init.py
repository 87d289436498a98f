"""Weight initialisations a registry spec can ask for after its factory has built the model.

Public names: ``apply_init``, ``laplace_init``.

A trained network's weights are heavy-tailed: their int8 histogram is near Laplace, not Gaussian
or uniform, and that histogram is what a lossless weight codec (Ethos-U's) compresses. Random
weights that stand in for trained ones should have it too, or a compressed size measured on them
means nothing. ``laplace_init`` draws every conv and linear weight from Laplace(0, b) with the He
standard deviation, ``std = sqrt(2 / fan_in)`` (He et al., ICCV 2015; ``fan_in`` = input channels
per group x kernel size), so ``b = std / sqrt(2) = 1 / sqrt(fan_in)`` (a Laplace's variance is
``2 b**2``). Biases are zero, and every BatchNorm is the identity (``weight = 1, bias = 0``,
``running_mean = 0, running_var = 1``): folding it scales each output channel by
``1 / sqrt(1 + eps)`` only, so the deployed weights stay Laplace per channel. Per-channel int8
quantisation (``max|w| / 127``) of a ResNet-50 so drawn has a zero-order entropy near 6.5
bit/weight, as Vela's calibration model.

The draw uses its own ``torch.Generator`` seeded with the build seed: the same seed gives the same
weights, and the global RNG is left as the factory left it.

>>> from torch import nn
>>> net = apply_init(nn.Linear(400, 10), "laplace", seed=0)
>>> round(float(net.weight.detach().std()), 2), float(net.bias.detach().abs().max())
(0.07, 0.0)
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["apply_init", "laplace_init"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _fan_in(w: torch.Tensor) -> int:
    # conv weight (K, C / groups, *kernel), linear weight (out, in)
    return int(w.shape[1]) * math.prod(int(d) for d in w.shape[2:])


@torch.no_grad()
def laplace_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Redraw ``model``'s conv and linear weights from Laplace(0, 1/sqrt(fan_in)) (He standard
    deviation), zero their biases and set every BatchNorm to the identity; in place, returns
    ``model``. Other parameters are left as they are."""
    g = torch.Generator().manual_seed(int(seed))
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            w = m.weight
            b = 1.0 / math.sqrt(_fan_in(w))
            # Laplace(0, b) = b * (E1 - E2), E1 and E2 independent standard exponentials.
            e1 = torch.empty(w.shape, dtype=torch.float64).exponential_(generator=g)
            e2 = torch.empty(w.shape, dtype=torch.float64).exponential_(generator=g)
            w.copy_((e1 - e2) * b)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, _NORMS):
            if m.affine:
                m.weight.fill_(1.0)
                m.bias.zero_()
            if m.track_running_stats:
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
    return model


def apply_init(model: nn.Module, init: str, seed: int = 0) -> nn.Module:
    """``model`` with init ``init`` applied (``"default"``: unchanged; ``"laplace"``:
    ``laplace_init``), seeded by ``seed``; the names are ``edgesim.zoo.registry.INITS``."""
    if init == "default":
        return model
    if init == "laplace":
        return laplace_init(model, seed)
    raise ValueError(f"init must be 'default' or 'laplace', got {init!r}")
