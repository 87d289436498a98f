"""The baselines the four methods claim to beat: FPGM and HRank channel pruning, plain binary
weights, and a narrow dense net.

Public names: ``PRUNERS``, ``prunable_channels``, ``channel_plan``, ``active_params``,
``fpgm_scores``, ``hrank_scores``, ``matrix_rank_mod_p``, ``select``, ``prune_channels``,
``channel_prune``, ``fpgm_resnet50``, ``hrank_resnet50``, ``binarize_``, ``to_binary``,
``bin_resnet50``, ``recalibrate_bn``, ``narrow_width``, ``narrow_resnet50``,
``ChannelFamily``, ``BinaryFamily``.

* **FPGM** (He, Liu, Wang, Hu, Yang, "Filter Pruning via Geometric Median for Deep
  Convolutional Neural Networks Acceleration", CVPR 2019): in each pruned layer, the filters
  nearest the layer's geometric median are the most replaceable. A filter's score is the sum of
  its Euclidean distances to every filter of its layer (the paper's Eq. 6 criterion,
  ``sum_j ||F_i - F_j||_2``); the lowest-scored filters are pruned.
* **HRank** (Lin, Ji, Wang, Zhang, Zhang, Tian, Shao, "HRank: Filter Pruning using High-Rank
  Feature Map", CVPR 2020): a filter's score is the average rank of the feature map it
  produces over calibration images; the lowest-ranked filters are pruned.

Both prune whole output channels of the convs inside each residual block (a ``BasicBlock``'s
first conv; a ``Bottleneck``'s first two), as both papers do for ResNet-50: the residual
stream's width is left as it is, so a block's input and output stay aligned. A pruned channel
is removed from the conv, its BatchNorm and the next conv's input (``prune_channels``): the
model is physically smaller and still runs. Both papers fine-tune after pruning; here the
training budget is the caller's (``experiments/benchmark_methods.py`` gives every method the
same one).

**The target** is a share of the dense model's parameters (all of them, BatchNorm included):
every pruned layer keeps ``max(1, floor(j * C / 4096))`` of its ``C`` channels for one ratio
``j / 4096`` (uniform per layer, as FPGM's and HRank's per-layer rates), and ``j`` is the
largest whose model has at most ``target`` x the dense parameters (``channel_plan``; integer
arithmetic throughout: a channel of a layer costs a fixed integer number of parameters).

**Deterministic selections.** Which channels are kept never depends on BLAS or the thread
count: FPGM's distances are float64 elementwise differences summed by NumPy's pairwise
reduction (no matrix product); HRank's ranks are exact: each feature map (computed in float64)
is quantized to int8 levels (``rint(127 * a / max|a|)``, as a deployed activation) and its rank
is computed by Gaussian elimination over the integers modulo the prime p = 2^31 - 1
(``matrix_rank_mod_p``; equal to the rational rank unless p divides every nonzero maximal minor,
and never above it). Scores are ranked highest first, **the lowest index wins a tie**
(``select``).

**Plain binary** (Binary-Weight-Networks of Rastegari, Ordonez, Redmon, Farhadi, "XNOR-Net:
ImageNet Classification Using Binary Convolutional Neural Networks", ECCV 2016): every weight
of a filter becomes ``alpha * sign(w)`` with ``alpha = mean|w|`` of the filter (sign(0) = +1);
trained through the straight-through estimator of BinaryConnect (Courbariaux, Bengio, David,
NeurIPS 2015), gradient passed where ``|w| <= 1``. Stored: 1 bit per weight and one fp32 scale
per output channel (the ``dense`` encoding at 1 bit), against signed-binary's 1 mask bit per
weight plus a sign bit and a scale per region.

**Narrow dense** (``narrow_width``): the same architecture with fewer channels everywhere,
trained from scratch; the widest whose parameters fit a budget (e.g. the tree's per-path
active parameters).

The registry's ``fpgm_r50`` and ``hrank_r50`` prune a seeded ResNet-50 to 60 % of its
parameters (FPGM's ResNet-50 runs prune 30-40 % of each layer's filters), calibrated on
``synthetic_calibration`` (or ``--data``); ``bin_r50`` binarizes a seeded ResNet-50 with the
stem conv int8 and the classifier binary (as ``sb_r50``); ``narrow_r50`` is ResNet-50 at width
40 (``narrow_resnet50``), the size of a ``sigmab_r50`` path.

>>> from edgesim.zoo.resnet import BasicBlock, ResNet
>>> net = ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=8)
>>> plan = channel_plan(net, 0.8)
>>> plan
{'layer1.0.conv1': 6, 'layer2.0.conv1': 12}
>>> small = channel_prune(net, 0.8, "fpgm")
>>> [small.get_submodule(n).out_channels for n in plan] == list(plan.values())
True
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from edgesim.errors import ModelError
from edgesim.zoo.family import Family
from edgesim.zoo.sigmab.adapters import slice_bn

__all__ = [
    "PRUNERS",
    "BinaryFamily",
    "ChannelFamily",
    "active_params",
    "bin_resnet50",
    "binarize_",
    "channel_plan",
    "channel_prune",
    "fpgm_resnet50",
    "fpgm_scores",
    "hrank_resnet50",
    "hrank_scores",
    "matrix_rank_mod_p",
    "narrow_resnet50",
    "narrow_width",
    "prunable_channels",
    "prune_channels",
    "recalibrate_bn",
    "select",
    "to_binary",
]

PRUNERS = ("fpgm", "hrank")
#: Denominator of the uniform keep ratio ``j / RATIO_STEPS`` (``channel_plan``).
RATIO_STEPS = 4096
#: The prime of HRank's exact rank (``matrix_rank_mod_p``): 2^31 - 1, so a product of two
#: residues stays below 2^62 and fits int64.
PRIME = 2**31 - 1
#: int8 levels a feature map is quantized to before its rank is taken (as deployed).
ACT_LEVELS = 127

Batch = tuple[Tensor, Tensor]


# ---------------------------------------------------------------------------------------------
# which channels, and how many


def prunable_channels(model: nn.Module) -> dict[str, tuple[str, str]]:
    """``conv name -> (its BatchNorm, the conv that reads its output)`` for every conv whose
    output channels may be pruned: inside each ResNet block, every conv but the last (the last
    writes the residual stream). In module order."""
    from edgesim.zoo.resnet import BasicBlock, Bottleneck
    out: dict[str, tuple[str, str]] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, Bottleneck):
            chain = (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3"))
        elif isinstance(mod, BasicBlock):
            chain = (("conv1", "bn1", "conv2"),)
        else:
            continue
        for conv, bn, nxt in chain:
            out[f"{name}.{conv}"] = (f"{name}.{bn}", f"{name}.{nxt}")
    if not out:
        raise ModelError(f"{type(model).__name__}: no ResNet BasicBlock or Bottleneck to prune "
                         "channels of (FPGM/HRank here prune the convs inside residual blocks)")
    return out


def active_params(model: nn.Module) -> int:
    """Parameters of ``model`` (every ``nn.Parameter``, BatchNorm included)."""
    return sum(p.numel() for p in model.parameters())


def channel_plan(model: nn.Module, target: float) -> dict[str, int]:
    """Channels each prunable conv keeps so that the model has at most ``target`` x its
    parameters: ``max(1, floor(j * C / RATIO_STEPS))`` for the largest integer ``j`` that fits
    (module docstring). Raises ``ModelError`` when even one channel per layer is too many."""
    if not 0.0 < float(target) <= 1.0:
        raise ModelError(f"channel pruning target {target!r}: expected a share of the dense "
                         "parameters in (0, 1]")
    layers = prunable_channels(model)
    dense = active_params(model)
    widths = {n: model.get_submodule(n).out_channels for n in layers}
    producer = {nxt: n for n, (_, nxt) in layers.items()}
    convs = {n: model.get_submodule(n) for n in {*layers, *producer}}
    bns = {n: model.get_submodule(bn) for n, (bn, _) in layers.items()}
    # budget in exact integers: at most floor(target * dense) parameters (target as given,
    # a float64; the product is rounded once)
    budget = math.floor(float(target) * dense)

    def plan(j: int) -> dict[str, int]:
        return {n: max(1, (j * c) // RATIO_STEPS) for n, c in widths.items()}

    def size(p: dict[str, int]) -> int:
        # exact: each touched conv's weight is out x in x kernel (a Bottleneck's 3x3 loses
        # both output and input channels), plus its bias and BatchNorm per output channel
        total = dense
        for n, c in convs.items():
            out, cin = c.weight.shape[0], c.weight.shape[1]
            k_out, k_in = p.get(n, out), p.get(producer.get(n, ""), cin)
            kernel = c.weight[0, 0].numel()
            total += (k_out * k_in - out * cin) * kernel
            if c.bias is not None:
                total += k_out - out
        for n, b in bns.items():
            total += (p[n] - widths[n]) * sum(1 for t in (b.weight, b.bias) if t is not None)
        return total

    if size(plan(0)) > budget:
        raise ModelError(f"channel pruning target {target}: even one channel per pruned layer "
                         f"leaves {size(plan(0)):,} of {dense:,} parameters "
                         f"({size(plan(0)) / dense:.1%}); expected a larger target")
    lo, hi = 0, RATIO_STEPS          # size(plan(j)) is non-decreasing in j
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(plan(mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return plan(lo)


def select(scores: Sequence[float] | np.ndarray, keep: int) -> list[int]:
    """Indices of the ``keep`` highest ``scores``, ascending; the lowest index wins a tie.

    >>> select([3.0, 5.0, 3.0, 1.0], 2)
    [0, 1]
    """
    s = np.asarray(scores)
    if not 0 < keep <= s.size:
        raise ModelError(f"select: keep={keep} of {s.size} channels; expected 1..{s.size}")
    order = np.lexsort((np.arange(s.size), -s))   # score descending, then index ascending
    return sorted(int(i) for i in order[:keep])


# ---------------------------------------------------------------------------------------------
# the two criteria


def fpgm_scores(weight: Tensor) -> np.ndarray:
    """FPGM: per output filter, the sum of its Euclidean distances to every filter of the layer
    (float64; the filters nearest the geometric median score lowest).

    >>> fpgm_scores(torch.tensor([[0.0], [1.0], [3.0]])).tolist()   # 0+1+3, 1+0+2, 3+2+0
    [4.0, 3.0, 5.0]
    """
    f = weight.detach().to(torch.float64).reshape(weight.shape[0], -1).cpu().numpy()
    n = f.shape[0]
    dist = np.zeros((n, n), dtype=np.float64)
    for i in range(n - 1):                 # each pair once: d(i, j) = d(j, i), bit for bit
        d = f[i + 1:] - f[i]
        dist[i, i + 1:] = np.sqrt((d * d).sum(axis=1))
    dist += dist.T
    return dist.sum(axis=1)


def _inverse_mod(a: np.ndarray, p: int = PRIME) -> np.ndarray:
    """``a^(p-2) mod p`` elementwise (Fermat), ``a`` in 1..p-1, int64."""
    result = np.ones_like(a)
    base = a % p
    e = p - 2
    while e:
        if e & 1:
            result = (result * base) % p
        base = (base * base) % p
        e >>= 1
    return result


def matrix_rank_mod_p(mats: np.ndarray, p: int = PRIME) -> np.ndarray:
    """Rank of each integer matrix of ``mats`` (shape ``(B, m, n)``) over GF(``p``), by
    Gaussian elimination (first nonzero row below the pivots is the pivot). Exact: integers
    only. Equals the rational rank unless ``p`` divides every nonzero maximal minor.

    >>> matrix_rank_mod_p(np.array([[[1, 2], [2, 4]], [[1, 0], [0, 3]], [[0, 0], [0, 0]]]))
    array([1, 2, 0])
    """
    a = np.asarray(mats, dtype=np.int64) % p
    if a.ndim != 3:
        raise ValueError(f"matrix_rank_mod_p: expected (B, m, n) matrices, got shape {a.shape}")
    nb, m, n = a.shape
    if m < n:                               # eliminate along the shorter side
        a = np.ascontiguousarray(a.transpose(0, 2, 1))
        m, n = n, m
    rank = np.zeros(nb, dtype=np.int64)
    rows = np.arange(m)
    for c in range(n):
        cand = (a[:, :, c] != 0) & (rows[None, :] >= rank[:, None])
        has = np.flatnonzero(cand.any(axis=1))
        if has.size == 0:
            continue
        piv = cand[has].argmax(axis=1)
        r0 = rank[has]
        top = a[has, r0].copy()
        a[has, r0] = a[has, piv]
        a[has, piv] = top
        prow = a[has, r0]                                      # (k, n)
        factor = (a[has, :, c] * _inverse_mod(prow[:, c], p)[:, None]) % p   # (k, m)
        factor[rows[None, :] <= r0[:, None]] = 0
        a[has] = (a[has] - (factor[:, :, None] * prow[:, None, :]) % p) % p
        rank[has] += 1
    return rank


def _quantized_maps(maps: np.ndarray) -> np.ndarray:
    """(B, H, W) float64 maps -> int64 levels ``rint(127 * a / max|a|)`` per map (0 if all 0)."""
    peak = np.abs(maps).reshape(maps.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0)[:, None, None]
    return np.rint(ACT_LEVELS * maps / scale).astype(np.int64)


@torch.no_grad()
def hrank_scores(model: nn.Module, batches: Iterable[Batch],
                 layers: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """HRank: per prunable conv, the summed rank (an integer; the order is the average's) of
    each output channel's feature map (after its BatchNorm and ReLU, the map the next conv
    reads) over the images of ``batches``; the forward pass runs in float64 on a copy."""
    names = list(prunable_channels(model)) if layers is None else list(layers)
    bn_of = {n: bn for n, (bn, _) in prunable_channels(model).items()}
    net = copy.deepcopy(model).double().eval()
    totals = {n: np.zeros(net.get_submodule(n).out_channels, dtype=np.int64) for n in names}
    handles = []
    for n in names:
        def hook(_m: nn.Module, _a: Any, out: Tensor, n: str = n) -> None:
            maps = out.clamp(min=0).cpu().numpy()             # (N, C, H, W) float64
            q = _quantized_maps(maps.reshape(-1, *maps.shape[2:]))
            ranks = matrix_rank_mod_p(q).reshape(maps.shape[0], maps.shape[1])
            totals[n] += ranks.sum(axis=0)
        handles.append(net.get_submodule(bn_of[n]).register_forward_hook(hook))
    try:
        seen = 0
        for x, _ in batches:
            net(x.to(torch.float64))
            seen += int(x.shape[0])
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ModelError("hrank_scores: the calibration batches hold no images")
    return totals


# ---------------------------------------------------------------------------------------------
# pruning the model


def _sliced_conv(c: nn.Conv2d, out_idx: Tensor | None, in_idx: Tensor | None) -> nn.Conv2d:
    w = c.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1] * c.groups, w.shape[0], c.kernel_size, stride=c.stride,
                    padding=c.padding, dilation=c.dilation, groups=c.groups,
                    bias=c.bias is not None, padding_mode=c.padding_mode)
    new.weight = nn.Parameter(w.clone())
    if c.bias is not None:
        b = c.bias.detach()
        new.bias = nn.Parameter((b if out_idx is None else b[out_idx]).clone())
    return new


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def prune_channels(model: nn.Module, keep: dict[str, Sequence[int]]) -> nn.Module:
    """Remove, in place, every output channel of each conv of ``keep`` not listed there (from
    the conv, its BatchNorm and the next conv's input); returns the model."""
    layers = prunable_channels(model)
    for name, idx in keep.items():
        if name not in layers:
            raise ModelError(f"prune_channels: {name!r} is not a prunable conv; expected one of "
                             f"{', '.join(list(layers)[:4])}...")
        bn, nxt = layers[name]
        i = torch.as_tensor(sorted(int(v) for v in idx), dtype=torch.long)
        _replace(model, name, _sliced_conv(model.get_submodule(name), i, None))
        _replace(model, bn, slice_bn(model.get_submodule(bn), i))
        _replace(model, nxt, _sliced_conv(model.get_submodule(nxt), None, i))
    return model


def channel_prune(model: nn.Module, target: float, method: str,
                  calib: Iterable[Batch] | None = None) -> nn.Module:
    """``model`` pruned in place to ``target`` x its parameters by ``method`` (``"fpgm"``;
    ``"hrank"`` reads ``calib``; ``"first"`` keeps the first channels: the structure alone, to
    load a pruned checkpoint into). The plan is on ``model.channel_plan``."""
    if method not in (*PRUNERS, "first"):
        raise ModelError(f"unknown channel pruning method {method!r}; expected one of "
                         f"{', '.join(PRUNERS)}")
    plan = channel_plan(model, target)
    if method == "fpgm":
        keep = {n: select(fpgm_scores(model.get_submodule(n).weight), k)
                for n, k in plan.items()}
    elif method == "hrank":
        if calib is None:
            raise ModelError("HRank needs calibration images (feature-map ranks); got none")
        scores = hrank_scores(model, calib, list(plan))
        keep = {n: select(scores[n], k) for n, k in plan.items()}
    else:
        keep = {n: list(range(k)) for n, k in plan.items()}
    prune_channels(model, keep)
    model.channel_plan = dict(plan)
    return model


def recalibrate_bn(model: nn.Module, batches: Iterable[Batch]) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``batches`` (cumulative average, the
    weights untouched); returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    try:
        with torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        for bn, momentum in zip(bns, saved, strict=True):
            bn.momentum = momentum
    return model.eval()


# ---------------------------------------------------------------------------------------------
# plain binary weights


class _SignSTE(torch.autograd.Function):
    """Forward ``alpha * sign(w)`` per output filter; backward straight through where
    ``|w| <= 1`` (BinaryConnect's clipped STE); alpha's own gradient flows as in XNOR-Net."""

    @staticmethod
    def forward(ctx: Any, w: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1.0).to(grad.dtype)


class BinaryWeight(nn.Module):
    """Parametrization: latent weight -> ``alpha * sign(w)``, ``alpha = mean|w|`` per output
    filter (XNOR-Net's Binary-Weight-Network), ``sign(0) = +1``."""

    def forward(self, w: Tensor) -> Tensor:
        alpha = w.abs().reshape(w.shape[0], -1).mean(dim=1)
        alpha = alpha.reshape(-1, *([1] * (w.dim() - 1)))
        if torch.is_grad_enabled():
            return alpha * _SignSTE.apply(w)
        return alpha * torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def binarize_(module: nn.Module) -> nn.Module:
    """Binarize ``module.weight`` in place (a parametrization) and tag it for the tracer
    (``edgesim_precision = "binary"``: 1 bit per weight, one scale per output channel)."""
    if not isinstance(module, _WEIGHTED):
        raise ModelError(f"binarize_: {type(module).__name__} is not a conv or linear module")
    parametrize.register_parametrization(module, "weight", BinaryWeight())
    module.edgesim_precision = "binary"
    return module


def to_binary(model: nn.Module, *,
              keep_first_last_int8: bool | tuple[bool, bool] = True) -> nn.Module:
    """Binarize every conv/linear of ``model`` in place but the first and/or last (int8), as
    ``signed_binary.to_signed_binary`` chooses them; returns the model."""
    mods = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
    if not mods:
        raise ModelError(f"to_binary: {type(model).__name__} has no conv or linear layer")
    first, last = ((keep_first_last_int8, keep_first_last_int8)
                   if isinstance(keep_first_last_int8, bool) else keep_first_last_int8)
    for i, m in enumerate(mods):
        if not ((i == 0 and first) or (i == len(mods) - 1 and last)):
            binarize_(m)
    return model


def fine_tune_binary(model: nn.Module, loader: Iterable[Batch], *, epochs: int = 1,
                     lr: float = 1e-3) -> nn.Module:
    """Adam through the straight-through backward; returns the model in train mode."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model


# ---------------------------------------------------------------------------------------------
# a narrow dense net


def narrow_width(make: Any, budget: int, *, widest: int = 64) -> int:
    """The largest width ``w`` in 1..``widest`` whose ``make(w)`` has at most ``budget``
    parameters (built on the meta device: no weights are drawn)."""
    best = 0
    for w in range(1, widest + 1):
        with torch.device("meta"):
            n = active_params(make(w))
        if n <= budget:
            best = w
    if not best:
        raise ModelError(f"narrow_width: even width 1 has more than {budget:,} parameters")
    return best


# ---------------------------------------------------------------------------------------------
# registry factories


def _resnet50_dense(*, num_classes: int = 1000, **_: Any) -> nn.Module:
    from edgesim.zoo.resnet import resnet50
    return resnet50(num_classes=num_classes)


def _calibration(calib: Iterable[Batch] | None, seed: int, num_classes: int) -> list[Batch]:
    from edgesim.zoo.pruning import synthetic_calibration
    return list(calib) if calib is not None else synthetic_calibration(
        seed=seed, shape=(3, 224, 224), num_classes=num_classes, batches=1)


def fpgm_resnet50(seed: int = 0, *, num_classes: int = 1000, target: float = 0.6,
                  base: nn.Module | None = None,
                  calib: Iterable[Batch] | None = None) -> nn.Module:
    """ResNet-50 (``base``, or a seeded init) with FPGM's channels pruned to ``target`` x its
    parameters; ``calib`` (``--data``) re-estimates the BatchNorm statistics of the pruned net.
    """
    torch.manual_seed(seed)
    net = base if base is not None else _resnet50_dense(num_classes=num_classes)
    net = channel_prune(net, target, "fpgm")
    return recalibrate_bn(net, calib) if calib is not None else net.eval()


def hrank_resnet50(seed: int = 0, *, num_classes: int = 1000, target: float = 0.6,
                   base: nn.Module | None = None,
                   calib: Iterable[Batch] | None = None) -> nn.Module:
    """ResNet-50 (``base``, or a seeded init) with HRank's channels pruned to ``target`` x its
    parameters, ranks over ``calib`` (``--data``; default: one batch of
    ``synthetic_calibration``, 8 images: the paper finds a few images' average rank stable;
    ResNet-50's float64 pass and exact ranks take ~30 s)."""
    torch.manual_seed(seed)
    net = base if base is not None else _resnet50_dense(num_classes=num_classes)
    return channel_prune(net, target, "hrank", _calibration(calib, seed, num_classes)).eval()


def bin_resnet50(seed: int = 0, *, num_classes: int = 1000,
                 keep_first_last_int8: bool | tuple[bool, bool] = (True, False),
                 base: nn.Module | None = None,
                 calib: Iterable[Batch] | None = None) -> nn.Module:
    """A plain-binary ResNet-50 (``base`` or a seeded init): stem conv int8, every other conv
    and the classifier ``alpha * sign(w)`` (as ``sb_r50``, for a like-for-like comparison).
    ``calib`` (``--data``) re-estimates the BatchNorm statistics of the binarized net."""
    torch.manual_seed(seed)
    net = base if base is not None else _resnet50_dense(num_classes=num_classes)
    net = to_binary(net, keep_first_last_int8=keep_first_last_int8)
    return recalibrate_bn(net, calib) if calib is not None else net.eval()


def narrow_resnet50(num_classes: int = 1000, width: int = 40) -> nn.Module:
    """ResNet-50 v1.5 with ``width`` channels in its stem and first stage (64 in the
    published net): the registry's ``narrow_r50`` is width 40, 10,461,880 parameters as
    deployed, the widest at or below the ``sigmab_r50`` tree's mean active parameters per path
    (10,547,238 as deployed; width 41: 10,958,086)."""
    from edgesim.zoo.resnet import Bottleneck, ResNet
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="imagenet", width=width)


narrow_resnet50.input_shape = (3, 224, 224)  # type: ignore[attr-defined]

for _f in (fpgm_resnet50, hrank_resnet50, bin_resnet50):
    _f.edgesim_dense = _resnet50_dense  # type: ignore[attr-defined]


class ChannelFamily(Family):
    """FPGM / HRank channel-pruned models. With ``--weights``, a dense checkpoint is loaded into
    the dense model and pruned (HRank ranks on ``--data`` when given); a pruned one (its
    smaller convs) loads as itself."""

    name = "channel"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        if weights is None:
            return super().build(spec, weights, seed, data)
        from edgesim.zoo.sensitivity import transformed_build
        target = spec.kwargs.get("target", 0.6)
        return transformed_build(spec, weights, seed, data, what="channel-pruned model",
                                 skeleton=lambda d: channel_prune(d, target, "first"))


class BinaryFamily(Family):
    """Plain-binary models. With ``--weights``, a dense checkpoint is loaded and binarized
    (BatchNorm statistics re-estimated on ``--data`` when given); a binarized one loads as
    itself."""

    name = "binary"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        if weights is None:
            return super().build(spec, weights, seed, data)
        from edgesim.zoo.sensitivity import transformed_build
        return transformed_build(spec, weights, seed, data, what="binary model")
