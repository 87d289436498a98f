"""Nested sparsity: N sparse sub-networks in one set of weights, chosen by a run-time knob.

Public names: ``DEFAULT_DENSITIES``, ``prunable_modules``, ``nested_levels``, ``level_sparsity``,
``LevelMask``, ``NestedModel``, ``train_nested``, ``level_batchnorm``, ``nested_resnet50``,
``nested_storage_report``, ``LEVEL_NORM_BYTES``.

After Grimaldi et al., "Dynamic ConvNets on Tiny Devices via Nested Sparsity" (arXiv 2203.03324,
REFERENCE.md A4). Every prunable weight (conv / linear) carries an int8 ``levels`` tensor of its
shape: 0 = pruned in every sub-network, k = the weight is first present in sub-network k.
Sub-network k uses the weights with ``1 <= level <= k``; level 1 is the sparsest, level N the
densest. So the sub-networks are nested (each one's weights are a subset of the next one's) and
can be stored as one weight stream of which sub-network k reads a prefix
(``edgesim.encodings.nested_bytes``).

``NestedModel`` wraps a model: ``set_level(k)`` selects sub-network k. The mask is applied at
forward time by a ``torch.nn.utils.parametrize`` parametrization (``LevelMask``), so
``module.weight`` is the masked tensor that ``F.conv2d`` sees while the latent weights stay
intact. The tracer (``edgesim.trace``) stores each masked weight as ``LevelMask``'s layout hook
``edgesim_weight_blocks`` says: one block per level (``<latent name>#Lk``, the latent name as in
``model.named_parameters()``, e.g. ``"net.conv1.parametrizations.weight.original"``), of which
sub-network ``model.level`` reads levels 1..k. ``model.edgesim_nested_levels`` maps those latent
names to the levels tensors; each masked module also carries ``edgesim_levels``.
``model.num_levels`` is N.

**Gradient masking, as read here.** The paper (abstract, REFERENCE.md A4; the full text is not
public to us) proposes "a gradient masking technique that routes the learning signals across
the nested weight subsets". Masking the forward pass alone already gives a weight outside
sub-network k a zero gradient, so a gradient mask that only zeroes those would change nothing.
Our reading: each weight learns from the sub-network it enters (its level) and from no denser
one; a step on sub-network k (``schedule="round_robin"``) updates only the weights that
sub-network adds (``level == k``), the sparser sub-networks' weights are left as they are, and
the summed loss (``schedule="sum"``) gives a level-j weight the gradient of sub-network j's loss
alone. ``gradient_masking=False`` is plain masked joint training (every weight of sub-network
k learns from its loss). Non-prunable parameters (norms, biases) learn from every sub-network.

**Per-level BatchNorm.** A sub-network's activations have their own statistics; with
``level_batchnorm`` every BatchNorm keeps one set of running statistics per level (loaded by
``set_level``), as switchable BatchNorm in slimmable nets. Folded into the convs, each level
has its own per-channel scale and bias; the per-channel int8 weights stay those of the one
stream. The tracer stores them: for each level k >= 2, a block ``<latent name>#Nk`` of
``LEVEL_NORM_BYTES`` per output channel (fp32 scale + int32 bias) of every conv a BatchNorm
follows; no sub-network reads it in addition to what it reads (level k's set stands in for
level 1's, the same size), so only stored bytes grow.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(10, 10))
>>> model = NestedModel(net, nested_levels(net, densities=(0.1, 0.5)))
>>> model.set_level(1)
>>> int(torch.count_nonzero(net[0].weight))   # the top 10 % of 100 weights by |w|
10
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from edgesim import encodings
from edgesim.errors import ModelError

__all__ = [
    "DEFAULT_DENSITIES",
    "LEVEL_NORM_BYTES",
    "LevelMask",
    "NestedModel",
    "level_batchnorm",
    "level_sparsity",
    "nested_levels",
    "nested_resnet50",
    "nested_storage_report",
    "prunable_modules",
    "train_nested",
]

#: Stored bytes per output channel of one level's folded BatchNorm: an fp32 scale and an int32
#: bias (the scale as ``encodings.SCALE_BYTES``, the bias as the tracer's int32 biases).
LEVEL_NORM_BYTES = 4 + 4

#: Fraction of each layer's weights present in sub-network 1, 2, 3 (cumulative).
DEFAULT_DENSITIES: tuple[float, ...] = (0.1, 0.3, 0.5)

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The conv and linear modules of ``model`` in ``named_modules`` order (first conv first,
    classifier last for a usual CNN)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _PRUNABLE)]


def _check_densities(densities: Sequence[float], what: str) -> tuple[float, ...]:
    ds = tuple(float(d) for d in densities)
    if not ds:
        raise ModelError(f"nested {what}: need at least one density, got {densities!r}")
    prev = 0.0
    for k, d in enumerate(ds, start=1):
        if not prev < d <= 1.0:
            raise ModelError(f"nested {what}: density of level {k} is {d}; expected "
                             f"{prev} < density <= 1 (strictly increasing fractions)")
        prev = d
    return ds


def _layer_levels(weight: torch.Tensor, densities: Sequence[float]) -> torch.Tensor:
    """Levels of one tensor: by |w| descending, the first round(d_1 * n) get level 1, the next up
    to round(d_2 * n) level 2, ...; the rest 0. Ties keep flattened order (stable sort)."""
    flat = weight.detach().abs().reshape(-1)
    n = flat.numel()
    order = torch.argsort(flat, descending=True, stable=True)
    ranked = torch.zeros(n, dtype=torch.int8)
    start = 0
    for k, d in enumerate(densities, start=1):
        stop = max(start, round(d * n))
        ranked[start:stop] = k
        start = stop
    levels = torch.empty(n, dtype=torch.int8)
    levels[order] = ranked
    return levels.reshape(weight.shape)


def nested_levels(model: nn.Module, densities: Sequence[float] = DEFAULT_DENSITIES, *,
                  first_last_densities: Sequence[float] | None = None) -> dict[str, torch.Tensor]:
    """Magnitude-based nested levels of every prunable weight: ``{"<module>.weight": levels}``.

    In each layer the top ``densities[0]`` fraction of weights by |w| get level 1, the next up to
    ``densities[1]`` level 2, and so on; the rest get 0 (pruned everywhere). ``densities`` are
    cumulative and strictly increasing in (0, 1]; N = ``len(densities)``. The first conv and the
    classifier (first and last prunable module) use ``first_last_densities`` when given (same
    length), e.g. ``(0.5, 0.8, 1.0)`` to keep them denser.

    >>> from torch import nn
    >>> lv = nested_levels(nn.Linear(5, 2), densities=(0.2, 0.5))["weight"]
    >>> [int((lv == k).sum()) for k in range(3)]   # 10 weights: 2 at level 1, 3 at level 2
    [5, 2, 3]
    """
    ds = _check_densities(densities, "densities")
    edge = ds if first_last_densities is None else _check_densities(first_last_densities,
                                                                     "first_last_densities")
    if len(edge) != len(ds):
        raise ModelError(f"nested first_last_densities has {len(edge)} levels, densities has "
                         f"{len(ds)}; expected the same number")
    mods = prunable_modules(model)
    if not mods:
        raise ModelError(f"nested_levels: {type(model).__name__} has no conv or linear layer")
    out: dict[str, torch.Tensor] = {}
    for i, (name, m) in enumerate(mods):
        use = edge if i in (0, len(mods) - 1) else ds
        out[_weight_name(name)] = _layer_levels(m.weight, use)
    return out


def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _latent_name(module_name: str) -> str:
    """Parameter name, seen from a ``NestedModel``, of a masked module's latent weight."""
    prefix = f"net.{module_name}" if module_name else "net"
    return f"{prefix}.parametrizations.weight.original"


