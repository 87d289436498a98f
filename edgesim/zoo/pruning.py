"""Mix-and-Match pruning (Monachan et al., arXiv 2603.20280): per-layer unstructured sparsity.

Public names: ``SENSITIVITIES``, ``BASELINES``, ``STRATEGIES``, ``LayerPruning``, ``PruneReport``,
``prunable_weights``, ``norm_weights``, ``is_patch_embed``, ``layer_rule``, ``magnitude_scores``,
``gradient_scores``, ``product_scores``, ``grasp_scores``, ``global_sparsities``, ``layer_ranges``,
``strategy_sparsities``, ``prune``, ``apply_masks``, ``fine_tune``, ``mix_and_match``,
``is_classifier``, ``classifier_layers``, ``lowest_first``, ``prune_single_criterion``,
``SINGLE_CRITERIA``,
``synthetic_calibration``, ``he_classifier_``, ``pruned_model``, ``attach_masks``,
``report_from_masks``,
``MASK_BUFFER``, ``RANGE_BUFFER``, ``sparse_resnet50``, ``sparse_swin_tiny``, ``SparseFamily``
(the family hooks: a user's checkpoint pruned after loading; per-layer annotations of traced
weight blocks).

The method, in three phases (REFERENCE.md A2):

1. **Ranges.** Run the global baselines {magnitude, SNIP, GraSP} at targets {70, 80, 90 %} on a
   calibration set (9 runs); a layer's ``[rho_min, rho_max]`` is the min/max of the sparsity that
   layer received. Then the structural rules, first match wins: norm layers ``[0, 0]``
   (``"norm-0"``); a patch-embedding layer clipped into ``[0.15, 0.30]`` (``"patch-embed"``);
   the classifier head keeps the range the baselines gave it (``"classifier"``); other layers
   with < 10 K weights clipped into ``[0, 0.10]`` (``"small<10K"``).
2. **Strategy.** One of ten distinct rules (:data:`STRATEGIES`) picks ``rho`` inside each
   layer's range.
3. **Prune.** Rank each layer's weights by a sensitivity (magnitude ``|w|``, gradient ``|dL/dw|``
   or product ``|w|*|dL/dw|``), zero the lowest ``floor(rho * n)``; fine-tune with Adam, re-applying
   the masks after every optimizer step.

**Reading of the paper (Paper.tex of the authors' repository) where it leaves a choice:**

* *Ten distinct strategies.* The paper's list has "balanced = the midpoint of the range" and
  "the 50th percentile, alpha = 0.5" as two of its ten; they are the same formula (and the same
  in the authors' ``create_strategy_variant``). The midpoint is kept once, as ``percentile_50``;
  the tenth strategy is the paper's *classifier-heavy* in the form of the authors' ResNet code
  ("fc_heavy": the classifier at ``rho_max``, every other layer at ``rho_min``). The paper's
  strategies 9-10 (classifier/late-heavy, feature/early-heavy: "alpha adjusted by layer depth")
  are ``late_heavy`` and ``early_heavy`` (alpha = the layer's relative depth, or 1 minus it).
* *The classifier rule.* The paper singles out the classification head as the place for more
  sparsity (strategy 9) and caps only "small layers" at 10 %. Read literally, the cap would pin a
  small head (a 10-class head under 10 K weights, as on the digits net) at <= 10 % under every
  strategy, so classifier-heavy could never prune it. Here the classifier (``is_classifier``:
  by default the last Conv/Linear in module order) is exempt from the small-layer cap and keeps
  the range the baselines gave it; ``classifier_heavy`` and ``late_heavy`` prune it at its
  ``rho_max``. (The authors' later ``resnet_layer_classifier.py`` instead protects the fc layer
  at [0, 30 %]; that is not the paper's text and is not followed.)
* *Three sensitivities*: magnitude, gradient (SNIP's ``|dL/dw|``) and their product, as the
  paper's Phase 3 lists them (GraSP is a Phase-1 baseline only).

**Same result on every machine.** Which weights are kept never hangs on float32 rounding:
gradient-based scores are computed in float64 (a float64 copy of the model,
``float64_scores``), and every selection ranks by ``(score as float64, flat index)`` and keeps a
count fixed by integer arithmetic (``floor(rho * n)``): per layer (``prune``) or over all
layers in module order (``global_sparsities``, ``prune_single_criterion``). Ties go to the lower
index.

A *layer* is named by its weight parameter (``"layer1.0.conv1.weight"``). Prunable weights are those
of ``nn.Conv*`` and ``nn.Linear`` modules (biases, norm affine parameters and Swin's relative
position bias tables stay dense). Norm-layer weights appear in ranges and reports with ``rho = 0``.

Calibration data is any re-iterable of ``(inputs, targets)`` batches (a list, a DataLoader); only
the first ``steps`` batches are used. No pretrained weights or datasets ship with edgesim, so the
``sparse_*`` factories prune a seeded random-init model against :func:`synthetic_calibration`
(16 random images, random labels; the classifier drawn at the convs' scale, ``he_classifier_``);
pass a trained model as ``base`` and real batches as ``calib`` (the CLI: ``--weights dense.pt
--data ...``, ``SparseFamily.build``). A pruned model carries its masks and ranges as buffers
(``attach_masks``), so its own checkpoint loads as itself. The sparsity pattern of a random-init
model is real (and what the simulator counts); its accuracy is not.

>>> import torch
>>> from torch import nn
>>> m = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
>>> calib = synthetic_calibration(seed=0, shape=(64,), num_classes=10, batch_size=4)
>>> m, report = mix_and_match(m, calib, strategy="aggressive")
>>> [r.rule for r in report.layers]
['', 'classifier']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesim.errors import ModelError
from edgesim.zoo.family import Family
from edgesim.zoo.sensitivity import (
    CALIB_BATCH_SIZE,
    CALIB_BATCHES,
    Batch,
    LossFn,
    calibration_batches,
    gradient_scores,
    grasp_scores,
    layer_weights,
    magnitude_scores,
    norm_weights,
    product_scores,
    prunable_weights,
    require_prunable,
    transformed_build,
)

__all__ = [
    "BASELINES",
    "MASK_BUFFER",
    "RANGE_BUFFER",
    "SENSITIVITIES",
    "SINGLE_CRITERIA",
    "STRATEGIES",
    "LayerPruning",
    "PruneReport",
    "SparseFamily",
    "apply_masks",
    "attach_masks",
    "classifier_layers",
    "fine_tune",
    "global_sparsities",
    "gradient_scores",
    "grasp_scores",
    "he_classifier_",
    "is_classifier",
    "is_patch_embed",
    "layer_ranges",
    "layer_rule",
    "lowest_first",
    "magnitude_scores",
    "mix_and_match",
    "norm_weights",
    "product_scores",
    "prunable_weights",
    "prune",
    "prune_single_criterion",
    "pruned_model",
    "report_from_masks",
    "sparse_resnet50",
    "sparse_swin_tiny",
    "strategy_sparsities",
    "synthetic_calibration",
]

SENSITIVITIES = ("magnitude", "gradient", "product")
BASELINES = ("magnitude", "snip", "grasp")
STRATEGIES = (
    "conservative",
    "aggressive",
    "percentile_30",
    "percentile_50",
    "percentile_70",
    "percentile_90",
    "param_proportional",
    "classifier_heavy",
    "late_heavy",
    "early_heavy",
)
#: Single-criterion baselines (``prune_single_criterion``): magnitude ``|w|`` (MAG), gradient
#: ``|dL/dw|``, SNIP ``|w * dL/dw|`` and GraSP (highest ``-w * Hg`` removed).
SINGLE_CRITERIA = ("magnitude", "gradient", "snip", "grasp")
SMALL_LAYER_PARAMS = 10_000
SMALL_LAYER_MAX = 0.10
PATCH_EMBED_RANGE = (0.15, 0.30)

NamePredicate = Callable[[str], bool]

_PERCENTILES = {
    "percentile_30": 0.3, "percentile_50": 0.5, "percentile_70": 0.7, "percentile_90": 0.9,
}


# ---------------------------------------------------------------------------------------------
# which weights


def is_patch_embed(name: str) -> bool:
    """Default patch-embedding predicate: the layer name contains ``"patch_embed"``."""
    return "patch_embed" in name


def classifier_layers(model: nn.Module) -> set[str]:
    """The classifier head: the last Conv/Linear weight in module order (``is_classifier``'s
    default), as a set of layer names.

    >>> sorted(classifier_layers(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2))))
    ['1.weight']
    """
    names = list(prunable_weights(model))
    return set(names[-1:])


def is_classifier(model: nn.Module) -> NamePredicate:
    """The default classifier predicate of ``model``: membership in ``classifier_layers``."""
    heads = classifier_layers(model)
    return heads.__contains__


def layer_rule(
    name: str, numel: int, *, norm: bool, patch_embed: NamePredicate = is_patch_embed,
    classifier: bool = False,
) -> str:
    """The structural rule that governs a layer: ``"norm-0"``, ``"patch-embed"``,
    ``"classifier"`` (the head: not capped as a small layer), ``"small<10K"`` or ``""`` (first
    match wins, in that order).

    >>> layer_rule("patch_embed.proj.weight", 4608, norm=False)
    'patch-embed'
    >>> layer_rule("fc.weight", 1280, norm=False, classifier=True)
    'classifier'
    """
    if norm:
        return "norm-0"
    if patch_embed(name):
        return "patch-embed"
    if classifier:
        return "classifier"
    if numel < SMALL_LAYER_PARAMS:
        return "small<10K"
    return ""


def _apply_rule(rule: str, lo: float, hi: float) -> tuple[float, float]:
    if rule == "norm-0":
        return 0.0, 0.0
    if rule == "patch-embed":
        a, b = PATCH_EMBED_RANGE
        return min(max(lo, a), b), min(max(hi, a), b)
    if rule == "small<10K":
        return min(lo, SMALL_LAYER_MAX), min(hi, SMALL_LAYER_MAX)
    return lo, hi


# ---------------------------------------------------------------------------------------------
# phase 1: ranges


def global_sparsities(
    scores: Mapping[str, Tensor], target: float, *, prune_highest: bool = False
) -> dict[str, float]:
    """Per-layer sparsity of one global pruning run at ``target`` (fraction of all scored weights).

    Exactly ``floor(target * N)`` weights are removed: the lowest scores (the highest with
    ``prune_highest``, as GraSP does), ranked by ``(score as float64, position)`` over the
    layers in ``scores`` order (``lowest_first``): a tie goes to the earlier weight.

    >>> global_sparsities({"a": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([4.0])}, 0.5)
    {'a': 0.6666666666666666, 'b': 0.0}
    """
    return _global_runs(scores, (target,), prune_highest=prune_highest)[0]


def _global_runs(
    scores: Mapping[str, Tensor], targets: Sequence[float], *, prune_highest: bool
) -> list[dict[str, float]]:
    """:func:`global_sparsities` for several targets with one partition of the scores."""
    bad = [t for t in targets if not 0.0 <= t <= 1.0]
    if bad:
        raise ModelError(f"global pruning targets {bad} are outside [0, 1]")
    sizes = [int(s.numel()) for s in scores.values()]
    flat = _flat64(list(scores.values()))
    if prune_highest:
        flat = -flat
    ends = np.cumsum(sizes)
    ks = [math.floor(t * flat.size) for t in targets]
    inner = sorted({k - 1 for k in ks if 0 < k < flat.size})
    part = np.partition(flat, inner) if inner and not np.isnan(flat).any() else None
    runs = []
    for k in ks:
        if part is None and 0 < k < flat.size:   # NaN scores: the full stable ranking
            order = np.argsort(flat, kind="stable")[:k]
        else:                                     # the k lowest by (score, position), in O(N):
            order = _lowest_k(flat, k, part)      # those below the k-th value, then its ties
        removed = np.bincount(np.searchsorted(ends, order, side="right"), minlength=len(sizes))
        runs.append({n: int(r) / size for n, r, size in zip(scores, removed, sizes, strict=True)})
    return runs


def _lowest_k(flat: np.ndarray, k: int, part: np.ndarray | None) -> np.ndarray:
    """Positions of the ``k`` lowest of ``flat`` ranked by ``(value, position)`` — the first
    ``k`` of ``np.argsort(flat, kind="stable")`` as a set — from ``part``, ``flat`` partitioned
    at ``k - 1`` (NaN-free): every value below the k-th, then the k-th value's earliest ties."""
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= flat.size:
        return np.arange(flat.size)
    v = part[k - 1]
    below = np.flatnonzero(flat < v)
    ties = np.flatnonzero(flat == v)[:k - below.size]
    return np.concatenate([below, ties])


