"""Tree checkpoints: structure config + state dict, loaded without running code from the file.

Public names: ``FORMAT``, ``MAX_PARAMS``, ``save_tree``, ``load_tree``, ``check_config``,
``read_checkpoint``, ``is_tree_checkpoint``, ``tree_from_checkpoint``, ``tree_params``.

A checkpoint is a torch file ``{"format": FORMAT, "config": ..., "state_dict": ...}`` read with
``weights_only=True``. The config is plain data; its dense architecture is a name of
``adapters.ARCHS`` with checked constructor parameters (``adapters.check_dense``), never an
importable path. ``check_config`` validates the whole structure (architecture, depth, the node
set, stage names, channel counts, router sizes) before anything is built, and refuses anything
else with one ``ModelError`` line naming the file and the offending value. Each value in range
is not enough (width 1024, 8 stages of 64 blocks and 100,000 classes are each allowed): the
parameters of the dense model and of every node are counted from the config arithmetically
(``tree_params``) and a tree of more than ``MAX_PARAMS`` is refused before anything is built.

Files of format ``edgesim.sigmab.tree/1`` named the zoo's own classes as ``module:callable``
(``models.resnet:ResNet``, later ``edgesim.zoo.resnet:ResNet``, and the block class); those exact
names are mapped onto the allow-list, any other name is refused.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from edgesim.errors import ModelError
from edgesim.zoo.sigmab.adapters import ARCHS, _cut, check_dense
from edgesim.zoo.sigmab.router import Router
from edgesim.zoo.sigmab.tree import SigmaTree, _Node

__all__ = ["FORMAT", "MAX_PARAMS", "check_config", "is_tree_checkpoint", "load_tree",
           "read_checkpoint", "save_tree", "tree_from_checkpoint", "tree_params"]

#: Format tag of files written by ``save_tree`` (also the ``format`` key of a tree's config).
FORMAT = "edgesim.sigmab.tree/2"
_LEGACY = "edgesim.sigmab.tree/1"
_MAX_DEPTH = 10
_MAX_CHANNELS = 1 << 16
#: A tree checkpoint may hold at most this many parameters, its dense model and its nodes
#: together (2^28: 1 GiB as float32, what rebuilding it allocates; the zoo's ResNet-50 trees
#: hold under 10^8), counted from the config before anything is built.
MAX_PARAMS = 1 << 28

_LEGACY_CLASSES = {f"{pkg}.{mod}:{cls}": arch for pkg in ("models", "edgesim.zoo")
                   for mod, cls, arch in (("resnet", "ResNet", "resnet"),
                                          ("pointnet2", "PointNet2", "pointnet2"))}
_LEGACY_BLOCKS = {f"{pkg}.resnet:{cls}": name for pkg in ("models", "edgesim.zoo")
                  for cls, name in (("BasicBlock", "basic"), ("Bottleneck", "bottleneck"))}


def save_tree(tree: SigmaTree, path: str | Path) -> None:
    """Write ``tree`` (structure config + state dict) to ``path`` (a torch file).

    Only trees of the zoo's dense architectures can be written (``ModelError`` otherwise): a
    checkpoint names its dense model by an allow-listed architecture, not by a class path.
    """
    if tree.config.get("dense") is None:
        raise ModelError(f"{path}: cannot save this tree: its dense model is not one of the "
                         f"zoo architectures a checkpoint can name ({' or '.join(sorted(ARCHS))})")
    torch.save({"format": FORMAT, "config": tree.config, "state_dict": tree.state_dict()},
               Path(path))


def _upgrade_dense(dense: Any, where: str) -> Any:
    """A format-1 ``{"class": "module:callable", "kwargs": ...}`` as an allow-list entry."""
    if not isinstance(dense, Mapping) or set(dense) != {"class", "kwargs"}:
        return dense   # check_dense names what is wrong
    cls = dense["class"]
    arch = _LEGACY_CLASSES.get(cls) if type(cls) is str else None
    if arch is None:
        raise ModelError(f"{where}: dense class {_cut(cls)} is not allowed (expected "
                         "edgesim.zoo.resnet:ResNet or edgesim.zoo.pointnet2:PointNet2)")
    kwargs = dense["kwargs"]
    if arch == "resnet" and isinstance(kwargs, Mapping):
        block = kwargs.get("block")
        name = _LEGACY_BLOCKS.get(block) if type(block) is str else None
        if name is None:
            raise ModelError(f"{where}: dense block {_cut(block)} is not allowed (expected "
                             "edgesim.zoo.resnet:Bottleneck or edgesim.zoo.resnet:BasicBlock)")
        kwargs = {**kwargs, "block": name}
    return {"arch": arch, "kwargs": kwargs}


def _count(value: Any, what: str, where: str, hi: int = _MAX_CHANNELS) -> int:
    if type(value) is not int or not 1 <= value <= hi:
        raise ModelError(f"{where}: {what}={_cut(value)} is not an integer in 1..{hi}")
    return value


def _names(value: Any, what: str, where: str) -> list[str]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ModelError(f"{where}: {what}={_cut(value)} is not a list of stage names")
    return value


def _check_node(key: str, cfg: Any, tree: list[str], where: str) -> None:
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("stages"), Mapping):
        raise ModelError(f"{where}: node {key} is {_cut(cfg)}, expected {{'stages': ...}}")
    for s, scfg in cfg["stages"].items():
        if s not in tree or not isinstance(scfg, Mapping) \
                or not isinstance(scfg.get("keep"), Mapping):
            raise ModelError(f"{where}: node {key} stage {_cut(s)}: {_cut(scfg)} is not a tree "
                             "stage with kept channel counts")
        if scfg.get("in") is not None:
            _count(scfg["in"], f"node {key} stage {s} in", where)
        for g, k in scfg["keep"].items():
            _count(k, f"node {key} stage {s} keep {_cut(g)}", where)
        chans = scfg.get("channels")
        if chans is None:
            continue
        if not isinstance(chans, Mapping) or set(chans) != set(scfg["keep"]):
            raise ModelError(f"{where}: node {key} stage {s} channels {_cut(chans)} do not name "
                             "the kept groups")
        for g, sel in chans.items():
            if type(sel) is not list or len(sel) != scfg["keep"][g] or not all(
                    type(c) is int and 0 <= c < _MAX_CHANNELS for c in sel) \
                    or any(a >= b for a, b in itertools.pairwise(sel)):
                raise ModelError(f"{where}: node {key} stage {s} channels {_cut(g)}="
                                 f"{_cut(sel)} are not {scfg['keep'][g]} increasing channel "
                                 "numbers")
    r = cfg.get("router")
    if r is not None:
        if not isinstance(r, Mapping):
            raise ModelError(f"{where}: node {key} router {_cut(r)} is not a mapping")
        _count(r.get("channels"), f"node {key} router channels", where)
        scale = r.get("scale")
        if type(scale) not in (int, float) or not (math.isfinite(scale) and 0 < scale <= 1e6):
            raise ModelError(f"{where}: node {key} router scale={_cut(scale)} is not a number "
                             "in (0, 1e6]")
        if type(r.get("centered", False)) is not bool:
            raise ModelError(f"{where}: node {key} router centered={_cut(r['centered'])} is "
                             "not true or false")


def check_config(config: Any, where: str) -> dict[str, Any]:
    """The checked (format-2) structure config of a checkpoint; ``ModelError`` otherwise.

    Nothing is imported, built or allocated from the file's values before they pass.
    """
    if not isinstance(config, Mapping):
        raise ModelError(f"{where}: tree config is {type(config).__name__}, expected a mapping")
    config = dict(config)
    config["dense"] = _upgrade_dense(config.get("dense"), where)
    check_dense(config["dense"], where)
    if config.get("arch") != config["dense"]["arch"]:
        raise ModelError(f"{where}: tree arch {_cut(config.get('arch'))} does not match its "
                         f"dense architecture {config['dense']['arch']!r}")
    depth = _count(config.get("depth"), "depth", where, _MAX_DEPTH)
    backbone = _names(config.get("backbone"), "backbone", where)
    cuts = _names(config.setdefault("cuts", []), "cuts", where)
    if not all(re.fullmatch(r"layer\d{1,2}_\d{1,2}", c) for c in cuts):
        raise ModelError(f"{where}: cuts={_cut(cuts)} are not split points layerN_k")
    tree = _names(config.get("tree"), "tree", where)
    if not backbone or not tree:
        raise ModelError(f"{where}: backbone {_cut(backbone)} and tree {_cut(tree)} must both "
                         "name stages")
    nodes = config.get("nodes")
    expected = {"root"} | {format(i, f"0{d}b").translate(str.maketrans("01", "LR"))
                           for d in range(1, depth + 1) for i in range(2 ** d)}
    if not isinstance(nodes, Mapping) or set(nodes) != expected:
        got = sorted(map(str, nodes)) if isinstance(nodes, Mapping) else nodes
        raise ModelError(f"{where}: nodes {_cut(got)} are not the {len(expected)} nodes of a "
                         f"depth-{depth} tree")
    for key, cfg in nodes.items():
        _check_node(key, cfg, tree, where)
    config["format"] = FORMAT
    dense, total = tree_params(config)
    if total > MAX_PARAMS:
        raise ModelError(f"{where}: the tree holds {total:,} parameters (its dense "
                         f"{config['arch']} {dense:,}); at most {MAX_PARAMS:,} are built")
    return config


# ---------------------------------------------------------------------------------------------
# parameters counted from a checked config, without building anything


def _resnet_stages(kw: Mapping[str, Any], cuts: list[str]) -> dict[str, tuple]:
    """Each stage of the zoo ResNet of ``kw`` as plain numbers: ``("stem", k2, width)``,
    ``("blocks", [(in_channels, has_downsample), ...], planes, out_channels, kernel areas)``,
    ``("head", in_features, classes)`` (``edgesim.zoo.resnet``: Bottleneck 1x1-3x3-1x1 with
    expansion 4, BasicBlock 3x3-3x3; stage i has width * 2**i planes)."""
    bottleneck = kw["block"] == "bottleneck"
    exp, kernels = (4, (1, 9, 1)) if bottleneck else (1, (9, 9))
    width = kw["width"]
    stages: dict[str, tuple] = {"stem": ("stem", 49 if kw["stem"] == "imagenet" else 9, width)}
    inplanes = width
    for i, n in enumerate(kw["layers"]):
        planes = width * 2 ** i
        down = i > 0 or inplanes != planes * exp
        blocks = [(inplanes if b == 0 else planes * exp, down and b == 0) for b in range(n)]
        name = f"layer{i + 1}"
        ks = sorted({int(c.rsplit("_", 1)[1]) for c in cuts if c.rsplit("_", 1)[0] == name
                     and 0 < int(c.rsplit("_", 1)[1]) < n})
        for lo, hi in itertools.pairwise([0, *ks, n]):
            stages[name if lo == 0 else f"{name}_{lo}"] = (
                "blocks", blocks[lo:hi], planes, planes * exp, kernels)
        inplanes = planes * exp
    stages["head"] = ("head", inplanes, kw["num_classes"])
    return stages


def _pointnet_stages(kw: Mapping[str, Any]) -> dict[str, tuple]:
    """The zoo PointNet++ of ``kw`` as plain numbers (``edgesim.zoo.pointnet2``): each set
    abstraction ``("mlp", in_features, [channels])`` (1x1 convs over 3 + features), the head
    ``("fc", in_features, [hidden1, hidden2], classes)``."""
    def w(c: int) -> int:
        return max(1, round(c * kw["width"]))
    c1, c2, c3 = ([w(c) for c in cs] for cs in ((64, 64, 128), (128, 128, 256),
                                                 (256, 512, 1024)))
    return {"sa1": ("mlp", 0, c1), "sa2": ("mlp", c1[-1], c2), "sa3": ("mlp", c2[-1], c3),
            "head": ("fc", c3[-1], [w(512), w(256)], kw["num_classes"])}


def _stage_params(stage: tuple, in_count: int | None, keep: Mapping[str, int]) -> int:
    """Parameters of ``stage`` (``_resnet_stages`` / ``_pointnet_stages``) fed ``in_count``
    channels (None: all) keeping ``keep[group]`` channels (missing: all), as
    ``adapters.*Arch.slice`` builds it: conv and linear weights, biases, BatchNorm scale and
    shift."""
    kind = stage[0]
    if kind == "stem":
        _, k2, width = stage
        out = keep.get("out", width)
        return (3 if in_count is None else in_count) * out * k2 + 2 * out
    if kind == "head":
        _, features, classes = stage
        return (features if in_count is None else in_count) * classes + classes
    if kind == "blocks":
        _, blocks, planes, out, kernels = stage
        cur = blocks[0][0] if in_count is None else in_count
        res = cur if not blocks[0][1] else keep.get("res", out)   # a tied stage keeps its input
        total = 0
        for i, (_, down) in enumerate(blocks):
            prev = cur
            for j, k2 in enumerate(kernels):
                sel = res if j == len(kernels) - 1 else keep.get(f"{i}.bn{j + 1}", planes)
                total += prev * sel * k2 + 2 * sel
                prev = sel
            if down:
                total += cur * res + 2 * res
            cur = res
        return total
    if kind == "mlp":
        _, features, channels = stage
        prev = 3 + (features if in_count is None else in_count)
        total = 0
        for j, c in enumerate(channels):
            sel = keep.get("out" if j == len(channels) - 1 else f"mlp{j}", c)
            total += prev * sel + 2 * sel
            prev = sel
        return total
    _, features, (h1, h2), classes = stage
    k1, k2 = keep.get("fc1", h1), keep.get("fc2", h2)
    return ((features if in_count is None else in_count) * k1 + 2 * k1 + k1 * k2 + 2 * k2
            + k2 * classes + classes)


def tree_params(config: Mapping[str, Any]) -> tuple[int, int]:
    """``(dense, total)``: the parameters of a checked config's dense model, and of the tree
    rebuilt from it (its dense model, which the backbone shares, plus every node's stages and
    router), counted from the numbers alone: nothing is built.

    >>> kw = {"block": "bottleneck", "layers": [3, 4, 6, 3], "num_classes": 1000,
    ...       "stem": "imagenet", "width": 64}
    >>> tree_params({"arch": "resnet", "dense": {"arch": "resnet", "kwargs": kw},
    ...              "nodes": {}})[0]        # ResNet-50, as edgesim.zoo.resnet.resnet50 says
    25557032
    """
    kw = config["dense"]["kwargs"]
    stages = (_resnet_stages(kw, list(config.get("cuts", []))) if config["arch"] == "resnet"
              else _pointnet_stages(kw))
    dense = sum(_stage_params(st, None, {}) for st in stages.values())
    total = dense
    for cfg in config["nodes"].values():
        for s, scfg in cfg["stages"].items():
            if s in stages:
                total += _stage_params(stages[s], scfg.get("in"), scfg["keep"])
        r = cfg.get("router")
        if r is not None:
            # two branches' weights (and the centre of a centred router)
            total += r["channels"] * (3 if r.get("centered", False) else 2)
    return dense, total


def _rebuild(config: Mapping[str, Any]) -> SigmaTree:
    a = ARCHS[config["arch"]]
    dense = a.build_dense(config["dense"]["kwargs"])
    stages = dict(a.stages(dense, config.get("cuts", [])))
    if list(stages) != [*config["backbone"], *config["tree"]]:
        raise ValueError(f"backbone + tree {[*config['backbone'], *config['tree']]} are not "
                         f"the {a.name} stages {list(stages)}")
    groups = {s: a.groups(s, stages[s]) for s in config["tree"]}
    nodes = {}
    for key, cfg in config["nodes"].items():
        mods = {}
        for s, scfg in cfg["stages"].items():
            in_sel = None if scfg["in"] is None else torch.arange(scfg["in"])
            keep = {g: torch.arange(scfg["keep"][g]) for g, _, _ in groups[s]}
            mods[s] = a.slice(s, stages[s], in_sel, keep)[0]
        r = cfg["router"]
        router = None if r is None else Router(r["channels"], r["scale"],
                                               centered=r.get("centered", False))
        nodes[key] = _Node(list(cfg["stages"]), mods, router)
    backbone = {s: stages[s] for s in config["backbone"]}
    return SigmaTree(dict(config), backbone, nodes)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def read_checkpoint(path: str | Path) -> Any:
    """The object in the torch file ``path``, read with ``weights_only=True`` (no code runs);
    ``ModelError`` names the path if it is missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such checkpoint file")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is a model error for the user
        raise ModelError(f"{p}: not a readable checkpoint ({_first_line(exc)})") from None


