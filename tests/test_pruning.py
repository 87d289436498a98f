"""Mix-and-Match pruning: scores, global baselines, ranges and rules, ten strategies, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgesim.errors import DataError, ModelError
from edgesim.testing import registry_model
from edgesim.zoo.pruning import (
    BASELINES,
    SINGLE_CRITERIA,
    STRATEGIES,
    apply_masks,
    fine_tune,
    global_sparsities,
    gradient_scores,
    grasp_scores,
    he_classifier_,
    layer_ranges,
    magnitude_scores,
    mix_and_match,
    norm_weights,
    product_scores,
    prunable_weights,
    prune,
    prune_single_criterion,
    strategy_sparsities,
    synthetic_calibration,
)
from edgesim.zoo.resnet import Bottleneck, ResNet
from edgesim.zoo.swin import swin_tiny


class Tiny(nn.Module):
    """Every rule in one small net: patch embed, norms, small and large conv/linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, 16, 4, stride=4)  # 768 weights: patch-embed rule
        self.bn = nn.BatchNorm2d(16)  # norm-0
        self.conv = nn.Conv2d(16, 32, 3, padding=1)  # 4,608 weights: small<10K
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)  # 18,432 weights: free
        self.ln = nn.LayerNorm(64)  # norm-0
        self.fc1 = nn.Linear(64, 256)  # 16,384 weights: free
        self.head = nn.Linear(256, 10)  # 2,560 weights, the head: classifier (not capped)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.patch_embed(x)))
        x = torch.relu(self.conv2(torch.relu(self.conv(x))))
        x = self.ln(x.mean(dim=(2, 3)))
        return self.head(torch.relu(self.fc1(x)))


RULES = {
    "patch_embed.weight": "patch-embed",
    "bn.weight": "norm-0",
    "conv.weight": "small<10K",
    "conv2.weight": "",
    "ln.weight": "norm-0",
    "fc1.weight": "",
    "head.weight": "classifier",
}


@pytest.fixture
def calib() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return synthetic_calibration(seed=1, shape=(3, 16, 16), num_classes=10, batch_size=4, batches=2)


# --- which weights -----------------------------------------------------------------------------


def test_prunable_and_norm_weights() -> None:
    m = Tiny()
    assert list(prunable_weights(m)) == [
        "patch_embed.weight", "conv.weight", "conv2.weight", "fc1.weight", "head.weight"
    ]
    assert list(norm_weights(m)) == ["bn.weight", "ln.weight"]


# --- sensitivities -----------------------------------------------------------------------------


def test_score_shapes(calib) -> None:
    m = Tiny()
    mag = magnitude_scores(m)
    grad = gradient_scores(m, calib, steps=2)
    prod = product_scores(m, calib, steps=2)
    grasp = grasp_scores(m, calib, steps=2)
    for scores in (mag, grad, prod, grasp):
        assert {n: s.shape for n, s in scores.items()} == {
            n: p.shape for n, p in prunable_weights(m).items()
        }
    for name, p in prunable_weights(m).items():
        assert torch.equal(mag[name], p.detach().abs())
        assert bool((grad[name] >= 0).all())
        torch.testing.assert_close(prod[name], p.detach().abs() * grad[name])


def test_gradient_scores_closed_form() -> None:
    # y = w . x with loss = sum(out): dL/dw = sum over the batch of x. Batch 1: x rows (1, -2) and
    # (1, 1) -> g = (2, -1); batch 2: x = (-4, 0) -> g = (-4, 0). Mean of |g_b| = (3, 0.5).
    m = nn.Linear(2, 1, bias=False)
    batches = [
        (torch.tensor([[1.0, -2.0], [1.0, 1.0]]), torch.zeros(2)),
        (torch.tensor([[-4.0, 0.0]]), torch.zeros(1)),
    ]
    scores = gradient_scores(m, batches, lambda out, y: out.sum(), steps=2)
    assert scores["weight"].tolist() == [[3.0, 0.5]]


def test_grasp_scores_closed_form() -> None:
    # L = 0.5 * (w . x - y)^2 with w = (1, 2), x = (1, 1), y = 0: residual r = 3, g = r x = (3, 3),
    # H = x x^T = [[1, 1], [1, 1]], H g = (6, 6), GraSP score -w * Hg = (-6, -12).
    m = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 2.0]]))
    batch = [(torch.tensor([[1.0, 1.0]]), torch.zeros(1, 1))]
    scores = grasp_scores(m, batch, lambda out, y: 0.5 * ((out - y) ** 2).sum())
    assert scores["weight"].tolist() == [[-6.0, -12.0]]