def level_sparsity(levels: torch.Tensor | np.ndarray, k: int) -> float:
    """Fraction of zero weights in sub-network ``k`` (level 0 or level > k).

    >>> level_sparsity(torch.tensor([0, 1, 2, 3]), 2)
    0.5
    """
    a = torch.as_tensor(np.asarray(levels) if isinstance(levels, np.ndarray) else levels)
    if a.numel() == 0:
        return 0.0
    present = ((a >= 1) & (a <= int(k))).sum().item()
    return 1.0 - present / a.numel()


class LevelMask(nn.Module):
    """Parametrization ``w -> w * (1 <= levels <= level)``; ``level`` is set by ``NestedModel``."""

    def __init__(self, levels: torch.Tensor, level: int) -> None:
        super().__init__()
        self.register_buffer("levels", levels.to(torch.int8))
        self.level = int(level)
        #: Output channels whose folded BatchNorm has one set per level (``level_batchnorm``).
        self.level_norm_channels = 0

    def mask(self) -> torch.Tensor:
        """Boolean mask of the weights in the current sub-network."""
        return (self.levels >= 1) & (self.levels <= self.level)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask().to(weight.dtype)

    def edgesim_weight_blocks(self, block_id: str, latent: torch.Tensor,
                              precision: str) -> tuple[list[Any], list[str], int]:
        """The tracer's layout hook (``edgesim.trace``): the weight as one stream in the nested
        prefix layout, one ``WeightBlock`` per level.

        Block ``<block_id>#Lk`` holds the bytes the stream adds for level k
        (``encodings.nested_bytes``, encoding ``nested``), so sub-network k reads the blocks of
        levels 1..k, a prefix of the stream. Its ``encoded`` also holds the segment's bytes
        under each generic sparse encoding (``encodings.segment_candidates``: the level-k
        weights alone, the scales with level 1), of which ``encodings.resolve`` takes the
        smallest the hardware decodes. Elements are split so that the blocks together
        count the tensor once. ``latent`` is the unmasked weight, quantized per output channel
        at ``precision`` after level-0 weights are zeroed. Returns all the blocks, the ids the
        current level reads and the nonzeros of the current sub-network. With per-level
        BatchNorm (``level_norm_channels``), blocks ``<block_id>#Nk`` (k >= 2) hold level k's
        folded scales and biases: stored, not read in addition (see the module docstring).
        """
        from edgesim.trace.weights import bits_of, quantize
        from edgesim.workload import WeightBlock

        levels = self.levels.detach().cpu().numpy().astype(np.int64)
        n_levels = max(int(levels.max()), self.level)
        values = latent.detach().float().cpu().numpy()
        q, scales = quantize(values * (levels >= 1), precision, channel_axis=0)
        bits, nscales = bits_of(precision), int(scales.size)
        levels = np.where(q != 0, levels, 0)      # quantized to zero: in no level
        prefix = encodings.nested_bytes(levels, bits, scales=nscales, n_levels=n_levels)
        counts = [int((levels == k).sum()) for k in range(1, n_levels + 1)]
        norms = []
        for k in range(2, n_levels + 1) if self.level_norm_channels else ():
            size = int(self.level_norm_channels) * LEVEL_NORM_BYTES
            norms.append(WeightBlock(
                f"{block_id}#N{k}", 2 * int(self.level_norm_channels),
                2 * int(self.level_norm_channels), 32, "dense", size, size,
                {"shape": (int(self.level_norm_channels), 2), "role": "aux",
                 "precision": precision, "norm_of_level": k, "parameter": block_id}))
        blocks = []
        for k in range(1, n_levels + 1):
            sid = f"{block_id}#L{k}"
            stored = prefix[k - 1] - (prefix[k - 2] if k > 1 else 0)
            elements = q.size - sum(counts[1:]) if k == 1 else counts[k - 1]
            dense = encodings.stored_bytes(q, "dense", bits, nscales) if k == 1 else 0
            segment = np.where(levels == k, q, 0)
            encoded = {"nested": int(stored), **encodings.segment_candidates(
                segment, bits, nscales if k == 1 else 0)}
            blocks.append(WeightBlock(
                sid, int(elements), counts[k - 1], bits, "nested", int(stored), int(dense),
                {"shape": tuple(q.shape), "role": "weight", "precision": precision,
                 "level": k, "levels": n_levels, "parameter": block_id}, encoded=encoded))
        return ([*blocks, *norms], [b.id for b in blocks[:self.level]],
                sum(counts[:self.level]))


