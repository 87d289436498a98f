"""Which weights Mix-and-Match prunes, and the sensitivity scores that rank them.

Public names: ``prunable_weights``, ``norm_weights``, ``layer_weights``, ``magnitude_scores``,
``gradient_scores``, ``product_scores``, ``grasp_scores`` (re-exported by ``edgesim.zoo.pruning``),
``float64_copy``,
``calibration_batches``, ``require_prunable``, ``Batch``, ``LossFn``; and, shared by the sparse,
nested and signed-binary families, ``data_batches`` (calibration batches from ``--data``),
``transformed_build`` (a user's checkpoint: dense -> loaded then transformed; transformed ->
loaded as itself), ``CALIB_BATCHES``, ``CALIB_BATCH_SIZE``, ``CALIB_LIMIT``.

Calibration data is any re-iterable of ``(inputs, targets)`` batches; only the first ``steps``
are used. A *layer* is named by its weight parameter (``"layer1.0.conv1.weight"``).

The gradient-based scores are float64: computed on a float64 copy of the model with float64
inputs (``float64_copy``), so a ranking of them does not hang on float32 rounding, which
differs between CPUs (vector widths) and BLAS thread counts; the scores differ between machines
by ~1e-16 relative at most, far below the gap between two ranked weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgesim.errors import DataError, ModelError

__all__ = [
    "CALIB_BATCHES",
    "CALIB_BATCH_SIZE",
    "CALIB_LIMIT",
    "data_batches",
    "float64_copy",
    "gradient_scores",
    "grasp_scores",
    "magnitude_scores",
    "norm_weights",
    "product_scores",
    "prunable_weights",
    "transformed_build",
]

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)

# which weights


def _weights_of(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> dict[str, nn.Parameter]:
    out: dict[str, nn.Parameter] = {}
    for mod_name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if isinstance(mod, kinds) and isinstance(weight, nn.Parameter):
            out[f"{mod_name}.weight" if mod_name else "weight"] = weight
    return out


def prunable_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Conv and Linear weights by parameter name, in module order (the pruned layers)."""
    return _weights_of(model, _PRUNABLE)


