"""MobileNetV2: torchvision's parameter count and names, shapes, the traced depthwise convs and
their MACs in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesim.trace import record
from edgesim.zoo.deploy import prepare
from edgesim.zoo.mobilenetv2 import SETTINGS, InvertedResidual, MobileNetV2, mobilenet_v2


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def traced():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224)
    return record(prepare(mobilenet_v2().eval(), x), x)


def test_param_count_matches_torchvision() -> None:
    # torchvision.models.mobilenet_v2 model card (pytorch.org/vision, MobileNet_V2_Weights):
    # num_params 3,504,872.
    assert _params(mobilenet_v2()) == 3_504_872


def _closed_form() -> tuple[int, int, int]:
    """(MACs, conv+FC weights, depthwise convs) from the paper's Table 2, layer by layer.

    stem 3x3/2 3->32 at 112x112; per block with input side h, expansion t, cin -> c, stride s,
    hidden = t*cin, output side h/s: expand 1x1 h^2*cin*hidden (absent for t = 1), depthwise 3x3
    (h/s)^2*hidden*9, project 1x1 (h/s)^2*hidden*c; last 1x1 320->1280 at 7x7; FC 1280*1000.
    """
    side, cin = 112, 32
    macs, weights = side * side * 32 * 27, 32 * 27
    dw = 0
    for t, c, n, s in SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden, out = t * cin, side // stride
            if t != 1:
                macs += side * side * cin * hidden
                weights += cin * hidden
            macs += out * out * hidden * 9 + out * out * hidden * c
            weights += hidden * 9 + hidden * c
            dw += 1
            side, cin = out, c
    macs += side * side * 320 * 1280 + 1280 * 1000
    weights += 320 * 1280 + 1280 * 1000
    return macs, weights, dw


def test_closed_form_is_the_published_cost() -> None:
    macs, weights, dw = _closed_form()
    # Sandler et al. 2018, Table 3: 300 M multiply-adds; torchvision: 0.30 GFLOPS (= GMACs).
    assert macs == 300_774_272
    # 3,504,872 params = conv/FC weights + FC bias 1000 + BN gamma/beta 2 x 17,056 channels.
    assert weights == 3_504_872 - 1000 - 2 * 17_056
    assert dw == 17


def test_torchvision_names_and_structure() -> None:
    net = mobilenet_v2()
    names = dict(net.named_parameters())
    for key in ("features.0.0.weight", "features.0.1.weight", "features.1.conv.0.0.weight",
                "features.1.conv.1.weight", "features.1.conv.2.bias",
                "features.2.conv.0.0.weight", "features.2.conv.1.0.weight",
                "features.2.conv.2.weight", "features.2.conv.3.weight",
                "features.18.0.weight", "classifier.1.weight", "classifier.1.bias"):
        assert key in names
    assert len(net.features) == 19
    blocks = [m for m in net.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == sum(n for _, _, n, _ in SETTINGS)
    # a residual add exactly where stride 1 keeps the channel count: n - 1 per group -> 10
    assert sum(b.use_res_connect for b in blocks) == sum(n - 1 for _, _, n, _ in SETTINGS)
    dws = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(m.groups == m.in_channels == m.out_channels for m in dws)
    assert isinstance(net.features[0][2], nn.ReLU6)


def test_output_shapes() -> None:
    net = mobilenet_v2().eval()
    with torch.no_grad():
        assert net.features(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
        assert net(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
    small = MobileNetV2(num_classes=7, width_mult=0.25).eval()
    with torch.no_grad():
        assert small(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    assert small.last_channel == 1280  # kept at width <= 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, 3, 6)


def test_traced_depthwise_convs_have_groups_and_one_channel(traced) -> None:
    _, ops = traced
    dws = [op for op in ops if op.kind == "conv" and op.meta.get("groups", 1) > 1]
    assert len(dws) == 17
    for op in dws:
        shape = dict(op.shape)
        # groups = channels: one input channel per group, a 3x3 kernel, K = groups
        assert (shape["C"], shape["R"], shape["S"]) == (1, 3, 3)
        assert op.meta["groups"] == shape["K"]
        assert op.macs == shape["K"] * 9 * shape["P"] * shape["Q"]
    # the first one: features.1, 32 channels at 112x112 -> 32*9*112^2
    assert dws[0].name == "features.1.conv.0.0"
    assert dws[0].macs == 3_612_672


def test_traced_macs_and_weights_are_the_closed_form(traced) -> None:
    blocks, ops = traced
    macs, weights, _ = _closed_form()
    assert sum(op.macs for op in ops) == macs
    assert sum(b.elements for b in blocks if b.meta["role"] == "weight") == weights