class NestedModel(nn.Module):
    """A model with N nested sparse sub-networks; ``set_level(k)`` picks sub-network k.

    ``levels`` maps weight names of ``model`` (``nested_levels`` keys) to level tensors. The
    wrapped model is ``self.net``; weights at level 0 are zeroed (pruned in every level), the rest
    keep their values and are masked at forward time. ``edgesim_nested_levels``, ``masks()`` and
    ``latent_weights()`` are keyed by the latent weight's parameter name seen from this wrapper
    (``"net.<module>.parametrizations.weight.original"``).
    """

    def __init__(self, model: nn.Module, levels: Mapping[str, torch.Tensor],
                 level: int | None = None) -> None:
        super().__init__()
        self.net = model
        mods = dict(model.named_modules())
        n_levels = 0
        for wname, lv in levels.items():
            mname = wname.removesuffix(".weight") if wname != "weight" else ""
            m = mods.get(mname)
            if m is None or wname.rsplit(".", 1)[-1] != "weight" or not isinstance(m, _PRUNABLE):
                raise ModelError(f"nested levels name {wname!r}: expected '<conv or linear "
                                 f"module>.weight' of {type(model).__name__}")
            if tuple(lv.shape) != tuple(m.weight.shape):
                raise ModelError(f"nested levels of {wname!r} have shape {tuple(lv.shape)}; "
                                 f"expected the weight's shape {tuple(m.weight.shape)}")
            n_levels = max(n_levels, int(lv.max().item()) if lv.numel() else 0)
        if n_levels < 1:
            raise ModelError("nested levels: no weight has a level >= 1; expected N >= 1 levels")
        self.n_levels = n_levels
        self.level = n_levels if level is None else self._check_level(level)
        self._masks: dict[str, LevelMask] = {}
        for wname, lv in levels.items():
            mname = wname.removesuffix(".weight") if wname != "weight" else ""
            m = mods[mname]
            with torch.no_grad():
                m.weight[lv.to(m.weight.device) == 0] = 0.0
            pm = LevelMask(lv.detach().clone().to(m.weight.device), self.level)
            parametrize.register_parametrization(m, "weight", pm)
            m.edgesim_levels = pm.levels
            self._masks[_latent_name(mname)] = pm

    def _check_level(self, k: int) -> int:
        if not 1 <= int(k) <= self.n_levels:
            raise ModelError(f"nested level {k} out of range; expected 1..{self.n_levels}")
        return int(k)

    @property
    def num_levels(self) -> int:
        """N, the number of nested sub-networks."""
        return self.n_levels

    def set_level(self, k: int) -> None:
        """Run sub-network ``k`` (1 = sparsest, N = densest) from the next forward on; with
        per-level BatchNorm (``level_batchnorm``), load level k's running statistics."""
        self.level = self._check_level(k)
        for pm in self._masks.values():
            pm.level = self.level
        stats = getattr(self, "level_norms", {}).get(self.level)
        if stats:
            mods = dict(self.named_modules())
            with torch.no_grad():
                for name, (mean, var) in stats.items():
                    mods[name].running_mean.copy_(mean)
                    mods[name].running_var.copy_(var)

    @property
    def edgesim_nested_levels(self) -> dict[str, torch.Tensor]:
        """Latent weight parameter name (from this wrapper) -> int8 levels tensor."""
        return {name: pm.levels for name, pm in self._masks.items()}

    def masks(self) -> dict[str, LevelMask]:
        """Latent weight parameter name -> its ``LevelMask`` parametrization."""
        return dict(self._masks)

    def latent_weights(self) -> dict[str, torch.Tensor]:
        """Latent weight parameter name -> the unmasked (latent) weight parameter."""
        params = dict(self.named_parameters())
        return {name: params[name] for name in self._masks}

    def sparsity(self, k: int | None = None) -> float:
        """Fraction of zero weights over all masked weights in sub-network ``k`` (default: the
        current level)."""
        k = self.level if k is None else self._check_level(k)
        total = sum(pm.levels.numel() for pm in self._masks.values())
        zeros = sum(level_sparsity(pm.levels, k) * pm.levels.numel()
                    for pm in self._masks.values())
        return zeros / total if total else 0.0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)