def test_empty_calibration_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no batches"):
        gradient_scores(Tiny(), [])


# --- phase 1: global baselines and ranges ------------------------------------------------------


def test_global_sparsities_closed_form() -> None:
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([5.0, 6.0])}
    # 50 % of 6 weights = 3 removed: the lowest are 1, 2, 3, all in a.
    assert global_sparsities(scores, 0.5) == {"a": 0.75, "b": 0.0}
    # GraSP removes the highest: 6, 5, 4.
    assert global_sparsities(scores, 0.5, prune_highest=True) == {"a": 0.25, "b": 1.0}
    # Four equal scores, 2 removed: ties go to layers in order.
    ties = {"a": torch.ones(2), "b": torch.ones(2)}
    assert global_sparsities(ties, 0.5) == {"a": 1.0, "b": 0.0}


@pytest.mark.parametrize("target", [0.7, 0.8, 0.9])
def test_global_run_removes_exact_count(target: float) -> None:
    # Law: a global run removes floor(target * N) weights in total, however they split by layer.
    m = Tiny()
    scores = magnitude_scores(m)
    rhos = global_sparsities(scores, target)
    n_total = sum(s.numel() for s in scores.values())
    removed = sum(round(rhos[n] * s.numel()) for n, s in scores.items())
    assert removed == math.floor(target * n_total)


def test_ranges_obey_structural_rules(calib) -> None:
    ranges = layer_ranges(Tiny(), calib, steps=2)
    assert list(ranges) == list(RULES)  # prunable + norm weights, module order, no biases
    for name, (lo, hi) in ranges.items():
        assert 0.0 <= lo <= hi <= 1.0
        if RULES[name] == "norm-0":
            assert (lo, hi) == (0.0, 0.0)
        elif RULES[name] == "small<10K":
            assert hi <= 0.10
        elif RULES[name] == "patch-embed":
            assert 0.15 <= lo <= hi <= 0.30


def test_free_layer_range_is_min_max_of_the_nine_runs(calib) -> None:
    m = Tiny()
    ranges = layer_ranges(m, calib, steps=2)
    runs = []
    for base, scores in (
        ("magnitude", magnitude_scores(m)),
        ("snip", product_scores(m, calib, steps=2)),
        ("grasp", grasp_scores(m, calib, steps=2)),
    ):
        highest = base == "grasp"
        runs += [global_sparsities(scores, t, prune_highest=highest) for t in (0.7, 0.8, 0.9)]
    assert len(runs) == len(BASELINES) * 3
    # the free layers and the classifier head (exempt from the small-layer cap) keep the range
    # the nine runs gave them
    for name in ("conv2.weight", "fc1.weight", "head.weight"):
        assert ranges[name] == (min(r[name] for r in runs), max(r[name] for r in runs))
    assert ranges["head.weight"][1] > 0.10


# --- phase 2: strategies -----------------------------------------------------------------------


def test_strategy_closed_forms() -> None:
    ranges = {"a": (0.2, 0.6), "n": (0.0, 0.0), "b": (0.0, 1.0), "c": (0.5, 0.9)}
    counts = {"a": 10, "n": 4, "b": 30, "c": 20}
    order = ["a", "n", "b", "c"]

    def rho(strategy: str) -> dict[str, float]:
        return strategy_sparsities(ranges, strategy, counts, order)

    assert rho("conservative") == {"a": 0.2, "n": 0.0, "b": 0.0, "c": 0.5}
    assert rho("aggressive") == {"a": 0.6, "n": 0.0, "b": 1.0, "c": 0.9}
    assert rho("percentile_50") == pytest.approx({"a": 0.4, "n": 0.0, "b": 0.5, "c": 0.7})
    # classifier-heavy: the head (by default the last layer with rho_max > 0: c) at rho_max,
    # every other layer at rho_min
    assert rho("classifier_heavy") == {"a": 0.2, "n": 0.0, "b": 0.0, "c": 0.9}
    assert strategy_sparsities(ranges, "classifier_heavy", counts, order,
                               classifiers=["a"]) == {"a": 0.6, "n": 0.0, "b": 0.0, "c": 0.5}
    assert rho("percentile_30") == pytest.approx({"a": 0.32, "n": 0.0, "b": 0.3, "c": 0.62})
    # |W_avg| over the layers not fixed at 0 (a, b, c) = 20; alpha = min(1, 0.1 * |W_l| / 20).
    assert rho("param_proportional") == pytest.approx(
        {"a": 0.2 + 0.05 * 0.4, "n": 0.0, "b": 0.15, "c": 0.5 + 0.1 * 0.4}
    )
    # positions over a, b, c: t = 0, 0.5, 1 (the fixed layer n has no position).
    assert rho("late_heavy") == pytest.approx({"a": 0.2, "n": 0.0, "b": 0.5, "c": 0.9})
    assert rho("early_heavy") == pytest.approx({"a": 0.6, "n": 0.0, "b": 0.5, "c": 0.5})


