"""Sigma-Branch (ΣB) routed trees: turn a dense ResNet or PointNet++ into a binary tree of experts.

Public names: ``spherical_kmeans``, ``Router``, ``SigmaTree``, ``to_tree``, ``fine_tune``,
``save_tree``, ``load_tree``, ``sigmab_resnet50``, ``sigmab_resnet50_cifar``,
``sigmab_pointnet2``, ``DEFAULT_LEVELS``.

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

import copy
import importlib
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from edgesim.errors import ModelError

__all__ = [
    "DEFAULT_LEVELS",
    "Router",
    "SigmaTree",
    "fine_tune",
    "load_tree",
    "save_tree",
    "sigmab_pointnet2",
    "sigmab_resnet50",
    "sigmab_resnet50_cifar",
    "spherical_kmeans",
    "to_tree",
]

#: Default stage -> level maps (stages not named are the shared backbone).
DEFAULT_LEVELS: dict[str, dict[str, int]] = {
    "resnet": {"layer4": 3, "head": 3},
    "pointnet2": {"sa3": 1, "head": 2},
}

_FORMAT = "edgesim.sigmab.tree/1"

State = Any  # a Tensor (ResNet) or a (xyz, features) tuple (PointNet++)


# ---------------------------------------------------------------------------------------------
# spherical k-means


def spherical_kmeans(x: torch.Tensor, k: int = 2, iters: int = 50,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x`` (n, d) by cosine similarity: ``(labels (n,), centroids (k, d))``.

    Rows are unit-normalised; initialisation is k-means++ on cosine distance with a generator
    seeded by ``seed``; centroids are unit-norm means of their members; an empty cluster takes the
    row least similar to its centroid. ``labels[i]`` is the nearest centroid of row i (ties: lowest
    index).

    >>> x = torch.tensor([[1.0, 0.1], [2.0, 0.0], [0.0, 1.0], [0.1, 3.0]])
    >>> labels, c = spherical_kmeans(x, 2)
    >>> labels[0] == labels[1], labels[2] == labels[3], labels[0] != labels[2]
    (tensor(True), tensor(True), tensor(True))
    """
    if x.dim() != 2:
        raise ValueError(f"spherical_kmeans: x must be (n, d), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"spherical_kmeans: need 1 <= k <= n = {n}, got k = {k}")
    xn = F.normalize(x.detach().double(), dim=1)
    gen = torch.Generator().manual_seed(seed)
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    for _ in range(1, k):
        sim = (xn @ xn[chosen].T).max(dim=1).values
        dist = (1 - sim).clamp_min(0)
        dist[chosen] = 0
        if float(dist.sum()) <= 0:
            rest = [i for i in range(n) if i not in chosen]
            chosen.append(rest[int(torch.randint(len(rest), (1,), generator=gen))])
        else:
            chosen.append(int(torch.multinomial(dist, 1, generator=gen)))
    cent = xn[chosen].clone()
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        sim = xn @ cent.T
        new = sim.argmax(dim=1)
        for c in range(k):
            if not bool((new == c).any()):  # empty cluster: take the worst-served row
                own = sim.gather(1, new[:, None])[:, 0]
                counts = torch.bincount(new, minlength=k)
                own[counts[new] <= 1] = float("inf")  # never empty another cluster
                new[int(own.argmin())] = c
        cent = F.normalize(torch.stack([xn[new == c].sum(0) for c in range(k)]), dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    labels = (xn @ cent.T).argmax(dim=1)
    return labels, cent.to(x.dtype)


# ---------------------------------------------------------------------------------------------
# router


class Router(nn.Module):
    """A binary routing decision: global average pool -> unit-normalise -> linear (no bias).

    ``weight`` (2, C) rows start as the k-means centroids, so ``argmax`` picks the nearest centroid
    by cosine. Logits are ``scale * cosine``; ``scale`` (a fixed float, not a parameter) sets how
    sharp the soft-routing probabilities are. Input: ``(B, C, ...)`` activations or ``(B, C)``.
    """

    edgesim_kind = "router"

    def __init__(self, channels: int, scale: float = 10.0, branches: int = 2) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(branches, channels))
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.flatten(2).mean(dim=2) if x.dim() > 2 else x
        return self.scale * F.linear(F.normalize(pooled, dim=1), self.weight)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, branches={self.weight.shape[0]}, " \
               f"scale={self.scale:.4g}"


# ---------------------------------------------------------------------------------------------
# slicing helpers (sel = LongTensor of kept indices, None = all)


def _index(sel: torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.arange(n) if sel is None else sel


def _empty(cls: type[nn.Module], *args: Any, device: torch.device, **kwargs: Any) -> Any:
    """A module built without running its weight initialisation (its weights are copied in)."""
    if device.type == "meta":
        return cls(*args, device=device, **kwargs)
    return skip_init(cls, *args, device=device, **kwargs)


def _slice_conv(conv: nn.Conv2d, out_sel: torch.Tensor | None,
                in_sel: torch.Tensor | None) -> nn.Conv2d:
    if conv.groups != 1:
        raise ModelError(f"Sigma-Branch slicing supports groups=1 convs only, got {conv}")
    o, i = _index(out_sel, conv.out_channels), _index(in_sel, conv.in_channels)
    new = _empty(nn.Conv2d, len(i), len(o), conv.kernel_size, conv.stride, conv.padding,
                 conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                 device=conv.weight.device)
    if conv.weight.is_meta:  # shapes only (parameter counting)
        return new
    with torch.no_grad():
        new.weight.copy_(conv.weight[o][:, i])
        if conv.bias is not None:
            new.bias.copy_(conv.bias[o])
    return new


def _slice_linear(lin: nn.Linear, out_sel: torch.Tensor | None,
                  in_sel: torch.Tensor | None) -> nn.Linear:
    o, i = _index(out_sel, lin.out_features), _index(in_sel, lin.in_features)
    new = _empty(nn.Linear, len(i), len(o), bias=lin.bias is not None,
                 device=lin.weight.device)
    if lin.weight.is_meta:  # shapes only (parameter counting)
        return new
    with torch.no_grad():
        new.weight.copy_(lin.weight[o][:, i])
        if lin.bias is not None:
            new.bias.copy_(lin.bias[o])
    return new


def _slice_bn(bn: nn.modules.batchnorm._BatchNorm,
              sel: torch.Tensor | None) -> nn.modules.batchnorm._BatchNorm:
    s = _index(sel, bn.num_features)
    new = type(bn)(len(s), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats, device=_device(bn))
    if _device(bn).type == "meta":
        return new
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[s])
            new.bias.copy_(bn.bias[s])
        if bn.track_running_stats:
            new.running_mean.copy_(bn.running_mean[s])
            new.running_var.copy_(bn.running_var[s])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def _device(module: nn.Module) -> torch.device:
    t = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if t is None else t.device


def _shell(module: nn.Module) -> nn.Module:
    """An independent copy of ``module`` whose weighted children the caller then replaces."""
    return copy.deepcopy(module)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# architecture adapters: how a dense model is cut into stages, run, measured and sliced


Group = tuple[str, int, nn.Module | None]  # (key, channels, module whose output is measured)


class _ResNetArch:
    """ResNet (edgesim.zoo.resnet layout): stem, layer1..layerN, head (avgpool + flatten + fc)."""

    name = "resnet"

    @staticmethod
    def detect(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("conv1", "bn1", "layer1", "avgpool", "fc"))

    @staticmethod
    def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
        stem = nn.Sequential(OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu,
                                         maxpool=model.maxpool))
        layers = [(n, m) for n, m in model.named_children() if n.startswith("layer")]
        head = nn.Sequential(OrderedDict(avgpool=model.avgpool, flatten=nn.Flatten(1),
                                         fc=model.fc))
        return [("stem", stem), *layers, ("head", head)]

    @staticmethod
    def start(x: torch.Tensor) -> State:
        return x

    @staticmethod
    def run(name: str, module: nn.Module, state: State) -> State:
        return module(state)

    @staticmethod
    def features(state: State) -> torch.Tensor:
        return state

    @staticmethod
    def take(state: State, idx: torch.Tensor) -> State:
        return state[idx]

    @staticmethod
    def _convs(block: nn.Module) -> list[tuple[str, str]]:
        pairs = []
        j = 1
        while hasattr(block, f"conv{j}"):
            pairs.append((f"conv{j}", f"bn{j}"))
            j += 1
        return pairs

    @classmethod
    def _tied(cls, layer: nn.Module) -> bool:
        return getattr(layer[0], "downsample", None) is None

    @classmethod
    def groups(cls, name: str, module: nn.Module) -> list[Group]:
        if name == "head":
            return []
        if name == "stem":
            return [("out", module.conv1.out_channels, None)]
        out: list[Group] = []
        for i, block in enumerate(module):
            pairs = cls._convs(block)
            out += [(f"{i}.{bn}", getattr(block, conv).out_channels, getattr(block, bn))
                    for conv, bn in pairs[:-1]]
        if not cls._tied(module):
            out.append(("res", getattr(module[-1], cls._convs(module[-1])[-1][0]).out_channels,
                        None))
        return out

    @classmethod
    def slice(cls, name: str, module: nn.Module, in_sel: torch.Tensor | None,
              keep: Mapping[str, torch.Tensor]) -> tuple[nn.Module, torch.Tensor | None]:
        new = _shell(module)
        if name == "head":
            new.fc = _slice_linear(module.fc, None, in_sel)
            return new, None
        if name == "stem":
            new.conv1 = _slice_conv(module.conv1, keep["out"], in_sel)
            new.bn1 = _slice_bn(module.bn1, keep["out"])
            return new, keep["out"]
        res = in_sel if cls._tied(module) else keep["res"]
        cur = in_sel
        for i, block in enumerate(new):
            pairs = cls._convs(block)
            prev = cur
            for j, (conv, bn) in enumerate(pairs):
                sel = res if j == len(pairs) - 1 else keep[f"{i}.{bn}"]
                setattr(block, conv, _slice_conv(getattr(block, conv), sel, prev))
                setattr(block, bn, _slice_bn(getattr(block, bn), sel))
                prev = sel
            if block.downsample is not None:
                block.downsample[0] = _slice_conv(block.downsample[0], res, cur)
                block.downsample[1] = _slice_bn(block.downsample[1], res)
            cur = res
        return new, res

    @staticmethod
    def dense_config(model: nn.Module) -> dict[str, Any]:
        block = model.layer1[0]
        layers = [len(m) for n, m in model.named_children() if n.startswith("layer")]
        return {
            "class": f"{type(model).__module__}:{type(model).__qualname__}",
            "kwargs": {
                "block": f"{type(block).__module__}:{type(block).__qualname__}",
                "layers": layers,
                "num_classes": model.fc.out_features,
                "stem": "cifar" if isinstance(model.maxpool, nn.Identity) else "imagenet",
                "width": model.conv1.out_channels,
            },
        }


