"""``edgesim finetune``: soft-routing fine-tuning of a routed tree, saved as a checkpoint.

Public names: ``add_parser``, ``main``. The work is ``edgesim.api.finetune``'s.

    python -m edgesim finetune sigmab_r50_c100 --data train.pt --checkpoint tree.pt \\
        [--epochs 1] [--steps N] [--lr 1e-4] [--batch 32] [--weights tree.pt]
    python -m edgesim run npu_small --model sigmab_r50_c100 --weights tree.pt

``--data`` is a labelled set: a ``.pt`` file holding ``(inputs, labels)`` or ``{"inputs": ...,
"labels": ...}``, an ``.npz`` with arrays ``inputs`` and ``labels``, or (images) a folder with one
sub-folder of images per class. Without ``--data`` the model's seeded clustered synthetic inputs,
labelled by cluster, are used (a demonstration, not a training set). The checkpoint holds the
tree's structure and weights (``edgesim.zoo.sigmab.save_tree``); ``--weights`` reloads it, in
``finetune`` to continue and in ``run`` to simulate the fine-tuned tree. A ``--weights`` file
that is a dense state_dict (of the ResNet-50 / PointNet++ the model is made from) is turned into
the tree first, calibrated on the ``--data`` inputs.

Training anneals the routing temperature from 1 to 0.05 and ends with a hard (straight-through)
phase, the last quarter of the steps; a progress line on stderr every ``--log-every`` steps
gives the temperature, the loss, the routing entropy (bits) and each leaf's share of the batch.
"""

from __future__ import annotations

import sys

from edgesim.cli._common import SEED, bounded_int

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``finetune`` to an argparse subparsers object."""
    f = subparsers.add_parser("finetune", help="soft-routing fine-tuning of a routed tree")
    f.add_argument("model", help="a routed model (sigmab_r50, sigmab_r50_c100, sigmab_pn2)")
    f.add_argument("--data", help="labelled data: .pt (inputs, labels), .npz, or class folders")
    f.add_argument("--checkpoint", required=True, help="write the fine-tuned tree here")
    f.add_argument("--weights", help="start from this tree checkpoint, or build the tree from "
                   "this dense state_dict (calibrated on the --data inputs)")
    f.add_argument("--epochs", type=_count("--epochs"), default=1,
                   help=f"passes over the data (default 1; at most {LIMITS['--epochs']:,})")
    f.add_argument("--steps", type=_count("--steps"),
                   help=f"stop after this many optimizer steps (at most {LIMITS['--steps']:,})")
    f.add_argument("--lr", type=float, default=1e-4)
    f.add_argument("--batch", type=_count("--batch"), default=32,
                   help=f"inputs per step (default 32; at most {LIMITS['--batch']:,})")
    f.add_argument("--samples", type=_count("--samples"), default=64,
                   help="synthetic samples when no --data is given (default 64; at most "
                   f"{LIMITS['--samples']:,}, and at most {MAX_SAMPLE_BYTES >> 30} GiB of inputs: "
                   "1,783 of 3x224x224)")
    f.add_argument("--seed", type=SEED, default=0)
    f.add_argument("--log-every", type=bounded_int(1, LOG_EVERY), default=10, dest="log_every",
                   help="a progress line on stderr every N steps (and the first, and the "
                        f"first hard one; at most {LOG_EVERY:,})")


#: ``--log-every`` at most this many steps (one line per run of the largest --steps).
LOG_EVERY = 10_000_000
#: The bounds of ``finetune``'s counts (``edgesim.zoo.sigmab.train.LIMITS``, read without
#: importing torch).
LIMITS = {"--epochs": 10_000, "--steps": 10_000_000, "--batch": 1024, "--samples": 100_000}
MAX_SAMPLE_BYTES = 1 << 30


def _count(flag: str):
    return bounded_int(1, LIMITS[flag])


def main(a) -> int:
    """Handler of ``edgesim finetune``: trains, saves, prints steps and first/last loss."""
    from edgesim import api
    from edgesim.request import model_request

    history = []

    def log(record) -> None:
        step = record.step
        if step == 1 or step % a.log_every == 0 or (record.temperature is None and (
                not history or history[-1].temperature is not None)):
            print(f"edgesim: {record.line()}", file=sys.stderr, flush=True)
        history.append(record)
    model = model_request(a.model, weights=a.weights, seed=a.seed, data=a.data)
    losses = api.finetune(model, a.checkpoint, epochs=a.epochs, steps=a.steps, lr=a.lr,
                          batch=a.batch, samples=a.samples, log=log)
    first = f"{losses[0]:.4f}" if losses else "-"
    last = f"{losses[-1]:.4f}" if losses else "-"
    end = ""
    if history:
        h = history[-1]
        end = (f"; last step T={'hard' if h.temperature is None else f'{h.temperature:.3g}'}, "
               f"routing entropy {h.entropy:.3f} bits, leaf load "
               + " ".join(f"{v:.2f}" for v in h.load))
    print(f"{a.model}: {len(losses)} steps, loss {first} -> {last}{end}; saved {a.checkpoint}")
    return 0
