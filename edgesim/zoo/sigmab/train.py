"""Soft-routing fine-tuning of a tree, and fine-tuning a registered tree on labelled data.

Public names: ``fine_tune``, ``temperature_schedule``, ``Step``, ``load_labelled``,
``finetune``, ``check_checkpoint_path``, ``save_atomically``.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgesim.errors import DataError, ModelError
from edgesim.outputs import input_file, output_path
from edgesim.zoo.data import load_labelled  # the one labelled-data loader (run --eval's)
from edgesim.zoo.sigmab.tree import SigmaTree

__all__ = ["Step", "check_checkpoint_path", "fine_tune", "finetune", "load_labelled",
           "save_atomically", "temperature_schedule"]


def _balance_loss(gates: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Mean over routers of ``2 x sum_c (q_c - 1/2)^2 + (2 x sum_c f_c q_c - 1)``: q is the
    reach-weighted mean branch probability, f the reach-weighted share of inputs whose argmax
    is branch c (no gradient). The first part is 0 when the probabilities split evenly; the
    second (the Switch Transformer's load term, Fedus et al. 2021) is 0 when the *decisions*
    split evenly and pushes probability away from the branch that takes more than its share,
    which the first cannot see while soft probabilities hover near 1/2 (both reach 1 when one
    branch takes everything)."""
    terms = []
    for reach, probs in gates:
        total = reach.sum().clamp_min(1e-12)
        q = (reach[:, None] * probs).sum(0) / total
        with torch.no_grad():
            won = F.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype)
            f = (reach[:, None] * won).sum(0) / total
        terms.append(2 * ((q - 0.5) ** 2).sum() + (2 * (f * q).sum() - 1))
    return torch.stack(terms).mean() if terms else torch.zeros(())


def temperature_schedule(steps: int, start: float = 1.0, end: float = 0.05,
                         hard: float = 0.25) -> list[float | None]:
    """Routing temperature of each of ``steps`` training steps: geometric from ``start`` to
    ``end`` over the soft phase, then ``None`` (hard routing, straight-through) for the last
    ``hard`` share of the steps (at least the last step when ``hard`` > 0).

    >>> temperature_schedule(5, 1.0, 0.25, hard=0.4)
    [1.0, 0.5, 0.25, None, None]
    """
    if type(steps) is not int or steps < 0:
        raise ModelError(f"temperature schedule: steps={steps}, expected a whole number >= 0")
    if not (0 < end <= start and math.isfinite(start)) or not 0 <= hard <= 1:
        raise ModelError(f"temperature schedule: start={start}, end={end}, hard={hard}; "
                         "expected 0 < end <= start and hard in [0, 1]")
    n_hard = min(steps, max(1 if hard > 0 else 0, round(hard * steps)))
    n_soft = steps - n_hard
    soft = [start * (end / start) ** (i / (n_soft - 1)) if n_soft > 1 else start
            for i in range(n_soft)]
    return [*soft, *([None] * n_hard)]


@dataclass(frozen=True)
class Step:
    """One training step: its number (1, 2, ...), the routing ``temperature`` (None: hard,
    straight-through), the total ``loss`` and its ``ce`` and ``balance`` parts, the mean
    ``entropy`` of the leaf distribution per input (bits; 0 = every input on one leaf), and
    ``load``: the share of the batch each leaf received (its mean probability)."""

    step: int
    temperature: float | None
    loss: float
    ce: float
    balance: float
    entropy: float
    load: tuple[float, ...]

    def line(self, names: list[str] | None = None) -> str:
        """``step 3 T=0.42 loss 2.31 (ce 2.30) entropy 0.71 bits load L-L 0.30 ...``."""
        t = "hard" if self.temperature is None else f"{self.temperature:.3g}"
        names = names or [str(i) for i in range(len(self.load))]
        load = " ".join(f"{n} {v:.2f}" for n, v in zip(names, self.load, strict=False))
        return (f"step {self.step} T={t} loss {self.loss:.4f} (ce {self.ce:.4f}) entropy "
                f"{self.entropy:.3f} bits load {load}")


def _entropy_bits(leaves: torch.Tensor) -> float:
    p = leaves.detach().double().clamp_min(0)
    h = -(p * torch.log2(p.clamp_min(1e-300))).sum(dim=1)
    return float(h.mean()) if h.numel() else 0.0


def _total_steps(loader: Any, epochs: int, steps: int | None) -> int:
    try:
        per_epoch = len(loader)
    except TypeError:
        if steps is None:
            raise ModelError("fine_tune: the loader has no length; give steps") from None
        return steps
    total = epochs * per_epoch
    return total if steps is None else min(steps, total)


