"""Sigma-Branch (ΣB) routed trees: turn a dense ResNet or PointNet++ into a binary tree of experts.

Public names: ``spherical_kmeans``, ``Router``, ``SigmaTree``, ``allocate``, ``to_tree``,
``fine_tune``, ``temperature_schedule``, ``finetune``, ``load_labelled``, ``save_tree``,
``load_tree``, ``read_checkpoint``, ``is_tree_checkpoint``, ``tree_from_checkpoint``,
``sigmab_resnet50``, ``sigmab_resnet50_cifar``, ``sigmab_pointnet2``, ``DEFAULT_LEVELS``,
``MAX_CALIBRATION``, ``SigmaBranchFamily``.

Modules: ``kmeans`` (spherical k-means), ``router`` (``Router``), ``adapters`` (how a ResNet or
PointNet++ is cut into stages, sliced and named), ``tree`` (``SigmaTree``), ``construct``
(``to_tree`` and the registry factories), ``train`` (soft-routing fine-tuning), ``checkpoint``
(``save_tree`` / ``load_tree``: an allow-listed structure config and a state dict, no code).

The dense model is cut into an ordered list of stages (ResNet: ``stem, layer1..layer4, head``
where head = avgpool + fc, and a split point ``layerN_k`` cuts layerN before block k;
PointNet++: ``sa1, sa2, sa3, head``). ``levels`` names split points: stage -> the tree level
from which on that stage and the ones after it run; the stages before the first are the
shared backbone. A stage at level d exists in each of the 2**d nodes at that depth, each node
a different slice of it; the leaves are at ``depth``. Each input runs the backbone and ONE
root-to-leaf path.

Construction (``to_tree``), from a calibration batch, top-down one depth at a time:

* Channels. The dense model runs once over the batch, recording each channel's mean
  |activation| per input. The stages of a depth are shared out over its nodes together
  (``allocate``): each channel of every group goes first to the node whose inputs (its
  k-means cluster) use it most, relative to that node's mean, so every pretrained channel is
  stored in at least one node; the remaining channel copies go to the (node, channel) pairs of
  highest relative importance, so nodes differ in width and in channel set. Slicing: conv
  ``weight[out_sel][:, in_sel]``, BatchNorm statistics sliced, one residual channel set per
  ResNet layer part (blocks without a downsample keep the residual set they receive), the
  input of a copy = the kept channels of what feeds it, class outputs full.
* Budget. The number of copies (a keep fraction f: the mean share of a group a node keeps) is
  solved per stage by bisection on the real parameter count so that the nodes of a depth
  together hold the dense stages' parameters (times ``budget``), cumulatively over the stages
  so far. Stages without a free channel group (the ResNet head) follow the stage before them.
* Routers. Each internal node runs its calibration inputs through its own stages; spherical
  k-means of the globally average-pooled, unit-normalised output splits them in two; the two
  centroids are the router's weight rows (``Router``: pool -> normalise -> linear, no bias), so
  argmax = nearest centroid by cosine; each child is built from the inputs routed to it.
* Precision. These construction passes and decisions are float64 with ties to the lowest
  index (node, channel, branch), so the tree is the same on every CPU and BLAS thread count
  (``construct``); the tree keeps the float32 weights.

``SigmaTree.node_report()`` gives per node, stage and group the channels kept, the overlap with
the sibling and the coverage of the dense channels at that depth (1.0).

Defaults (``DEFAULT_LEVELS``): ResNet-50 — backbone stem..layer3 block 1, layer3 blocks 2-5 in
the 2 level-1 nodes, layer4 + head in 4 leaves (CIFAR-100: layer3 cut after block 0);
PointNet++ — backbone sa1+sa2, sa3 at level 1, head at level 2 (4 leaves). With these, the mean
active parameters per path are about 40-42 % of the dense model and the tree stores the dense
parameter count (see ``tests/test_sigmab.py``).

Fine-tuning (``fine_tune``) trains on the soft-routed mixture with a temperature annealed from
1 to 0.05 and ends in hard routing (straight-through), with a load-balance term; every step
reports the routing entropy and each leaf's load (``Step``).

Paths are numbered by their leaf, left to right; path i's decisions are the bits of i, most
significant first (0 = "L", 1 = "R"); ``path_names()`` gives e.g. ``"L-R-L"``. Node names are
``"root"`` and the decision strings ``"L"``, ``"LR"``, ... (module names ``nodes.LR.layer4...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgesim.errors import ModelError
from edgesim.zoo.family import Family
from edgesim.zoo.sigmab.checkpoint import (
    is_tree_checkpoint,
    load_tree,
    read_checkpoint,
    save_tree,
    tree_from_checkpoint,
)
from edgesim.zoo.sigmab.construct import (
    DEFAULT_LEVELS,
    MAX_CALIBRATION,
    allocate,
    sigmab_pointnet2,
    sigmab_resnet50,
    sigmab_resnet50_cifar,
    to_tree,
)
from edgesim.zoo.sigmab.kmeans import spherical_kmeans
from edgesim.zoo.sigmab.router import Router
from edgesim.zoo.sigmab.train import fine_tune, finetune, load_labelled, temperature_schedule
from edgesim.zoo.sigmab.tree import SigmaTree

__all__ = [
    "DEFAULT_LEVELS",
    "MAX_CALIBRATION",
    "Router",
    "SigmaBranchFamily",
    "SigmaTree",
    "allocate",
    "fine_tune",
    "finetune",
    "load_labelled",
    "load_tree",
    "save_tree",
    "sigmab_pointnet2",
    "sigmab_resnet50",
    "sigmab_resnet50_cifar",
    "spherical_kmeans",
    "temperature_schedule",
    "to_tree",
]


class SigmaBranchFamily(Family):
    """Routed trees. ``weights`` is either a tree checkpoint (``save_tree``: it carries its own
    structure and loads as itself) or a user's dense state_dict of the model the factory builds
    (ResNet-50 / PointNet++ of the spec), which becomes the tree: calibrated on ``data`` (the
    first ``MAX_CALIBRATION`` inputs of a file or folder ``edgesim.zoo.data.load_inputs``
    reads) when given, else on the factory's seeded synthetic inputs. Built trees are cached
    on disk in the ``save_tree`` format (calibration takes tens of seconds)."""

    name = "sigmab"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        if weights is None:
            return super().build(spec, None, seed)
        obj = read_checkpoint(weights)
        if is_tree_checkpoint(obj):
            return tree_from_checkpoint(obj, weights)
        del obj
        from edgesim.zoo.registry import _import_factory

        inputs = None
        if data is not None:
            from edgesim.zoo.data import load_inputs
            kind = "points" if len(spec.input_shape) == 2 else "image"
            inputs = load_inputs(data, kind=kind, shape=tuple(spec.input_shape))
        factory = _import_factory(spec.name, spec.factory)
        kwargs = {k: v for k, v in spec.kwargs.items() if k != "init"}
        return factory(**kwargs, seed=seed, checkpoint=weights, inputs=inputs)

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
