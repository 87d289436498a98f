"""Small Sigma-Branch trees and helpers shared by the tree tests (test_sigmab*.py)."""

from __future__ import annotations

import torch
from torch import nn

from edgesim.zoo.data import synthetic_points
from edgesim.zoo.pointnet2 import pointnet2_ssg
from edgesim.zoo.sigmab import SigmaTree, to_tree

#: layer3 block 1 in the two level-1 nodes, layer4 + head in the four leaves (the shape of the
#: ResNet-50 defaults, on a ResNet whose layer3 has 2 blocks).
LEVELS = {"layer3_1": 1, "layer4": 2}


def n_params(m: nn.Module) -> int:
    """Parameters of ``m``."""
    return sum(p.numel() for p in m.parameters())


def tiny_pointnet_tree() -> tuple[nn.Module, SigmaTree, torch.Tensor]:
    """A 1/8-width PointNet++ on 64 points, its default tree (calibrated on 12 clustered
    clouds) and 16 clouds."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dense = pointnet2_ssg(num_classes=5, in_points=64, width=0.125).eval()
    x, _ = synthetic_points(16, points=64, clusters=4, seed=0)
    return dense, to_tree(dense, x[:12]), x


def check_hard_routing(tree: SigmaTree, x: torch.Tensor) -> torch.Tensor:
    """Assert that the tree's hard-routed output is, for every input, the ``forward_path`` of
    the path its routers chose; returns the chosen paths."""
    with torch.no_grad():
        paths = tree.route(x)
        out = tree(x)
        for i in paths.unique().tolist():
            sel = paths == i
            assert torch.allclose(tree.forward_path(x[sel], i), out[sel], atol=1e-5)
    return paths


def huge_tree_checkpoint(path):
    """A tree checkpoint of a few KB whose architecture numbers are each in range (width 1024,
    8 stages of 64 blocks, 100,000 classes) but whose dense model would fill gigabytes:
    written to ``path`` (returned), with no weights."""
    config = {"format": "edgesim.sigmab.tree/2", "arch": "resnet", "depth": 1,
              "backbone": ["stem"], "tree": ["layer1"],
              "dense": {"arch": "resnet", "kwargs": {"block": "bottleneck", "layers": [64] * 8,
                                                    "num_classes": 100_000, "stem": "cifar",
                                                    "width": 1024}},
              "nodes": {k: {"stages": {}, "router": None} for k in ("root", "L", "R")}}
    torch.save({"format": "edgesim.sigmab.tree/2", "config": config, "state_dict": {}}, path)
    return path