class _PointNetArch:
    """PointNet++ (edgesim.zoo.pointnet2 layout): sa1, sa2, sa3, head; state = (xyz, features)."""

    name = "pointnet2"

    @staticmethod
    def detect(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("sa1", "sa2", "sa3", "head"))

    @staticmethod
    def stages(model: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(n, getattr(model, n)) for n in ("sa1", "sa2", "sa3", "head")]

    @staticmethod
    def start(x: torch.Tensor) -> State:
        return (x, None)

    @staticmethod
    def run(name: str, module: nn.Module, state: State) -> State:
        if name == "head":
            return module(state[1])
        return module(*state)

    @staticmethod
    def features(state: State) -> torch.Tensor:
        return state[1] if isinstance(state, tuple) else state

    @staticmethod
    def take(state: State, idx: torch.Tensor) -> State:
        if isinstance(state, tuple):
            return tuple(None if t is None else t[idx] for t in state)
        return state[idx]

    @staticmethod
    def groups(name: str, module: nn.Module) -> list[Group]:
        if name == "head":
            return [("fc1", module.fc1.out_features, module.bn1),
                    ("fc2", module.fc2.out_features, module.bn2)]
        mlp = module.mlp
        layers = len(mlp) // 3
        out: list[Group] = [(f"mlp{j}", mlp[3 * j].out_channels, mlp[3 * j + 1])
                            for j in range(layers - 1)]
        return [*out, ("out", mlp[3 * (layers - 1)].out_channels, None)]

    @staticmethod
    def slice(name: str, module: nn.Module, in_sel: torch.Tensor | None,
              keep: Mapping[str, torch.Tensor]) -> tuple[nn.Module, torch.Tensor | None]:
        new = _shell(module)
        if name == "head":
            new.fc1 = _slice_linear(module.fc1, keep["fc1"], in_sel)
            new.bn1 = _slice_bn(module.bn1, keep["fc1"])
            new.fc2 = _slice_linear(module.fc2, keep["fc2"], keep["fc1"])
            new.bn2 = _slice_bn(module.bn2, keep["fc2"])
            new.fc3 = _slice_linear(module.fc3, None, keep["fc2"])
            return new, None
        layers = len(module.mlp) // 3
        prev = None if in_sel is None else torch.cat([torch.arange(3), 3 + in_sel])
        for j in range(layers):
            sel = keep["out"] if j == layers - 1 else keep[f"mlp{j}"]
            new.mlp[3 * j] = _slice_conv(module.mlp[3 * j], sel, prev)
            new.mlp[3 * j + 1] = _slice_bn(module.mlp[3 * j + 1], sel)
            prev = sel
        return new, keep["out"]

    @staticmethod
    def dense_config(model: nn.Module) -> dict[str, Any]:
        return {"class": f"{type(model).__module__}:{type(model).__qualname__}",
                "kwargs": dict(model.config)}