def is_tree_checkpoint(obj: Any) -> bool:
    """True for what ``save_tree`` writes (or a file claiming to be one): a mapping whose
    ``format`` names a Sigma-Branch tree; a dense state_dict is not."""
    return isinstance(obj, Mapping) and isinstance(obj.get("format"), str) \
        and obj["format"].startswith("edgesim.sigmab.tree/")


def tree_from_checkpoint(obj: Any, path: str | Path) -> SigmaTree:
    """Rebuild the tree of a checkpoint object read from ``path`` (``read_checkpoint``)."""
    p = Path(path)
    if not isinstance(obj, dict) or obj.get("format") not in (FORMAT, _LEGACY):
        raise ModelError(f"{p}: not a Sigma-Branch checkpoint (expected format {FORMAT!r})")
    config = check_config(obj.get("config"), str(p))
    try:
        tree = _rebuild(config)
        tree.load_state_dict(obj["state_dict"])
    except Exception as exc:  # checked values that still do not fit the architecture
        raise ModelError(f"{p}: checkpoint does not rebuild a tree ({_first_line(exc)})"
                         ) from None
    return tree.eval()


def load_tree(path: str | Path) -> SigmaTree:
    """Rebuild a tree written by ``save_tree``; ``ModelError`` names the path if it is missing,
    corrupt, asks for an architecture outside the allow-list, or does not fit."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such Sigma-Branch checkpoint file")
    obj = read_checkpoint(p)
    return tree_from_checkpoint(obj, p)