def _flat64(scores: Sequence[Tensor]) -> np.ndarray:
    """The scores laid end to end as one float64 array."""
    return np.concatenate([s.detach().cpu().to(torch.float64).flatten().numpy()
                           for s in scores]) if scores else np.zeros(0)


def lowest_first(scores: Sequence[Tensor], *, highest: bool = False) -> np.ndarray:
    """Flat positions of the weights of ``scores`` (tensors laid end to end, in order) ranked
    lowest score first (``highest``: highest first), ties by position: a stable sort of the
    scores as float64, so the ranking is exact and the same on every machine for the same
    scores.

    >>> lowest_first([torch.tensor([2.0, 1.0]), torch.tensor([1.0])]).tolist()
    [1, 2, 0]
    """
    flat = _flat64(scores)
    return np.argsort(-flat if highest else flat, kind="stable")


def layer_ranges(
    model: nn.Module,
    calib_loader: Iterable[Batch],
    targets: Sequence[float] = (0.7, 0.8, 0.9),
    baselines: Sequence[str] = BASELINES,
    *,
    loss_fn: LossFn = F.cross_entropy,
    steps: int = 1,
    patch_embed: NamePredicate = is_patch_embed,
) -> dict[str, tuple[float, float]]:
    """Per-layer ``(rho_min, rho_max)`` from ``len(baselines) x len(targets)`` global runs, after
    the structural rules. Keys: prunable and norm weights (norms ``(0, 0)``), in module order.

    Baselines: ``"magnitude"`` (global ``|w|``), ``"snip"`` (global ``|w * g|``), ``"grasp"``
    (global ``-w * Hg``, highest removed). The model is not modified.
    """
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown or not baselines:
        raise ModelError(f"baselines {list(baselines)}: expected a non-empty subset of {BASELINES}")
    if not targets:
        raise ModelError("layer_ranges: targets is empty; expected fractions like (0.7, 0.8, 0.9)")
    batches = calibration_batches(calib_loader, steps) if {"snip", "grasp"} & set(baselines) else []
    params = require_prunable(model)
    lo = dict.fromkeys(params, math.inf)
    hi = dict.fromkeys(params, -math.inf)
    for base in baselines:
        if base == "magnitude":
            scores = magnitude_scores(model)
        elif base == "snip":
            scores = product_scores(model, batches, loss_fn, len(batches))
        else:
            scores = grasp_scores(model, batches, loss_fn, len(batches))
        for run in _global_runs(scores, targets, prune_highest=base == "grasp"):
            for name, rho in run.items():
                lo[name], hi[name] = min(lo[name], rho), max(hi[name], rho)
    ranges = {}
    heads = classifier_layers(model)
    for name, p in layer_weights(model).items():
        if name in params:
            rule = layer_rule(name, p.numel(), norm=False, patch_embed=patch_embed,
                              classifier=name in heads)
            ranges[name] = _apply_rule(rule, lo[name], hi[name])
        else:
            ranges[name] = (0.0, 0.0)
    return ranges


