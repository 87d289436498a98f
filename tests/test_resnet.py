"""ResNet-50 v1.5 and v1: parameter counts, torchvision names, shapes, where v1 puts the stride,
v1's traced weights and MACs against Vela's, BN folding (edgesim.zoo.deploy)."""

from __future__ import annotations

import pytest
import torch
from bn_nets import SharedOutput, randomize_bn
from torch import nn

from edgesim.trace import record
from edgesim.zoo.deploy import find_bn_pairs, fold_batchnorm, prepare
from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet, resnet50, resnet50_cifar, resnet50_v1


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet50_matches_torchvision_param_count() -> None:
    # torchvision.models.resnet50().num_params, as documented on pytorch.org/vision.
    assert _params(resnet50()) == 25_557_032


def test_resnet50_cifar_param_count() -> None:
    # 25,557,032 (ImageNet, 1000 classes)
    # - fc 2048*1000 + 1000 = 2,049,000, + fc 2048*100 + 100 = 204,900   -> 23,712,932
    #   (the 7x7-stem CIFAR-100 count in NetworkSlimming's records)
    # - 7x7 stem 7*7*3*64 = 9,408, + 3x3 stem 3*3*3*64 = 1,728            -> 23,705,252
    assert _params(resnet50_cifar(100)) == 23_705_252
    assert _params(resnet50(100)) == 23_712_932


def test_torchvision_module_names() -> None:
    net = resnet50()
    names = dict(net.named_parameters())
    for key in ("conv1.weight", "bn1.weight", "layer1.0.conv1.weight",
                "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
                "layer4.2.bn3.weight", "fc.weight", "fc.bias"):
        assert key in names
    # v1.5: the stride of the first block of layer2 sits on the 3x3 conv, not the 1x1.
    assert net.layer2[0].conv1.stride == (1, 1)
    assert net.layer2[0].conv2.stride == (2, 2)
    assert net.layer2[0].downsample[0].stride == (2, 2)


def test_v1_puts_the_stride_in_the_first_1x1() -> None:
    net = resnet50_v1()
    first = net.layer1[0]  # layer1 has stride 1 in both layouts
    assert first.conv1.stride == first.conv2.stride == (1, 1)
    for stage in (net.layer2, net.layer3, net.layer4):
        assert stage[0].conv1.stride == (2, 2)
        assert stage[0].conv2.stride == (1, 1)
        assert stage[0].downsample[0].stride == (2, 2)
        assert all(b.conv1.stride == b.conv2.stride == (1, 1) for b in stage[1:])
    with torch.no_grad():
        assert net.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_v1_parameter_counts_against_keras() -> None:
    net = resnet50_v1()
    # The stride moves; no weight does: the same 25,557,032 as torchvision's v1.5.
    assert _params(net) == 25_557_032
    bn = sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn == 26_560  # one BN per conv: 53 convs, 26,560 output channels
    # Keras ResNet50().summary(): 25,636,712 params. Keras adds a bias to each conv (26,560) and
    # counts BN's moving mean and variance (2 x 26,560): 25,557,032 + 3 x 26,560.
    assert _params(net) + 3 * bn == 25_636_712
    # Vela's 25,502,912 int8 conv/FC weights: everything but BN (2 x 26,560) and the FC bias.
    assert _params(net) - 2 * bn - 1000 == 25_502_912


def test_v1_and_v15_macs_differ_by_the_strided_1x1() -> None:
    # v1.5's conv1 of a stage's first block runs at the input side 2P, v1's at the output side P;
    # the 3x3 runs at P in both. So v1.5 - v1 = 3 * Cin * planes * P^2 per strided stage.
    # Tiny net: width 8, 64x64 input -> stem 32 -> pool 16 -> layer1 16 -> layer2 8, with
    # Cin = 4 * 8 = 32, planes = 16, P = 8: 3 * 32 * 16 * 64 = 98,304.
    x = torch.randn(1, 3, 64, 64)
    macs = []
    for v1 in (False, True):
        torch.manual_seed(0)
        net = ResNet(Bottleneck, [1, 1], num_classes=10, width=8, stride_in_1x1=v1).eval()
        macs.append(sum(op.macs for op in record(prepare(net, x), x)[1]))
    assert macs[0] - macs[1] == 3 * 32 * 16 * 8 * 8


def test_v1_traced_weights_and_macs_against_vela() -> None:
    x = torch.randn(1, 3, 224, 224)
    torch.manual_seed(0)
    blocks, ops = record(prepare(resnet50_v1().eval(), x), x)
    assert sum(b.elements for b in blocks if b.meta["role"] == "weight") == 25_502_912
    conv = sum(op.macs for op in ops if op.kind == "conv")
    fc = sum(op.macs for op in ops if op.kind == "linear")
    # Vela 5.2.0's per-operator MAC counts for the Keras model sum to Conv2D 3,855,925,248 and
    # FullyConnected 2048 * 1000: the traced conv and linear MACs are those exactly.
    assert (conv, fc) == (3_855_925_248, 2_048_000)
    # Vela's total, 3,859,911,120, also counts as MACs what the tracer records as MAC-free ops:
    # the 3x3/2 max pool (56^2 * 64 outputs * 9), MEAN lowered to a 7x7 depthwise conv
    # (7 * 7 * 2048), the stem's PAD as 4 memory copies of a 114 x 64 strip, and the softmax's
    # max and sum over 1000 logits (2 * 1000).
    vela_extra = 56 * 56 * 64 * 9 + 7 * 7 * 2048 + 4 * 114 * 64 + 2 * 1000
    assert vela_extra == 1_937_872
    assert sum(op.macs for op in ops) + vela_extra == 3_859_911_120


def test_tiny_output_shapes() -> None:
    tiny = ResNet(Bottleneck, [1, 1], num_classes=7, stem="imagenet", width=4).eval()
    assert tiny(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    cifar = ResNet(BasicBlock, [1, 1, 1], num_classes=5, stem="cifar", width=4).eval()
    assert cifar(torch.randn(1, 3, 8, 8)).shape == (1, 5)


def test_bad_stem_is_an_error() -> None:
    with pytest.raises(ValueError, match="stem"):
        ResNet(Bottleneck, [1], stem="mnist")


@pytest.mark.parametrize("use_example", [True, False])
def test_fold_batchnorm_preserves_eval_output(use_example: bool) -> None:
    torch.manual_seed(0)
    net = ResNet(Bottleneck, [2, 1], num_classes=10, stem="cifar", width=8)
    randomize_bn(net)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    folded = fold_batchnorm(net, x if use_example else None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-4)


def test_fold_leaves_a_shared_conv_output_alone() -> None:
    # y = conv(x) feeds both bn(y) and y itself: folding would change the second reader.
    net = randomize_bn(SharedOutput().eval())
    x = torch.randn(1, 2, 3, 3)
    assert find_bn_pairs(net, x) == []
    with torch.no_grad():
        assert torch.allclose(fold_batchnorm(net, x)(x), net(x))


def test_prepare_is_eval_and_folded() -> None:
    net = ResNet(BasicBlock, [1], num_classes=3, width=4).train()
    x = torch.randn(1, 3, 16, 16)
    deployed = prepare(net, x)
    assert not deployed.training
    assert deployed.conv1.bias is not None
    assert isinstance(deployed.bn1, nn.Identity)
