"""The four methods on real data: scikit-learn's handwritten digits, trained end to end.

Usage: ``python experiments/digits.py RESULTS [--quick] [--seeds N] [--first-seed K]
[--runs CSV...]``

Data: ``sklearn.datasets.load_digits`` (1,797 real 8x8 grey images of the digits 0-9, shipped
inside scikit-learn: no download), split with a fixed seed, stratified by class, into train
(60 %), calibration (10 %), validation (10 %) and held-out test (20 %). Pixels are scaled to
[0, 1], standardised with the training mean and std, and repeated over 3 channels (the zoo's
ResNet stem reads RGB).

Models (every number below is measured by running them; nothing is a target):

* **dense**: a CIFAR-style ResNet of the zoo (``edgesim.zoo.resnet.ResNet``: BasicBlocks
  [2, 2, 2], width 32, 3x3 stem, 697 K parameters, ~700 KB int8), trained with Adam.
* **sigmab** (Sigma-Branch): ``edgesim.zoo.sigmab.to_tree`` of the trained dense net on the
  calibration split (activation-based spherical k-means; backbone stem..layer2 block 0, layer2
  block 1 in the 2 level-1 nodes, layer3 + fc in 4 leaves), then ``sigmab.fine_tune`` (soft
  routing annealed to hard, load-balanced; 12 epochs, Adam 5e-4) on the training split. Top-1
  is hard-routed: each test input runs the one path its routers choose, and that path sequence
  is simulated.
* **mix_and_match**: ``pruning.layer_ranges`` (the 9 baseline runs, magnitude / SNIP / GraSP at
  70 / 80 / 90 %, on the calibration split) gives each layer's range; each of the 10 strategies
  (``pruning.STRATEGIES``) under each of the 3 sensitivities (``pruning.SENSITIVITIES``:
  magnitude, gradient, product, the gradients on the calibration split) prunes and is
  fine-tuned (``pruning.fine_tune``, masks re-applied after every step); the (sensitivity,
  strategy) with the best validation Top-1 is the method's model (ties: the sparser, then the
  first in that order). ``--quick``: 3 pairs, one per sensitivity.
* **nested**: ``nested.NestedModel`` with 3 magnitude-nested levels (densities 10 / 30 / 50 %,
  first conv and classifier 50 / 80 / 100 %), trained by ``nested.train_nested`` (gradient
  masking: each weight learns from the sub-network it enters; the summed loss of the 3
  sub-networks); each level is a row.
* **signed_binary**: ``signed_binary.to_signed_binary`` (one region per filter; first conv
  and classifier int8) trained by ``signed_binary.fine_tune_ste`` (straight-through, the
  thresholds learned: the sparsity is an outcome).

Binarised and nested weights move the activations faster than BatchNorm's running averages
follow, so after training their statistics are re-estimated on the training split
(``recalibrate_bn``); the nested model keeps one set per level (``nested.level_batchnorm``),
folded into each level's per-channel int8 scales and biases as deployed, and the extra sets
are in its stored bytes (8 B per channel per level beyond the first).

The tree's run output gives its coverage (of the dense channels, and of the dense weight
entries: an entry (o, i) is stored only where some node keeps both channels) and its routing
balance (held-out inputs per path, also the ``path_inputs`` column), with a note when a leaf
receives no input or more than half of them.

Each model is traced (``edgesim.trace.trace``, BatchNorm folded as deployed) and simulated
over the held-out stream on ``npu_small`` as shipped (512 KiB SRAM) and with its SRAM scaled
to 64 KiB (a 700 KB model against 512 KiB is the ratio of a small CNN, not of a ResNet-50 on a
512 KiB NPU: at 64 KiB nothing here fits, as ResNet-50 does not fit the shipped SRAM).

Seeds: the whole run is repeated per seed (default 0, 1, 2; ``--quick`` 0): the data split,
every init and every batch order change with it (seed 0 is the run of before seeds were
added). ``--first-seed`` and ``--seeds`` split the seeds over processes, ``--runs`` summarises
their ``results.csv`` together.

Writes ``RESULTS/digits/results.csv`` (one row per seed, model and SRAM size),
``summary.csv`` (per SRAM size and model: mean, min and max over the seeds of top-1, sparsity,
weight bytes, latency and energy; each seed's Mix-and-Match winner and the tree's test inputs
per path), ``pareto.png`` and ``pareto.svg`` (mean Top-1 against mean weight bytes per
inference in the steady state, bars from the seeds' min to max, one panel per SRAM size, the
Pareto front of the means drawn) and ``strategies.csv`` (every Mix-and-Match strategy of every
seed: its sparsity and validation / test Top-1). Seeded: two runs on one machine give
byte-identical CSVs (one torch thread, deterministic algorithms). The Top-1 figures come from
float32 training and can differ between CPUs (vector widths change float32 rounding, and
training amplifies it): another machine may give a few test images more or less per model and
another Mix-and-Match winner, and with them other bytes for the models whose size training
decides (the winner's sparsity, signed-binary's learned zeros, the tree's routing); read the
spread over the seeds, not one seed's number. The pruning masks, levels, thresholds and the
tree's channels themselves are chosen by exact rules (float64 scores, ties by index). The full
run takes about 10 minutes a seed (one core; ``--quick`` ~40 s).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.paper_tables import routing_note

SEED = 0
CONFIG = "npu_small"
#: SRAM sizes simulated: the config as shipped, and scaled so that no model here fits.
SRAMS = ("512KiB", "64KiB")
WIDTH = 32
BLOCKS = (2, 2, 2)
CLASSES = 10
#: Sigma-Branch split points of the [2, 2, 2] ResNet (``to_tree``'s ``levels``).
TREE_LEVELS = {"layer2_1": 1, "layer3": 2}
NESTED_DENSITIES = (0.1, 0.3, 0.5)
NESTED_EDGE_DENSITIES = (0.5, 0.8, 1.0)
#: ``--quick``: one (sensitivity, strategy) pair per sensitivity.
QUICK_PAIRS = (("magnitude", "conservative"), ("gradient", "percentile_50"),
               ("product", "aggressive"))


@dataclass(frozen=True)
class Settings:
    """Epochs of each training step, and the Mix-and-Match (sensitivity, strategy) pairs
    tried."""

    dense_epochs: int
    tree_epochs: int
    prune_epochs: int
    nested_epochs: int
    binary_epochs: int
    pairs: tuple[tuple[str, str], ...]


def settings(quick: bool) -> Settings:
    from edgesim.zoo.pruning import SENSITIVITIES, STRATEGIES
    if quick:
        return Settings(8, 3, 1, 4, 3, QUICK_PAIRS)
    return Settings(20, 12, 3, 12, 12,
                    tuple((s, t) for s in SENSITIVITIES for t in STRATEGIES))


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class Split:
    x: Any   # (n, 3, 8, 8) float32
    y: Any   # (n,) int64


def load_splits(seed: int = SEED) -> dict[str, Split]:
    """train / calib / val / test splits of the bundled digits, stratified, seeded."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    idx = np.arange(labels.size)
    rest, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=seed)
    rest, val = train_test_split(rest, test_size=0.125, stratify=labels[rest],
                                 random_state=seed)
    train, calib = train_test_split(rest, test_size=1 / 7, stratify=labels[rest],
                                    random_state=seed)
    mean, std = float(images[train].mean()), float(images[train].std())
    out = {}
    for name, rows in (("train", train), ("calib", calib), ("val", val), ("test", test)):
        x = torch.from_numpy((images[np.sort(rows)] - mean) / std)[:, None].repeat(1, 3, 1, 1)
        out[name] = Split(x.contiguous(), torch.from_numpy(labels[np.sort(rows)]))
    return out


