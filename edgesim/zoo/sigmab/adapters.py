"""Architecture adapters: how a dense model is cut into stages, run, measured, sliced and named.

Public names: ``ARCHS``, ``ResNetArch``, ``PointNetArch``, ``detect_arch``, ``check_dense``,
``State``, ``Group``, ``n_params``.

An adapter (``ResNetArch``, ``PointNetArch``) is a namespace of static functions over one
architecture of the zoo (``edgesim.zoo.resnet``, ``edgesim.zoo.pointnet2``): ``stages(model,
cuts)`` (a ResNet layer may be cut between blocks at the split points ``cut_names`` lists),
``groups``, ``slice``, ``run``. Besides cutting and
slicing, it names its dense model as plain data (``dense_config``: the architecture's name and
its constructor parameters) and rebuilds it from that data (``build_dense``), with the parameters
checked against ``PARAMS`` first: a checkpoint can only ask for an architecture of this table,
never for an importable path.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import skip_init

from edgesim.errors import ModelError

__all__ = ["ARCHS", "Group", "PointNetArch", "ResNetArch", "State", "check_dense", "detect_arch",
           "n_params", "slice_bn"]

State = Any  # a Tensor (ResNet) or a (xyz, features) tuple (PointNet++)


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


def slice_bn(bn: nn.modules.batchnorm._BatchNorm,
             sel: torch.Tensor | None) -> nn.modules.batchnorm._BatchNorm:
    """The BatchNorm of the channels ``sel`` of ``bn`` (None: all), its statistics copied."""
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


def n_params(module: nn.Module) -> int:
    """Number of parameter elements of ``module``."""
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# architecture adapters: how a dense model is cut into stages, run, measured and sliced


Group = tuple[str, int, nn.Module | None]  # (key, channels, module whose output is measured)


class ResNetArch:
    """ResNet (edgesim.zoo.resnet layout): stem, layer1..layerN, head (avgpool + flatten + fc)."""

    name = "resnet"

    @staticmethod
    def detect(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("conv1", "bn1", "layer1", "avgpool", "fc"))

    @staticmethod
    def cut_names(model: nn.Module) -> list[str]:
        """Names of the split points inside layers: ``layerN_k`` = blocks k.. of layerN
        (1 <= k < its number of blocks)."""
        return [f"{n}_{k}" for n, m in model.named_children() if n.startswith("layer")
                for k in range(1, len(m))]

    @classmethod
    def stages(cls, model: nn.Module, cuts: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
        """``stem, layer1.., head``; a cut ``layerN_k`` (see ``cut_names``) splits layerN into
        ``layerN`` (blocks before k) and ``layerN_k`` (blocks k up to the next cut). The stages
        share the model's modules."""
        bad = sorted(set(cuts) - set(cls.cut_names(model)))
        if bad:
            raise ModelError(f"unknown split points {bad}; a ResNet layer is split at "
                             f"layerN_k, 1 <= k < its blocks: {cls.cut_names(model)}")
        stem = nn.Sequential(OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu,
                                         maxpool=model.maxpool))
        out: list[tuple[str, nn.Module]] = [("stem", stem)]
        for n, m in model.named_children():
            if not n.startswith("layer"):
                continue
            ks = sorted(int(c.rsplit("_", 1)[1]) for c in cuts if c.rsplit("_", 1)[0] == n)
            for lo, hi in itertools.pairwise([0, *ks, len(m)]):
                out.append((n if lo == 0 else f"{n}_{lo}", m[lo:hi]))
        head = nn.Sequential(OrderedDict(avgpool=model.avgpool, flatten=nn.Flatten(1),
                                         fc=model.fc))
        return [*out, ("head", head)]

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
            new.bn1 = slice_bn(module.bn1, keep["out"])
            return new, keep["out"]
        res = in_sel if cls._tied(module) else keep["res"]
        cur = in_sel
        for i, block in enumerate(new):
            pairs = cls._convs(block)
            prev = cur
            for j, (conv, bn) in enumerate(pairs):
                sel = res if j == len(pairs) - 1 else keep[f"{i}.{bn}"]
                setattr(block, conv, _slice_conv(getattr(block, conv), sel, prev))
                setattr(block, bn, slice_bn(getattr(block, bn), sel))
                prev = sel
            if block.downsample is not None:
                block.downsample[0] = _slice_conv(block.downsample[0], res, cur)
                block.downsample[1] = slice_bn(block.downsample[1], res)
            cur = res
        return new, res

    #: Constructor parameters of ``edgesim.zoo.resnet.ResNet`` a checkpoint may give.
    PARAMS: Mapping[str, tuple[Callable[[Any], bool], str]] = {}  # filled below

    @staticmethod
    def dense_config(model: nn.Module) -> dict[str, Any] | None:
        """``{"arch": "resnet", "kwargs": ...}`` for a zoo ResNet, None for any other class."""
        from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet

        block = model.layer1[0]
        blocks = {BasicBlock: "basic", Bottleneck: "bottleneck"}
        if type(model) is not ResNet or type(block) not in blocks:
            return None
        layers = [len(m) for n, m in model.named_children() if n.startswith("layer")]
        return {"arch": "resnet", "kwargs": {
            "block": blocks[type(block)],
            "layers": layers,
            "num_classes": model.fc.out_features,
            "stem": "cifar" if isinstance(model.maxpool, nn.Identity) else "imagenet",
            "width": model.conv1.out_channels,
        }}

    @staticmethod
    def build_dense(kwargs: Mapping[str, Any]) -> nn.Module:
        """The zoo ResNet of checked ``kwargs`` (see ``check_dense``)."""
        from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet

        block = {"basic": BasicBlock, "bottleneck": Bottleneck}[kwargs["block"]]
        return ResNet(block, list(kwargs["layers"]), num_classes=kwargs["num_classes"],
                      stem=kwargs["stem"], width=kwargs["width"])