# ---------------------------------------------------------------------------------------------
# phase 2: strategies


def strategy_sparsities(
    ranges: Mapping[str, tuple[float, float]],
    strategy: str,
    param_counts: Mapping[str, int],
    layer_order: Sequence[str],
    classifiers: Iterable[str] | None = None,
) -> dict[str, float]:
    """Per-layer ``rho = rho_min + alpha * (rho_max - rho_min)``, clipped to the range.

    ``alpha`` by strategy: conservative 0, aggressive 1, percentile_P P/100 (percentile_50 is
    the paper's "balanced" midpoint), param_proportional ``min(1, 0.1 * |W_l| / |W_avg|)``,
    classifier_heavy 1 for the ``classifiers`` (default: the last layer of ``layer_order``
    with ``rho_max > 0``) and 0 for every other layer, late_heavy ``t_l``, early_heavy
    ``1 - t_l``, where ``t_l = i / (L - 1)`` is the layer's position in ``layer_order`` (0 first,
    1 last, so the classifier head is at ``rho_max`` under late_heavy). ``|W_avg|`` and the
    positions count only layers with ``rho_max > 0`` (norm layers fixed at 0 are left out, as
    the paper averages over prunable weights). The paper's per-architecture name rules (Swin
    "MLP heavy", LeViT "head heavy") are not reproduced; classifier/late/early-heavy are their
    architecture-free form.

    >>> strategy_sparsities({"a": (0.2, 0.6)}, "percentile_70", {"a": 100}, ["a"])
    {'a': 0.48}
    """
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown pruning strategy {strategy!r}; expected one of {STRATEGIES}")
    for name, (lo, hi) in ranges.items():
        if not 0.0 <= lo <= hi <= 1.0:
            raise ModelError(
                f"layer {name}: range ({lo}, {hi}) is not 0 <= rho_min <= rho_max <= 1"
            )
        if name not in param_counts:
            raise ModelError(f"layer {name}: missing from param_counts")
    missing = [n for n in ranges if n not in set(layer_order)]
    if missing:
        raise ModelError(f"layers {missing[:3]} are missing from layer_order")
    active = [n for n in layer_order if n in ranges and ranges[n][1] > 0.0]
    pos = {n: (i / (len(active) - 1) if len(active) > 1 else 1.0) for i, n in enumerate(active)}
    avg = sum(param_counts[n] for n in active) / len(active) if active else 1.0
    heads = set(active[-1:] if classifiers is None else classifiers)
    out = {}
    for name in layer_order:
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        if strategy == "conservative":
            alpha = 0.0
        elif strategy == "aggressive":
            alpha = 1.0
        elif strategy == "classifier_heavy":
            alpha = 1.0 if name in heads else 0.0
        elif strategy in _PERCENTILES:
            alpha = _PERCENTILES[strategy]
        elif strategy == "param_proportional":
            alpha = min(1.0, 0.1 * param_counts[name] / avg)
        elif strategy == "late_heavy":
            alpha = pos.get(name, 0.0)
        else:  # early_heavy
            alpha = 1.0 - pos.get(name, 1.0)
        out[name] = min(max(lo + alpha * (hi - lo), lo), hi)
    return out


