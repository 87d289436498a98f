"""edgesim.zoo.init: Laplace weights of He standard deviation, seeded, BN at identity; the int8
histogram of the calibration model (dense_r50v1_laplace) against Vela's."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgesim.trace.weights import quantize
from edgesim.zoo.deploy import fold_batchnorm
from edgesim.zoo.init import apply_init, laplace_init
from edgesim.zoo.registry import INITS, ModelSpec, build_model, get_spec

_WEIGHTED = (nn.Conv2d, nn.Linear)


@pytest.fixture(scope="module")
def r50v1_laplace() -> nn.Module:
    return build_model(get_spec("dense_r50v1_laplace"))


def _weights(model: nn.Module) -> list[tuple[str, np.ndarray]]:
    return [(n, m.weight.detach().double().numpy()) for n, m in model.named_modules()
            if isinstance(m, _WEIGHTED)]


def _entropy_bits(q: np.ndarray) -> float:
    counts = np.bincount(q.ravel().astype(np.int64) + 127)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def test_std_is_he_per_layer(r50v1_laplace: nn.Module) -> None:
    # He: std = sqrt(2 / fan_in), fan_in = C/groups * R * S. The sample std of n Laplace draws has
    # relative standard error sqrt((kurtosis - 1) / (4 n)) = sqrt(5 / (4 n)); 4 of them allowed
    # (the smallest layer, layer1.0.conv1, has 64 * 64 = 4096 weights: 7 %; layer4 ~0.3 %).
    layers = _weights(r50v1_laplace)
    assert len(layers) == 54  # 53 convs + fc
    for name, w in layers:
        he = math.sqrt(2 / (w[0].size))
        tol = 4 * math.sqrt(5 / (4 * w.size))
        assert abs(w.std() / he - 1) < tol, name
        assert abs(w.mean()) < 4 * he / math.sqrt(w.size), name


def test_kurtosis_is_laplace(r50v1_laplace: nn.Module) -> None:
    # Laplace(0, b): E x^4 = 24 b^4, var = 2 b^2, so kurtosis E x^4 / var^2 = 6 (Gaussian: 3).
    # Its standard error is sqrt((E z^8 - 36) / n) with E z^8 = 8! b^8 / (2 b^2)^4 = 2520:
    # 49.8 / sqrt(n); pooled over the 25.5 M weights (each scaled by its He std) that is 0.01.
    n = m2 = m4 = 0.0
    for name, w in _weights(r50v1_laplace):
        z2 = w * w / (2 / w[0].size)
        n, m2, m4 = n + z2.size, m2 + z2.sum(), m4 + (z2 * z2).sum()
        if w.size >= 1_000_000:  # per layer of at least 1 M weights (SE <= 0.05)
            kurt = float((z2 * z2).mean() / z2.mean() ** 2)
            assert abs(kurt - 6) < 5 * 49.8 / math.sqrt(w.size), name
    assert n == 25_502_912
    assert abs((m4 / n) / (m2 / n) ** 2 - 6) < 5 * 49.8 / math.sqrt(n)


def test_int8_entropy_is_vela_s(r50v1_laplace: nn.Module) -> None:
    # Vela's README: the calibration model's int8 weights have a zero-order entropy of 6.50
    # bit/weight. Per-channel symmetric int8 has step max|w| / 127 ~ b ln(n) / 127 for n Laplace
    # draws per channel, and a quantised Laplace has entropy ~ log2(2 e b / step) =
    # log2(2 e 127 / ln n): 6.3-6.6 bit for this net's 576-18,432 weights per channel.
    qs = [quantize(w.astype(np.float32), "int8", 0)[0] for _, w in _weights(r50v1_laplace)]
    pooled = _entropy_bits(np.concatenate([q.ravel() for q in qs]))
    assert abs(pooled - 6.50) < 0.05
    # The default init (Gaussian convs, uniform FC) is lighter-tailed: a Gaussian's max over n
    # draws is ~ sigma sqrt(2 ln n) ~ 4 sigma, so log2(sqrt(2 pi e) 127 / 4) ~ 7.1 bit, and the
    # uniform FC's 2 M weights fill all 255 levels (~8 bit): 7.38 bit pooled, measured.
    gauss = build_model(get_spec("dense_r50v1"))
    qg = [quantize(w.astype(np.float32), "int8", 0)[0] for _, w in _weights(gauss)]
    assert _entropy_bits(np.concatenate([q.ravel() for q in qg])) > pooled + 0.2


def test_bn_is_identity_and_folding_keeps_the_int8_values() -> None:
    torch.manual_seed(0)
    net = build_model(ModelSpec("t_mbv2", "dense", "edgesim.zoo.mobilenetv2:mobilenet_v2",
                                {"num_classes": 10, "width_mult": 0.35, "init": "laplace"}))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1)
            assert torch.all(m.bias == 0)
            assert torch.all(m.running_mean == 0)
            assert torch.all(m.running_var == 1)
        if isinstance(m, _WEIGHTED) and m.bias is not None:
            assert torch.all(m.bias == 0)
    # Folding an identity BN scales channel k by 1/sqrt(1 + eps), the same for all its weights;
    # per-channel int8 (step max|w|/127) is invariant to that scale up to float rounding.
    folded = fold_batchnorm(net)
    before, after = dict(_weights(net)), dict(_weights(folded))
    name = "features.18.0"
    qb = quantize(before[name].astype(np.float32), "int8", 0)[0]
    qa = quantize(after[name].astype(np.float32), "int8", 0)[0]
    assert np.mean(qa == qb) > 0.999


def test_seeded_and_deterministic() -> None:
    spec = ModelSpec("t_mbv2", "dense", "edgesim.zoo.mobilenetv2:mobilenet_v2",
                     {"num_classes": 10, "width_mult": 0.35, "init": "laplace"})
    a, b, c = build_model(spec, seed=0), build_model(spec, seed=0), build_model(spec, seed=1)
    wa, wb, wc = (m.features[18][0].weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    # the draw does not consume the global RNG: the same before and after
    lin = nn.Linear(4, 4)
    torch.manual_seed(3)
    first = torch.rand(1)
    torch.manual_seed(3)
    laplace_init(lin, seed=0)
    assert torch.equal(torch.rand(1), first)


def test_default_init_is_untouched() -> None:
    # dense_r50's weights are those of the factory under torch.manual_seed(0), as before.
    from edgesim.zoo.resnet import resnet50
    torch.manual_seed(0)
    ref = resnet50(1000)
    built = build_model(get_spec("dense_r50"))
    assert torch.equal(built.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)
    assert torch.equal(built.fc.weight, ref.fc.weight)
    net = nn.Linear(3, 3)
    assert apply_init(net, "default") is net


def test_unknown_init_is_an_error() -> None:
    from edgesim.errors import ModelError
    assert INITS == ("default", "laplace")
    with pytest.raises(ModelError, match=r"init 'xavier' is not one of default, laplace"):
        ModelSpec("x", "dense", "a.b:c", {"init": "xavier"})
    with pytest.raises(ValueError, match="init must be"):
        apply_init(nn.Linear(2, 2), "xavier")
