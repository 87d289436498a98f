"""ResNet v1.5 and v1 written from scratch, with torchvision's module names.

Public names: ``BasicBlock``, ``Bottleneck``, ``ResNet``, ``resnet50``, ``resnet50_v1``,
``resnet50_cifar``.

v1.5 puts the stride of a Bottleneck on its 3x3 conv (torchvision's layout); v1
(``stride_in_1x1=True``, Keras' ``ResNet50`` and the original paper) puts it on the first 1x1
conv, so the 3x3 of a stage's first block runs at the output resolution and the net does fewer
MACs (3.86 G against 4.09 G at 224x224) with the same weights. Module names match torchvision
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``), so a torchvision
``state_dict`` loads into ``resnet50()`` unchanged.

>>> sum(p.numel() for p in resnet50().parameters())
25557032
>>> sum(p.numel() for p in resnet50_v1().parameters())
25557032
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet50", "resnet50_cifar", "resnet50_v1"]


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs and an identity (or 1x1 projection) shortcut; ``expansion = 1``.

    ``stride_in_1x1`` is accepted for symmetry with ``Bottleneck`` and changes nothing: the first
    conv, which carries the stride, is already the 3x3.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by ``expansion = 4``.

    The stride sits on the 3x3 (v1.5, the default) or, with ``stride_in_1x1``, on the first 1x1
    (v1).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes, stride if stride_in_1x1 else 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1 if stride_in_1x1 else stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet of ``block`` with ``layers`` blocks per stage.

    ``stem="imagenet"``: 7x7/2 conv + 3x3/2 max pool (224x224 input). ``stem="cifar"``: 3x3/1 conv,
    no max pool (32x32 input). ``width`` is the channel count of the stem and of stage 1 (64 for
    the published nets; small values build tiny test nets); stage i has ``width * 2**i`` planes.
    ``stride_in_1x1``: a Bottleneck's stride on its first 1x1 conv (v1) instead of its 3x3 (v1.5).
    """

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: Sequence[int],
                 num_classes: int = 1000, stem: str = "imagenet", width: int = 64,
                 stride_in_1x1: bool = False) -> None:
        super().__init__()
        self.stride_in_1x1 = bool(stride_in_1x1)
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if width < 1 or not layers or any(n < 1 for n in layers):
            raise ValueError(f"need width >= 1 and >= 1 block per stage, got width={width}, "
                             f"layers={list(layers)}")
        self.inplanes = width
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet"
                                   else nn.Identity())
        for i, n in enumerate(layers):
            stage = self._make_layer(block, width * 2**i, n, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 2 ** (len(layers) - 1) * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(_conv1x1(self.inplanes, planes * block.expansion, stride),
                                       nn.BatchNorm2d(planes * block.expansion))
        mods = [block(self.inplanes, planes, stride, downsample, self.stride_in_1x1)]
        self.inplanes = planes * block.expansion
        mods += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def stages(self) -> list[nn.Sequential]:
        """The residual stages ``layer1 ... layerN`` in order."""
        return [m for n, m in self.named_children() if n.startswith("layer")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1.5 for 224x224 ImageNet (25,557,032 parameters with 1000 classes)."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="imagenet")


def resnet50_v1(num_classes: int = 1000) -> ResNet:
    """ResNet-50 v1 (Keras' ``ResNet50`` layout: a stage's stride on the first 1x1 conv) for
    224x224 ImageNet: 25,557,032 parameters with 1000 classes, as v1.5.

    Keras' own count, 25,636,712, adds a bias to each of the 53 convs (26,560) and counts the BN
    running mean and variance (2 x 26,560); after BN folding both nets deploy the same
    25,502,912 conv/FC weights and one bias per output channel.
    """
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="imagenet", stride_in_1x1=True)


def resnet50_cifar(num_classes: int = 100) -> ResNet:
    """ResNet-50 v1.5 for 32x32 CIFAR: 3x3 stride-1 stem, no max pool.

    Parameters with 100 classes: 23,705,252 (see ``tests/test_resnet.py`` for the derivation).
    """
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, stem="cifar")


resnet50.input_shape = (3, 224, 224)  # type: ignore[attr-defined]
resnet50_v1.input_shape = (3, 224, 224)  # type: ignore[attr-defined]
resnet50_cifar.input_shape = (3, 32, 32)  # type: ignore[attr-defined]