def test_the_ten_strategies_are_distinct() -> None:
    # Ten names, ten different sparsity vectors on ranges where every rule can differ (the
    # paper's "balanced" midpoint is percentile_50, kept once).
    ranges = {"a": (0.2, 0.6), "b": (0.0, 1.0), "c": (0.5, 0.9), "d": (0.1, 0.3)}
    counts = {"a": 10, "b": 300, "c": 20, "d": 5}
    vectors = {s: tuple(strategy_sparsities(ranges, s, counts, list(ranges)).values())
               for s in STRATEGIES}
    assert len(STRATEGIES) == 10
    assert len(set(vectors.values())) == 10, vectors


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ModelError, match=r"'fc_heavy'.*conservative"):
        strategy_sparsities({"a": (0.0, 1.0)}, "fc_heavy", {"a": 1}, ["a"])


# --- phase 3: whole method, masks, fine-tuning -------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_inside_ranges_and_exact_counts(strategy: str, calib) -> None:
    m, report = mix_and_match(Tiny(), calib, strategy=strategy, steps=2)
    params = dict(m.named_parameters())
    assert [r.layer for r in report.layers] == list(RULES)
    for row in report.layers:
        assert row.rho_min <= row.rho <= row.rho_max
        assert row.rule == RULES[row.layer]
        zeros = int((params[row.layer] == 0).sum())
        assert zeros == math.floor(row.rho * row.params)  # random init has no zeros of its own
        assert row.achieved == zeros / row.params
        if row.rule == "norm-0":
            assert row.achieved == 0.0
        if row.rule == "small<10K":
            assert row.achieved <= 0.10
        if strategy in ("classifier_heavy", "late_heavy", "aggressive") and (
                row.rule == "classifier"):
            assert row.rho == row.rho_max
        if row.rule == "patch-embed":
            assert 0.15 <= row.rho <= 0.30


@pytest.mark.parametrize("sensitivity", ["gradient", "product"])
def test_gradient_sensitivities_run(sensitivity: str, calib) -> None:
    _, report = mix_and_match(Tiny(), calib, sensitivity=sensitivity, steps=2)
    assert report.sensitivity == sensitivity
    assert 0.0 < report.sparsity < 1.0


def test_prune_ties_go_to_the_lower_index() -> None:
    # rank by (score, index): of four equal scores, rho = 0.5 drops the first two
    m = nn.Linear(4, 1)
    masks = prune(m, {"weight": 0.5}, {"weight": torch.ones(1, 4)})
    assert masks["weight"].tolist() == [[False, False, True, True]]


@pytest.mark.parametrize("criterion", SINGLE_CRITERIA)
def test_single_criterion_global_removes_exact_count(criterion: str, calib) -> None:
    # global scope: exactly floor(s * N) of all N Conv/Linear weights, whichever layers they
    # are in; layer scope: floor(s * n_l) in each layer
    m = Tiny()
    masks = prune_single_criterion(m, criterion, 0.6, calib)
    total = sum(p.numel() for p in prunable_weights(m).values())
    assert sum(int((~k).sum()) for k in masks.values()) == math.floor(0.6 * total)
    for name, p in prunable_weights(m).items():
        assert bool((p[~masks[name]] == 0).all())
    m = Tiny()
    masks = prune_single_criterion(m, criterion, 0.6, calib, scope="layer")
    for name, p in prunable_weights(m).items():
        assert int((~masks[name]).sum()) == math.floor(0.6 * p.numel())