_ARCHS: dict[str, Any] = {"resnet": _ResNetArch, "pointnet2": _PointNetArch}


def _detect_arch(model: nn.Module, arch: str | None) -> Any:
    if arch is not None:
        if arch not in _ARCHS:
            raise ModelError(f"unknown Sigma-Branch arch {arch!r}; expected one of "
                             f"{sorted(_ARCHS)}")
        return _ARCHS[arch]
    for a in _ARCHS.values():
        if a.detect(model):
            return a
    raise ModelError(f"cannot tell the architecture of {type(model).__name__}: expected a ResNet "
                     "(conv1, bn1, layer1.., avgpool, fc) or a PointNet++ (sa1, sa2, sa3, head)")


def _resolve(spec: str) -> Any:
    mod, _, qual = spec.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _build_dense(config: Mapping[str, Any]) -> nn.Module:
    kwargs = dict(config["kwargs"])
    if "block" in kwargs:
        kwargs["block"] = _resolve(kwargs["block"])
    return _resolve(config["class"])(**kwargs)


# ---------------------------------------------------------------------------------------------
# the tree


def _node_key(bits: str) -> str:
    return bits or "root"


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
        self.arch = _ARCHS[config["arch"]]
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
        return [_node_key(bits[:d]) for d in range(self.depth + 1)]

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
                self._descend(_node_key(bits + letter), depth + 1,
                              self.arch.take(state, rows), idx[rows], visit, run_leaf)

    def _leaf_index(self, key: str) -> int:
        bits = "" if key == "root" else key
        return int("".join("01"[c == "R"] for c in bits) or "0", 2)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Path index of every input, ``LongTensor (B,)``: one batched pass, argmax per router."""
        paths = torch.zeros(x.shape[0], dtype=torch.long)

        def visit(key: str, _state: State, idx: torch.Tensor) -> None:
            paths[idx] = self._leaf_index(key)

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

    def _soft(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor,
                                                                        torch.Tensor]]]:
        """Soft routing: (leaf mix, [(reach probability (B,), branch probabilities (B, 2))])."""
        gates: list[tuple[torch.Tensor, torch.Tensor]] = []

        def walk(key: str, depth: int, state: State, reach: torch.Tensor) -> torch.Tensor:
            state = self._run_node(key, state)
            if depth == self.depth:
                return reach.view(-1, *([1] * (state.dim() - 1))) * state
            probs = torch.softmax(self._router(key, state), dim=1)
            gates.append((reach, probs))
            bits = "" if key == "root" else key
            return sum((walk(_node_key(bits + letter), depth + 1, state, reach * probs[:, c])
                        for c, letter in enumerate("LR")), start=torch.zeros(()))

        out = walk("root", 0, self._backbone(x), torch.ones(x.shape[0]))
        return out, gates

    def soft_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Routers give softmax branch probabilities; output = sum over leaves of
        P(leaf) x leaf output (every node runs)."""
        return self._soft(x)[0]

    # -- accounting -----------------------------------------------------------------------
    def param_counts(self) -> dict[str, Any]:
        """Parameter counts: ``backbone``, ``routers`` (all), ``nodes`` (node -> params of its
        stages, routers excluded), ``total`` = backbone + routers + nodes, and ``paths`` (path i =
        backbone + routers on the path + nodes on the path)."""
        backbone = _n_params(self.backbone)
        routers = {k: _n_params(n.router) if n.router is not None else 0
                   for k, n in self.nodes.items()}
        nodes = {k: _n_params(n) - routers[k] for k, n in self.nodes.items()}
        paths = [backbone + sum(routers[k] + nodes[k] for k in self.path_nodes(i))
                 for i in range(self.num_paths)]
        return {"backbone": backbone, "routers": sum(routers.values()), "nodes": nodes,
                "total": backbone + sum(routers.values()) + sum(nodes.values()), "paths": paths}


