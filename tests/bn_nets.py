"""Conv + BatchNorm nets the folding tests share: BN statistics that make a fold show, and
the two shapes a fold must leave alone."""

from __future__ import annotations

import torch
from torch import nn


def randomize_bn(net: nn.Module, seed: int = 1) -> nn.Module:
    """Every BatchNorm2d's statistics and affine parameters moved away from 1 and 0 (seeded),
    so that folding shows; returns ``net``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return net


class SharedOutput(nn.Module):
    """The conv output feeds its BN and the add: folding would change the add's input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class SharedBN(nn.Module):
    """One BN after two convs: called twice, it folds into neither."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.a(x)) + self.bn(self.b(x))