def test_single_criterion_magnitude_drops_the_globally_smallest() -> None:
    m = Tiny()
    scores = {n: s.clone() for n, s in magnitude_scores(m).items()}
    masks = prune_single_criterion(m, "magnitude", 0.5)
    dropped = torch.cat([scores[n][~k] for n, k in masks.items()])
    kept = torch.cat([scores[n][k] for n, k in masks.items()])
    assert float(dropped.max()) <= float(kept.min())
    with pytest.raises(ModelError, match="calib"):
        prune_single_criterion(Tiny(), "snip", 0.5)


def test_mask_is_the_same_with_one_or_two_blas_threads(calib) -> None:
    # Law: which weights are kept does not depend on how BLAS splits its sums. Masks from the
    # product sensitivity (|w| x |dL/dw|, float64): per layer at 60 % and global SNIP at 60 %,
    # computed with 1 and 2 threads (torch, and threadpoolctl's BLAS limit where installed),
    # are identical.
    from edgesim.testing import under_thread_counts

    def masks() -> dict[str, torch.Tensor]:
        m = Tiny()
        m.load_state_dict(state)
        scores = product_scores(m, calib, steps=2)
        out = prune(m, dict.fromkeys(prunable_weights(m), 0.6), scores)
        m.load_state_dict(state)
        glob = prune_single_criterion(m, "snip", 0.6, calib)
        return {**out, **{f"global {n}": k for n, k in glob.items()}}

    torch.manual_seed(0)
    state = Tiny().state_dict()
    out = under_thread_counts(masks)
    assert out[0].keys() == out[1].keys()
    for name in out[0]:
        assert torch.equal(out[0][name], out[1][name]), name


def test_prune_drops_lowest_scores() -> None:
    m = Tiny()
    scores = magnitude_scores(m)
    masks = prune(m, {"fc1.weight": 0.37, "conv.weight": 0.0}, scores)
    keep, s = masks["fc1.weight"], scores["fc1.weight"]
    assert int((~keep).sum()) == math.floor(0.37 * 16384)
    assert float(s[~keep].max()) <= float(s[keep].min())
    assert bool(masks["conv.weight"].all())


def test_masks_persist_through_fine_tuning(calib) -> None:
    m = Tiny()
    masks = prune(m, {"conv2.weight": 0.5, "fc1.weight": 0.8}, magnitude_scores(m))
    apply_masks(m, masks)
    before = m.fc1.weight.detach().clone()
    fine_tune(m, masks, calib, epochs=2, lr=1e-2)  # 2 epochs x 2 batches = 4 Adam steps
    for name, mask in masks.items():
        assert bool((dict(m.named_parameters())[name][~mask] == 0).all())
    assert not torch.equal(m.fc1.weight[masks["fc1.weight"]], before[masks["fc1.weight"]])


def test_fine_tune_steps_limit(calib) -> None:
    m = Tiny()
    masks = prune(m, {"fc1.weight": 0.5}, magnitude_scores(m))
    before = m.fc1.weight.detach().clone()
    fine_tune(m, masks, calib, steps=1, lr=1e-2)
    assert not torch.equal(m.fc1.weight, before)


def test_tiny_swin_patch_embed_rule_and_grasp() -> None:
    # GraSP's double backward runs through softmax attention, LayerNorm and GELU.
    m = swin_tiny(10, 56, embed_dim=16, depths=(2, 2), heads=(1, 2))
    calib = synthetic_calibration(seed=0, shape=(3, 56, 56), num_classes=10, batch_size=2)
    m, report = mix_and_match(m, calib, strategy="percentile_70")
    rows = {r.layer: r for r in report.layers}
    pe = rows["patch_embed.proj.weight"]
    assert pe.rule == "patch-embed"
    assert 0.15 <= pe.rho_min <= pe.rho <= pe.rho_max <= 0.30
    assert rows["patch_embed.norm.weight"].rule == "norm-0"
    assert "layers.0.blocks.0.attn.relative_position_bias_table" not in rows  # stays dense


def test_synthetic_calibration_default_is_16_seeded_images() -> None:
    a = synthetic_calibration(seed=3, shape=(3, 8, 8), num_classes=5)
    b = synthetic_calibration(seed=3, shape=(3, 8, 8), num_classes=5)
    assert [tuple(x.shape) for x, _ in a] == [(8, 3, 8, 8), (8, 3, 8, 8)]
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b, strict=True))


