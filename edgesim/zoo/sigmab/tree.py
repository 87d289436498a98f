"""The Sigma-Branch tree module: a shared backbone and a binary tree of nodes with routers.

Public names: ``SigmaTree``, ``Soft``, ``node_key``, ``weight_coverage``.

Coverage. Every dense channel lives in some node of each depth (channel coverage 1.0 by
construction), but a dense weight entry ``(o, i)`` of a conv or linear is stored only where
some node keeps both its output channel ``o`` and its input channel ``i``: two siblings that
split a layer's channels between them store the blocks on the diagonal and neither of the
off-diagonal ones. ``weight_coverage`` counts the dense weight entries some node stores;
``SigmaTree.coverage()`` gives both shares.

Paths are numbered by their leaf, left to right; path i's decisions are the bits of i, most
significant first (0 = "L", 1 = "R"); ``path_names()`` gives e.g. ``"L-R-L"``. Node names are
``"root"`` and the decision strings ``"L"``, ``"LR"``, ... (module names ``nodes.LR.layer4...``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.memory import heap_buffers
from edgesim.zoo.sigmab.adapters import ARCHS, State, n_params
from edgesim.zoo.sigmab.router import Router

__all__ = ["SigmaTree", "Soft", "node_key", "weight_coverage"]


def node_key(bits: str) -> str:
    return bits or "root"


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def weight_coverage(config: Mapping[str, Any]) -> dict[str, int] | None:
    """Conv/linear weight entries of a tree's dense model, and how many some node stores.

    A dense entry ``(o, i)`` (all its kernel positions) of a tree stage is stored when a node
    holding that stage keeps both output channel ``o`` and input channel ``i`` (the slicing of
    ``to_tree``: ``weight[out_sel][:, in_sel]``, the input set being the kept channels of what
    feeds it); backbone entries are all stored. Found by slicing, with the tree's recorded
    channel lists, a copy of the dense stages whose weights hold their own ``(o, i)`` pair
    number. Returns ``dense_weights`` (the dense model's conv/linear weight entries),
    ``covered_weights`` (of them, stored by the backbone or some node), ``tree_weights`` and
    ``tree_covered`` (the same over the tree stages only); None when the config records no
    channel lists or no dense model.
    """
    arch = ARCHS[config["arch"]]
    dense = config.get("dense")
    nodes = config["nodes"]
    if dense is None or any(scfg.get("channels") is None for n in nodes.values()
                            for scfg in n["stages"].values()):
        return None
    with torch.device("meta"):
        model = arch.build_dense(dense["kwargs"])
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, _WEIGHTED))
    tree = list(config["tree"])
    stages = dict(arch.stages(model, config.get("cuts", [])))
    pairs: dict[tuple[str, str], tuple[torch.Tensor, int]] = {}
    for s in tree:
        stages[s].to_empty(device="cpu")   # values: only the weights set below are read
        for name, m in stages[s].named_modules():
            if isinstance(m, _WEIGHTED):
                o, i = m.weight.shape[:2]
                if o * i >= 2 ** 24:
                    raise ModelError(f"weight_coverage: {s}.{name} has {o * i} (o, i) pairs; "
                                     "expected < 2**24 (exact in float32)")
                kernel = m.weight[0, 0].numel()
                number = torch.arange(o * i, dtype=torch.float32).view(
                    o, i, *([1] * (m.weight.dim() - 2)))
                with torch.no_grad():
                    m.weight.copy_(number.expand(m.weight.shape))
                pairs[(s, name)] = (torch.zeros(o * i, dtype=torch.bool), kernel)
    level = {s: (0 if key == "root" else len(key)) for key, n in nodes.items()
             for s in n["stages"]}
    depth = int(config["depth"])
    for leaf in range(2 ** depth):
        bits = "".join("LR"[(leaf >> (depth - 1 - d)) & 1] for d in range(depth))
        in_sel = None
        for s in tree:
            scfg = nodes[node_key(bits[:level[s]])]["stages"][s]
            keep = {g: torch.tensor(v, dtype=torch.long) for g, v in scfg["channels"].items()}
            mod, in_sel = arch.slice(s, stages[s], in_sel, keep)
            for name, m in mod.named_modules():
                if isinstance(m, _WEIGHTED) and (s, name) in pairs:
                    w = m.weight.detach().reshape(m.weight.shape[0], m.weight.shape[1], -1)
                    pairs[(s, name)][0][w[:, :, 0].flatten().long()] = True
    tree_weights = sum(int(c.numel()) * k for c, k in pairs.values())
    tree_covered = sum(int(c.sum()) * k for c, k in pairs.values())
    return {"dense_weights": total, "covered_weights": total - tree_weights + tree_covered,
            "tree_weights": tree_weights, "tree_covered": tree_covered}


class Soft(NamedTuple):
    """What a soft-routed pass gives: the output mix, per router ``(reach (B,), branch
    probabilities (B, 2))``, and ``leaves`` (B, paths): the probability of each leaf."""

    out: torch.Tensor
    gates: list[tuple[torch.Tensor, torch.Tensor]]
    leaves: torch.Tensor


class _Node(nn.Module):
    """One tree node: its copies of the stages at its level (as attributes) and, if internal,
    its ``router``."""

    def __init__(self, stage_names: list[str], stages: Mapping[str, nn.Module],
                 router: Router | None) -> None:
        super().__init__()
        self.stage_names = list(stage_names)
        for n in self.stage_names:
            self.add_module(n, stages[n])
        self.router = router


class SigmaTree(nn.Module):
    """A Sigma-Branch tree: ``backbone`` (stage name -> module) and ``nodes`` (node name -> node).

    ``config`` is plain data (the structure: arch, dense model constructor, levels, per-node kept
    channel counts, router scales); ``save_tree`` stores it with the state dict.
    """

    def __init__(self, config: dict[str, Any], backbone: Mapping[str, nn.Module],
                 nodes: Mapping[str, _Node]) -> None:
        super().__init__()
        self.config = config
        self.arch = ARCHS[config["arch"]]
        self.depth: int = int(config["depth"])
        self.backbone_names: list[str] = list(config["backbone"])
        self.backbone = nn.ModuleDict(OrderedDict((n, backbone[n]) for n in self.backbone_names))
        self.nodes = nn.ModuleDict(OrderedDict(nodes))

    # -- structure ------------------------------------------------------------------------
    @property
    def num_paths(self) -> int:
        """Number of root-to-leaf paths (leaves), ``2 ** depth``."""
        return 2 ** self.depth

    def _bits(self, i: int) -> str:
        if not 0 <= i < self.num_paths:
            raise ModelError(f"path index {i} out of range: the tree has {self.num_paths} paths")
        return "".join("LR"[(i >> (self.depth - 1 - d)) & 1] for d in range(self.depth))

    def path_names(self) -> list[str]:
        """Decision strings of the paths in index order, e.g. ``["L-L", "L-R", "R-L", "R-R"]``."""
        return ["-".join(self._bits(i)) for i in range(self.num_paths)]

    def path_nodes(self, i: int) -> list[str]:
        """Names of the nodes on path ``i``, root first (``depth + 1`` names)."""
        bits = self._bits(i)
        return [node_key(bits[:d]) for d in range(self.depth + 1)]

    # -- execution ------------------------------------------------------------------------
    def _backbone(self, x: torch.Tensor) -> State:
        state = self.arch.start(x)
        for n in self.backbone_names:
            state = self.arch.run(n, self.backbone[n], state)
        return state

    def _run_node(self, key: str, state: State) -> State:
        node = self.nodes[key]
        for n in node.stage_names:
            state = self.arch.run(n, getattr(node, n), state)
        return state

    def _router(self, key: str, state: State) -> torch.Tensor:
        return self.nodes[key].router(self.arch.features(state))

    def forward_path(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Run the backbone and path ``i`` only: its nodes' stages and its routers (executed as
        modules so a tracer records them; their decisions are not used)."""
        state = self._backbone(x)
        for d, key in enumerate(self.path_nodes(i)):
            state = self._run_node(key, state)
            if d < self.depth:
                self._router(key, state)
        return state

    def _descend(self, key: str, depth: int, state: State, idx: torch.Tensor,
                 visit: Callable[[str, State, torch.Tensor], None], run_leaf: bool) -> None:
        """Hard routing of ``state`` (rows ``idx`` of the batch) below node ``key``."""
        if depth == self.depth:
            visit(key, self._run_node(key, state) if run_leaf else state, idx)
            return
        state = self._run_node(key, state)
        choice = self._router(key, state).argmax(dim=1)
        bits = "" if key == "root" else key
        for c, letter in enumerate("LR"):
            rows = (choice == c).nonzero().flatten()
            if len(rows):
                self._descend(node_key(bits + letter), depth + 1,
                              self.arch.take(state, rows), idx[rows], visit, run_leaf)

    def _leaf_index(self, key: str) -> int:
        bits = "" if key == "root" else key
        return int("".join("01"[c == "R"] for c in bits) or "0", 2)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Path index of every input, ``LongTensor (B,)``: one batched pass, argmax per router.

        Runs in ``edgesim.zoo.memory.heap_buffers``: the activations stay in the C heap from op
        to op instead of being mapped and faulted in afresh (sigmab_r50, batches of 64: 8x fewer
        page faults, 46 % less CPU time); route a stream inside one outer ``heap_buffers`` to reuse
        them from batch to batch too (``edgesim.build.route``)."""
        paths = torch.zeros(x.shape[0], dtype=torch.long)

        def visit(key: str, _state: State, idx: torch.Tensor) -> None:
            paths[idx] = self._leaf_index(key)

        with heap_buffers():
            self._descend("root", 0, self._backbone(x), torch.arange(x.shape[0]), visit, False)
        return paths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Hard-routed output: each input runs its own path (the batch is grouped by path)."""
        outs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._descend("root", 0, self._backbone(x), torch.arange(x.shape[0]),
                      lambda _k, y, idx: outs.append((idx, y)), True)
        first = outs[0][1]
        out = first.new_empty((x.shape[0], *first.shape[1:]))
        for idx, y in outs:
            out[idx] = y
        return out

    def _soft(self, x: torch.Tensor, temperature: float = 1.0, hard: bool = False,
              track: float = 0.0) -> Soft:
        """Soft routing: every node runs; a router's branch probabilities are
        ``softmax(logits / temperature)``; with ``hard`` they are the one-hot argmax in the
        forward pass and the temperature-``temperature`` softmax's gradient in the backward pass
        (straight-through), so the output equals the hard-routed ``forward``. ``track`` > 0
        first moves each router's centre by that momentum toward the reach-weighted mean of
        the features it reads (``Router.track``; fine-tuning's soft phase)."""
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ModelError(f"routing temperature {temperature}: expected a finite number > 0")
        gates: list[tuple[torch.Tensor, torch.Tensor]] = []
        leaves: dict[int, torch.Tensor] = {}

        def walk(key: str, depth: int, state: State, reach: torch.Tensor) -> torch.Tensor:
            state = self._run_node(key, state)
            if depth == self.depth:
                leaves[self._leaf_index(key)] = reach
                return reach.view(-1, *([1] * (state.dim() - 1))) * state
            if track:
                self.nodes[key].router.track(self.arch.features(state), reach, track)
            probs = torch.softmax(self._router(key, state) / temperature, dim=1)
            if hard:
                one = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1])
                probs = one.to(probs.dtype) + probs - probs.detach()
            gates.append((reach, probs))
            bits = "" if key == "root" else key
            return sum((walk(node_key(bits + letter), depth + 1, state, reach * probs[:, c])
                        for c, letter in enumerate("LR")), start=torch.zeros(()))

        out = walk("root", 0, self._backbone(x), torch.ones(x.shape[0]))
        return Soft(out, gates, torch.stack([leaves[i] for i in range(self.num_paths)], dim=1))

    def soft_forward(self, x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Routers give softmax branch probabilities (at ``temperature``); output = sum over
        leaves of P(leaf) x leaf output (every node runs)."""
        return self._soft(x, temperature).out

    # -- accounting -----------------------------------------------------------------------
    def coverage(self) -> dict[str, Any]:
        """``channel_coverage``: the share of (depth, stage, group, dense channel) kept by some
        node of that depth (1.0 by construction); ``weight_coverage``: the share of the dense
        model's conv/linear weight entries stored by the backbone or some node, with the
        counts of ``weight_coverage()``; None where the tree does not record channel lists."""
        seen: dict[tuple[int, str, str], tuple[float, int]] = {}
        for r in self.node_report():
            if r["coverage"] is None or not r["channels"]:
                seen = {}
                break
            seen[(r["level"], r["stage"], r["group"])] = (r["coverage"], r["channels"])
        chans = sum(c for _, c in seen.values())
        kept = sum(round(cov * c) for cov, c in seen.values())
        w = weight_coverage(self.config)
        return {"channel_coverage": round(kept / chans, 4) if chans else None,
                "weight_coverage": (round(w["covered_weights"] / w["dense_weights"], 4)
                                    if w else None),
                **(w or {})}

    def param_counts(self) -> dict[str, Any]:
        """Parameter counts: ``backbone``, ``routers`` (all), ``nodes`` (node -> params of its
        stages, routers excluded), ``total`` = backbone + routers + nodes, ``paths`` (path i =
        backbone + routers on the path + nodes on the path) and ``coverage``
        (``coverage()``: of channels and of dense weight entries)."""
        backbone = n_params(self.backbone)
        routers = {k: n_params(n.router) if n.router is not None else 0
                   for k, n in self.nodes.items()}
        nodes = {k: n_params(n) - routers[k] for k, n in self.nodes.items()}
        paths = [backbone + sum(routers[k] + nodes[k] for k in self.path_nodes(i))
                 for i in range(self.num_paths)]
        return {"backbone": backbone, "routers": sum(routers.values()), "nodes": nodes,
                "total": backbone + sum(routers.values()) + sum(nodes.values()), "paths": paths,
                "coverage": self.coverage()}

    def _dense_groups(self) -> dict[str, dict[str, int]] | None:
        """Channels of every group of every tree stage in the dense model (None: unknown)."""
        dense = self.config.get("dense")
        if dense is None:
            return None
        with torch.device("meta"):
            model = self.arch.build_dense(dense["kwargs"])
        stages = dict(self.arch.stages(model, self.config.get("cuts", [])))
        return {s: {g: c for g, c, _ in self.arch.groups(s, stages[s])}
                for s in self.config["tree"]}

    def node_report(self) -> list[dict[str, Any]]:
        """One row per node, stage and channel group: ``channels`` of the dense group, ``kept``
        by the node, ``shared`` with its sibling and their ``jaccard`` (None at the root),
        and ``coverage``: the share of the dense channels kept by at least one node of the
        node's depth (1.0 when the pretrained weights are all stored). Shared, jaccard and
        coverage are None for checkpoints that do not record channel numbers."""
        dense = self._dense_groups()
        cfg = self.config["nodes"]

        def chans(key: str, s: str, g: str) -> set[int] | None:
            sel = cfg[key]["stages"].get(s, {}).get("channels", {}).get(g)
            return None if sel is None else set(sel)

        rows = []
        for key in self.nodes:
            depth = 0 if key == "root" else len(key)
            sib = None if key == "root" else key[:-1] + ("R" if key[-1] == "L" else "L")
            same = [k for k in cfg if (0 if k == "root" else len(k)) == depth]
            for s, scfg in cfg[key]["stages"].items():
                for g, kept in scfg["keep"].items():
                    mine = chans(key, s, g)
                    other = None if sib is None else chans(sib, s, g)
                    sets = [chans(k, s, g) for k in same]
                    total = None if dense is None else dense[s][g]
                    row = {"node": key, "level": depth, "stage": s, "group": g,
                           "channels": total, "kept": kept, "shared": None, "jaccard": None,
                           "coverage": None}
                    if mine is not None and other is not None:
                        row["shared"] = len(mine & other)
                        row["jaccard"] = round(len(mine & other) / len(mine | other), 4)
                    if total and all(x is not None for x in sets):
                        row["coverage"] = round(len(set().union(*sets)) / total, 4)
                    rows.append(row)
        return rows