# ---------------------------------------------------------------------------------------------
# phase 3: prune and fine-tune


def _named(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def prune(
    model: nn.Module, sparsities: Mapping[str, float], scores: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """Boolean keep-masks: in each layer the ``floor(rho * n)`` lowest-scored weights are dropped.

    Ranked by ``(score as float64, flat index)`` (``lowest_first``): a tie drops the lower
    index, and the same scores give the same mask on every machine. A layer with ``rho = 0``
    gets an all-true mask and needs no score. The model is not modified (see :func:`apply_masks`).
    """
    params = _named(model)
    masks = {}
    for name, rho in sparsities.items():
        if name not in params:
            raise ModelError(f"layer {name}: not a parameter of {type(model).__name__}")
        if not 0.0 <= rho <= 1.0:
            raise ModelError(f"layer {name}: sparsity {rho} is outside [0, 1]")
        p = params[name]
        k = math.floor(rho * p.numel())
        mask = torch.ones(p.numel(), dtype=torch.bool, device=p.device)
        if k > 0:
            if name not in scores:
                raise ModelError(f"layer {name}: no sensitivity score (sparsity {rho})")
            s = scores[name]
            if s.shape != p.shape:
                raise ModelError(
                    f"layer {name}: score shape {tuple(s.shape)} != weight shape {tuple(p.shape)}"
                )
            order = torch.from_numpy(lowest_first([s])[:k])
            mask[order] = False
        masks[name] = mask.view(p.shape)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Zero every weight whose mask entry is false (in place)."""
    params = _named(model)
    for name, mask in masks.items():
        if name not in params:
            raise ModelError(f"mask {name}: not a parameter of {type(model).__name__}")
        params[name].masked_fill_(~mask.bool(), 0.0)


def fine_tune(
    model: nn.Module,
    masks: Mapping[str, Tensor],
    loader: Iterable[Batch],
    *,
    epochs: int = 1,
    lr: float = 5e-5,
    steps: int | None = None,
    loss_fn: LossFn = F.cross_entropy,
) -> nn.Module:
    """Adam fine-tuning (paper: lr 5e-5), masks re-applied after every optimizer step.

    Runs ``epochs`` passes over ``loader``, or stops after ``steps`` optimizer steps if given.
    Returns the model, left in train mode.
    """
    if epochs < 1 or (steps is not None and steps < 1):
        raise ModelError(f"fine_tune: need epochs >= 1 and steps >= 1, got {epochs}, {steps}")
    apply_masks(model, masks)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    done = 0
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
            apply_masks(model, masks)
            done += 1
            if steps is not None and done >= steps:
                return model
    return model


# ---------------------------------------------------------------------------------------------
# the whole method


@dataclass(frozen=True, slots=True)
class LayerPruning:
    """One report row: the layer's range, chosen and achieved sparsity, and the rule in force."""

    layer: str
    params: int
    rho_min: float
    rho_max: float
    rho: float
    achieved: float
    rule: str


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What :func:`mix_and_match` did: one row per prunable or norm weight, in module order."""

    sensitivity: str
    strategy: str
    layers: tuple[LayerPruning, ...]

    @property
    def sparsity(self) -> float:
        """Zeros / weights over all layers in the report (norm weights included, at 0 %)."""
        total = sum(r.params for r in self.layers)
        zeros = sum(round(r.achieved * r.params) for r in self.layers)
        return zeros / total if total else 0.0

    def rows(self) -> list[dict[str, object]]:
        """Rows as dicts, ready for ``pandas.DataFrame``."""
        return [
            {"layer": r.layer, "params": r.params, "rho_min": r.rho_min, "rho_max": r.rho_max,
             "rho": r.rho, "achieved": r.achieved, "rule": r.rule}
            for r in self.layers
        ]


def mix_and_match(
    model: nn.Module,
    calib_loader: Iterable[Batch],
    *,
    sensitivity: str = "magnitude",
    strategy: str = "percentile_70",
    targets: Sequence[float] = (0.7, 0.8, 0.9),
    baselines: Sequence[str] = BASELINES,
    loss_fn: LossFn = F.cross_entropy,
    steps: int = 1,
    patch_embed: NamePredicate = is_patch_embed,
) -> tuple[nn.Module, PruneReport]:
    """Prune ``model`` in place by Mix-and-Match; return it with a per-layer report.

    ``steps`` calibration batches feed the SNIP/GraSP baselines and the gradient sensitivities.
    Fine-tuning is separate (:func:`fine_tune` with the returned masks from :func:`prune`, or a
    mask of ``w != 0``).
    """
    if sensitivity not in SENSITIVITIES:
        raise ModelError(f"unknown sensitivity {sensitivity!r}; expected one of {SENSITIVITIES}")
    if strategy not in STRATEGIES:
        raise ModelError(f"unknown pruning strategy {strategy!r}; expected one of {STRATEGIES}")
    batches = calibration_batches(calib_loader, steps)
    ranges = layer_ranges(
        model, batches, targets, baselines, loss_fn=loss_fn, steps=len(batches),
        patch_embed=patch_embed,
    )
    named = _named(model)
    counts = {n: named[n].numel() for n in ranges}
    heads = classifier_layers(model)
    rhos = strategy_sparsities(ranges, strategy, counts, list(ranges), classifiers=heads)
    if sensitivity == "magnitude":
        scores = magnitude_scores(model)
    elif sensitivity == "gradient":
        scores = gradient_scores(model, batches, loss_fn, len(batches))
    else:
        scores = product_scores(model, batches, loss_fn, len(batches))
    masks = prune(model, rhos, scores)
    apply_masks(model, masks)
    norms = set(norm_weights(model))
    rows = []
    for name, (lo, hi) in ranges.items():
        p = named[name]
        rows.append(LayerPruning(
            layer=name, params=p.numel(), rho_min=lo, rho_max=hi, rho=rhos[name],
            achieved=int((p == 0).sum()) / p.numel(),
            rule=layer_rule(name, p.numel(), norm=name in norms, patch_embed=patch_embed,
                            classifier=name in heads),
        ))
    return model, PruneReport(sensitivity, strategy, tuple(rows))


def prune_single_criterion(
    model: nn.Module,
    criterion: str,
    sparsity: float,
    calib: Iterable[Batch] | None = None,
    *,
    scope: str = "global",
    loss_fn: LossFn = F.cross_entropy,
    steps: int | None = None,
) -> dict[str, Tensor]:
    """Prune ``model`` in place by one criterion (the single-criterion baselines Mix-and-Match
    is compared with); returns the keep-masks (for :func:`fine_tune`).

    ``criterion``: one of :data:`SINGLE_CRITERIA`; the gradient-based ones read ``calib``
    (``steps`` batches, default all). ``scope="global"`` (the paper's MAG/SNIP/GraSP
    baselines): exactly ``floor(sparsity * N)`` of all N Conv/Linear weights are removed, the
    lowest scores over all layers (GraSP: the highest); ``scope="layer"``: ``floor(sparsity *
    n_l)`` in every layer. Ranking by ``(score as float64, position)`` (``lowest_first``).
    Norm weights, biases and other parameters stay dense.

    >>> m = nn.Linear(4, 2)
    >>> masks = prune_single_criterion(m, "magnitude", 0.5)
    >>> int(masks["weight"].sum()), int((m.weight != 0).sum())
    (4, 4)
    """
    if criterion not in SINGLE_CRITERIA:
        raise ModelError(f"unknown pruning criterion {criterion!r}; expected one of "
                         f"{SINGLE_CRITERIA}")
    if scope not in ("global", "layer"):
        raise ModelError(f"pruning scope {scope!r}; expected 'global' or 'layer'")
    if not 0.0 <= sparsity <= 1.0:
        raise ModelError(f"pruning sparsity {sparsity} is outside [0, 1]")
    params = require_prunable(model)
    if criterion == "magnitude":
        scores = magnitude_scores(model)
    else:
        if calib is None:
            raise ModelError(f"pruning criterion {criterion!r} reads gradients: pass calib "
                             "batches of (inputs, targets)")
        batches = list(calib)
        n = len(batches) if steps is None else steps
        fn = {"gradient": gradient_scores, "snip": product_scores, "grasp": grasp_scores}
        scores = fn[criterion](model, batches, loss_fn, n)
    highest = criterion == "grasp"
    if scope == "layer":
        if highest:   # prune() drops the lowest: rank GraSP's negated scores
            scores = {n: -s.to(torch.float64) for n, s in scores.items()}
        masks = prune(model, dict.fromkeys(params, float(sparsity)), scores)
    else:
        order = lowest_first([scores[n] for n in params], highest=highest)
        keep = np.ones(order.size, dtype=bool)
        keep[order[:math.floor(sparsity * order.size)]] = False
        masks, start = {}, 0
        for name, p in params.items():
            masks[name] = torch.from_numpy(keep[start:start + p.numel()].copy()).view(p.shape)
            start += p.numel()
    apply_masks(model, masks)
    return masks


# ---------------------------------------------------------------------------------------------
# registry factories


def synthetic_calibration(
    *,
    seed: int = 0,
    shape: Sequence[int] = (3, 224, 224),
    num_classes: int = 1000,
    batch_size: int = CALIB_BATCH_SIZE,
    batches: int = CALIB_BATCHES,
) -> list[Batch]:
    """Seeded random calibration batches: standard-normal inputs of ``shape``, uniform labels
    (default 2 batches of 8 images)."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch_size, *shape, generator=gen),
         torch.randint(0, num_classes, (batch_size,), generator=gen))
        for _ in range(batches)
    ]