# ---------------------------------------------------------------------------------------------
# construction


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
    dense_n = {n: _n_params(stages[n]) for n in tree}
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
                total += _n_params(mod) * 2 ** levels[s]
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
    """
    a = _detect_arch(dense_model, arch)
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
        "format": _FORMAT, "arch": a.name, "depth": depth, "levels": {s: levels[s] for s in tree},
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
        key = _node_key(bits)
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
            feats = a.features(state)
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
            node_cfg["router"] = {"channels": pooled.shape[1], "scale": router.scale}
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
# fine-tuning


def _balance_loss(gates: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over routers of 2 x sum_c (q_c - 1/2)^2, q = reach-weighted mean branch probability
    (0 when every router splits its traffic evenly, 1 when one always takes everything)."""
    terms = []
    for reach, probs in gates:
        q = (reach[:, None] * probs).sum(0) / reach.sum().clamp_min(1e-12)
        terms.append(2 * ((q - 0.5) ** 2).sum())
    return torch.stack(terms).mean() if terms else torch.zeros(())


def fine_tune(tree: SigmaTree, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              epochs: int = 1, lr: float = 1e-4, steps: int | None = None, device: str = "cpu",
              log: Callable[[int, float], None] | None = None,
              balance: float = 0.01) -> list[float]:
    """Soft-routing fine-tuning: Adam on cross-entropy of ``soft_forward`` plus ``balance`` x
    the load-balancing term. ``loader`` yields ``(x, labels)``; stops after ``steps`` steps if
    given. Returns the loss of every step; ``log(step, loss)`` is called after each. BatchNorm
    statistics stay frozen (eval mode), as usual when fine-tuning a pretrained net on small
    batches: batch statistics of a few inputs would shift every router's input. Leaves the
    tree in eval mode."""
    tree.to(device).train()
    for m in tree.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    opt = torch.optim.Adam(tree.parameters(), lr=lr)
    losses: list[float] = []
    try:
        for _ in range(epochs):
            for x, y in loader:
                if steps is not None and len(losses) >= steps:
                    break
                out, gates = tree._soft(x.to(device))
                loss = F.cross_entropy(out, y.to(device))
                if balance:
                    loss = loss + balance * _balance_loss(gates)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if log is not None:
                    log(len(losses), losses[-1])
    finally:
        tree.eval()
    return losses


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_tree(tree: SigmaTree, path: str | Path) -> None:
    """Write ``tree`` (structure config + state dict) to ``path`` (a torch file)."""
    torch.save({"format": _FORMAT, "config": tree.config, "state_dict": tree.state_dict()},
               Path(path))


