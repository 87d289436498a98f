"""The routing decision of an internal tree node.

Public names: ``Router``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Router"]


class Router(nn.Module):
    """A binary routing decision: global average pool -> unit-normalise -> linear (no bias).

    ``weight`` (2, C) rows start as the k-means centroids, so ``argmax`` picks the nearest centroid
    by cosine. Logits are ``scale * cosine``; ``scale`` (a fixed float, not a parameter) sets how
    sharp the soft-routing probabilities are. Input: ``(B, C, ...)`` activations or ``(B, C)``.
    """

    edgesim_kind = "router"

    def __init__(self, channels: int, scale: float = 10.0, branches: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(branches, channels))
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.flatten(2).mean(dim=2) if x.dim() > 2 else x
        return self.scale * F.linear(F.normalize(pooled, dim=1), self.weight)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, branches={self.weight.shape[0]}, " \
               f"scale={self.scale:.4g}"