@torch.no_grad()
def he_classifier_(model: nn.Module) -> nn.Module:
    """Redraw a random-init model's Linear weights by the rule its convs are drawn by (He normal,
    ``std = sqrt(2 / fan_out)``, ``edgesim.zoo.resnet``), biases 0; returns the model.

    PyTorch's default Linear init, ``U(+-1/sqrt(fan_in))``, gives ResNet-50's classifier a std
    of 0.0128, 2-14x below its convs (0.021-0.18): a global magnitude ranking (the Mix-and-Match
    baselines) then removes ~99.7 % of the classifier for its init alone. Only for random
    weights; a user's checkpoint keeps its own scale.
    """
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


#: Buffers a pruned model carries per Conv/Linear (in its state_dict, so that a checkpoint of
#: the pruned model is told from a dense one and loads as itself): the keep-mask, and
#: ``(rho_min, rho_max, rho)`` of the layer's range and chosen sparsity.
MASK_BUFFER = "weight_mask"
RANGE_BUFFER = "weight_prune_range"


def attach_masks(model: nn.Module, report: PruneReport | None = None) -> nn.Module:
    """Register each Conv/Linear's keep-mask (``w != 0``) and range (from ``report``; NaN
    without one) as buffers (``MASK_BUFFER``, ``RANGE_BUFFER``); returns the model."""
    rows = {} if report is None else {r.layer: r for r in report.layers}
    for name, p in prunable_weights(model).items():
        mod = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        r = rows.get(name)
        rng = (r.rho_min, r.rho_max, r.rho) if r is not None else (math.nan,) * 3
        mod.register_buffer(MASK_BUFFER, (p.detach() != 0).clone())
        mod.register_buffer(RANGE_BUFFER, torch.tensor(rng, dtype=torch.float64))
    return model