def layer_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Prunable and norm weights together, in module order (every layer a range is given to)."""
    return _weights_of(model, _PRUNABLE + _NORMS)


def norm_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """BatchNorm/LayerNorm/GroupNorm weights by parameter name (kept at 0 % sparsity)."""
    return _weights_of(model, _NORMS)


# sensitivities


def calibration_batches(loader: Iterable[Batch], steps: int) -> list[Batch]:
    """The first ``steps`` ``(inputs, targets)`` batches of ``loader``; one-line errors."""
    if steps < 1:
        raise DataError(f"calibration steps must be >= 1, got {steps}")
    out: list[Batch] = []
    for batch in loader:
        if len(out) == steps:
            break
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise DataError(
                f"calibration batch {len(out)}: expected an (inputs, targets) pair, got "
                f"{type(batch).__name__}"
            )
        out.append((batch[0], batch[1]))
    if not out:
        raise DataError("calibration loader yielded no batches; expected (inputs, targets) pairs")
    return out


def require_prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """``prunable_weights(model)``, or a ``ModelError`` when there are none."""
    params = prunable_weights(model)
    if not params:
        raise ModelError(f"{type(model).__name__}: no Conv/Linear weights to prune")
    return params


def magnitude_scores(model: nn.Module) -> dict[str, Tensor]:
    """``|w|`` for every prunable weight."""
    return {n: p.detach().abs() for n, p in require_prunable(model).items()}


def float64_copy(model: nn.Module) -> nn.Module:
    """A float64 deep copy of ``model`` (parameters and floating buffers), in eval mode."""
    return copy.deepcopy(model).to(torch.float64).eval()


def _f64(x: Tensor) -> Tensor:
    return x.to(torch.float64) if x.is_floating_point() else x


def _grads(
    model: nn.Module, batches: Sequence[Batch], loss_fn: LossFn, params: dict[str, nn.Parameter],
) -> list[list[Tensor]]:
    """Per-batch float64 gradients of the loss w.r.t. ``params`` (on ``float64_copy(model)``,
    eval mode; ``model`` and its ``.grad`` are untouched)."""
    m64 = float64_copy(model)
    own = dict(m64.named_parameters())
    plist = [own[n] for n in params]
    out = []
    for x, y in batches:
        loss = loss_fn(m64(_f64(x)), y)
        out.append(list(torch.autograd.grad(loss, plist, allow_unused=True)))
    return out


def gradient_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """SNIP-like ``|dL/dw|``, averaged over the first ``steps`` calibration batches (float64).

    Each batch contributes the absolute value of its own gradient (mean of ``|g_b|``), so
    gradients of opposite sign in different batches do not cancel.
    """
    params = require_prunable(model)
    per_batch = _grads(model, calibration_batches(loader, steps), loss_fn, params)
    scores = {}
    for i, (name, p) in enumerate(params.items()):
        acc = torch.zeros_like(p, dtype=torch.float64, requires_grad=False)
        for grads in per_batch:
            if grads[i] is not None:
                acc += grads[i].abs()
        scores[name] = acc / len(per_batch)
    return scores


def product_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """``|w| * |dL/dw|`` (the SNIP saliency; the paper's "product" sensitivity), float64."""
    grads = gradient_scores(model, loader, loss_fn, steps)
    return {n: p.detach().to(torch.float64).abs() * grads[n]
            for n, p in require_prunable(model).items()}


def grasp_scores(
    model: nn.Module, loader: Iterable[Batch], loss_fn: LossFn = F.cross_entropy, steps: int = 1,
) -> dict[str, Tensor]:
    """GraSP scores ``-w * (H g)`` (Wang et al., ICLR 2020), summed over ``steps`` batches.

    ``H g`` is exact: the gradient of ``g . stopgrad(g)`` w.r.t. ``w`` (autograd double-backward),
    where ``g`` is the batch gradient. GraSP removes the weights with the **highest** score.
    Float64, on ``float64_copy(model)`` (``model`` is untouched).
    """
    params = require_prunable(model)
    m64 = float64_copy(model)
    own = dict(m64.named_parameters())
    plist = [own[n] for n in params]
    acc = [torch.zeros_like(p, requires_grad=False) for p in plist]
    for x, y in calibration_batches(loader, steps):
        g = torch.autograd.grad(
            loss_fn(m64(_f64(x)), y), plist, create_graph=True, allow_unused=True
        )
        z = sum((gi * gi.detach()).sum() for gi in g if gi is not None)
        hg = torch.autograd.grad(z, plist, allow_unused=True)
        for a, p, h in zip(acc, plist, hg, strict=True):
            if h is not None:
                a -= p.detach() * h
    return dict(zip(params, acc, strict=True))


# calibration data and checkpoints of a transform (shared by the sparse, nested and
# signed-binary families: a user's dense checkpoint is loaded first, then transformed)

#: Seeded synthetic calibration when no ``--data`` is given: batches x images per batch.
CALIB_BATCHES = 2
CALIB_BATCH_SIZE = 8
#: At most this many ``--data`` inputs calibrate a transform of a user's checkpoint (the paper
#: calibrates on 5-10 % of the training set; 128 images keep ResNet-50's GraSP pass ~1 min).
CALIB_LIMIT = 128


def data_batches(path: str, *, shape: Sequence[int], model: nn.Module,
                 batch_size: int = CALIB_BATCH_SIZE, limit: int | None = None) -> list[Batch]:
    """Calibration batches from ``--data``: labelled data (what ``load_labelled`` reads: a file
    of inputs and labels, or a folder of class folders) keeps its labels; inputs alone (a
    .pt/.npy tensor, an image folder) are labelled by ``model``'s own prediction (argmax), so
    the gradients a sensitivity reads are those of the model's decision on real inputs. At most
    ``limit`` inputs (None: all).
    """
    from edgesim.zoo import data as mdata

    kind = "points" if len(shape) == 2 and shape[-1] == 3 else "image"
    shape = tuple(int(s) for s in shape)
    try:
        x, y = mdata.load_labelled(path, kind, shape)
    except DataError:
        x, y = mdata.load_inputs(path, kind=kind, shape=shape), None
    if limit is not None:
        x = x[:limit]
        y = None if y is None else y[:limit]
    if x.shape[0] == 0:
        raise DataError(f"{path}: holds no inputs; expected calibration inputs of shape "
                        f"(n, {', '.join(map(str, shape))})")
    x = x.float()
    if y is None:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            y = torch.cat([model(x[i:i + batch_size]).argmax(dim=1)
                           for i in range(0, x.shape[0], batch_size)])
        model.train(was_training)
    y = y.long()
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]