def _backward_routed(model: NestedModel, loss: torch.Tensor, k: int, masking: bool) -> None:
    """``loss.backward()`` of sub-network ``k``; with ``masking``, only the latent weights of
    level k keep the gradient it adds (gradient masking, see the module docstring)."""
    if not masking:
        loss.backward()
        return
    latent = model.latent_weights()
    saved = {n: None if p.grad is None else p.grad.clone() for n, p in latent.items()}
    loss.backward()
    for name, pm in model.masks().items():
        g = latent[name].grad
        if g is None:
            continue
        new = g if saved[name] is None else g - saved[name]
        routed = new * (pm.levels == k).to(g.dtype)
        g.copy_(routed if saved[name] is None else saved[name] + routed)


def train_nested(model: NestedModel, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                 epochs: int = 1, lr: float = 1e-2, steps: int | None = None,
                 schedule: str = "round_robin", gradient_masking: bool = True,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 ) -> list[float]:
    """Train all nested sub-networks; returns the loss of each step.

    ``schedule="round_robin"``: step i trains sub-network ``k = i % N + 1`` alone.
    ``schedule="sum"``: each step sums the losses of all N sub-networks. With
    ``gradient_masking`` (the module docstring's reading of the paper) a latent weight of level
    j learns only from sub-network j: a round-robin step on sub-network k changes only the
    weights of level k, and under ``sum`` a level-j weight gets the gradient of sub-network
    j's loss alone. Without it (plain masked joint training) a level-j weight learns from every
    sub-network that holds it (k >= j). Non-prunable parameters (norms, biases) always learn
    from every sub-network. The optimizer is plain SGD (no momentum, no weight decay), so a
    zero gradient means an unchanged weight. Stops after ``steps`` steps when given. The
    model's level is restored afterwards; the model is left in train mode.
    """
    if schedule not in ("round_robin", "sum"):
        raise ModelError(f"train_nested schedule {schedule!r}; expected 'round_robin' or 'sum'")
    if epochs < 1 or (steps is not None and steps < 1):
        raise ModelError(f"train_nested: epochs={epochs}, steps={steps}; expected >= 1")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    start_level = model.level
    losses: list[float] = []
    model.train()
    try:
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                if schedule == "round_robin":
                    k = len(losses) % model.n_levels + 1
                    model.set_level(k)
                    loss = loss_fn(model(x), y)
                    _backward_routed(model, loss, k, gradient_masking)
                else:
                    loss = torch.zeros(())
                    for k in range(1, model.n_levels + 1):
                        model.set_level(k)
                        loss_k = loss_fn(model(x), y)
                        _backward_routed(model, loss_k, k, gradient_masking)
                        loss = loss + loss_k.detach()
                opt.step()
                losses.append(float(loss.detach()))
                if steps is not None and len(losses) >= steps:
                    return losses
    finally:
        model.set_level(start_level)
    return losses


