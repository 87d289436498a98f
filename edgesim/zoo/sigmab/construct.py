"""Building a Sigma-Branch tree from a dense net, and the registry's tree factories.

Public names: ``DEFAULT_LEVELS``, ``MAX_CALIBRATION``, ``allocate``, ``to_tree``,
``sigmab_resnet50``, ``sigmab_resnet50_cifar``, ``sigmab_pointnet2``.

See ``edgesim.zoo.sigmab`` for the method (routers from k-means of each node's own output,
channels distributed over the nodes of a depth by the activations of their inputs, the
per-stage budget solved by bisection).

**The same tree on every machine.** Every decision of the construction (which channels a node
keeps, which calibration inputs its router sends to each child, the k-means split) is taken
from float64 numbers: the dense model's calibration pass and each node's pass over its inputs
run on a float64 copy of the weights, channel statistics, importance means, the router's
centre, k-means and the routing of the calibration inputs are float64. Float32 sums differ
between CPUs (vector widths) and BLAS thread counts by ~1e-7 relative, enough to swap two
channels' ranks; float64 sums differ by ~1e-16, far below the gap between two ranked channels.
Exact ties (e.g. channels that are zero on every input) go to the **lowest index**: the lowest
node, then the lowest channel (``allocate``), branch 0 of a router, the lowest cluster in
k-means. The bisection on the budget counts parameters in integers. The tree itself keeps the
dense model's float32 weights.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.sigmab.adapters import State, detect_arch, n_params
from edgesim.zoo.sigmab.checkpoint import FORMAT
from edgesim.zoo.sigmab.kmeans import spherical_kmeans
from edgesim.zoo.sigmab.router import Router
from edgesim.zoo.sigmab.tree import SigmaTree, _Node, node_key

__all__ = ["DEFAULT_LEVELS", "MAX_CALIBRATION", "allocate", "sigmab_pointnet2",
           "sigmab_resnet50", "sigmab_resnet50_cifar", "to_tree"]

#: Default split points: stage -> the tree level from which on it and the stages after it run
#: (stages before the first named one are the shared backbone). ``layerN_k`` = blocks k.. of
#: layerN. ResNet-50 (ImageNet): backbone stem..layer3 block 1, layer3 blocks 2-5 in the 2
#: level-1 nodes, layer4 + fc in the 4 leaves; the CIFAR-100 ResNet-50 (a 10x smaller fc) cuts
#: layer3 after block 0; PointNet++: backbone sa1 + sa2, sa3 in 2 nodes, the head in 4 leaves.
DEFAULT_LEVELS: dict[str, dict[str, int]] = {
    "resnet": {"layer3_2": 1, "layer4": 2},
    "resnet_cifar": {"layer3_1": 1, "layer4": 2},
    "pointnet2": {"sa3": 1, "head": 2},
}


def _channel_stats(act: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |activation| per channel, float64: (n, C, ...) -> (n, C)."""
    a = act.detach().abs().double()
    return a.flatten(2).mean(dim=2) if a.dim() > 2 else a


def _calibrate(arch: Any, stages: list[tuple[str, nn.Module]], backbone: list[str],
               x: torch.Tensor, chunk: int) -> tuple[State, dict[str, dict[str, torch.Tensor]]]:
    """One dense pass: the backbone output and per-sample channel statistics of tree stages."""
    stats: dict[str, dict[str, list[torch.Tensor]]] = {}
    hooks = []
    groups = {n: arch.groups(n, m) for n, m in stages if n not in backbone}
    for n, gs in groups.items():
        stats[n] = {g: [] for g, _, _ in gs}
        for g, _, mod in gs:
            if mod is not None:
                def hook(_m: nn.Module, _i: Any, out: torch.Tensor, n: str = n,
                         g: str = g) -> None:
                    stats[n][g].append(_channel_stats(out.clamp_min(0)))
                hooks.append(mod.register_forward_hook(hook))
    outs: list[State] = []
    try:
        with torch.no_grad():
            for lo in range(0, x.shape[0], chunk):
                state = arch.start(x[lo:lo + chunk])
                for n, m in stages:
                    state = arch.run(n, m, state)
                    if n == backbone[-1]:
                        outs.append(state)
                    for g, _, mod in groups.get(n, []):
                        if mod is None:
                            stats[n][g].append(_channel_stats(arch.features(state)))
    finally:
        for h in hooks:
            h.remove()
    if isinstance(outs[0], tuple):
        back = tuple(None if outs[0][j] is None else torch.cat([o[j] for o in outs])
                     for j in range(len(outs[0])))
    else:
        back = torch.cat(outs)
    return back, {n: {g: torch.cat(v) for g, v in d.items()} for n, d in stats.items()}


