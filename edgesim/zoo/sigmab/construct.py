"""Building a Sigma-Branch tree from a dense net, and the registry's tree factories.

Public names: ``DEFAULT_LEVELS``, ``to_tree``, ``sigmab_resnet50``, ``sigmab_resnet50_cifar``,
``sigmab_pointnet2``.

See ``edgesim.zoo.sigmab`` for the method (routers from k-means, channels kept by activation,
the per-stage budget solved by bisection).
"""

from __future__ import annotations

import copy
import itertools
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

__all__ = ["DEFAULT_LEVELS", "sigmab_pointnet2", "sigmab_resnet50", "sigmab_resnet50_cifar",
           "to_tree"]

#: Default stage -> level maps (stages not named are the shared backbone).
DEFAULT_LEVELS: dict[str, dict[str, int]] = {
    "resnet": {"layer4": 3, "head": 3},
    "pointnet2": {"sa3": 1, "head": 2},
}


def _channel_stats(act: torch.Tensor) -> torch.Tensor:
    """Per-sample mean |activation| per channel: (n, C, ...) -> (n, C)."""
    a = act.detach().abs().float()
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


def _count(k: float, channels: int) -> int:
    return min(channels, max(1, round(k * channels)))


def _top(importance: torch.Tensor, k: int) -> torch.Tensor:
    order = torch.argsort(-importance, stable=True)[:k]
    return order.sort().values