class PointNetArch:
    """PointNet++ (edgesim.zoo.pointnet2 layout): sa1, sa2, sa3, head; state = (xyz, features)."""

    name = "pointnet2"

    @staticmethod
    def detect(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("sa1", "sa2", "sa3", "head"))

    @staticmethod
    def cut_names(model: nn.Module) -> list[str]:
        """PointNet++ stages are not split further."""
        return []

    @staticmethod
    def stages(model: nn.Module, cuts: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
        if cuts:
            raise ModelError(f"unknown split points {sorted(cuts)}; PointNet++ is cut only "
                             "between its stages sa1, sa2, sa3, head")
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
            new.bn1 = slice_bn(module.bn1, keep["fc1"])
            new.fc2 = _slice_linear(module.fc2, keep["fc2"], keep["fc1"])
            new.bn2 = slice_bn(module.bn2, keep["fc2"])
            new.fc3 = _slice_linear(module.fc3, None, keep["fc2"])
            return new, None
        layers = len(module.mlp) // 3
        prev = None if in_sel is None else torch.cat([torch.arange(3), 3 + in_sel])
        for j in range(layers):
            sel = keep["out"] if j == layers - 1 else keep[f"mlp{j}"]
            new.mlp[3 * j] = _slice_conv(module.mlp[3 * j], sel, prev)
            new.mlp[3 * j + 1] = slice_bn(module.mlp[3 * j + 1], sel)
            prev = sel
        return new, keep["out"]

    #: Constructor parameters of ``edgesim.zoo.pointnet2.PointNet2`` a checkpoint may give.
    PARAMS: Mapping[str, tuple[Callable[[Any], bool], str]] = {}  # filled below

    @staticmethod
    def dense_config(model: nn.Module) -> dict[str, Any] | None:
        """``{"arch": "pointnet2", "kwargs": ...}`` for a zoo PointNet++, None otherwise."""
        from edgesim.zoo.pointnet2 import PointNet2

        if type(model) is not PointNet2:
            return None
        return {"arch": "pointnet2", "kwargs": dict(model.config)}

    @staticmethod
    def build_dense(kwargs: Mapping[str, Any]) -> nn.Module:
        """The zoo PointNet++ of checked ``kwargs`` (see ``check_dense``)."""
        from edgesim.zoo.pointnet2 import PointNet2

        return PointNet2(kwargs["num_classes"], kwargs["in_points"], kwargs["width"])


def _int(lo: int, hi: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: type(v) is int and lo <= v <= hi), f"an integer in {lo}..{hi}"


def _real(lo: float, hi: float) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: type(v) in (int, float) and lo < v <= hi),
            f"a number in ({lo:g}, {hi:g}]")


