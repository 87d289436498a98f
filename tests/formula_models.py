"""A user model whose layer names a spreadsheet would run as formulas (CSV escaping tests)."""

from __future__ import annotations

from torch import nn


def formula_net() -> nn.Module:
    """A linear layer named ``=1+2``: its op rows carry that name."""
    net = nn.Sequential()
    net.add_module("=1+2", nn.Linear(4, 3))
    return net


formula_net.input_shape = (4,)  # type: ignore[attr-defined]
