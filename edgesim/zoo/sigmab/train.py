"""Soft-routing fine-tuning of a tree, and fine-tuning a registered tree on labelled data.

Public names: ``fine_tune``, ``load_labelled``, ``finetune``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgesim.errors import DataError, ModelError
from edgesim.zoo.sigmab.tree import SigmaTree

__all__ = ["fine_tune", "finetune", "load_labelled"]


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


def load_labelled(path: str | Path, kind: str, shape: tuple[int, ...]):
    """(inputs, labels) tensors from a .pt / .npz file or an image folder of class folders.

    A ``.pt`` file holds ``(inputs, labels)`` or ``{"inputs": ..., "labels": ...}`` (read with
    ``weights_only=True``), an ``.npz`` arrays ``inputs`` and ``labels``; a folder has one
    sub-folder of images per class (labels by sorted folder name). ``DataError`` names the path.
    """
    import numpy as np

    from edgesim.zoo import data as mdata

    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder (expected labelled data)")
    if p.is_dir():
        classes = sorted(d for d in p.iterdir() if d.is_dir())
        if not classes:
            raise DataError(f"{p}: expected one sub-folder of images per class")
        xs, ys = [], []
        for label, d in enumerate(classes):
            x = mdata.load_inputs(d, kind=kind, shape=shape)
            xs.append(x)
            ys.append(torch.full((x.shape[0],), label, dtype=torch.long))
        return torch.cat(xs), torch.cat(ys)
    try:
        if p.suffix == ".npz":
            z = np.load(p)
            x, y = torch.from_numpy(z["inputs"]), torch.from_numpy(z["labels"])
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
            x, y = (obj["inputs"], obj["labels"]) if isinstance(obj, dict) else obj
    except (KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        raise DataError(f"{p}: expected (inputs, labels) or {{'inputs', 'labels'}} "
                        f"({type(exc).__name__}: {exc})") from None
    x, y = torch.as_tensor(x).float(), torch.as_tensor(y).long()
    if tuple(x.shape[1:]) != tuple(shape) or x.shape[0] != y.shape[0]:
        raise DataError(f"{p}: inputs {tuple(x.shape)} and labels {tuple(y.shape)}; expected "
                        f"inputs (N, {', '.join(map(str, shape))}) and N labels")
    return x, y


def finetune(model: str, *, checkpoint: str, data: str | None = None,
             weights: str | None = None, epochs: int = 1, steps: int | None = None,
             lr: float = 1e-4, batch: int = 32, samples: int = 64, seed: int = 0,
             log: Callable[[int, float], None] | None = None,
             builder: Callable[[Any, str | None, int], SigmaTree] | None = None) -> list[float]:
    """Fine-tune ``model`` (a registered routed tree) and save it; returns the step losses.

    Without ``data``, the model's seeded clustered synthetic inputs labelled by cluster are used
    (``samples`` of them). ``builder(spec, weights, seed)`` gives the tree to train, which this
    function then modifies (the CLI passes a copy of the cached built model); the default builds
    it through the model's family (a tree checkpoint in ``weights`` is loaded as it is).
    """
    from edgesim.zoo import data as mdata
    from edgesim.zoo.registry import get_family, get_spec
    from edgesim.zoo.sigmab.checkpoint import save_tree

    spec = get_spec(model)
    if not spec.dynamic:
        raise ModelError(f"model '{model}' is not a routed tree; finetune takes "
                         "sigmab_r50, sigmab_r50_c100 or sigmab_pn2")
    if builder is None:
        tree = get_family(spec.family).build(spec, weights, seed)
    else:
        tree = builder(spec, weights, seed)
    kind = "points" if len(spec.input_shape) == 2 else "image"
    if data is not None:
        x, y = load_labelled(data, kind, tuple(spec.input_shape))
    elif kind == "points":
        x, y = mdata.synthetic_points(samples, points=spec.input_shape[0], seed=seed + 7)
    else:
        x, y = mdata.synthetic_images(samples, shape=tuple(spec.input_shape), seed=seed + 7)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=batch, shuffle=True, generator=g)
    torch.manual_seed(seed)
    losses = fine_tune(tree, loader, epochs=epochs, lr=lr, steps=steps, log=log)
    out = Path(checkpoint)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_tree(tree, out)
    except OSError as exc:
        raise ModelError(f"--checkpoint {out}: cannot write ({exc.strerror})") from None
    return losses