def _solve_fractions(arch: Any, stages: dict[str, nn.Module], tree: list[str],
                     levels: Mapping[str, int], budget: float,
                     fixed: Mapping[str, float]) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-stage keep fractions so that tree params of stages so far ~= budget x dense params."""
    groups = {n: arch.groups(n, stages[n]) for n in tree}
    dense_n = {n: n_params(stages[n]) for n in tree}
    stages = {n: copy.deepcopy(stages[n]).to("meta") for n in tree}  # shapes only: cheap slices
    fractions: dict[str, float] = {}
    in_n: int | None = None  # kept output channels of the previous tree stage (None = all)
    acc_dense = acc_tree = 0
    i = 0
    while i < len(tree):
        j = i + 1
        while j < len(tree) and not groups[tree[j]]:
            j += 1
        block = tree[i:j]

        def count(f: float, block: list[str] = block, start: int | None = in_n
                  ) -> tuple[int, int | None]:
            total, cur = 0, start
            for s in block:
                keep = {g: torch.arange(_count(f, c)) for g, c, _ in groups[s]}
                mod, out = arch.slice(s, stages[s], None if cur is None else torch.arange(cur),
                                      keep)
                total += n_params(mod) * 2 ** levels[s]
                cur = None if out is None else len(out)
            return total, cur

        target = budget * (acc_dense + sum(dense_n[s] for s in block)) - acc_tree
        s0 = block[0]
        if not groups[s0]:
            f = 1.0
        elif s0 in fixed:
            f = float(fixed[s0])
        else:
            lo, hi = 0.0, 1.0
            if count(hi)[0] <= target:
                lo = hi
            else:
                for _ in range(30):
                    mid = (lo + hi) / 2
                    lo, hi = (mid, hi) if count(mid)[0] <= target else (lo, mid)
            f = lo if abs(count(lo)[0] - target) <= abs(count(hi)[0] - target) else hi
        fractions[s0] = f
        n_tree, in_n = count(f)
        acc_tree += n_tree
        acc_dense += sum(dense_n[s] for s in block)
        i = j
    return fractions, {n: groups[n] for n in tree}


def _router_scale(feats: torch.Tensor, centroids: torch.Tensor) -> float:
    """Logit scale giving a typical calibration input ~88 % for its branch (margin x scale = 2)."""
    cos = F.normalize(feats.double(), dim=1) @ centroids.double().T
    margin = (cos[:, 0] - cos[:, 1]).abs().median() if cos.shape[0] else torch.tensor(0.0)
    return float(min(1000.0, max(1.0, 2.0 / max(float(margin), 1e-6))))


def _check_levels(order: list[str], levels: Mapping[str, int], depth: int | None
                  ) -> tuple[list[str], list[str], int]:
    unknown = sorted(set(levels) - set(order))
    if unknown:
        raise ModelError(f"levels name unknown stages {unknown}; the stages are {order}")
    tree = [s for s in order if s in levels]
    if not tree:
        raise ModelError(f"levels must map at least one stage to a tree level; stages: {order}")
    backbone = order[:order.index(tree[0])]
    if not backbone or [s for s in order if s not in levels] != backbone:
        raise ModelError(f"the backbone must be a non-empty prefix of the stages {order}; "
                         f"levels {dict(levels)} leave {[s for s in order if s not in levels]}")
    lv = [int(levels[s]) for s in tree]
    depth = max(lv) if depth is None else int(depth)
    if depth < 1 or any(a > b for a, b in itertools.pairwise(lv)) or min(lv) < 0 \
            or lv[-1] != depth:
        raise ModelError(f"levels {dict(levels)} must be non-decreasing along {tree}, in "
                         f"[0, depth], with the last stage at depth = {depth} >= 1")
    return backbone, tree, depth


def _fit_router(feats: torch.Tensor, seed: int) -> tuple[Router, torch.Tensor]:
    """A 2-way router from spherical k-means of the node's pooled features, and its choices.

    With a single calibration input the two centroids are its direction and the opposite one.
    """
    pooled = feats.flatten(2).mean(dim=2) if feats.dim() > 2 else feats
    if pooled.shape[0] >= 2:
        _, cent = spherical_kmeans(pooled, 2, seed=seed)
    else:
        v = F.normalize(pooled[:1].double(), dim=1)[0]
        cent = torch.stack([v, -v])
    router = Router(pooled.shape[1], _router_scale(pooled, cent))
    with torch.no_grad():
        router.weight.copy_(cent.to(router.weight.dtype))
        choice = router(feats).argmax(dim=1)
    return router, choice


def to_tree(dense_model: nn.Module, calibration_inputs: torch.Tensor, *, arch: str | None = None,
            depth: int | None = None, levels: Mapping[str, int] | None = None, seed: int = 0,
            budget: float = 1.0, fractions: Mapping[str, float] | None = None,
            chunk: int = 8) -> SigmaTree:
    """Transform ``dense_model`` into a ``SigmaTree`` using ``calibration_inputs`` (n >= 2).

    ``arch``: ``"resnet"`` or ``"pointnet2"`` (detected when None). ``levels``: stage -> tree
    level (default ``DEFAULT_LEVELS[arch]``); ``depth`` defaults to the largest level.
    ``budget``: tree params / dense params to aim for. ``fractions``: fixed keep fractions per
    stage (skips the solve for those stages). ``chunk``: calibration batch size of the dense pass.
    The dense model is not modified; the tree copies (slices) its weights.

    Longer than 60 lines because the recursive ``build`` closure walks the tree top-down with the
    calibration state of each node (stats, fractions, config) in scope; splitting it would thread
    six values through every call.
    """
    a = detect_arch(dense_model, arch)
    levels = dict(DEFAULT_LEVELS[a.name] if levels is None else levels)
    stage_list = a.stages(dense_model)
    order = [n for n, _ in stage_list]
    stages = dict(stage_list)
    backbone, tree, depth = _check_levels(order, levels, depth)
    n = calibration_inputs.shape[0]
    if n < 2:
        raise ModelError(f"to_tree needs at least 2 calibration inputs, got {n}")
    was_training = dense_model.training
    dense_model.eval()
    try:
        back_out, stats = _calibrate(a, stage_list, backbone, calibration_inputs, chunk)
        f, groups = _solve_fractions(a, stages, tree, levels, budget, fractions or {})
    finally:
        dense_model.train(was_training)

    config: dict[str, Any] = {
        "format": FORMAT, "arch": a.name, "depth": depth, "levels": {s: levels[s] for s in tree},
        "backbone": backbone, "tree": tree, "fractions": f, "seed": seed,
        "dense": a.dense_config(dense_model), "nodes": {},
    }
    nodes: dict[str, _Node] = {}
    frac = {s: f[s] if s in f else 1.0 for s in tree}
    for s in tree:  # a stage without groups uses no fraction; stages solved together share one
        if s not in f:
            frac[s] = frac[tree[tree.index(s) - 1]] if tree.index(s) > 0 else 1.0

    def build(bits: str, d: int, state: State, rows: torch.Tensor,
              in_sel: torch.Tensor | None) -> None:
        key = node_key(bits)
        names = [s for s in tree if levels[s] == d]
        mods: dict[str, nn.Module] = {}
        node_cfg: dict[str, Any] = {"stages": {}, "router": None, "calibration": len(rows)}
        for s in names:
            keep = {g: _top(stats[s][g][rows].mean(dim=0), _count(frac[s], c))
                    for g, c, _ in groups[s]}
            mod, out_sel = a.slice(s, stages[s], in_sel, keep)
            mods[s] = mod.eval()
            node_cfg["stages"][s] = {"in": None if in_sel is None else len(in_sel),
                                     "keep": {g: len(v) for g, v in keep.items()}}
            if d < depth:
                with torch.no_grad():
                    state = a.run(s, mod, state)
            in_sel = out_sel
        router = None
        if d < depth:
            router, choice = _fit_router(a.features(state), seed)
            node_cfg["router"] = {"channels": router.weight.shape[1], "scale": router.scale}
        nodes[key] = _Node(names, mods, router)
        config["nodes"][key] = node_cfg
        if d < depth:
            for c, letter in enumerate("LR"):
                sub = (choice == c).nonzero().flatten()
                if len(sub) == 0:  # nobody routed here: inherit the parent's subset
                    sub = torch.arange(len(rows))
                build(bits + letter, d + 1, a.take(state, sub), rows[sub], in_sel)

    build("", 0, back_out, torch.arange(n), None)
    backbone_mods = {s: copy.deepcopy(stages[s]).eval() for s in backbone}
    return SigmaTree(config, backbone_mods, nodes).eval()


# ---------------------------------------------------------------------------------------------
# factories


def _seeded(build: Callable[[], nn.Module], seed: int,
            checkpoint: str | Path | None) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
    if checkpoint is not None:
        p = Path(checkpoint)
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict)
                                  else state)
        except Exception as exc:  # reported to the user with the path
            raise ModelError(f"{p}: cannot load dense checkpoint into {type(model).__name__} "
                             f"({type(exc).__name__}: {exc})") from exc
    return model.eval()


def _resnet_tree(build: Callable[[], nn.Module], image_size: int, calibration: int, seed: int,
                 depth: int | None, levels: Mapping[str, int] | None,
                 checkpoint: str | Path | None) -> SigmaTree:
    from edgesim.zoo.data import synthetic_images

    dense = _seeded(build, seed, checkpoint)
    x, _ = synthetic_images(calibration, (3, image_size, image_size), clusters=8, seed=seed)
    return to_tree(dense, x, arch="resnet", depth=depth, levels=levels, seed=seed)


def sigmab_resnet50(num_classes: int = 1000, image_size: int = 224, calibration: int = 32,
                    seed: int = 0, *, depth: int | None = None,
                    levels: Mapping[str, int] | None = None,
                    checkpoint: str | Path | None = None) -> SigmaTree:
    """ΣB tree of ResNet-50 (ImageNet stem): seeded dense model (or ``checkpoint``), calibrated on
    ``calibration`` synthetic clustered images, default levels: layer4 + head in 8 leaves."""
    from edgesim.zoo.resnet import resnet50

    return _resnet_tree(lambda: resnet50(num_classes), image_size, calibration, seed, depth,
                        levels, checkpoint)


def sigmab_resnet50_cifar(num_classes: int = 100, image_size: int = 32, calibration: int = 32,
                          seed: int = 0, *, depth: int | None = None,
                          levels: Mapping[str, int] | None = None,
                          checkpoint: str | Path | None = None) -> SigmaTree:
    """ΣB tree of the CIFAR ResNet-50 (3x3 stem, 32x32 inputs); as ``sigmab_resnet50``."""
    from edgesim.zoo.resnet import resnet50_cifar

    return _resnet_tree(lambda: resnet50_cifar(num_classes), image_size, calibration, seed,
                        depth, levels, checkpoint)


def sigmab_pointnet2(num_classes: int = 40, in_points: int = 1024, calibration: int = 32,
                     seed: int = 0, *, width: float = 1.0, depth: int | None = None,
                     levels: Mapping[str, int] | None = None,
                     checkpoint: str | Path | None = None) -> SigmaTree:
    """ΣB tree of PointNet++ SSG: sa1+sa2 backbone, sa3 at level 1, head in 4 leaves."""
    from edgesim.zoo.data import synthetic_points
    from edgesim.zoo.pointnet2 import pointnet2_ssg

    dense = _seeded(lambda: pointnet2_ssg(num_classes, in_points, width), seed, checkpoint)
    x, _ = synthetic_points(calibration, in_points, clusters=8, seed=seed)
    return to_tree(dense, x, arch="pointnet2", depth=depth, levels=levels, seed=seed)


sigmab_resnet50.input_shape = (3, 224, 224)  # type: ignore[attr-defined]
sigmab_resnet50_cifar.input_shape = (3, 32, 32)  # type: ignore[attr-defined]
sigmab_pointnet2.input_shape = (1024, 3)  # type: ignore[attr-defined]