def _derived(seed: int, offset: int) -> int:
    """The seed of one training step of run ``seed``: ``1000 * seed + offset`` (seed 0: the
    offsets themselves, as before runs had seeds)."""
    return 1000 * seed + offset


def loader(split: Split, seed: int, batch: int = 64):
    import torch
    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(split.x, split.y),
                                       batch_size=batch, shuffle=True, generator=g)


def batches(split: Split, size: int) -> list[tuple[Any, Any]]:
    return [(split.x[i:i + size], split.y[i:i + size]) for i in range(0, len(split.y), size)]


def correct(model: Any, split: Split) -> int:
    """Inputs of ``split`` whose argmax is the label (eval mode, float32, no grad)."""
    import torch
    model.eval()
    with torch.no_grad():
        return int((model(split.x).argmax(dim=1) == split.y).sum())


# ---------------------------------------------------------------------------------------------
# the dense net and the four methods


def train_dense(data: dict[str, Split], epochs: int, seed: int = SEED) -> Any:
    import torch

    from edgesim.zoo.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    model = ResNet(BasicBlock, list(BLOCKS), CLASSES, stem="cifar", width=WIDTH)
    return train_scratch(model, data, epochs, seed)


def train_scratch(model: Any, data: dict[str, Split], epochs: int, seed: int) -> Any:
    """``model`` trained on the training split: Adam, one-cycle learning rate peaking at 2e-3,
    cross-entropy, ``epochs`` passes over batches shuffled by ``seed``; returned in eval
    mode."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    batches_ = loader(data["train"], seed)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs *
                                                len(batches_))
    model.train()
    for _ in range(epochs):
        for x, y in batches_:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    return model.eval()


def sigma_branch(dense: Any, data: dict[str, Split], epochs: int, seed: int = SEED
                 ) -> tuple[Any, int, list[int]]:
    """The tree (fine-tuned), and right before fine-tuning (k-means only) the test inputs it
    got right and the test inputs per path."""
    import torch

    from edgesim.zoo.sigmab import fine_tune, to_tree

    tree = to_tree(copy.deepcopy(dense).eval(), data["calib"].x, arch="resnet",
                   levels=TREE_LEVELS, seed=seed)
    before = correct(tree, data["test"])
    with torch.no_grad():
        paths = torch.bincount(tree.route(data["test"].x), minlength=tree.num_paths).tolist()
    torch.manual_seed(_derived(seed, 1))
    fine_tune(tree, loader(data["train"], _derived(seed, 1)), epochs=epochs, lr=5e-4,
              balance=0.01)
    return tree.eval(), before, paths


def mix_and_match(dense: Any, data: dict[str, Split], epochs: int,
                  pairs: Sequence[tuple[str, str]], seed: int = SEED
                  ) -> tuple[Any, str, list[dict[str, Any]]]:
    """The Mix-and-Match model of the best (sensitivity, strategy) by validation Top-1, its
    name (``sensitivity/strategy``), and one row per pair (sparsity, validation and test
    correct)."""
    import torch

    from edgesim.zoo import pruning

    calib = batches(data["calib"], 60)
    ranges = pruning.layer_ranges(dense, calib, steps=len(calib))   # the 9 baseline runs
    params = dict(dense.named_parameters())
    counts = {n: params[n].numel() for n in ranges}
    heads = pruning.classifier_layers(dense)
    scorers = {"magnitude": lambda: pruning.magnitude_scores(dense),
               "gradient": lambda: pruning.gradient_scores(dense, calib, steps=len(calib)),
               "product": lambda: pruning.product_scores(dense, calib, steps=len(calib))}
    scores = {s: scorers[s]() for s in dict.fromkeys(s for s, _ in pairs)}
    rows, best, best_key = [], None, None
    for k, (sensitivity, strategy) in enumerate(pairs):
        model = copy.deepcopy(dense)
        rhos = pruning.strategy_sparsities(ranges, strategy, counts, list(ranges),
                                           classifiers=heads)
        masks = pruning.prune(model, rhos, scores[sensitivity])
        torch.manual_seed(_derived(seed, 10 + k))
        pruning.fine_tune(model, masks, loader(data["train"], _derived(seed, 10 + k)),
                          epochs=epochs,
                          lr=5e-4)
        model.eval()
        weights = pruning.prunable_weights(model)
        zeros = sum(int((p == 0).sum()) for p in weights.values())
        sparsity = zeros / sum(p.numel() for p in weights.values())
        val, test = correct(model, data["val"]), correct(model, data["test"])
        rows.append({"sensitivity": sensitivity, "strategy": strategy,
                     "sparsity": round(sparsity, 4),
                     "val_correct": val, "val_inputs": len(data["val"].y),
                     "test_correct": test, "test_inputs": len(data["test"].y)})
        key = (val, sparsity)
        if best_key is None or key > best_key:
            best, best_key = (model, f"{sensitivity}/{strategy}"), key
    assert best is not None
    return best[0], best[1], rows


def recalibrate_bn(model: Any, split: Split) -> None:
    """Re-estimate every BatchNorm's running statistics on ``split`` (weights frozen): the
    cumulative mean and variance over its batches in train mode, then eval mode
    (``edgesim.zoo.baselines.recalibrate_bn``).

    Binarised and nested weights change the activations a BatchNorm normalises faster than its
    running average (momentum 0.1) follows while training: without this, the eval-mode net
    is at chance although its train-mode loss is low."""
    from edgesim.zoo.baselines import recalibrate_bn as recalibrate

    recalibrate(model, batches(split, 128))


def nested(dense: Any, data: dict[str, Split], epochs: int, seed: int = SEED) -> Any:
    """The nested model, trained, with one set of BatchNorm statistics per level
    (``nested.level_batchnorm`` on the training split)."""
    import torch

    from edgesim.zoo.nested import NestedModel, level_batchnorm, nested_levels, train_nested

    net = copy.deepcopy(dense)
    model = NestedModel(net, nested_levels(net, NESTED_DENSITIES,
                                           first_last_densities=NESTED_EDGE_DENSITIES))
    torch.manual_seed(_derived(seed, 2))
    train_nested(model, loader(data["train"], _derived(seed, 2)), epochs=epochs, lr=0.05,
                 schedule="sum")
    return level_batchnorm(model, batches(data["train"], 128))


def signed_binary(dense: Any, data: dict[str, Split], epochs: int, seed: int = SEED) -> Any:
    import torch

    from edgesim.zoo.signed_binary import fine_tune_ste, to_signed_binary

    model = to_signed_binary(copy.deepcopy(dense), keep_first_last_int8=True)
    torch.manual_seed(_derived(seed, 3))
    fine_tune_ste(model, loader(data["train"], _derived(seed, 3)), epochs=epochs, lr=5e-3,
                  threshold_lr=1e-2)
    recalibrate_bn(model, data["train"])
    return model


# ---------------------------------------------------------------------------------------------
# tracing and simulation


def sparsity(model: Any) -> float:
    """Zero share of the conv and linear weights the model computes with (a nested model at
    its current level; a tree over all its nodes)."""
    from torch import nn
    weights = [m.weight.detach() for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    return round(sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights), 4)


def traced(model: Any, name: str, family: str, encodings: Sequence[str], inputs: int) -> Any:
    """A one-path Workload of ``model`` as deployed (BatchNorm folded), ``inputs`` inputs."""
    from edgesim.trace import trace
    from edgesim.zoo.deploy import prepare

    x = _example()
    return trace(prepare(model, x), x, name=name, family=family, encodings=encodings,
                 inputs=inputs)


def traced_tree(tree: Any, name: str, test: Split) -> Any:
    """The tree's path catalogue (each path traced once, BatchNorm folded) and the held-out
    inputs' hard-routed path sequence."""
    import numpy as np
    import torch

    from edgesim.build import trace_routed

    with torch.no_grad():
        seq = tree.route(test.x).numpy().astype(np.int32)
    return trace_routed(tree.eval(), _example(), name=name, family="sigmab", sequence=seq)


