"""ResNet-50 v1.5: parameter counts, torchvision names, shapes, BN folding (edgesim.zoo.deploy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesim.zoo.deploy import find_bn_pairs, fold_batchnorm, prepare
from edgesim.zoo.resnet import BasicBlock, Bottleneck, ResNet, resnet50, resnet50_cifar


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


def test_tiny_output_shapes() -> None:
    tiny = ResNet(Bottleneck, [1, 1], num_classes=7, stem="imagenet", width=4).eval()
    assert tiny(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    cifar = ResNet(BasicBlock, [1, 1, 1], num_classes=5, stem="cifar", width=4).eval()
    assert cifar(torch.randn(1, 3, 8, 8)).shape == (1, 5)


def test_bad_stem_is_an_error() -> None:
    with pytest.raises(ValueError, match="stem"):
        ResNet(Bottleneck, [1], stem="mnist")


def _randomize_bn(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("use_example", [True, False])
def test_fold_batchnorm_preserves_eval_output(use_example: bool) -> None:
    torch.manual_seed(0)
    net = ResNet(Bottleneck, [2, 1], num_classes=10, stem="cifar", width=8)
    _randomize_bn(net)
    net.eval()
    x = torch.randn(2, 3, 16, 16)
    folded = fold_batchnorm(net, x if use_example else None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-4)


def test_fold_leaves_a_shared_conv_output_alone() -> None:
    # y = conv(x) feeds both bn(y) and y itself: folding would change the second reader.
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    net = Branchy().eval()
    _randomize_bn(net)
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