def allocate(importance: torch.Tensor, total: int) -> list[torch.Tensor]:
    """Share the C channels of one group among m nodes: ``importance`` (m, C) is each node's
    mean |activation| per channel over its calibration inputs; ``total`` (C..m*C) channel
    copies are handed out. Returns the sorted kept indices of each node.

    Each channel first goes to the node that needs it most (relative importance: a node's
    importance over its own mean; ties to the lowest node), so every channel lives in at least
    one node; a node left empty takes its most important channel; the remaining copies go to
    the (node, channel) pairs of highest relative importance. Nodes whose inputs use more
    channels strongly get wider. Float64 throughout; **ties go to the lowest index**: a
    channel's first home is the lowest node among those of equal relative importance, and the
    remaining copies are ranked by (relative importance descending, node, channel).

    >>> imp = torch.tensor([[4.0, 3.0, 0.1, 0.1], [0.1, 0.2, 2.0, 1.0]])
    >>> [s.tolist() for s in allocate(imp, 5)]
    [[0, 1], [1, 2, 3]]
    """
    m, c = importance.shape
    rel = importance.double() / importance.double().mean(dim=1, keepdim=True).clamp_min(1e-30)
    chosen = torch.zeros(m, c, dtype=torch.bool)
    chosen[rel.argmax(dim=0), torch.arange(c)] = True
    for j in range(m):
        if not bool(chosen[j].any()):
            chosen[j, int(rel[j].argmax())] = True
    extra = min(m * c, total) - int(chosen.sum())
    if extra > 0:
        score = rel.masked_fill(chosen, -math.inf).flatten()
        chosen.view(-1)[torch.argsort(-score, stable=True)[:extra]] = True
    return [chosen[j].nonzero().flatten() for j in range(m)]


def _total(f: float, m: int, channels: int) -> int:
    """Channel copies of a group over m nodes at keep fraction f (at least one full cover)."""
    return min(m * channels, max(channels, m, round(f * m * channels)))


def _check_levels(order: list[str], levels: Mapping[str, int], depth: int | None
                  ) -> tuple[list[str], list[str], dict[str, int], int]:
    """(backbone, tree stages, level of every tree stage, depth) of split points ``levels``."""
    unknown = sorted(set(levels) - set(order))
    if unknown:
        raise ModelError(f"levels name unknown stages {unknown}; the stages are {order}")
    named = [s for s in order if s in levels]
    if not named:
        raise ModelError(f"levels must map at least one stage to a tree level; stages: {order}")
    lv = [int(levels[s]) for s in named]
    depth = max(lv) if depth is None else int(depth)
    if depth < 1 or any(a > b for a, b in itertools.pairwise(lv)) or min(lv) < 0 \
            or lv[-1] != depth:
        raise ModelError(f"levels {dict(levels)} must be non-decreasing along {named}, in "
                         f"[0, depth], with the last stage at depth = {depth} >= 1")
    backbone = order[:order.index(named[0])]
    if not backbone:
        raise ModelError(f"the backbone must be a non-empty prefix of the stages {order}; "
                         f"levels {dict(levels)} leave none before {named[0]}")
    tree = order[len(backbone):]
    full, cur = {}, 0
    for s in tree:
        cur = int(levels.get(s, cur))
        full[s] = cur
    return backbone, tree, full, depth


