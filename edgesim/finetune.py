"""``edgesim finetune``: soft-routing fine-tuning of a routed tree, saved as a checkpoint.

Public names: ``register``, ``cmd_finetune``, ``load_labelled``, ``finetune``.

    python -m edgesim finetune sigmab_r50_c100 --data train.pt --checkpoint tree.pt \\
        [--epochs 1] [--steps N] [--lr 1e-4] [--batch 32] [--weights tree.pt]
    python -m edgesim run npu_small --model sigmab_r50_c100 --weights tree.pt

``--data`` is a labelled set: a ``.pt`` file holding ``(inputs, labels)`` or ``{"inputs": ...,
"labels": ...}``, an ``.npz`` with arrays ``inputs`` and ``labels``, or (images) a folder with one
sub-folder of images per class. Without ``--data`` the model's seeded clustered synthetic inputs,
labelled by cluster, are used (a demonstration, not a training set). The checkpoint holds the
tree's structure and weights (``edgesim.zoo.sigmab.save_tree``); ``--weights`` reloads it, in
``finetune`` to continue and in ``run`` to simulate the fine-tuned tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgesim.errors import DataError, ModelError

__all__ = ["cmd_finetune", "finetune", "load_labelled", "register"]


def register(sub) -> None:
    f = sub.add_parser("finetune", help="soft-routing fine-tuning of a routed tree")
    f.add_argument("model", help="a routed model (sigmab_r50, sigmab_r50_c100, sigmab_pn2)")
    f.add_argument("--data", help="labelled data: .pt (inputs, labels), .npz, or class folders")
    f.add_argument("--checkpoint", required=True, help="write the fine-tuned tree here")
    f.add_argument("--weights", help="start from this tree checkpoint")
    f.add_argument("--epochs", type=int, default=1)
    f.add_argument("--steps", type=int, help="stop after this many optimizer steps")
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--batch", type=int, default=32)
    f.add_argument("--samples", type=int, default=64,
                   help="synthetic samples when no --data is given")
    f.add_argument("--seed", type=int, default=0)


def load_labelled(path: str | Path, kind: str, shape: tuple[int, ...]):
    """(inputs, labels) tensors from a .pt / .npz file or an image folder of class folders."""
    import numpy as np
    import torch

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
             log=None) -> list[float]:
    """Fine-tune ``model`` (a registered routed tree) and save it; returns the step losses."""
    import torch

    from edgesim.build import _built_model
    from edgesim.zoo import data as mdata
    from edgesim.zoo.registry import get_spec
    from edgesim.zoo.sigmab import fine_tune, save_tree

    spec = get_spec(model)
    if not spec.dynamic:
        raise ModelError(f"model '{model}' is not a routed tree; finetune takes "
                         "sigmab_r50, sigmab_r50_c100 or sigmab_pn2")
    tree = _built_model(spec, weights, seed)
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


def cmd_finetune(a) -> int:
    def log(step: int, loss: float) -> None:
        if sys.stderr.isatty():
            print(f"\redgesim: step {step} loss {loss:.4f}", end="", file=sys.stderr,
                  flush=True)
    losses = finetune(a.model, checkpoint=a.checkpoint, data=a.data, weights=a.weights,
                      epochs=a.epochs, steps=a.steps, lr=a.lr, batch=a.batch,
                      samples=a.samples, seed=a.seed, log=log)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    first = f"{losses[0]:.4f}" if losses else "-"
    last = f"{losses[-1]:.4f}" if losses else "-"
    print(f"{a.model}: {len(losses)} steps, loss {first} -> {last}; saved {a.checkpoint}")
    return 0
