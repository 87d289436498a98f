"""Sigma-Branch (ΣB) routed trees: turn a dense ResNet or PointNet++ into a binary tree of experts.

Public names: ``spherical_kmeans``, ``Router``, ``SigmaTree``, ``to_tree``, ``fine_tune``,
``finetune``, ``load_labelled``, ``save_tree``, ``load_tree``, ``sigmab_resnet50``,
``sigmab_resnet50_cifar``, ``sigmab_pointnet2``, ``DEFAULT_LEVELS``, ``SigmaBranchFamily``.

Modules: ``kmeans`` (spherical k-means), ``router`` (``Router``), ``adapters`` (how a ResNet or
PointNet++ is cut into stages, sliced and named), ``tree`` (``SigmaTree``), ``construct``
(``to_tree`` and the registry factories), ``train`` (soft-routing fine-tuning), ``checkpoint``
(``save_tree`` / ``load_tree``: an allow-listed structure config and a state dict, no code).

The dense model is cut into an ordered list of stages (ResNet: ``stem, layer1..layer4, head``
where head = avgpool + fc; PointNet++: ``sa1, sa2, sa3, head``). ``levels`` maps each stage after
the shared backbone to a tree level: a stage at level d is copied into each of the 2**d nodes at
that depth; the leaves are at ``depth``. Each input runs the backbone and ONE root-to-leaf path.

Construction (``to_tree``), from a calibration batch, running the dense model once:

* Routers. The calibration inputs reaching an internal node are split in two by spherical k-means
  on the unit-normalised, globally average-pooled activations that the node's router reads (the
  node's output = its children's input; a node that holds no stages routes on its own input). The
  two centroids are the router's weight rows (``Router``: pool -> normalise -> linear, no bias),
  so argmax = nearest centroid by cosine. The router's decisions split the inputs among children.
* Channels. Each node's copy of a stage keeps, in every channel group of the stage, the fraction f
  of channels its inputs activate most (mean |activation| of the dense model over the node's
  calibration subset) and slices the pretrained weights: conv ``weight[out_sel][:, in_sel]``,
  BatchNorm statistics sliced, one residual channel set shared by all blocks of a ResNet layer,
  the input of a copy = the kept channels of what feeds it, class outputs full.
* Budget. f is solved per stage by bisection on the real parameter count so that the copies of the
  tree stages together hold the dense stages' parameters (times ``budget``). Stages without a free
  channel group (the ResNet head) are solved together with the stage feeding them, cumulatively:
  after each solved stage, tree params of the stages so far ~= their dense params.

Defaults (``DEFAULT_LEVELS``): ResNet — backbone stem..layer3, layer4 and head in 8 leaves at
depth 3, all three router levels after layer3 (internal nodes hold no layers); PointNet++ —
backbone sa1+sa2, sa3 at level 1, head at level 2 (4 leaves). With these, the mean active
parameters per path are about 41-42 % of the dense model (see ``tests/test_sigmab.py``).

Paths are numbered by their leaf, left to right; path i's decisions are the bits of i, most
significant first (0 = "L", 1 = "R"); ``path_names()`` gives e.g. ``"L-R-L"``. Node names are
``"root"`` and the decision strings ``"L"``, ``"LR"``, ... (module names ``nodes.LR.layer4...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesim.errors import ModelError
from edgesim.zoo.family import Family
from edgesim.zoo.sigmab.checkpoint import load_tree, save_tree
from edgesim.zoo.sigmab.construct import (
    DEFAULT_LEVELS,
    sigmab_pointnet2,
    sigmab_resnet50,
    sigmab_resnet50_cifar,
    to_tree,
)
from edgesim.zoo.sigmab.kmeans import spherical_kmeans
from edgesim.zoo.sigmab.router import Router
from edgesim.zoo.sigmab.train import fine_tune, finetune, load_labelled
from edgesim.zoo.sigmab.tree import SigmaTree

__all__ = [
    "DEFAULT_LEVELS",
    "Router",
    "SigmaBranchFamily",
    "SigmaTree",
    "fine_tune",
    "finetune",
    "load_labelled",
    "load_tree",
    "save_tree",
    "sigmab_pointnet2",
    "sigmab_resnet50",
    "sigmab_resnet50_cifar",
    "spherical_kmeans",
    "to_tree",
]


class SigmaBranchFamily(Family):
    """Routed trees: a ``weights`` file is a tree checkpoint (it carries its own structure), and
    built trees are cached on disk in the ``save_tree`` format (calibration takes tens of
    seconds)."""

    name = "sigmab"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        if weights is not None:
            return load_tree(weights)
        return super().build(spec, None, seed)

    def save_built(self, model: Any, path: Path) -> bool:
        try:
            save_tree(model, path)
        except ModelError:  # not a tree of the zoo's architectures: not cached
            return False
        return True

    def load_built(self, path: Path) -> Any | None:
        try:
            return load_tree(path)
        except ModelError:  # corrupt, foreign or refused: a miss
            return None