def _router_scale(feats: torch.Tensor, centroids: torch.Tensor) -> float:
    """Logit scale giving a typical calibration input ~88 % for its branch (margin x scale = 2)."""
    cos = F.normalize(feats.double(), dim=1) @ centroids.double().T
    margin = (cos[:, 0] - cos[:, 1]).abs().median() if cos.shape[0] else torch.tensor(0.0)
    return float(min(1000.0, max(1.0, 2.0 / max(float(margin), 1e-6))))


def _fit_router(feats: torch.Tensor, seed: int) -> tuple[Router, torch.Tensor]:
    """A 2-way router from spherical k-means of the node's centred pooled features (centre =
    their mean), and its choices.

    ``feats`` are float64 (the construction pass); the router is stored in float32 and its
    choices are computed from the stored (float32-rounded) centre and rows in float64
    arithmetic, ties to branch 0 ("L"), so which calibration inputs build which child does
    not hang on float32 rounding. With a single calibration input (nothing to centre on) the
    centre is 0 and the two centroids are its direction and the opposite one.
    """
    pooled = feats.flatten(2).mean(dim=2) if feats.dim() > 2 else feats
    center = pooled.mean(dim=0) if pooled.shape[0] >= 2 else torch.zeros_like(pooled[0])
    centred = pooled - center
    if pooled.shape[0] >= 2 and bool((centred.norm(dim=1) > 0).all()):
        _, cent = spherical_kmeans(centred, 2, seed=seed)
    else:
        center = torch.zeros_like(pooled[0])
        centred = pooled
        v = F.normalize(pooled[:1].double(), dim=1)[0]
        cent = torch.stack([v, -v])
    router = Router(pooled.shape[1], _router_scale(centred, cent))
    with torch.no_grad():
        router.weight.copy_(cent.to(router.weight.dtype))
        router.center.copy_(center.to(router.center.dtype))
        choice = copy.deepcopy(router).double()(feats.double()).argmax(dim=1)
    return router, choice


class _Level:
    """The nodes at one depth while the tree is built: per node its calibration rows, its state
    (the parent's output on those rows) and the channels its first stage reads."""

    def __init__(self, keys: list[str], rows: list[torch.Tensor], states: list[State],
                 in_sel: list[torch.Tensor | None]) -> None:
        self.keys, self.rows, self.states, self.in_sel = keys, rows, states, in_sel


