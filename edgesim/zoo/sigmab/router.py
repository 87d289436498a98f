"""The routing decision of an internal tree node.

Public names: ``Router``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Router"]


class Router(nn.Module):
    """A binary routing decision: global average pool -> subtract ``center`` -> unit-normalise
    -> linear (no bias).

    ``weight`` (2, C) rows start as the k-means centroids of the node's centred pooled
    features, and ``center`` (C,, fixed) is their mean over the node's calibration inputs, so
    ``argmax`` picks the nearest centroid by cosine. Centring matters: post-ReLU features all
    point into the positive orthant (cosines of 0.99 between any two inputs of an untrained
    net), so uncentred centroids differ by a hair and one optimizer step can send every input
    one way. A router of a checkpoint written before centring has no ``center``
    (``centered=False``). Logits are ``scale * cosine``; ``scale`` (a fixed float, not a
    parameter) sets how sharp the soft-routing probabilities are at temperature 1. Input:
    ``(B, C, ...)`` activations or ``(B, C)``.
    """

    edgesim_kind = "router"

    def __init__(self, channels: int, scale: float = 10.0, branches: int = 2,
                 centered: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(branches, channels))
        # stored with the router (counted, traced) but not trained: a shifted centre moves
        # every input's features alike and can send them all down one branch
        self.center = (nn.Parameter(torch.zeros(channels), requires_grad=False) if centered
                       else None)
        self.scale = float(scale)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The centred pooled features ``(B, C)`` the router compares with its rows."""
        pooled = x.flatten(2).mean(dim=2) if x.dim() > 2 else x
        return pooled if self.center is None else pooled - self.center

    def track(self, x: torch.Tensor, weight: torch.Tensor, momentum: float) -> None:
        """Move ``center`` by ``momentum`` toward the ``weight``-averaged pooled features of
        ``x`` (no gradient), as BatchNorm's running mean follows its inputs: fine-tuning
        shifts the features a router reads, and a centre left behind routes them all one
        way."""
        if self.center is None:
            return
        with torch.no_grad():
            pooled = x.flatten(2).mean(dim=2) if x.dim() > 2 else x
            w = weight.detach().clamp_min(0).to(pooled.dtype)
            total = w.sum()
            if float(total) > 0:
                self.center.lerp_((w[:, None] * pooled).sum(0) / total, momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.linear(F.normalize(self.pooled(x), dim=1), self.weight)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, branches={self.weight.shape[0]}, " \
               f"scale={self.scale:.4g}, centered={self.center is not None}"