def _rebuild(config: Mapping[str, Any]) -> SigmaTree:
    a = _ARCHS[config["arch"]]
    dense = _build_dense(config["dense"])
    stages = dict(a.stages(dense))
    groups = {s: a.groups(s, stages[s]) for s in config["tree"]}
    nodes = {}
    for key, cfg in config["nodes"].items():
        mods = {}
        for s, scfg in cfg["stages"].items():
            in_sel = None if scfg["in"] is None else torch.arange(scfg["in"])
            keep = {g: torch.arange(scfg["keep"][g]) for g, _, _ in groups[s]}
            mods[s] = a.slice(s, stages[s], in_sel, keep)[0]
        r = cfg["router"]
        router = None if r is None else Router(r["channels"], r["scale"])
        nodes[key] = _Node(list(cfg["stages"]), mods, router)
    backbone = {s: stages[s] for s in config["backbone"]}
    return SigmaTree(dict(config), backbone, nodes)


def load_tree(path: str | Path) -> SigmaTree:
    """Rebuild a tree written by ``save_tree``; ``ModelError`` names the path if it is missing,
    corrupt, or does not fit."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such Sigma-Branch checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file is a model error for the user
        raise ModelError(f"{p}: not a readable Sigma-Branch checkpoint "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != _FORMAT:
        raise ModelError(f"{p}: not a Sigma-Branch checkpoint (expected format {_FORMAT!r})")
    try:
        tree = _rebuild(ckpt["config"])
        tree.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, ImportError) as exc:
        raise ModelError(f"{p}: checkpoint does not rebuild a tree "
                         f"({type(exc).__name__}: {exc})") from exc
    return tree.eval()


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