def _solve_level(a: Any, stages: Mapping[str, nn.Module], names: list[str],
                 stats: Mapping[str, Mapping[str, torch.Tensor]], level: _Level,
                 target: Callable[[list[str]], float], fixed: Mapping[str, float]
                 ) -> tuple[dict[str, list[dict[str, torch.Tensor]]], dict[str, float], int]:
    """Per stage of this level and per node the kept channels of every group; the keep
    fraction of each stage; the stages' total params. ``target(block)`` is the params the
    stages of ``block`` should hold together over the level's nodes (cumulative budget).

    A stage's fraction f is solved by bisection on the real parameter count (shapes only);
    stages without a group (the ResNet head) follow the stage before them."""
    m = len(level.keys)
    meta = {s: copy.deepcopy(stages[s]).to("meta") for s in names}
    groups = {s: a.groups(s, stages[s]) for s in names}
    importance = {s: {g: torch.stack([stats[s][g][r].mean(dim=0) for r in level.rows])
                      for g, _, _ in groups[s]} for s in names}
    keeps: dict[str, list[dict[str, torch.Tensor]]] = {}
    fractions: dict[str, float] = {}
    cur_in = list(level.in_sel)
    total = 0
    i = 0
    while i < len(names):
        j = i + 1
        while j < len(names) and not groups[names[j]]:
            j += 1
        block = names[i:j]

        def alloc(f: float, block: list[str] = block, start: list = cur_in
                  ) -> tuple[int, dict, list]:
            count, ins, kept = 0, list(start), {}
            for s in block:
                per = [{} for _ in range(m)]
                for g, c, _ in groups[s]:
                    for k, sel in enumerate(allocate(importance[s][g], _total(f, m, c))):
                        per[k][g] = sel
                kept[s] = per
                for k in range(m):
                    mod, out = a.slice(s, meta[s], ins[k], per[k])
                    count += n_params(mod)
                    ins[k] = out
            return count, kept, ins

        goal = target(block)
        s0 = block[0]
        if not groups[s0] or m == 1:
            f = 1.0
        elif s0 in fixed:
            f = float(fixed[s0])
        else:
            lo, hi = 1.0 / m, 1.0
            if alloc(hi)[0] <= goal:
                lo = hi
            elif alloc(lo)[0] < goal:
                for _ in range(24):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if alloc(mid)[0] <= goal else (lo, mid)
            f = lo if abs(alloc(lo)[0] - goal) <= abs(alloc(hi)[0] - goal) else hi
        count, kept, cur_in = alloc(f)
        fractions[s0] = round(f, 6)
        keeps.update(kept)
        total += count
        i = j
    return keeps, fractions, total