def _example() -> Any:
    import torch
    g = torch.Generator().manual_seed(SEED)
    return torch.randn((1, 3, 8, 8), generator=g)


def simulate(workload: Any, sram: str) -> dict[str, Any]:
    """Steady-state weight bytes, latency and energy per inference, stored bytes, on
    ``npu_small`` with ``sram.size=sram``."""
    import numpy as np

    from edgesim.config import load_config
    from edgesim.encodings import resolve
    from edgesim.sim import simulate as run

    hw = load_config(CONFIG, [f"sram.size={sram}"])
    w = resolve(workload, hw)
    s = run(hw, w).summary
    return {
        "sram": sram,
        "weight_bytes_per_inference": round(s["weight_dram_bytes"]["steady_mean"]),
        "weight_bytes_cold": int(s["weight_dram_bytes"]["cold"]),
        "stored_weight_bytes": int(w.stored_bytes),
        "path_inputs": "/".join(str(int(c)) for c in
                                np.bincount(w.sequence, minlength=len(w.paths))),
        "latency_us": round(s["latency_s"]["steady_mean"] * 1e6, 3),
        "energy_uj": round(s["energy_j"]["steady_mean"] * 1e6, 4),
    }


# ---------------------------------------------------------------------------------------------
# figure


MARKERS = {"dense": ("o", "black"), "sigmab": ("^", "tab:blue"),
           "mix_and_match": ("s", "tab:orange"), "nested": ("D", "tab:green"),
           "signed_binary": ("v", "tab:red")}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (fewer bytes and at least the accuracy, or
    as few bytes and more accuracy), by bytes ascending."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def short_label(method: str, variant: str) -> str:
    if method == "mix_and_match":
        return "M&M" if variant == "validation winner" else f"M&M {variant}"
    if method == "nested":
        return f"nested {variant.replace('level ', 'L')}"
    return {"sigmab": "ΣB tree", "signed_binary": "signed-binary"}.get(method, method)