def level_batchnorm(model: NestedModel,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> NestedModel:
    """Give every BatchNorm of ``model`` one set of running statistics per level: for each
    level k, re-estimated on ``batches`` (the cumulative mean and variance over them, train
    mode, weights untouched), kept in ``model.level_norms[k]`` and loaded by ``set_level(k)``.
    Each masked conv a BatchNorm follows stores its per-level folded scales and biases
    (``LevelMask.level_norm_channels``: ``#Nk`` blocks of the trace). Returns ``model`` in eval
    mode at its level."""
    data = list(batches)
    bns = {n: m for n, m in model.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    start = model.level
    saved = {n: m.momentum for n, m in bns.items()}
    model.level_norms = {}
    try:
        for k in range(1, model.n_levels + 1):
            model.set_level(k)
            for m in bns.values():
                m.reset_running_stats()
                m.momentum = None
            model.train()
            with torch.no_grad():
                for x, _ in data:
                    model(x)
            model.level_norms[k] = {n: (m.running_mean.clone(), m.running_var.clone())
                                    for n, m in bns.items()}
    finally:
        for n, m in bns.items():
            m.momentum = saved[n]
    followed = _bn_followers(model.net)
    for name, pm in model.masks().items():
        mname = name.removeprefix("net.").removesuffix(".parametrizations.weight.original")
        if mname in followed:
            pm.level_norm_channels = int(pm.levels.shape[0])
    model.set_level(start)
    return model.eval()


def _bn_followers(model: nn.Module) -> set[str]:
    """Conv/linear modules directly followed by a BatchNorm sibling (folded when deployed)."""
    out: set[str] = set()
    for pname, parent in model.named_modules():
        prev: tuple[str, nn.Module] | None = None
        for cname, child in parent.named_children():
            if (prev is not None and isinstance(prev[1], _PRUNABLE)
                    and isinstance(child, nn.modules.batchnorm._BatchNorm)):
                out.add(f"{pname}.{prev[0]}" if pname else prev[0])
            prev = (cname, child)
    return out


def _resnet50_dense(*, num_classes: int = 1000, **_: Any) -> nn.Module:
    from edgesim.zoo.resnet import resnet50
    return resnet50(num_classes=num_classes)


def nested_resnet50(seed: int = 0, levels: int = 3, densities: Sequence[float] = DEFAULT_DENSITIES,
                    level: int | None = None, *, num_classes: int = 1000,
                    first_last_densities: Sequence[float] | None = None,
                    base: nn.Module | None = None) -> NestedModel:
    """A ResNet-50 with ``levels`` nested magnitude-pruned sub-networks, running sub-network
    ``level`` (default the densest): of ``base`` (a user's dense ResNet-50, e.g. loaded from a
    checkpoint) or of a seeded random init (no pretrained weights ship)."""
    if len(densities) != levels:
        raise ModelError(f"nested_resnet50: levels={levels} but {len(densities)} densities "
                         f"{tuple(densities)}; expected one density per level")
    torch.manual_seed(seed)
    net = base if base is not None else _resnet50_dense(num_classes=num_classes)
    lv = nested_levels(net, densities, first_last_densities=first_last_densities)
    return NestedModel(net, lv, level=levels if level is None else level)


nested_resnet50.edgesim_dense = _resnet50_dense  # type: ignore[attr-defined]


def nested_storage_report(model: NestedModel, bits: int = 8) -> list[dict[str, Any]]:
    """Stored bytes of the one nested stream vs N separately stored CSR sub-networks.

    One row per masked weight (``layer`` = its latent parameter name, the WeightBlock id a traced
    workload gives it) and a last row ``layer="total"``. Columns: ``layer``,
    ``elements``, ``nnz`` (list, sub-network 1..N), ``nested_bytes`` (list: cumulative prefix
    bytes that sub-network k reads, ``encodings.nested_bytes``), ``stream_bytes`` (the whole stream,
    = ``nested_bytes[-1]``), ``best_bytes`` (list: what sub-network k reads when each level
    segment takes the smallest of ``nested`` and ``encodings.SEGMENT_ENCODINGS``, a hardware
    decoding them all), ``separate_bytes`` (``encodings.separate_csr_bytes``: N CSR models,
    each with its scales) and ``saving`` (1 - stream / separate). Values are ``bits`` wide with
    one fp32 scale per output channel (per-channel quantization).
    """
    n = model.n_levels
    rows: list[dict[str, Any]] = []
    for name, pm in model.masks().items():
        lv = pm.levels.cpu().numpy()
        scales = int(lv.shape[0]) if lv.ndim else 1
        prefix = encodings.nested_bytes(lv, bits, scales=scales, n_levels=n)
        separate = encodings.separate_csr_bytes(lv, bits, scales=scales, n_levels=n)
        nnz = [int(((lv >= 1) & (lv <= k)).sum()) for k in range(1, n + 1)]
        best, acc = [], 0
        for k in range(1, n + 1):
            seg = encodings.segment_candidates((lv == k).astype(np.int8), bits,
                                               scales if k == 1 else 0)
            acc += min(prefix[k - 1] - (prefix[k - 2] if k > 1 else 0), *seg.values())
            best.append(acc)
        rows.append({"layer": name, "elements": int(lv.size), "nnz": nnz,
                     "nested_bytes": prefix, "stream_bytes": prefix[-1],
                     "best_bytes": best, "separate_bytes": separate})
    total = {
        "layer": "total",
        "elements": sum(r["elements"] for r in rows),
        "nnz": [sum(r["nnz"][k] for r in rows) for k in range(n)],
        "nested_bytes": [sum(r["nested_bytes"][k] for r in rows) for k in range(n)],
        "stream_bytes": sum(r["stream_bytes"] for r in rows),
        "best_bytes": [sum(r["best_bytes"][k] for r in rows) for k in range(n)],
        "separate_bytes": sum(r["separate_bytes"] for r in rows),
    }
    rows.append(total)
    for r in rows:
        r["saving"] = 1.0 - r["stream_bytes"] / r["separate_bytes"] if r["separate_bytes"] else 0.0
    return rows


# -- family hooks (edgesim.zoo.family) ---------------------------------------------------------

from edgesim.zoo.family import Family  # noqa: E402  (appended section: the family's hooks)


class NestedFamily(Family):
    """Nested models: ``model.level=K`` (or ``name@K``) selects sub-network K of the stream."""

    name = "nested"

    def build(self, spec: Any, weights: str | None, seed: int, data: str | None = None) -> Any:
        """The seeded nested model; with ``weights``, a dense checkpoint is loaded into the
        dense model and nested (levels by magnitude, which reads no data: ``data`` is not
        needed), a nested one (latent weights and levels) loads as itself
        (``edgesim.zoo.sensitivity.transformed_build``)."""
        if weights is None:
            return super().build(spec, weights, seed, data)
        from edgesim.zoo.sensitivity import transformed_build

        def restore(model: nn.Module) -> nn.Module:
            model.set_level(model.level)   # levels loaded in place; re-arm the masks
            return model

        # magnitude levels: the loaded weights decide, no data is read
        return transformed_build(spec, weights, seed, data, restore=restore,
                                 what="nested model", reads_data=False)

    def select_level(self, spec: Any, model: Any, level: int | None) -> Any:
        if level is None:
            return model
        if not hasattr(model, "set_level"):
            raise ModelError(f"model {spec.name} has no nesting levels; model.level={level} "
                             "applies to nested models only")
        n = int(getattr(model, "levels", getattr(model, "num_levels", level)))
        if level > n:
            raise ModelError(f"model {spec.name}: level {level} out of range 1..{n}")
        model.set_level(level)
        return model