def to_tree(dense_model: nn.Module, calibration_inputs: torch.Tensor, *, arch: str | None = None,
            depth: int | None = None, levels: Mapping[str, int] | None = None, seed: int = 0,
            budget: float = 1.0, fractions: Mapping[str, float] | None = None,
            chunk: int = 8) -> SigmaTree:
    """Transform ``dense_model`` into a ``SigmaTree`` using ``calibration_inputs`` (n >= 2).

    ``arch``: ``"resnet"`` or ``"pointnet2"`` (detected when None). ``levels``: split points,
    stage -> the tree level from which on that stage and the ones after it run (default
    ``DEFAULT_LEVELS[arch]``; a ResNet stage ``layerN_k`` splits layerN before block k);
    ``depth`` defaults to the largest level. ``budget``: tree params / dense params of the tree
    stages to aim for. ``fractions``: fixed keep fractions per stage (the mean share of a
    group's channels a node keeps; skips the solve). ``chunk``: calibration batch size of the
    dense pass. The dense model is not modified; the tree copies (slices) its weights.

    Built top-down, one depth at a time: the stages of a depth are allocated over its nodes
    together (``allocate``: every channel in at least one node), then each node runs its
    calibration inputs through its own stages and its router splits them by k-means of that
    output. These construction passes run in float64 on a copy of the dense model (the tree
    keeps the float32 weights), so which channels each node keeps and which calibration
    inputs build which child do not hang on float32 rounding (module docstring).
    """
    a = detect_arch(dense_model, arch)
    levels = dict(DEFAULT_LEVELS[a.name] if levels is None else levels)
    cuts = [s for s in levels if s in a.cut_names(dense_model)]
    stage_list = a.stages(dense_model, cuts)
    order = [n for n, _ in stage_list]
    stages = dict(stage_list)
    backbone, tree, lv, depth = _check_levels(order, levels, depth)
    n = calibration_inputs.shape[0]
    if n < 2:
        raise ModelError(f"to_tree needs at least 2 calibration inputs, got {n}")
    # the construction passes run in float64 on a copy (see the module docstring)
    dense64 = copy.deepcopy(dense_model).double().eval()
    back_out, stats = _calibrate(a, a.stages(dense64, cuts), backbone,
                                 calibration_inputs.double(), chunk)
    del dense64
    config: dict[str, Any] = {
        "format": FORMAT, "arch": a.name, "depth": depth, "levels": lv, "cuts": cuts,
        "backbone": backbone, "tree": tree, "fractions": {}, "seed": seed,
        "dense": a.dense_config(dense_model), "nodes": {},
    }
    dense_n = {s: n_params(stages[s]) for s in tree}
    acc = {"dense": 0, "tree": 0}

    def target(block: list[str]) -> float:
        return budget * (acc["dense"] + sum(dense_n[s] for s in block)) - acc["tree"]

    nodes: dict[str, _Node] = {}
    level = _Level([""], [torch.arange(n)], [back_out], [None])
    for d in range(depth + 1):
        names = [s for s in tree if lv[s] == d]
        keeps, f, count = _solve_level(a, stages, names, stats, level, target, fractions or {})
        config["fractions"].update(f)
        acc["dense"] += sum(dense_n[s] for s in names)
        acc["tree"] += count
        nxt = _Level([], [], [], [])
        for k, bits in enumerate(level.keys):
            state, in_sel, rows = level.states[k], level.in_sel[k], level.rows[k]
            mods: dict[str, nn.Module] = {}
            node_cfg: dict[str, Any] = {"stages": {}, "router": None, "calibration": len(rows)}
            for s in names:
                keep = keeps[s][k]
                mod, out_sel = a.slice(s, stages[s], in_sel, keep)
                mods[s] = mod.eval()
                node_cfg["stages"][s] = {
                    "in": None if in_sel is None else len(in_sel),
                    "keep": {g: len(v) for g, v in keep.items()},
                    "channels": {g: v.tolist() for g, v in keep.items()}}
                if d < depth:
                    with torch.no_grad():
                        state = a.run(s, copy.deepcopy(mod).double(), state)
                in_sel = out_sel
            router = None
            if d < depth:
                router, choice = _fit_router(a.features(state), seed)
                node_cfg["router"] = {"channels": router.weight.shape[1], "scale": router.scale,
                                      "centered": True}
                for c, letter in enumerate("LR"):
                    sub = (choice == c).nonzero().flatten()
                    if len(sub) == 0:  # nobody routed here: inherit the parent's subset
                        sub = torch.arange(len(rows))
                    nxt.keys.append(bits + letter)
                    nxt.rows.append(rows[sub])
                    nxt.states.append(a.take(state, sub))
                    nxt.in_sel.append(in_sel)
            nodes[node_key(bits)] = _Node(names, mods, router)
            config["nodes"][node_key(bits)] = node_cfg
        level = nxt
    backbone_mods = {s: copy.deepcopy(stages[s]).eval() for s in backbone}
    ordered = dict(sorted(nodes.items(), key=lambda kv: (kv[0] != "root", len(kv[0]), kv[0])))
    config["nodes"] = {k: config["nodes"][k] for k in ordered}
    return SigmaTree(config, backbone_mods, ordered).eval()


# ---------------------------------------------------------------------------------------------
# factories


def _seeded(build: Callable[[], nn.Module], seed: int,
            checkpoint: str | Path | None) -> nn.Module:
    """The dense model: seeded init, then the user's ``checkpoint`` (a state_dict of exactly
    this model, read with ``weights_only=True``; one-line ``ModelError`` naming the file and
    the first key that does not fit)."""
    from edgesim.zoo.registry import load_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    if checkpoint is not None:
        load_weights(model, Path(checkpoint))
    return model.eval()


#: At most this many of a user's ``--data`` inputs calibrate a tree (the dense pass keeps the
#: backbone output of each: ~0.8 MB per ImageNet image).
MAX_CALIBRATION = 128


def _inputs(inputs: torch.Tensor | None, synthetic: Callable[[], torch.Tensor]) -> torch.Tensor:
    if inputs is None:
        return synthetic()
    if inputs.shape[0] < 2:
        raise ModelError(f"a tree needs at least 2 calibration inputs, got {inputs.shape[0]}")
    return inputs[:MAX_CALIBRATION].float()