def fine_tune(tree: SigmaTree, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
              epochs: int = 1, lr: float = 1e-4, steps: int | None = None, device: str = "cpu",
              log: Callable[[Step], None] | None = None,
              balance: float = 0.01, temperature: tuple[float, float] = (1.0, 0.05),
              hard: float = 0.25, track: float = 0.5, history: list[Step] | None = None,
              epoch_done: Callable[[int], None] | None = None) -> list[float]:
    """Soft-routing fine-tuning: Adam on cross-entropy of the soft-routed output plus
    ``balance`` x the load-balancing term, the routing temperature annealed by
    ``temperature_schedule(total, *temperature, hard)`` so that training ends in hard routing
    (straight-through: the forward pass is the path inference runs). In the soft phase each
    router's centre follows the reach-weighted mean of its inputs with momentum ``track``
    (``Router.track``), as a BatchNorm running mean would; the hard phase leaves it as
    inference uses it. ``loader`` yields
    ``(x, labels)``; stops after ``steps`` steps if given. Returns the loss of every step;
    each step's ``Step`` (temperature, loss, routing entropy, per-leaf load) is appended to
    ``history`` and passed to ``log``; ``epoch_done(epoch)`` is called after each epoch (1, 2,
    ...; ``finetune`` saves the checkpoint there). A loss that is NaN or infinite stops
    training before it changes a weight (``ModelError`` naming the step). BatchNorm statistics
    stay frozen (eval mode), as usual when fine-tuning a pretrained net on small batches: batch
    statistics of a few inputs would shift every router's input. Leaves the tree in eval
    mode."""
    schedule = temperature_schedule(_total_steps(loader, epochs, steps), *temperature, hard)
    tree.to(device).train()
    for m in tree.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    opt = torch.optim.Adam(tree.parameters(), lr=lr)
    losses: list[float] = []
    try:
        for epoch in range(1, epochs + 1):
            if len(losses) >= len(schedule):
                break
            for x, y in loader:
                if len(losses) >= len(schedule):
                    break
                t = schedule[len(losses)]
                soft = tree._soft(x.to(device), temperature[1] if t is None else t,
                                  hard=t is None, track=0.0 if t is None else track)
                ce = F.cross_entropy(soft.out, y.to(device))
                bal = _balance_loss(soft.gates)
                loss = ce + balance * bal if balance else ce
                if not math.isfinite(float(loss.detach())):
                    raise ModelError(f"training stopped at step {len(losses) + 1} (epoch "
                                     f"{epoch}): the loss is {float(loss.detach())}; try a "
                                     "lower --lr or check the data")
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                record = Step(len(losses), t, losses[-1], float(ce.detach()),
                              float(bal.detach()), _entropy_bits(soft.leaves),
                              tuple(round(float(v), 4) for v in
                                    soft.leaves.detach().mean(dim=0)))
                if history is not None:
                    history.append(record)
                if log is not None:
                    log(record)
            if epoch_done is not None:
                epoch_done(epoch)
    finally:
        tree.eval()
    return losses


def check_checkpoint_path(checkpoint: str | Path) -> Path:
    """The real ``--checkpoint`` path (symlinks resolved) once it can be written: a new name or
    a regular file (``edgesim.outputs.output_path``: never a device, FIFO, socket or folder),
    whose folder exists and takes a new file (tried with a temporary file, removed again).
    Nothing is created; ``ModelError`` / ``OutputError`` name the path."""
    out = output_path(checkpoint, "--checkpoint")
    parent = out.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise ModelError(f"--checkpoint {out}: folder {parent} {what}; create it first")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        raise ModelError(f"--checkpoint {out}: cannot write in {parent} ({exc.strerror})"
                         ) from None
    return out