def report_from_masks(model: nn.Module, sensitivity: str, strategy: str, *,
                      patch_embed: NamePredicate = is_patch_embed) -> PruneReport:
    """Re-apply a loaded pruned model's masks (``attach_masks``) and rebuild its report."""
    masks, rows = {}, []
    norms = set(norm_weights(model))
    heads = classifier_layers(model)
    prunable = prunable_weights(model)
    for name, p in layer_weights(model).items():
        mod = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        lo = hi = rho = 0.0
        if name in prunable:
            masks[name] = getattr(mod, MASK_BUFFER)
            lo, hi, rho = (float(v) for v in getattr(mod, RANGE_BUFFER))
        rows.append((name, p, lo, hi, rho))
    apply_masks(model, masks)
    return PruneReport(sensitivity, strategy, tuple(
        LayerPruning(layer=name, params=p.numel(), rho_min=lo, rho_max=hi, rho=rho,
                     achieved=int((p == 0).sum()) / p.numel(),
                     rule=layer_rule(name, p.numel(), norm=name in norms,
                                     patch_embed=patch_embed, classifier=name in heads))
        for name, p, lo, hi, rho in rows))


def pruned_model(model: nn.Module, calib: Iterable[Batch] | None, *, shape: Sequence[int],
            num_classes: int, seed: int, strategy: str, sensitivity: str, steps: int | None,
            targets: Sequence[float]) -> nn.Module:
    """``model`` pruned in place by Mix-and-Match on ``calib`` (None: ``synthetic_calibration``
    of ``shape`` and ``num_classes``, seeded), with ``prune_report`` and the mask and range
    buffers (``attach_masks``); ``steps`` None uses every calibration batch."""
    data = list(calib) if calib is not None else synthetic_calibration(
        seed=seed, shape=shape, num_classes=num_classes)
    model, report = mix_and_match(
        model, data, sensitivity=sensitivity, strategy=strategy, targets=targets,
        steps=len(data) if steps is None else steps,
    )
    model.prune_report = report
    return attach_masks(model, report).eval()