def _problem(state: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> str | None:
    """Why ``state`` is not ``expected`` (first key at fault), None when keys and shapes agree."""
    for key, value in expected.items():
        if key not in state:
            return f"missing key '{key}' (expected shape {tuple(value.shape)})"
        if tuple(state[key].shape) != tuple(value.shape):
            return (f"key '{key}' has shape {tuple(state[key].shape)}, expected "
                    f"{tuple(value.shape)}")
    extra = [k for k in state if k not in expected]
    if extra:
        return f"unexpected key '{extra[0]}' ({len(extra)} keys the model does not have)"
    return None


def transformed_build(spec: Any, weights: str, seed: int, data: str | None, *,
                      transform: Callable[[nn.Module, list[Batch] | None], nn.Module]
                      | None = None,
                      skeleton: Callable[[nn.Module], nn.Module] | None = None,
                      restore: Callable[[nn.Module], nn.Module] | None = None,
                      what: str = "transformed", reads_data: bool = True) -> nn.Module:
    """The model of a transform family (``spec``) from the checkpoint file ``weights``.

    The spec's factory carries ``edgesim_dense(**kwargs)``, the dense model it transforms.
    A checkpoint whose keys and shapes are that dense model's is loaded into it and
    ``transform(dense, calib)`` is applied (``calib``: batches from ``data`` when given, else
    None: the factory's seeded synthetic calibration). One whose keys and shapes are the
    transformed model's (``skeleton(dense)``: the transformed structure, its values untrained)
    is loaded as itself, then ``restore(model)`` rebuilds what the state_dict does not hold.
    ``reads_data=False``: the transform reads no data (``calib`` is None even with ``data``).
    By default ``transform`` is the spec's factory on the loaded dense model,
    ``factory(**kwargs, base=dense[, calib=calib])``, and ``skeleton`` the same without
    calibration.
    Calibration reads at most ``CALIB_LIMIT`` inputs of ``data``.
    Anything else is a ``ModelError`` naming the file and the first key at fault: against the
    transformed model when the file holds a key only that model has, else against the dense
    one. Both are seeded with ``seed``.
    """
    from edgesim.zoo.registry import _import_factory, _state_dict

    factory = _import_factory(spec.name, spec.factory)
    dense_of = getattr(factory, "edgesim_dense", None)
    if not callable(dense_of):
        raise ModelError(f"model '{spec.name}': factory '{spec.factory}' has no edgesim_dense "
                         "(the dense model a checkpoint is loaded into before the transform)")
    kwargs = {k: v for k, v in spec.kwargs.items() if k != "init"}
    if skeleton is None:
        def skeleton(dense: nn.Module) -> nn.Module:
            return factory(**kwargs, base=dense)
    if transform is None:
        def transform(dense: nn.Module, calib: list[Batch] | None) -> nn.Module:
            extra = {} if calib is None else {"calib": calib}
            return factory(**kwargs, base=dense, **extra)
    state = _state_dict(weights)
    torch.manual_seed(seed)
    dense = dense_of(**kwargs)
    dense_problem = _problem(state, dense.state_dict())
    if dense_problem is None:
        dense.load_state_dict(state)
        calib = None if data is None or not reads_data else data_batches(
            data, shape=spec.input_shape, model=dense, limit=CALIB_LIMIT)
        torch.manual_seed(seed)
        return transform(dense, calib).eval()
    model = skeleton(dense)
    expected = model.state_dict()
    problem = _problem(state, expected)
    if problem is None:
        model.load_state_dict(state)
        return (restore(model) if restore is not None else model).eval()
    # the transformed model it is, if it holds a key only the transformed model has
    own = set(expected) - set(dense.state_dict())
    closer, why = ((f"the {what} {spec.name}", problem) if own & set(state) else
                   (f"the dense model {spec.name} transforms", dense_problem))
    raise ModelError(f"checkpoint file '{weights}' is neither the dense nor the {what} "
                     f"{spec.name} state_dict: against {closer}, {why}")