def _resnet_tree(build: Callable[[], nn.Module], image_size: int, calibration: int, seed: int,
                 depth: int | None, levels: Mapping[str, int] | None,
                 checkpoint: str | Path | None, inputs: torch.Tensor | None) -> SigmaTree:
    from edgesim.zoo.data import synthetic_images

    dense = _seeded(build, seed, checkpoint)
    x = _inputs(inputs, lambda: synthetic_images(calibration, (3, image_size, image_size),
                                                 clusters=8, seed=seed)[0])
    return to_tree(dense, x, arch="resnet", depth=depth, levels=levels, seed=seed)


def sigmab_resnet50(num_classes: int = 1000, image_size: int = 224, calibration: int = 32,
                    seed: int = 0, *, depth: int | None = None,
                    levels: Mapping[str, int] | None = None,
                    checkpoint: str | Path | None = None,
                    inputs: torch.Tensor | None = None) -> SigmaTree:
    """ΣB tree of ResNet-50 (ImageNet stem): seeded dense model (or the state_dict file
    ``checkpoint``), calibrated on ``inputs`` (the first ``MAX_CALIBRATION``) or on
    ``calibration`` synthetic clustered images; default levels ``DEFAULT_LEVELS["resnet"]``
    (layer3 blocks 2-5 in 2 nodes, layer4 + fc in 4 leaves)."""
    from edgesim.zoo.resnet import resnet50

    return _resnet_tree(lambda: resnet50(num_classes), image_size, calibration, seed, depth,
                        DEFAULT_LEVELS["resnet"] if levels is None else levels, checkpoint,
                        inputs)


def sigmab_resnet50_cifar(num_classes: int = 100, image_size: int = 32, calibration: int = 32,
                          seed: int = 0, *, depth: int | None = None,
                          levels: Mapping[str, int] | None = None,
                          checkpoint: str | Path | None = None,
                          inputs: torch.Tensor | None = None) -> SigmaTree:
    """ΣB tree of the CIFAR ResNet-50 (3x3 stem, 32x32 inputs); as ``sigmab_resnet50`` with
    ``DEFAULT_LEVELS["resnet_cifar"]`` (layer3 blocks 1-5 in 2 nodes, layer4 + fc in 4)."""
    from edgesim.zoo.resnet import resnet50_cifar

    return _resnet_tree(lambda: resnet50_cifar(num_classes), image_size, calibration, seed,
                        depth, DEFAULT_LEVELS["resnet_cifar"] if levels is None else levels,
                        checkpoint, inputs)


def sigmab_pointnet2(num_classes: int = 40, in_points: int = 1024, calibration: int = 32,
                     seed: int = 0, *, width: float = 1.0, depth: int | None = None,
                     levels: Mapping[str, int] | None = None,
                     checkpoint: str | Path | None = None,
                     inputs: torch.Tensor | None = None) -> SigmaTree:
    """ΣB tree of PointNet++ SSG: sa1+sa2 backbone, sa3 in the 2 level-1 nodes, head in 4
    leaves; ``checkpoint`` and ``inputs`` as in ``sigmab_resnet50``."""
    from edgesim.zoo.data import synthetic_points
    from edgesim.zoo.pointnet2 import pointnet2_ssg

    dense = _seeded(lambda: pointnet2_ssg(num_classes, in_points, width), seed, checkpoint)
    x = _inputs(inputs, lambda: synthetic_points(calibration, in_points, clusters=8,
                                                 seed=seed)[0])
    return to_tree(dense, x, arch="pointnet2", depth=depth, levels=levels, seed=seed)


sigmab_resnet50.input_shape = (3, 224, 224)  # type: ignore[attr-defined]
sigmab_resnet50_cifar.input_shape = (3, 32, 32)  # type: ignore[attr-defined]
sigmab_pointnet2.input_shape = (1024, 3)  # type: ignore[attr-defined]