def _resnet50_dense(*, num_classes: int = 1000, **_: Any) -> nn.Module:
    from edgesim.zoo.resnet import resnet50
    return resnet50(num_classes)


def _swin_tiny_dense(*, num_classes: int = 1000, img_size: int = 224, **_: Any) -> nn.Module:
    from edgesim.zoo.swin import swin_tiny
    return swin_tiny(num_classes, img_size)


def sparse_resnet50(
    seed: int = 0,
    *,
    num_classes: int = 1000,
    strategy: str = "param_proportional",
    sensitivity: str = "magnitude",
    calib: Iterable[Batch] | None = None,
    steps: int | None = None,
    targets: Sequence[float] = (0.7, 0.8, 0.9),
    base: nn.Module | None = None,
) -> nn.Module:
    """ResNet-50 (224x224) pruned by Mix-and-Match; the report is on ``model.prune_report``.

    Defaults follow the paper's best ResNet setting (magnitude sensitivity, parameter-proportional
    strategy). ``base`` is the dense ResNet-50 to prune (a user's trained weights); without it,
    a seeded random init whose classifier is drawn at the convs' scale (``he_classifier_``).
    ``calib`` (all of its batches unless ``steps``) defaults to ``synthetic_calibration`` (16
    images): supply real batches for meaningful ranges.
    """
    torch.manual_seed(seed)
    model = base if base is not None else he_classifier_(_resnet50_dense(num_classes=num_classes))
    return pruned_model(model, calib, shape=(3, 224, 224), num_classes=num_classes, seed=seed,
                   strategy=strategy, sensitivity=sensitivity, steps=steps, targets=targets)