def _choice(*names: str) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: type(v) is str and v in names), f"one of {', '.join(names)}"


def _int_list(n: int, lo: int, hi: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: type(v) in (list, tuple) and 1 <= len(v) <= n
             and all(type(x) is int and lo <= x <= hi for x in v)),
            f"a list of 1..{n} integers in {lo}..{hi}")


ResNetArch.PARAMS = {"block": _choice("basic", "bottleneck"), "layers": _int_list(8, 1, 64),
                     "num_classes": _int(1, 100_000), "stem": _choice("imagenet", "cifar"),
                     "width": _int(1, 1024)}
PointNetArch.PARAMS = {"num_classes": _int(1, 100_000), "in_points": _int(1, 1 << 20),
                       "width": _real(0.0, 16.0)}


ARCHS: dict[str, Any] = {"resnet": ResNetArch, "pointnet2": PointNetArch}


def detect_arch(model: nn.Module, arch: str | None) -> Any:
    if arch is not None:
        if arch not in ARCHS:
            raise ModelError(f"unknown Sigma-Branch arch {arch!r}; expected one of "
                             f"{sorted(ARCHS)}")
        return ARCHS[arch]
    for a in ARCHS.values():
        if a.detect(model):
            return a
    raise ModelError(f"cannot tell the architecture of {type(model).__name__}: expected a ResNet "
                     "(conv1, bn1, layer1.., avgpool, fc) or a PointNet++ (sa1, sa2, sa3, head)")


def _cut(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def check_dense(dense: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """The adapter and checked constructor parameters of a ``dense_config`` mapping.

    Only architectures of ``ARCHS`` with exactly their ``PARAMS`` keys, each value of the stated
    type and range, pass; anything else is a one-line ``ModelError`` naming ``where`` and the
    offending value. Nothing is imported or built here.

    >>> check_dense({"arch": "pointnet2", "kwargs": {"num_classes": 4, "in_points": 64,
    ...                                              "width": 0.5}}, "t.pt")[1]["in_points"]
    64
    >>> check_dense({"arch": "os:system", "kwargs": {}}, "t.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgesim.errors.ModelError: t.pt: dense architecture 'os:system' is not allowed (expected ...)
    """
    if not isinstance(dense, Mapping) or set(dense) != {"arch", "kwargs"}:
        raise ModelError(f"{where}: dense architecture {_cut(dense)} is not "
                         "{'arch': NAME, 'kwargs': {...}}")
    name, kwargs = dense["arch"], dense["kwargs"]
    if type(name) is not str or name not in ARCHS:
        raise ModelError(f"{where}: dense architecture {_cut(name)} is not allowed (expected "
                         f"{' or '.join(sorted(ARCHS))})")
    arch = ARCHS[name]
    if not isinstance(kwargs, Mapping):
        raise ModelError(f"{where}: dense {name} parameters {_cut(kwargs)} are not a mapping")
    unknown = sorted(map(str, set(kwargs) - set(arch.PARAMS)))
    missing = sorted(set(arch.PARAMS) - set(kwargs))
    if unknown or missing:
        raise ModelError(f"{where}: dense {name} parameters must be exactly "
                         f"{', '.join(sorted(arch.PARAMS))}; got unknown {_cut(unknown)}, "
                         f"missing {missing}")
    for key, (ok, what) in arch.PARAMS.items():
        if not ok(kwargs[key]):
            raise ModelError(f"{where}: dense {name} parameter {key}={_cut(kwargs[key])} is not "
                             f"{what}")
    return arch, dict(kwargs)
