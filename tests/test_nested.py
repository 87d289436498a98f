"""edgesim.zoo.nested: nested levels by magnitude, level masks, gradient masking, storage."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from edgesim.errors import ModelError
from edgesim.zoo.nested import (
    LEVEL_NORM_BYTES,
    NestedModel,
    level_batchnorm,
    level_sparsity,
    nested_levels,
    nested_resnet50,
    nested_storage_report,
    train_nested,
)
from edgesim.zoo.resnet import BasicBlock, ResNet


def tiny_resnet() -> ResNet:
    return ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=4)


def tiny_batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g))
            for _ in range(n)]


def test_levels_count_per_layer_by_densities() -> None:
    # 100 weights, cumulative densities 0.1/0.3/0.5: 10 at level 1, 20 at level 2, 20 at level 3,
    # and the remaining 50 pruned (level 0).
    lv = nested_levels(nn.Linear(10, 10), densities=(0.1, 0.3, 0.5))["weight"]
    assert lv.dtype == torch.int8
    assert [int((lv == k).sum()) for k in range(4)] == [50, 10, 20, 20]


def test_levels_follow_magnitude_order() -> None:
    # A weight of a lower (sparser) level is never smaller in |w| than one of a later level,
    # and pruned weights are the smallest.
    lin = nn.Linear(16, 8)
    lv = nested_levels(lin, densities=(0.2, 0.4, 0.7))["weight"]
    mag = lin.weight.detach().abs()
    order = [1, 2, 3, 0]
    for a, b in itertools.pairwise(order):
        assert mag[lv == a].min() >= mag[lv == b].max()


def test_first_last_densities_apply_to_stem_and_classifier() -> None:
    net = tiny_resnet()
    lv = nested_levels(net, densities=(0.1, 0.2), first_last_densities=(0.5, 1.0))
    names = list(lv)
    assert names[0] == "conv1.weight"
    assert names[-1] == "fc.weight"
    for name in (names[0], names[-1]):
        assert level_sparsity(lv[name], 2) == 0.0   # density 1.0 at level 2: nothing pruned
    assert level_sparsity(lv["layer1.0.conv1.weight"], 2) == pytest.approx(0.8, abs=1 / 144)


@pytest.mark.parametrize("densities", [(0.3, 0.3), (0.5, 0.2), (0.0, 0.5), (0.5, 1.2), ()])
def test_bad_densities_are_rejected(densities: tuple[float, ...]) -> None:
    with pytest.raises(ModelError, match="densit"):
        nested_levels(nn.Linear(4, 4), densities=densities)


def test_level_sparsity_closed_form() -> None:
    # levels [0, 1, 2, 3, 3]: sub-network 1 has 1 of 5 -> 0.8 zero; 2 has 2 of 5; 3 has 4 of 5.
    lv = torch.tensor([0, 1, 2, 3, 3], dtype=torch.int8)
    assert [level_sparsity(lv, k) for k in (1, 2, 3)] == pytest.approx([0.8, 0.6, 0.2])


def test_set_level_masks_at_forward_time_and_keeps_latent_weights() -> None:
    net = tiny_resnet()
    lv = nested_levels(net, densities=(0.1, 0.3, 0.5))
    latent_before = {k: net.get_submodule(k.removesuffix(".weight")).weight.detach().clone()
                     for k in lv}
    model = NestedModel(net, lv)
    assert model.level == 3
    assert model.n_levels == 3
    prev_support = None
    for k in (1, 2, 3):
        model.set_level(k)
        assert model.level == k
        for name, levels in lv.items():
            w = net.get_submodule(name.removesuffix(".weight")).weight
            want = (levels >= 1) & (levels <= k)
            assert torch.equal(w != 0, want & (latent_before[name] != 0))
            # inside the mask the weight is the latent value: nothing was destroyed
            assert torch.equal(w[want], latent_before[name][want])
        support = {n: net.get_submodule(n.removesuffix(".weight")).weight != 0 for n in lv}
        if prev_support is not None:   # nested: sub-network k-1 is inside sub-network k
            assert all(bool((prev_support[n] <= support[n]).all()) for n in lv)
        prev_support = support
    model.set_level(1)
    assert model.sparsity() == pytest.approx(0.9, abs=0.01)
    model.set_level(3)
    assert model.sparsity() == pytest.approx(0.5, abs=0.01)


def test_set_level_out_of_range_is_an_error() -> None:
    net = nn.Sequential(nn.Linear(4, 4))
    model = NestedModel(net, nested_levels(net, densities=(0.25, 0.5)))
    for bad in (0, 3):
        with pytest.raises(ModelError, match=rf"level {bad} out of range; expected 1\.\.2"):
            model.set_level(bad)


def test_levels_must_match_weight_shape_and_name() -> None:
    net = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ModelError, match="shape"):
        NestedModel(net, {"0.weight": torch.ones(3, 4, dtype=torch.int8)})
    with pytest.raises(ModelError, match=r"'1\.weight'"):
        NestedModel(net, {"1.weight": torch.ones(4, 4, dtype=torch.int8)})


def test_tracer_attributes_name_weights_as_seen_from_the_wrapper() -> None:
    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net), level=2)
    lv = model.edgesim_nested_levels
    modules = dict(model.named_modules())
    assert model.level == 2
    params = dict(model.named_parameters())
    assert model.num_levels == 3
    assert "net.conv1.parametrizations.weight.original" in lv
    for name, levels in lv.items():
        m = modules[name.removesuffix(".parametrizations.weight.original")]
        assert params[name].shape == m.weight.shape == levels.shape
        assert m.edgesim_levels is levels


def test_level1_step_changes_only_level1_weights_and_pruned_stay_zero() -> None:
    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3, 0.5)))
    latent = model.latent_weights()
    before = {n: p.detach().clone() for n, p in latent.items()}
    # round robin: the first step trains sub-network 1
    losses = train_nested(model, tiny_batches(1), steps=1, lr=0.1)
    assert len(losses) == 1
    assert model.level == 3   # restored
    changed_level1 = 0
    for name, levels in model.edgesim_nested_levels.items():
        after = latent[name].detach()
        assert torch.equal(after[levels >= 2], before[name][levels >= 2])
        assert bool((after[levels == 0] == 0).all())
        changed_level1 += int((after[levels == 1] != before[name][levels == 1]).sum())
    assert changed_level1 > 0


def test_round_robin_level2_step_leaves_level3_weights() -> None:
    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3, 0.5)))
    latent = model.latent_weights()
    before = {n: p.detach().clone() for n, p in latent.items()}
    train_nested(model, tiny_batches(2), steps=2, lr=0.1)   # levels 1 then 2
    moved2 = 0
    for name, levels in model.edgesim_nested_levels.items():
        after = latent[name].detach()
        assert torch.equal(after[levels == 3], before[name][levels == 3])
        moved2 += int((after[levels == 2] != before[name][levels == 2]).sum())
    assert moved2 > 0


def test_sum_schedule_trains_all_levels_and_keeps_pruned_zero() -> None:
    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3)))
    latent = model.latent_weights()
    before = {n: p.detach().clone() for n, p in latent.items()}
    losses = train_nested(model, tiny_batches(2), epochs=2, schedule="sum", lr=0.1)
    assert len(losses) == 4
    for name, levels in model.edgesim_nested_levels.items():
        after = latent[name].detach()
        assert bool((after[levels == 0] == 0).all())
        assert bool((after[levels == 2] != before[name][levels == 2]).any())


def _mlp_levels() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    return net, nested_levels(net, densities=(0.3, 0.6, 1.0))


def test_gradient_masking_changes_training_against_plain_masked_joint_training() -> None:
    # Law of the gradient masking read from the paper: under the summed loss a level-j weight
    # moves by -lr * dL_j/dw (sub-network j's loss alone); plain masked joint training moves it
    # by -lr * sum_{k >= j} dL_k/dw. One SGD step from the same start: the masked step equals
    # the per-level reference exactly, and the two trainings give different weights.
    x, y = tiny_batches(1)[0][0].flatten(1)[:, :6], torch.tensor([0, 1, 2, 0])
    lr = 0.1
    ref_net, lv = _mlp_levels()
    ref = NestedModel(ref_net, lv)
    latent = ref.latent_weights()
    grads = {}
    for k in (1, 2, 3):
        ref.set_level(k)
        grads[k] = torch.autograd.grad(nn.functional.cross_entropy(ref(x), y),
                                       list(latent.values()))
    after = {}
    for masking in (True, False):
        net, lv = _mlp_levels()
        model = NestedModel(net, lv)
        start = {n: p.detach().clone() for n, p in model.latent_weights().items()}
        train_nested(model, [(x, y)], steps=1, lr=lr, schedule="sum",
                     gradient_masking=masking)
        after[masking] = {n: p.detach().clone() for n, p in model.latent_weights().items()}
        for i, (name, levels) in enumerate(model.edgesim_nested_levels.items()):
            for j in (1, 2, 3):
                at = levels == j
                ks = (j,) if masking else tuple(range(j, 4))
                step = sum(grads[k][i] for k in ks)
                expect = start[name] - lr * step
                torch.testing.assert_close(after[masking][name][at], expect[at],
                                           rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(after[True][n], after[False][n]) for n in after[True])


def test_round_robin_masked_step_leaves_the_sparser_levels() -> None:
    # a step on sub-network 2 moves only the weights level 2 adds; unmasked it moves level 1 too
    moved = {}
    for masking in (True, False):
        net, lv = _mlp_levels()
        model = NestedModel(net, lv)
        latent = model.latent_weights()
        before = {n: p.detach().clone() for n, p in latent.items()}
        data = [(torch.randn(4, 6, generator=torch.Generator().manual_seed(i)),
                 torch.tensor([0, 1, 2, 0])) for i in range(2)]
        train_nested(model, data, steps=2, lr=0.1, gradient_masking=masking)  # levels 1, 2
        moved[masking] = sum(int((latent[n][lv_ == 1] != before[n][lv_ == 1]).sum())
                             for n, lv_ in model.edgesim_nested_levels.items())
    one_step_moves = moved[True]      # level 1 moved in step 1 only
    assert moved[False] >= one_step_moves > 0
    # level-1 weights after the masked run equal a run of the level-1 step alone
    net, lv = _mlp_levels()
    alone = NestedModel(net, lv)
    data = [(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)),
             torch.tensor([0, 1, 2, 0]))]
    train_nested(alone, data, steps=1, lr=0.1)
    net, lv = _mlp_levels()
    both = NestedModel(net, lv)
    data.append((torch.randn(4, 6, generator=torch.Generator().manual_seed(1)),
                 torch.tensor([0, 1, 2, 0])))
    train_nested(both, data, steps=2, lr=0.1)
    for n, levels in both.edgesim_nested_levels.items():
        a, b = alone.latent_weights()[n].detach(), both.latent_weights()[n].detach()
        assert torch.equal(a[levels == 1], b[levels == 1])


def test_a_levels_stored_bytes_include_its_batchnorm_statistics() -> None:
    # Law: with one BatchNorm set per level, the trace stores, per level k >= 2 and per conv a
    # BatchNorm follows, LEVEL_NORM_BYTES (fp32 scale + int32 bias = 8) per output channel:
    # the stored bytes grow by 8 x (N - 1) x (channels of the BN-followed convs), the bytes a
    # sub-network reads do not (its set stands in for level 1's). tiny_resnet: BN-followed
    # convs stem 4 + layer1 (4 + 4) + layer2 (8 + 8 + downsample 8) = 36 channels; N = 3.
    from edgesim.trace import trace
    from edgesim.zoo.deploy import prepare

    x = torch.randn(1, 3, 8, 8)
    out = {}
    for per_level in (False, True):
        torch.manual_seed(0)
        net = tiny_resnet()
        model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3, 0.5)), level=2)
        level_batchnorm(model, tiny_batches(2))
        if not per_level:   # the same weights and level-2 statistics, one stored set
            for pm in model.masks().values():
                pm.level_norm_channels = 0
        for k, stats in model.level_norms.items():
            model.set_level(k)
            bn = model.net.bn1
            assert torch.equal(bn.running_mean, stats["net.bn1"][0])
        model.set_level(2)
        out[per_level] = trace(prepare(model.eval(), x), x, name="n", family="nested",
                               encodings=("dense", "nested"), inputs=1)
    plain, levelled = out[False], out[True]
    assert levelled.stored_bytes - plain.stored_bytes == LEVEL_NORM_BYTES * 2 * 36
    norms = [b for b in levelled.blocks.values() if "norm_of_level" in b.meta]
    assert sorted({b.meta["norm_of_level"] for b in norms}) == [2, 3]
    assert sum(b.stored_bytes for b in norms) == LEVEL_NORM_BYTES * 2 * 36
    assert levelled.path_stored_bytes(0) - plain.path_stored_bytes(0) == 0


def test_bad_schedule_is_an_error() -> None:
    net = nn.Sequential(nn.Linear(4, 3))
    model = NestedModel(net, nested_levels(net, densities=(0.5,)))
    with pytest.raises(ModelError, match="schedule 'random'"):
        train_nested(model, tiny_batches(1), schedule="random")


def test_storage_report_closed_form() -> None:
    # levels [[1,0,2,0],[0,2,0,1]], 8-bit values, 2 rows -> 2 fp32 scales (8 bytes).
    # One level-k CSR segment with 2 nonzeros in a 2x4 matrix: 2 value bytes
    # + ceil(2 * width(4)=2 / 8) = 1 index byte + ceil(3 row pointers * width(3)=2 / 8) = 1 -> 4.
    # Stream: 8 (scales) + 4 -> prefix 12, + 4 -> 16.
    # Separate: level 1 alone = 4 + 8 = 12; levels 1..2 (4 nonzeros): 4 + ceil(4*2/8)=1
    #   + ceil(3 * width(5)=3 / 8)=2 -> 7, + 8 = 15; total 27.
    net = nn.Sequential(nn.Linear(4, 2))
    levels = torch.tensor([[1, 0, 2, 0], [0, 2, 0, 1]], dtype=torch.int8)
    model = NestedModel(net, {"0.weight": levels})
    layer, total = nested_storage_report(model, bits=8)
    assert layer["layer"] == "net.0.parametrizations.weight.original"
    assert layer["nnz"] == [2, 4]
    assert layer["nested_bytes"] == [12, 16]
    assert layer["stream_bytes"] == 16
    assert layer["separate_bytes"] == 27
    assert layer["saving"] == pytest.approx(1 - 16 / 27)
    # Each segment in the smallest segment encoding: a 1-bit mask over the 8 weights (1 byte)
    # + 2 value bytes = 3 < 4 (CSR), so 8 + 3 = 11, then + 3 = 14 (bitmap and rle tie at 3).
    assert layer["best_bytes"] == [11, 14]
    assert total["layer"] == "total"
    assert total["stream_bytes"] == 16
    assert total["separate_bytes"] == 27
    assert total["best_bytes"] == [11, 14]


def test_one_nested_stream_never_costs_more_than_separate_models() -> None:
    # Segment k has nnz_k <= nnz_1 + ... + nnz_k nonzeros, so each CSR term is no larger than
    # that of the k-th separate model, and the scales are stored once instead of N times.
    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3, 0.5)))
    rows = nested_storage_report(model, bits=8)
    for r in rows:
        assert r["nested_bytes"] == sorted(r["nested_bytes"])
        assert r["stream_bytes"] <= r["separate_bytes"]
    assert rows[-1]["stream_bytes"] == sum(r["stream_bytes"] for r in rows[:-1])
    assert rows[-1]["saving"] > 0.3


def test_nested_resnet50_needs_one_density_per_level() -> None:
    with pytest.raises(ModelError, match="levels=2 but 3 densities"):
        nested_resnet50(levels=2, densities=(0.1, 0.3, 0.5))


@pytest.mark.slow
def test_nested_resnet50_sub_network_sparsity() -> None:
    model = nested_resnet50(seed=0, level=1, num_classes=10)
    assert model.level == 1
    # every layer keeps round(d * n) weights, so the overall density is d within rounding
    assert [model.sparsity(k) for k in (1, 2, 3)] == pytest.approx([0.9, 0.7, 0.5], abs=1e-3)
    y = model(torch.randn(1, 3, 64, 64))
    assert y.shape == (1, 10)


def test_tracer_sees_the_level_k_weights_under_the_nested_level_names() -> None:
    # The tracer stores a nested weight as one stream in the nested prefix layout, one block per
    # level named after the latent parameter (``<name>#Lk``); sub-network 2 reads levels 1 and 2,
    # and the blocks of all levels together count the tensor's elements once. Level k's block
    # holds the weights first present at level k (int8 rounding can only zero a few more).
    from edgesim.trace import record

    net = tiny_resnet()
    model = NestedModel(net, nested_levels(net, densities=(0.1, 0.3, 0.5)), level=2).eval()
    with torch.no_grad():
        blocks, _ = record(model, torch.randn(1, 3, 8, 8))
    by_id = {b.id: b for b in blocks}
    for name, levels in model.edgesim_nested_levels.items():
        segments = [by_id[f"{name}#L{k}"] for k in (1, 2)]
        assert f"{name}#L3" not in by_id or sum(  # every level's block, counted once
            by_id[f"{name}#L{k}"].elements for k in (1, 2, 3)) == levels.numel()
        for k, seg in zip((1, 2), segments, strict=True):
            present = int((levels == k).sum())
            assert present - 2 <= seg.nonzeros <= present
