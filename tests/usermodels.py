"""A tiny user model for CLI tests, loaded as ``--model usermodels:tiny_net``."""

from __future__ import annotations

import torch
from torch import nn


def tiny_net() -> nn.Module:
    """conv(3->8, 3x3) + BN + ReLU -> global pool -> fc(8->10)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


tiny_net.input_shape = (3, 16, 16)  # type: ignore[attr-defined]


def broken_net() -> nn.Module:
    raise RuntimeError("this factory always fails")


def save_wrong_checkpoint(path) -> None:
    """A state_dict of tiny_net with the fc widened to 12 outputs."""
    sd = tiny_net().state_dict()
    sd["5.weight"] = torch.zeros(12, 8)
    torch.save(sd, path)
