"""MobileNetV2 written from scratch, with torchvision's module names.

Public names: ``ConvBNReLU6``, ``InvertedResidual``, ``MobileNetV2``, ``mobilenet_v2``.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018), Table 2:
a 3x3/2 stem conv to 32 channels, then 17 inverted residuals in 7 groups ``(t, c, n, s)`` —
expansion ``t``, output channels ``c``, ``n`` blocks, the first with stride ``s`` — a 1x1 conv
to 1280 channels, global average pooling and a linear classifier. An inverted residual is a 1x1
expansion to ``t * cin`` channels (absent when ``t == 1``), a depthwise 3x3 (``groups`` = its
channels, one input channel per group), both with BN and ReLU6, and a linear 1x1 projection
with BN; the input is added back when the stride is 1 and the channel count is unchanged.

Module names match torchvision's ``mobilenet_v2`` (``features.0.0`` the stem conv,
``features.1.conv.0.0`` the first depthwise conv, ``features.18.0`` the last 1x1,
``classifier.1`` the linear), so its ``state_dict`` loads unchanged. With width 1.0 and 1000
classes: 3,504,872 parameters and 300.8 M MACs at 224x224 (torchvision's model card: 3,504,872
params, 0.30 GFLOPS; the paper: 300 M multiply-adds).

>>> sum(p.numel() for p in mobilenet_v2().parameters())
3504872
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNReLU6", "InvertedResidual", "MobileNetV2", "mobilenet_v2"]

#: The paper's Table 2 after the stem: (expansion t, output channels c, blocks n, stride s).
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int = 8) -> int:
    """``v`` rounded to the nearest multiple of ``divisor``, never below 90 % of ``v``
    (torchvision's and TF's ``_make_divisible``)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvBNReLU6(nn.Sequential):
    """Conv (no bias, "same" padding), BN, ReLU6: torchvision's ``Conv2dNormActivation`` with its
    children ``0`` (conv), ``1`` (BN), ``2`` (ReLU6)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = cout


class InvertedResidual(nn.Module):
    """1x1 expand by ``expand_ratio`` (skipped when 1), depthwise 3x3 with ``stride``, linear 1x1
    project; a residual add when ``stride == 1`` and ``cin == cout``."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = round(cin * expand_ratio)
        self.stride = stride
        self.out_channels = cout
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(cin, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for ``num_classes`` classes; ``width_mult`` scales every channel count (rounded
    to a multiple of 8; the last conv keeps 1280 channels when ``width_mult <= 1``)."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if width_mult <= 0 or num_classes < 1:
            raise ValueError(f"need width_mult > 0 and num_classes >= 1, got "
                             f"width_mult={width_mult}, num_classes={num_classes}")
        cin = _make_divisible(32 * width_mult)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        for t, c, n, s in SETTINGS:
            cout = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU6(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        # torchvision's init: He (fan_out) convs, identity BN, N(0, 0.01) classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2 for 224x224 ImageNet (3,504,872 parameters at width 1.0, 1000 classes)."""
    return MobileNetV2(num_classes, width_mult)


mobilenet_v2.input_shape = (3, 224, 224)  # type: ignore[attr-defined]