def sparse_swin_tiny(
    seed: int = 0,
    *,
    num_classes: int = 1000,
    img_size: int = 224,
    strategy: str = "percentile_70",
    sensitivity: str = "magnitude",
    calib: Iterable[Batch] | None = None,
    steps: int | None = None,
    targets: Sequence[float] = (0.7, 0.8, 0.9),
    base: nn.Module | None = None,
) -> nn.Module:
    """Swin-T pruned by Mix-and-Match; the report is on ``model.prune_report``.

    Defaults follow the paper's best Swin-T setting (magnitude sensitivity, 70th-percentile
    strategy). ``base`` is the dense Swin-T to prune; without it, a seeded random init (its
    Linear layers share one truncated-normal init, so no redraw is needed). ``calib`` defaults
    to ``synthetic_calibration`` (16 images).
    """
    torch.manual_seed(seed)
    model = base if base is not None else _swin_tiny_dense(num_classes=num_classes,
                                                           img_size=img_size)
    return pruned_model(model, calib, shape=(3, img_size, img_size), num_classes=num_classes,
                   seed=seed, strategy=strategy, sensitivity=sensitivity, steps=steps,
                   targets=targets)


sparse_resnet50.edgesim_dense = _resnet50_dense  # type: ignore[attr-defined]
sparse_swin_tiny.edgesim_dense = _swin_tiny_dense  # type: ignore[attr-defined]


class SparseFamily(Family):
    """Mix-and-Match models: traced blocks carry their layer's rule (``WeightBlock.rule``) and
    sparsity range (``meta``: ``rho_min``, ``rho_max``, ``rho``) from ``model.prune_report``."""

    name = "sparse"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        """The seeded pruned model; with ``weights``, a dense checkpoint is loaded into the
        dense model and then pruned (calibrated on ``data`` when given), a pruned one
        (``attach_masks`` buffers) loads as itself (``transformed_build``)."""
        if weights is None:
            return super().build(spec, weights, seed, data)
        from edgesim.zoo.registry import _import_factory
        factory = _import_factory(spec.name, spec.factory)
        kwargs = {k: v for k, v in spec.kwargs.items() if k != "init"}

        def restore(model: nn.Module) -> nn.Module:
            import inspect
            params = inspect.signature(factory).parameters
            pick = {k: kwargs.get(k, params[k].default if k in params else "")
                    for k in ("sensitivity", "strategy")}
            model.prune_report = report_from_masks(model, **pick)
            return model

        return transformed_build(spec, weights, seed, data, skeleton=attach_masks,
                                 restore=restore, what="pruned model")

    def annotate(self, blocks: Sequence[Any], model: Any) -> list[Any]:
        from dataclasses import replace

        report = getattr(model, "prune_report", None)
        if report is None:
            return list(blocks)
        rows = {r["layer"]: r for r in report.rows()}
        out = []
        for b in blocks:
            r = rows.get(b.id)
            if r is not None:
                b = replace(b, rule=str(r.get("rule", "") or ""),
                            meta={**b.meta, "rho_min": r.get("rho_min"),
                                  "rho_max": r.get("rho_max"), "rho": r.get("rho")})
            out.append(b)
        return out
