"""Tree checkpoints: structure config + state dict, loaded without running code from the file.

Public names: ``FORMAT``, ``save_tree``, ``load_tree``, ``check_config``, ``read_checkpoint``,
``is_tree_checkpoint``, ``tree_from_checkpoint``.

A checkpoint is a torch file ``{"format": FORMAT, "config": ..., "state_dict": ...}`` read with
``weights_only=True``. The config is plain data; its dense architecture is a name of
``adapters.ARCHS`` with checked constructor parameters (``adapters.check_dense``), never an
importable path. ``check_config`` validates the whole structure (architecture, depth, the node
set, stage names, channel counts, router sizes) before anything is built, and refuses anything
else with one ``ModelError`` line naming the file and the offending value.

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

__all__ = ["FORMAT", "check_config", "is_tree_checkpoint", "load_tree", "read_checkpoint",
           "save_tree", "tree_from_checkpoint"]

#: Format tag of files written by ``save_tree`` (also the ``format`` key of a tree's config).
FORMAT = "edgesim.sigmab.tree/2"
_LEGACY = "edgesim.sigmab.tree/1"
_MAX_DEPTH = 10
_MAX_CHANNELS = 1 << 16

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
    return config


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