def test_he_classifier_draws_linear_weights_at_the_conv_scale() -> None:
    # PyTorch's Linear default U(+-1/sqrt(2048)) has std 1/sqrt(3 * 2048) = 0.0128; the convs'
    # rule (He normal, fan_out = 1000 outputs) gives sqrt(2 / 1000) = 0.0447.
    torch.manual_seed(0)
    fc = nn.Linear(2048, 1000)
    assert fc.weight.detach().std().item() == pytest.approx(0.0128, rel=0.02)
    he_classifier_(fc)
    assert fc.weight.detach().std().item() == pytest.approx(math.sqrt(2 / 1000), rel=0.02)
    assert not fc.bias.any()


def test_tiny_resnet_batchnorm_and_grasp() -> None:
    # GraSP's double backward runs through BatchNorm and in-place ReLU; BN weights stay dense.
    m = ResNet(Bottleneck, [1, 1], num_classes=10, stem="cifar", width=8)
    calib = synthetic_calibration(seed=0, shape=(3, 16, 16), num_classes=10, batch_size=2)
    running = m.bn1.running_mean.clone()
    m, report = mix_and_match(m, calib, strategy="param_proportional")
    assert torch.equal(m.bn1.running_mean, running)  # calibration runs in eval mode
    for row in report.layers:
        assert row.rho_min <= row.rho <= row.rho_max
        assert row.rule != "norm-0" or row.achieved == 0.0
        assert ".bn" not in row.layer or row.rule == "norm-0"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "strategy", "patch_embeds"),
    [pytest.param(*p, marks=pytest.mark.xdist_group(f"registry-{p[0]}"))   # test_shipped's
     for p in [("sparse_swint", "percentile_70", 1), ("sparse_r50", "param_proportional", 0)]],
)
def test_full_size_factories(name: str, strategy: str, patch_embeds: int) -> None:
    # The registry's models as built (seed 0, random init + synthetic calibration: 2 batches of
    # 8 images, ~30-60 s each on one core; built once per session and shared with
    # test_shipped's fresh traces); the masks and ranges are buffers of the model (its
    # state_dict tells it pruned).
    m = registry_model(name)
    assert all(f"{name.rpartition('.')[0]}.weight_mask" in m.state_dict()
               for name in prunable_weights(m))
    report = m.prune_report
    assert report.strategy == strategy
    assert report.sensitivity == "magnitude"
    assert sum(r.rule == "patch-embed" for r in report.layers) == patch_embeds
    params = dict(m.named_parameters())
    for row in report.layers:
        assert row.rho_min <= row.rho <= row.rho_max
        assert int((params[row.layer] == 0).sum()) == math.floor(row.rho * row.params)
    if name == "sparse_r50":
        # PyTorch's Linear init is 2-14x below the He convs: global magnitude took 99.75 % of
        # fc. Drawn by the convs' rule, fc is pruned like a large layer (measured: 76.1 %).
        assert {r.layer: r for r in report.layers}["fc.weight"].achieved < 0.9
        assert report.sparsity > 0.6   # the model as a whole is still pruned (measured 70.0 %)
    assert 0.3 < report.sparsity < 0.95


@pytest.mark.parametrize("highest", [False, True])
def test_global_runs_count_what_the_full_stable_ranking_removes(highest):
    # the O(N) partition must remove, per layer, exactly the first floor(t N) weights of the
    # stable (score, position) ranking: scores drawn from 7 values force ties at every cut,
    # and -0.0 and 0.0 are one value
    from edgesim.zoo.pruning import _global_runs, lowest_first
    g = torch.Generator().manual_seed(3)
    values = torch.tensor([-2.0, -0.0, 0.0, 0.5, 1.0, 1.0, 3.0])
    scores = {f"l{i}": values[torch.randint(0, 7, (n,), generator=g)]
              for i, n in enumerate([5, 40, 1, 17])}
    targets = [0.0, 0.1, 0.37, 0.5, 0.9, 1.0]
    runs = _global_runs(scores, targets, prune_highest=highest)
    order = lowest_first(list(scores.values()), highest=highest)
    ends = np.cumsum([s.numel() for s in scores.values()])
    for t, run in zip(targets, runs, strict=True):
        k = math.floor(t * order.size)
        counts = np.bincount(np.searchsorted(ends, order[:k], side="right"), minlength=4)
        assert run == {n: int(c) / s.numel()
                       for (n, s), c in zip(scores.items(), counts, strict=True)}
