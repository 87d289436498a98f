"""edgesim.zoo.signed_binary: the binarization rule, the STE, model conversion, storage."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgesim.errors import ModelError
from edgesim.testing import registry_model
from edgesim.zoo.resnet import BasicBlock, ResNet
from edgesim.zoo.signed_binary import (
    DEFAULT_THRESHOLD,
    calibrate_thresholds,
    fine_tune_ste,
    sb_resnet50,
    signed_binarize,
    signed_binary_,
    signed_binary_storage_report,
    to_signed_binary,
)

# sb_r50 is built once per session (edgesim.testing.registry_model): under pytest-xdist the
# tests that read it run in one worker, with test_shipped's
pytestmark = pytest.mark.xdist_group("registry-sb_r50")


def tiny_resnet() -> ResNet:
    return ResNet(BasicBlock, [1, 1], num_classes=3, stem="cifar", width=4)


def tiny_batches(n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 3, (4,), generator=g))
            for _ in range(n)]


@pytest.mark.parametrize("region", [None, 9, 12, 36])
def test_each_region_holds_zero_and_one_signed_value(region: int | None) -> None:
    w = torch.randn(8, 4, 3, 3)
    wq, signs, scales = signed_binarize(w, region=region)
    size = 36 if region is None else region
    rows = wq.reshape(-1, size)
    assert signs.shape == scales.shape == (rows.shape[0],)
    for r, s, a in zip(rows, signs, scales, strict=True):
        values = set(r.tolist())
        assert values <= {0.0, float(s * a)}          # at most two values, one of them 0
        assert bool((r * s >= 0).all())               # every nonzero has the region's sign
        assert float(a) >= 0.0


def test_sign_is_the_side_with_larger_total_magnitude() -> None:
    # Three small positives (sum 0.3) against one large negative (-1): the sum is negative,
    # so the region keeps only the negative weight, with a = 1.
    wq, signs, scales = signed_binarize(torch.tensor([[0.1, 0.1, 0.1, -1.0]]))
    assert signs.tolist() == [-1.0]
    assert wq.tolist() == [[0.0, 0.0, 0.0, -1.0]]   # only one candidate, so only one kept
    assert scales.tolist() == [1.0]


def _zeros(wq: torch.Tensor) -> float:
    return float((wq == 0).float().mean())


def test_sparsity_changes_with_the_threshold() -> None:
    # A weight is kept when it has its region's sign and |w| >= t * mean|w|: a higher t keeps a
    # subset, so zeros never fall as t rises, and do rise between t = 0.3 and t = 1.2.
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))
    zeros = [_zeros(signed_binarize(w, threshold=t)[0]) for t in (0.0, 0.3, 0.7, 1.2, 2.0)]
    assert zeros == sorted(zeros)
    assert zeros[3] > zeros[1] + 0.1
    # t = 0 keeps every weight of the region's sign: the zeros are the other side's
    wq, signs, _ = signed_binarize(w, threshold=0.0)
    rows = w.reshape(16, -1) * signs[:, None]
    assert torch.equal(wq.reshape(16, -1) != 0, rows > 0)


def test_sparsity_is_an_outcome_of_the_weights_not_a_target() -> None:
    # No sparsity is asked for anywhere ...
    for fn in (signed_binarize, signed_binary_, to_signed_binary, sb_resnet50):
        assert "sparsity" not in inspect.signature(fn).parameters
    # ... so at the same t two weight distributions give different sparsities. Normal weights
    # (mean|w| = sigma sqrt(2/pi)): half on the other side + P(|z| < 0.7 sqrt(2/pi) = 0.5585)
    # = 0.4235 of the rest -> 0.5 + 0.5 * 0.4235 = 0.712. Laplace (mean|w| = b): P(|w| < 0.7 b)
    # = 1 - e^-0.7 = 0.5034 -> 0.752. 512 regions of 576: within 0.02 (the region's side
    # holds a little more than half of its weights).
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(512, 64, 3, 3, generator=g)
    u = torch.rand(512, 64, 3, 3, generator=g) - 0.5
    laplace = -torch.sign(u) * torch.log1p(-2 * u.abs())
    assert DEFAULT_THRESHOLD == 0.7
    z_normal = _zeros(signed_binarize(normal)[0])
    z_laplace = _zeros(signed_binarize(laplace)[0])
    expect_normal = 0.5 + 0.5 * math.erf(0.7 * math.sqrt(2 / math.pi) / math.sqrt(2))
    assert z_normal == pytest.approx(expect_normal, abs=0.02)
    assert z_laplace == pytest.approx(0.5 + 0.5 * (1 - math.exp(-0.7)), abs=0.02)
    assert z_laplace > z_normal + 0.02


def test_kept_weights_are_each_regions_largest_candidates_and_scale_is_their_mean() -> None:
    w = torch.randn(6, 20)
    wq, signs, scales = signed_binarize(w)
    mag = w * signs[:, None]
    kept = wq != 0
    # the rule: kept <=> the region's sign and |w| >= 0.7 * mean|w| of the region
    assert torch.equal(kept, (mag > 0) & (mag >= 0.7 * w.abs().mean(dim=1, keepdim=True)))
    dropped_candidates = (mag > 0) & ~kept
    for i in range(6):
        assert kept[i].any()
        if dropped_candidates[i].any():
            assert mag[i][kept[i]].min() >= mag[i][dropped_candidates[i]].max()
        assert float(scales[i]) == pytest.approx(float(mag[i][kept[i]].mean()))


def test_binarizing_commutes_with_scaling_filters() -> None:
    # Folding a BatchNorm multiplies each filter by a nonzero constant c; the choice is made
    # inside a region, so signed_binarize(c * w) keeps the same weights and gives c * wq.
    w = torch.randn(4, 2, 3, 3)
    c = torch.tensor([2.0, -0.5, 3.0, -1.0]).reshape(-1, 1, 1, 1)
    wq, _, _ = signed_binarize(w, region=9)
    wq_scaled, _, _ = signed_binarize(c * w, region=9)
    assert torch.equal(wq_scaled != 0, wq != 0)
    assert torch.allclose(wq_scaled, c * wq)


@pytest.mark.parametrize("region", [5, 0, -3, 2.5, True])
def test_bad_region_is_an_error(region: object) -> None:
    with pytest.raises(ModelError, match=f"region={region!r}"):
        signed_binarize(torch.randn(4, 4, 3, 3), region=region)  # type: ignore[arg-type]


def test_region_must_divide_a_filter_naming_the_layer() -> None:
    net = tiny_resnet()
    # 3x3 filters (36 or 72 elements) are divisible by 9, the 1x1 shortcut conv (4 elements) not;
    # nothing is converted when one layer fails.
    with pytest.raises(ModelError, match=r"layer2\.0\.downsample\.0: region=9 does not divide "
                                         r"the 4 elements"):
        to_signed_binary(net, region=9)
    assert not any(parametrize.is_parametrized(m) for m in net.modules())


@pytest.mark.parametrize("threshold", [-0.1, math.inf, math.nan])
def test_bad_threshold_is_an_error(threshold: float) -> None:
    with pytest.raises(ModelError, match="threshold"):
        signed_binarize(torch.randn(2, 4), threshold=threshold)


def test_to_signed_binary_leaves_first_and_last_layers_untouched() -> None:
    net = tiny_resnet()
    stem, fc = net.conv1.weight.detach().clone(), net.fc.weight.detach().clone()
    to_signed_binary(net)
    assert not parametrize.is_parametrized(net.conv1)
    assert not parametrize.is_parametrized(net.fc)
    assert torch.equal(net.conv1.weight, stem)
    assert torch.equal(net.fc.weight, fc)
    assert not hasattr(net.conv1, "edgesim_precision")
    converted = [m for m in net.modules() if parametrize.is_parametrized(m)]
    assert len(converted) == 5   # layer1: 2 convs; layer2: 2 convs + the shortcut conv
    for m in converted:
        assert m.edgesim_precision == "binary"
        assert m.edgesim_encoding == "signed_binary"
        # module.weight IS the binarized tensor; the state_dict holds the latent weight
        latent = m.parametrizations.weight.original
        assert torch.equal(m.weight, signed_binarize(latent)[0])
    assert "layer1.0.conv1.parametrizations.weight.original" in net.state_dict()


def test_first_and_last_can_be_chosen_separately() -> None:
    net = to_signed_binary(tiny_resnet(), keep_first_last_int8=(True, False))
    assert not parametrize.is_parametrized(net.conv1)
    assert parametrize.is_parametrized(net.fc)
    net = to_signed_binary(tiny_resnet(), keep_first_last_int8=False)
    assert parametrize.is_parametrized(net.conv1)


def test_ste_passes_gradient_to_latent_weights_with_clipping() -> None:
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, 2.0, 0.3, 0.2], [-0.4, -0.1, 0.2, -1.5]]))
    signed_binary_(lin, clip=1.0)
    x = torch.ones(1, 4)
    lin(x).sum().backward()
    grad = lin.parametrizations.weight.original.grad
    # d(sum of outputs)/d wq = 1 for every weight; the clipped STE passes it where |w| <= 1
    # and blocks it at 2.0 and -1.5.
    assert grad.tolist() == [[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 0.0]]


def test_one_fine_tune_step_changes_latent_weights() -> None:
    net = to_signed_binary(tiny_resnet())
    latent = net.layer1[0].conv1.parametrizations.weight.original
    before = latent.detach().clone()
    losses = fine_tune_ste(net, tiny_batches(2), steps=1, lr=1e-2)
    assert len(losses) == 1
    assert not torch.equal(latent.detach(), before)
    wq = net.layer1[0].conv1.weight
    assert len(set(wq.abs().reshape(wq.shape[0], -1)[0].tolist())) <= 2   # still {0, a}


def test_the_threshold_is_learned_through_the_ste() -> None:
    # The threshold is a parameter of each binarized weight; a step on data moves it (the box
    # surrogate passes the gradient of the decisions near Delta), and calibrating the
    # thresholds alone leaves the latent weights as they were.
    torch.manual_seed(0)
    net = to_signed_binary(tiny_resnet())
    conv = net.layer1[0].conv1
    t = conv.parametrizations.weight[0].threshold
    latent = conv.parametrizations.weight.original.detach().clone()
    assert isinstance(t, nn.Parameter)
    assert t.item() == pytest.approx(0.7)
    calibrate_thresholds(net, tiny_batches(4), lr=0.2)
    assert t.item() != pytest.approx(0.7)
    assert t.item() >= 0.0
    assert torch.equal(conv.parametrizations.weight.original.detach(), latent)
    assert "layer1.0.conv1.parametrizations.weight.0.threshold" in net.state_dict()


def test_storage_report_closed_form() -> None:
    # stem Conv2d(3, 4, 3) + BN: int8 dense 108 bytes + 4 fp32 scales (16) = 124; folded BN bias
    #   4 x int32 = 16.
    # conv Conv2d(4, 8, 3) + BN, signed binary, 8 regions of 36: ceil(8/8) = 1 sign byte
    #   + ceil(288/8) = 36 mask bytes + 8 x 4 = 32 scale bytes = 69; folded bias 8 x 4 = 32.
    #   Dense int8: 288 + 32 = 320.
    # fc Linear(8, 2) with bias: int8 16 + 2 scales (8) = 24; bias 2 x 4 = 8.
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4),
                        nn.Conv2d(4, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    to_signed_binary(net)
    stem, conv, fc, total = signed_binary_storage_report(net)
    assert (stem["encoding"], stem["weight_bytes"], stem["bias_bytes"]) == ("dense", 124, 16)
    assert (conv["encoding"], conv["weight_bytes"], conv["bias_bytes"]) == ("signed_binary", 69, 32)
    assert conv["dense_int8_bytes"] == 320 + 32
    assert conv["nonzeros"] == int(torch.count_nonzero(net[2].weight))   # what the rule kept
    assert (fc["weight_bytes"], fc["bias_bytes"]) == (24, 8)
    assert total["bytes"] == 124 + 16 + 69 + 32 + 24 + 8
    assert total["dense_int8_bytes"] == 140 + 352 + 32
    assert total["elements"] == 108 + 288 + 16


@pytest.mark.slow
def test_sb_resnet50_sparsity_and_bytes() -> None:
    # Default: stem int8, everything else (classifier included) binarized at t = 0.7, whose
    # sparsity on the normal (He) conv init is ~0.71 (test above) and 0.675 on the uniform fc
    # (U(-a, a): mean|w| = a/2, kept 0.5 * (1 - 0.35)); measured 0.7006.
    # Bytes ~ 25.5 M mask bits (3.19 MB) + 26.6 K fp32 scales + folded int32 biases ~ 3.4 MB,
    # far below dense int8 / 6 (25.7 MB / 6 = 4.29 MB).
    rows = signed_binary_storage_report(registry_model("sb_r50"))   # sb_resnet50(seed=0)
    total = rows[-1]
    assert 0.65 <= total["sparsity"] <= 0.72
    assert total["bytes"] * 6 <= total["dense_int8_bytes"]
    assert total["bytes"] * 6 <= 25_557_032


def test_tracer_records_binarized_layers_as_binary() -> None:
    # module.weight is the binarized tensor and the module says edgesim_precision = "binary",
    # so the tracer stores 1-bit values with exactly the kept weights as nonzeros.
    from edgesim.trace import record

    net = to_signed_binary(tiny_resnet()).eval()
    with torch.no_grad():
        blocks, ops = record(net, torch.randn(1, 3, 8, 8))
    by_id = {b.id: b for b in blocks}
    block = by_id["layer1.0.conv1.parametrizations.weight.original"]
    assert block.bits == 1
    assert block.nonzeros == int(torch.count_nonzero(net.layer1[0].conv1.weight))
    assert by_id["conv1.weight"].bits == 8
    precisions = {op.name: op.precision for op in ops if op.kind == "conv"}
    assert precisions["conv1"] == "int8"
    assert precisions["layer1.0.conv1.conv2d"] == "binary"


def test_region_hint_is_traced() -> None:
    # The documented to_signed_binary(model, region=9) on three 3x3 convs: each filter of the
    # last two holds 2 regions of 9 weights, each region with its own sign, so a filter can hold
    # both signs; the tracer reads ``edgesim_region`` and stores exactly
    # encodings.signed_binary_bytes(values, region=9) (one sign bit and one scale per region).
    from edgesim import encodings
    from edgesim.trace import record

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1),
                        nn.Conv2d(2, 2, 3, padding=1))
    to_signed_binary(net, region=9, keep_first_last_int8=False)
    with torch.no_grad():
        blocks, _ = record(net.eval(), torch.randn(1, 1, 4, 4),
                           encodings=("signed_binary",))
    by_id = {b.id: b for b in blocks}
    mixed = 0
    for i in range(3):
        values = torch.sign(net[i].weight).to(torch.int8).numpy()
        rows = values.reshape(values.shape[0], -1)
        mixed += int(((rows > 0).any(axis=1) & (rows < 0).any(axis=1)).sum())
        block = by_id[f"{i}.parametrizations.weight.original"]
        assert (block.bits, block.encoding) == (1, "signed_binary")
        assert block.stored_bytes == encodings.signed_binary_bytes(values, region=9)
        assert block.meta["scales"] == values.size // 9
    assert mixed > 0   # per-channel signs could not have stored these filters


@pytest.mark.parametrize("config", ["ethos_u55", "stm32h7"])
def test_int8_only_hardware_stores_the_binarised_tensor_as_int8(config: str) -> None:
    # Law: 1-bit storage needs a 1-bit decoder. ethos_u55 (formats dense, mlw) and stm32h7
    # (dense, nested) decode none, so each binarised weight is stored as its int8 tensor:
    # quantized per output channel ({0, +-a} -> {0, +-127}), one byte per element plus one fp32
    # scale per channel, exactly encodings.stored_bytes(q, "dense", 8, channels). npu_small
    # lists signed_binary and keeps the 1-bit blocks.
    from edgesim import encodings
    from edgesim.config import load_config
    from edgesim.trace import trace
    from edgesim.trace.weights import quantize

    torch.manual_seed(0)
    net = to_signed_binary(tiny_resnet()).eval()
    w = trace(net, torch.randn(1, 3, 8, 8), name="sb_tiny", family="signed_binary",
              encodings=("dense", "signed_binary"), inputs=1)
    stored = encodings.as_stored(w, load_config(config).formats, None)
    shipped_1bit = encodings.as_stored(w, load_config("npu_small").formats, None)
    binarised = {n: m.weight.detach() for n, m in net.named_modules()
                 if getattr(m, "edgesim_encoding", None) == "signed_binary"}
    assert len(binarised) == 5   # 4 block convs + the downsample; stem and fc stay int8
    for name, weight in binarised.items():
        bid = f"{name}.parametrizations.weight.original"
        q, scales = quantize(weight.numpy(), "int8", channel_axis=0)
        assert set(q.flatten().tolist()) <= {-127, 0, 127}
        block = stored.blocks[bid]
        assert (block.bits, block.encoding) == (8, "dense")
        assert block.stored_bytes == encodings.stored_bytes(q, "dense", 8, int(scales.size))
        assert shipped_1bit.blocks[bid].bits == 1
    assert stored.stored_bytes > shipped_1bit.stored_bytes
