"""edgesim.zoo.baselines: FPGM / HRank channel pruning, plain binary weights, narrow nets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo import baselines as B
from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet


def basic(width: int = 8) -> ResNet:
    torch.manual_seed(0)
    return ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=width).eval()


def bottleneck() -> ResNet:
    torch.manual_seed(0)
    return ResNet(Bottleneck, [1, 1], num_classes=3, stem="cifar", width=8).eval()


def images(n: int = 4, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 3, 8, 8, generator=g), torch.zeros(n, dtype=torch.long))]


@pytest.mark.parametrize("make", [basic, bottleneck])
@pytest.mark.parametrize("method", ["fpgm", "hrank"])
def test_pruning_keeps_exactly_the_plans_channels_and_the_model_runs(make, method):
    dense = make()
    n = B.active_params(dense)
    plan = B.channel_plan(dense, 0.6)
    model = B.channel_prune(make(), 0.6, method, images())
    for name, k in plan.items():
        assert model.get_submodule(name).out_channels == k
        bn, nxt = B.prunable_channels(model)[name]
        assert model.get_submodule(bn).num_features == k
        assert model.get_submodule(nxt).in_channels == k
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
    # at most the target (the plan counts in integers; a Bottleneck's 3x3 loses inputs and
    # outputs at once), and one more channel per layer would not fit
    assert B.active_params(model) <= math.floor(0.6 * n)
    bigger = {k: min(v + 1, dense.get_submodule(k).out_channels) for k, v in plan.items()}
    keep = {k: list(range(v)) for k, v in bigger.items()}
    assert B.active_params(B.prune_channels(make(), keep)) > math.floor(0.6 * n)


def test_a_target_below_one_channel_per_layer_is_one_line():
    with pytest.raises(ModelError, match="even one channel per pruned layer"):
        B.channel_plan(basic(), 0.01)
    with pytest.raises(ModelError, match=r"expected a share of the dense parameters in \(0, 1\]"):
        B.channel_plan(basic(), 1.5)


def test_fpgm_prunes_the_filters_nearest_the_geometric_median():
    # three copies of one filter and an outlier: the copies are replaceable by each other
    # (distance sums 0+0+d each), the outlier is not (3d): keeping 2 keeps the outlier and the
    # lowest-indexed copy (tie rule)
    w = torch.zeros(4, 2, 3, 3)
    w[3] = 1.0
    scores = B.fpgm_scores(w)
    d = math.sqrt(18)                 # ||0 - 1|| over 2*3*3 entries
    assert scores.tolist() == pytest.approx([d, d, d, 3 * d])
    assert B.select(scores, 2) == [0, 3]


def test_ties_go_to_the_lowest_index():
    assert B.select(np.zeros(5), 3) == [0, 1, 2]
    assert B.select(np.array([1, 2, 2, 2, 0]), 2) == [1, 2]


def test_rank_mod_p_is_the_rank_of_a_product_of_known_inner_size():
    # A (m x r) B (r x n) of random integers has rank r (with probability ~1; these are fixed)
    rng = np.random.default_rng(0)
    mats, want = [], []
    for r in (0, 1, 3, 5):
        a = rng.integers(-127, 128, (7, r))
        b = rng.integers(-127, 128, (r, 6))
        mats.append(a @ b if r else np.zeros((7, 6), dtype=np.int64))
        want.append(r)
    got = B.matrix_rank_mod_p(np.stack(mats))
    assert got.tolist() == want
    assert got.tolist() == [np.linalg.matrix_rank(m.astype(float)) for m in mats]


def test_hrank_prunes_a_channel_whose_maps_are_zero_first():
    model = basic()
    bn = model.layer1[0].bn1
    with torch.no_grad():              # channel 2 of layer1.0: BN scale and shift 0 -> map 0
        bn.weight[2] = 0.0
        bn.bias[2] = 0.0
    scores = B.hrank_scores(model, images(), ["layer1.0.conv1"])["layer1.0.conv1"]
    assert scores[2] == 0
    assert (np.delete(scores, 2) > 0).all()
    assert 2 not in B.select(scores, 7)


def test_selections_do_not_depend_on_the_thread_count():
    def picks() -> tuple:
        model = bottleneck()
        h = B.hrank_scores(model, images())
        f = {n: B.fpgm_scores(model.get_submodule(n).weight) for n in h}
        return ({n: v.tolist() for n, v in h.items()}, {n: v.tobytes() for n, v in f.items()})

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = picks()
        torch.set_num_threads(2)
        two = picks()
    finally:
        torch.set_num_threads(before)
    assert one == two


def test_plain_binary_is_alpha_times_sign_per_filter_and_stores_one_bit():
    from edgesim.trace import trace
    from edgesim.zoo.deploy import prepare

    model = B.to_binary(basic(), keep_first_last_int8=True)
    conv = model.layer1[0].conv2
    latent = conv.parametrizations.weight.original.detach()
    alpha = latent.abs().reshape(latent.shape[0], -1).mean(dim=1)
    want = alpha[:, None, None, None] * torch.where(latent >= 0, 1.0, -1.0)
    assert torch.equal(conv.weight.detach(), want)
    x = torch.randn(1, 3, 8, 8)
    w = trace(prepare(model, x), x, name="bin", family="binary", encodings=("dense",))
    block = w.blocks["layer1.0.conv2.parametrizations.weight.original"]
    # 1 bit per weight packed (8 x 8 x 3 x 3 = 576 bits = 72 B) + one fp32 scale per filter
    assert block.stored_bytes == 576 // 8 + 4 * 8
    stem = w.blocks["conv1.weight"]
    assert stem.stored_bytes == stem.dense_bytes == 8 * 27 + 4 * 8   # the stem stays int8


def test_binary_training_moves_the_latent_weights():
    model = B.to_binary(basic(), keep_first_last_int8=True)
    before = model.layer1[0].conv1.parametrizations.weight.original.detach().clone()
    x, _ = images()[0]
    B.fine_tune_binary(model, [(x, torch.tensor([0, 1, 2, 0]))], epochs=2, lr=1e-2)
    after = model.layer1[0].conv1.parametrizations.weight.original.detach()
    assert not torch.equal(before, after)          # the straight-through gradient arrives


def test_narrow_width_is_the_widest_within_the_budget():
    def make(w: int) -> nn.Module:
        return ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=w)

    budget = B.active_params(make(6)) + 1
    assert B.narrow_width(make, budget, widest=8) == 6
    assert B.active_params(make(7)) > budget


def test_registry_baselines_are_families_of_their_own():
    from edgesim.zoo.registry import get_family, get_spec
    assert get_spec("fpgm_r50").family == get_spec("hrank_r50").family == "channel"
    assert get_spec("bin_r50").family == "binary"
    assert isinstance(get_family("channel"), B.ChannelFamily)


def test_narrow_r50_is_the_widest_resnet50_within_a_tree_paths_active_size():
    # the shipped sigmab_r50 trace records its paths' parameters as deployed (BN folded)
    from edgesim import cache, ship
    from edgesim.zoo.deploy import find_bn_pairs, skeleton
    (key,) = [k for n, _, kind, k in ship.expected() if n == "sigmab_r50" and kind == "workload"]
    paths = cache.shipped("workload", key).meta["tree"]["paths"]
    budget = sum(paths) / len(paths)

    def deployed(width: int) -> int:
        with torch.device("meta"):
            m = B.narrow_resnet50(width=width)
        return B.active_params(skeleton(m, find_bn_pairs(m)))

    assert deployed(40) <= budget < deployed(41)