def plot(df: Any, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SRAMS), figsize=(11, 4.8), sharey=True)
    for ax, sram in zip(axes, SRAMS, strict=True):
        part = df[df["sram"] == sram].reset_index(drop=True)
        xs = (part["weight_bytes_per_inference_mean"] / 1e3).tolist()
        ys = (100 * part["top1_mean"]).tolist()
        front = pareto_front(list(zip(xs, ys, strict=True)))
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "-", color="0.7", zorder=1,
                label="Pareto front")
        for method, (marker, color) in MARKERS.items():
            rows = part[part["method"] == method]
            x, y = rows["weight_bytes_per_inference_mean"] / 1e3, 100 * rows["top1_mean"]
            ax.errorbar(x, y, yerr=[y - 100 * rows["top1_min"], 100 * rows["top1_max"] - y],
                        xerr=[x - rows["weight_bytes_per_inference_min"] / 1e3,
                              rows["weight_bytes_per_inference_max"] / 1e3 - x],
                        fmt="none", ecolor=color, elinewidth=1, capsize=2, zorder=2)
            ax.scatter(x, y, marker=marker, color=color, s=60, zorder=3, label=method)
        span_x = max([*xs, 1.0])
        span_y = max(ys) - min(ys) or 1.0
        placed: list[tuple[float, float]] = []
        for i in sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i])):
            close = any(abs(xs[i] - px) < 0.12 * span_x and abs(ys[i] - py) < 0.06 * span_y
                        for px, py in placed)
            ax.annotate(short_label(part["method"][i], part["variant"][i]), (xs[i], ys[i]),
                        textcoords="offset points", xytext=(7, -11 if close else 3),
                        fontsize=8)
            placed.append((xs[i], ys[i]))
        ax.set_title(f"{CONFIG}, SRAM {sram}" + (" (as shipped)" if sram == SRAMS[0] else
                                                 " (nothing fits)"))
        ax.set_xlabel("weight bytes per inference, steady state (kB)")
        ax.grid(True, alpha=0.3)
        ax.set_xlim(-0.05 * span_x, 1.25 * span_x)
    axes[0].set_ylabel("Top-1 on the held-out digits (%)")
    axes[-1].legend(loc="lower right", fontsize=8)
    fig.suptitle("scikit-learn digits (real data, trained): Top-1 vs off-chip weight bytes; "
                 f"mean over seeds {df['seeds'].iloc[0]}, bars min-max", fontsize=10)
    fig.tight_layout()
    for suffix in (".png", ".svg"):
        fig.savefig(out.with_suffix(suffix), dpi=130,
                    metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def run_seed(seed: int, cfg: Settings, note: Any) -> tuple[list[dict[str, Any]],
                                                         list[dict[str, Any]]]:
    """One run of every method on the split of ``seed``: its result rows (one per model and
    SRAM size) and its Mix-and-Match strategy rows."""
    from edgesim.encodings import SEGMENT_ENCODINGS

    data = load_splits(seed)
    test = data["test"]
    n = len(test.y)
    note(f"seed {seed}: digits: {', '.join(f'{k} {len(v.y)}' for k, v in data.items())}")
    dense = train_dense(data, cfg.dense_epochs, seed)
    note(f"dense: {correct(dense, test)}/{n}")

    models: list[tuple[str, str, int, float, Any]] = []   # method, variant, correct,
    # weight sparsity, workload
    models.append(("dense", "", correct(dense, test), sparsity(dense),
                   traced(dense, "digits_dense", "dense", ("dense",), n)))

    tree, before, paths_before = sigma_branch(dense, data, cfg.tree_epochs, seed)
    note(f"sigmab: {before}/{n} after k-means (held-out inputs per path {paths_before}), "
         f"{correct(tree, test)}/{n} fine-tuned")
    tree_w = traced_tree(tree, "digits_sigmab", test)
    counts = [int((tree_w.sequence == i).sum()) for i in range(len(tree_w.paths))]
    params = tree.param_counts()
    dense_params = sum(q.numel() for q in dense.parameters())
    note(f"sigmab: {params['total']} params stored ({params['total'] / dense_params:.1%} of "
         f"dense), per path {params['paths']} (mean "
         f"{sum(params['paths']) / len(params['paths']) / dense_params:.1%} of dense)")
    note("sigmab: held-out inputs per path " + ", ".join(
        f"{p.name} {c}" for p, c in zip(tree_w.paths, counts, strict=True)))
    unbalanced = routing_note("sigmab", counts)
    if unbalanced is not None:
        note(f"NOTE {unbalanced}")
    cov = tree.coverage()
    note(f"sigmab: coverage of the dense channels {cov['channel_coverage']:.1%}, of the dense "
         f"conv/linear weight entries {cov['weight_coverage']:.1%} "
         f"({cov['dense_weights'] - cov['covered_weights']:,} of {cov['dense_weights']:,} "
         "entries in no node)")
    models.append(("sigmab", "hard-routed", correct(tree, test), sparsity(tree), tree_w))

    pruned, strategy, strategy_rows = mix_and_match(dense, data, cfg.prune_epochs, cfg.pairs,
                                                    seed)
    note(f"mix_and_match: best strategy {strategy}, {correct(pruned, test)}/{n}")
    models.append(("mix_and_match", strategy, correct(pruned, test), sparsity(pruned),
                   traced(pruned, "digits_mm", "sparse",
                          ("dense", "bitmap", "csr", "csc", "rle"), n)))

    nest = nested(dense, data, cfg.nested_epochs, seed)
    nested_encodings = ("dense", "nested", *SEGMENT_ENCODINGS)
    for k in range(1, nest.num_levels + 1):
        nest.set_level(k)
        c = correct(nest, test)
        note(f"nested level {k}: {c}/{n}")
        models.append(("nested", f"level {k}", c, sparsity(nest),
                       traced(nest, f"digits_nested@{k}", "nested", nested_encodings, n)))
    extra = sum(b.stored_bytes for b in models[-1][4].blocks.values()
                if "norm_of_level" in b.meta)
    note(f"nested: per-level BatchNorm statistics, {extra:,} B stored for levels 2.."
         f"{nest.num_levels} (in the stored bytes)")

    sb = signed_binary(dense, data, cfg.binary_epochs, seed)
    note(f"signed_binary: {correct(sb, test)}/{n}")
    models.append(("signed_binary", "learned thresholds", correct(sb, test), sparsity(sb),
                   traced(sb, "digits_sb", "signed_binary", ("dense", "signed_binary"), n)))

    rows = []
    for sram in SRAMS:
        for method, variant, c, zeros, w in models:
            rows.append({"seed": seed, "method": method, "variant": variant,
                         "top1": round(c / n, 4), "correct": c, "test_inputs": n,
                         "weight_sparsity": zeros, **simulate(w, sram)})
    note(f"seed {seed}: simulated")
    return rows, [{"seed": seed, **r} for r in strategy_rows]


#: Columns of ``summary.csv`` given as mean, min and max over the seeds.
SPREAD = ("top1", "weight_sparsity", "weight_bytes_per_inference", "stored_weight_bytes",
          "latency_us", "energy_uj")


def row_name(method: str, variant: str) -> str:
    """The summary row of a result: Mix-and-Match's row is its validation winner, whichever
    (sensitivity, strategy) that is in a seed (listed in the ``variants`` column)."""
    return "validation winner" if method == "mix_and_match" else variant


def summarise(df: Any) -> Any:
    """Per SRAM size and model: the seeds, and the mean, min and max over them of every
    ``SPREAD`` column; ``variants`` lists each seed's variant where they differ (Mix-and-Match's
    winner), ``path_inputs`` each seed's test inputs per path (the tree)."""
    import pandas as pd
    df = df.assign(row=[row_name(m, v) for m, v in zip(df["method"], df["variant"],
                                                       strict=True)])
    out = []
    for (sram, method, row), part in df.groupby(["sram", "method", "row"], sort=False,
                                                dropna=False):
        r: dict[str, Any] = {"sram": sram, "method": method, "variant": row,
                             "seeds": " ".join(str(int(v)) for v in part["seed"])}
        for col in SPREAD:
            v = part[col].astype(float)
            digits_ = 4 if col in ("top1", "weight_sparsity", "energy_uj") else 3
            r[f"{col}_mean"] = round(float(v.mean()), digits_)
            r[f"{col}_min"] = round(float(v.min()), digits_)
            r[f"{col}_max"] = round(float(v.max()), digits_)
        r["variants"] = ("; ".join(part["variant"].astype(str))
                         if part["variant"].nunique() > 1 else "")
        r["path_inputs"] = ("; ".join(part["path_inputs"].astype(str))
                            if method == "sigmab" else "")
        out.append(r)
    return pd.DataFrame(out)


def seed_arguments(p: argparse.ArgumentParser, *, default: int, quick: int) -> None:
    """``--seeds N`` and ``--first-seed K``: an experiment's seeds K..K+N-1, split over
    processes whose results ``--runs`` puts together (this script and benchmark_methods)."""
    p.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {default}; --quick {quick})")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seeds K..K+N-1 instead of 0..N-1 (one process per part of the seeds; "
                        "--runs puts them together)")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="folder for the tables and figures")
    p.add_argument("--quick", action="store_true",
                   help="fewer epochs and strategies, one seed (the test suite's)")
    seed_arguments(p, default=3, quick=1)
    p.add_argument("--runs", nargs="+", metavar="CSV",
                   help="train nothing: summarise and plot these results.csv files together")
    a = p.parse_args(argv)
    if (a.seeds is not None and a.seeds < 1) or a.first_seed < 0:
        print(f"digits: --seeds {a.seeds} --first-seed {a.first_seed}; expected seeds >= 1 "
              "and a first seed >= 0", file=sys.stderr)
        return 2
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = settings(a.quick)
    seeds = range(a.first_seed, a.first_seed + (a.seeds or (1 if a.quick else 3)))
    out = Path(a.results) / "digits"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def note(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    if a.runs:
        parts = [pd.read_csv(f, keep_default_na=False) for f in a.runs]
        df = pd.concat(parts, ignore_index=True).drop_duplicates(
            ["seed", "method", "variant", "sram"])
        df = df.sort_values(["sram", "seed"], kind="stable", key=lambda c: c.map(
            {v: i for i, v in enumerate(SRAMS)}) if c.name == "sram" else c)
        strategy_files = [Path(f).with_name("strategies.csv") for f in a.runs]
        strategies = pd.concat([pd.read_csv(f) for f in strategy_files if f.exists()],
                               ignore_index=True).drop_duplicates(
            ["seed", "sensitivity", "strategy"]).sort_values("seed", kind="stable")
    else:
        rows: list[dict[str, Any]] = []
        strategy_rows: list[dict[str, Any]] = []
        for seed in seeds:
            r, st = run_seed(seed, cfg, note)
            rows += r
            strategy_rows += st
        df = pd.DataFrame(rows)
        df = df.sort_values(["sram", "seed"], kind="stable", key=lambda c: c.map(
            {v: i for i, v in enumerate(SRAMS)}) if c.name == "sram" else c)
        strategies = pd.DataFrame(strategy_rows)
    df = df.reset_index(drop=True)
    df.to_csv(out / "results.csv", index=False)
    strategies.to_csv(out / "strategies.csv", index=False)
    summary = summarise(df)
    summary.to_csv(out / "summary.csv", index=False)
    plot(summary, out / "pareto")
    show = summary.copy()
    show["top1"] = [f"{100 * m:.1f} % ({100 * lo:.1f}-{100 * hi:.1f})" for m, lo, hi in
                    zip(show["top1_mean"], show["top1_min"], show["top1_max"], strict=True)]
    cols = ["sram", "method", "variant", "seeds", "top1", "weight_bytes_per_inference_mean",
            "stored_weight_bytes_mean", "latency_us_mean", "energy_uj_mean"]
    print(show[cols].to_string(index=False))
    note(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