def save_atomically(tree: SigmaTree, out: Path) -> None:
    """``save_tree`` to a temporary file beside ``out``, then renamed over it: ``out`` is
    always a whole checkpoint (the previous one, or the new one), and is checked again to be a
    new name or a regular file just before the rename (``edgesim.outputs.output_path``)."""
    import edgesim.zoo.sigmab.checkpoint as ckpt
    out = output_path(out, "--checkpoint")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        ckpt.save_tree(tree, tmp)
        output_path(out, "--checkpoint")
        os.replace(tmp, out)
    except OSError as exc:
        raise ModelError(f"--checkpoint {out}: cannot write ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: The largest value of each count ``finetune`` takes (the command line states them in its
#: help): more epochs or steps than a run could finish, a batch past what a CPU trains, or more
#: synthetic samples than are ever useful, are refused before any work.
LIMITS = {"--epochs": 10_000, "--steps": 10_000_000, "--batch": 1024, "--samples": 100_000}
#: Synthetic training inputs may take at most this many bytes (float32): ``--samples`` x the
#: model's input elements x 4 (1 GiB: 1,783 samples of 3 x 224 x 224).
MAX_SAMPLE_BYTES = 1 << 30


def _check_args(epochs: int, steps: int | None, lr: float, batch: int, samples: int) -> None:
    for flag, value in (("--epochs", epochs), ("--batch", batch), ("--samples", samples),
                        ("--steps", steps)):
        if flag == "--steps" and value is None:
            continue
        if type(value) is not int or not 1 <= value <= LIMITS[flag]:
            shown = repr(value) if len(repr(value)) <= 30 else repr(value)[:27] + "..."
            raise ModelError(f"{flag} {shown}: expected a whole number in "
                             f"1..{LIMITS[flag]:,}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and 0 < lr <= 1):
        raise ModelError(f"--lr {lr}: expected a finite learning rate in (0, 1]")


def finetune(model: str, *, checkpoint: str, data: str | None = None,
             weights: str | None = None, epochs: int = 1, steps: int | None = None,
             lr: float = 1e-4, batch: int = 32, samples: int = 64, seed: int = 0,
             log: Callable[[Step], None] | None = None,
             builder: Callable[[Any, str | None, int, str | None], SigmaTree] | None = None,
             history: list[Step] | None = None) -> list[float]:
    """Fine-tune ``model`` (a registered routed tree) and save it; returns the step losses.

    Without ``data``, the model's seeded clustered synthetic inputs labelled by cluster are used
    (``samples`` of them). ``builder(spec, weights, seed, data)`` gives the tree to train, which
    this function then modifies (the CLI passes a copy of the cached built model); the default
    builds it through the model's family: a tree checkpoint in ``weights`` is loaded as it is, a
    dense state_dict becomes the tree calibrated on the inputs of ``data``. ``log`` and
    ``history`` receive each step's ``Step`` (see ``fine_tune``).

    Checked before any work, in this order: the numbers (``epochs``, ``batch``, ``steps``,
    ``lr``, ``samples``), that ``checkpoint`` can be written, that the model is a routed tree,
    that ``weights`` is a file and ``data`` exists; then the data (finite inputs, labels within
    the model's classes) before the tree is built. The checkpoint is saved atomically after
    every epoch (the epoch ``steps`` stops in included), so an interrupt or a failure mid-way
    leaves the last whole epoch's tree, never a partial file.
    """
    from edgesim.zoo import data as mdata
    from edgesim.zoo.registry import get_family, get_spec

    _check_args(epochs, steps, lr, batch, samples)
    out = check_checkpoint_path(checkpoint)
    spec = get_spec(model)
    if not spec.dynamic:
        raise ModelError(f"model '{model}' is not a routed tree; finetune takes "
                         "sigmab_r50, sigmab_r50_c100 or sigmab_pn2")
    if weights is not None:
        if Path(weights).is_dir():
            raise ModelError(f"--weights {weights}: is a folder; expected a tree checkpoint or "
                             "a dense state_dict")
        if not Path(weights).is_file():
            raise ModelError(f"--weights {weights}: no such checkpoint file")
    if data is not None and not Path(data).exists():
        raise DataError(f"--data {data}: no such file or folder (expected labelled data)")
    if data is not None and not Path(data).is_dir():
        input_file(data, "--data")
    classes = spec.kwargs.get("num_classes")
    kind = "points" if len(spec.input_shape) == 2 else "image"
    size = samples * math.prod(spec.input_shape) * 4
    if data is None and size > MAX_SAMPLE_BYTES:
        shape = "x".join(map(str, spec.input_shape))
        raise ModelError(f"--samples {samples}: {samples:,} synthetic inputs of {shape} take "
                         f"{size / 2**30:.1f} GiB; at most {MAX_SAMPLE_BYTES // 2**30} GiB "
                         f"({MAX_SAMPLE_BYTES // (size // samples):,} samples of {model})")
    if data is not None:
        x, y = load_labelled(data, kind, tuple(spec.input_shape), classes)
    elif kind == "points":
        x, y = mdata.synthetic_points(samples, points=spec.input_shape[0], seed=seed + 7)
    else:
        x, y = mdata.synthetic_images(samples, shape=tuple(spec.input_shape), seed=seed + 7)
    if builder is None:
        tree = get_family(spec.family).build(spec, weights, seed, data)
    else:
        tree = builder(spec, weights, seed, data)
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=batch, shuffle=True, generator=g)
    torch.manual_seed(seed)
    # every epoch ends with a save, the last one too (a --steps stop ends its epoch)
    return fine_tune(tree, loader, epochs=epochs, lr=lr, steps=steps, log=log, history=history,
                     epoch_done=lambda epoch: save_atomically(tree, out))
