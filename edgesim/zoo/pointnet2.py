"""PointNet++ SSG (single-scale grouping) classification, written from scratch.

Public names: ``farthest_point_sample``, ``ball_query``, ``FarthestPointSample``,
``BallQueryGroup``, ``GroupAll``, ``SetAbstraction``, ``ClassifierHead``, ``PointNet2``,
``pointnet2_ssg``.

Layout (Qi et al. 2017, the ModelNet40 SSG classifier): input ``(B, N, 3)`` xyz;
``sa1`` samples N/2 centroids (512 for N=1024), groups 32 neighbours within radius 0.2 and runs a
shared MLP 3->64,64,128; ``sa2`` samples N/8 (128) centroids, 64 neighbours within 0.4, MLP
131->128,128,256; ``sa3`` groups all points, MLP 259->256,512,1024 and max-pools to a global
feature; ``head`` is 1024->512->256->classes with BatchNorm, ReLU and dropout 0.5.

Shared MLPs are 1x1 ``Conv2d`` (no bias) + ``BatchNorm2d`` + ``ReLU`` over ``(B, C, S, K)`` groups.
Grouped features put the relative xyz first: channel 0..2 = xyz offset, 3.. = point features.
Sampling and grouping are small modules with ``edgesim_kind`` ("sample" / "group") and
``edgesim_opaque = True``: the tracer records each as one weightless op with its activation bytes.

Farthest-point sampling is deterministic: it starts at point 0 and breaks ties by lowest index.

>>> sum(p.numel() for p in pointnet2_ssg().parameters())
1472360
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "BallQueryGroup",
    "ClassifierHead",
    "FarthestPointSample",
    "GroupAll",
    "PointNet2",
    "SetAbstraction",
    "ball_query",
    "farthest_point_sample",
    "pointnet2_ssg",
]


def farthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """Indices ``(B, npoint)`` of iterative farthest points of ``xyz`` ``(B, N, 3)``.

    Starts at index 0; each next point maximises the distance to the chosen set (ties: lowest
    index). With ``npoint <= N`` the indices of one row are distinct.
    """
    b, n, _ = xyz.shape
    if not 1 <= npoint <= n:
        raise ValueError(f"farthest_point_sample: npoint must be in [1, {n}], got {npoint}")
    idx = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, n), float("inf"), dtype=xyz.dtype, device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    last = torch.zeros(b, dtype=torch.long, device=xyz.device)
    for i in range(1, npoint):
        d = ((xyz - xyz[rows, last].unsqueeze(1)) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        last = torch.argmax(dist, dim=1)
        idx[:, i] = last
    return idx


def ball_query(radius: float, nsample: int, xyz: torch.Tensor,
               new_xyz: torch.Tensor) -> torch.Tensor:
    """Indices ``(B, S, nsample)`` of points of ``xyz`` within ``radius`` of each ``new_xyz``.

    Takes the first ``nsample`` points in index order inside the ball and pads with the first one
    found (the PointNet++ convention); a ball with no point falls back to the nearest point.
    """
    n = xyz.shape[1]
    d2 = torch.cdist(new_xyz, xyz) ** 2  # (B, S, N)
    order = torch.arange(n, device=xyz.device).expand_as(d2)
    idx = torch.where(d2 <= radius * radius, order, torch.full_like(order, n))
    idx = idx.sort(dim=-1).values[..., :nsample]
    if idx.shape[-1] < nsample:
        idx = torch.cat([idx, idx.new_full((*idx.shape[:-1], nsample - idx.shape[-1]), n)], -1)
    first = idx[..., :1]
    first = torch.where(first == n, d2.argmin(dim=-1, keepdim=True), first)
    return torch.where(idx == n, first.expand_as(idx), idx)


def _gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points`` (B, N, C) gathered at ``idx`` (B, *S) -> (B, *S, C)."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat.unsqueeze(-1).expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


class FarthestPointSample(nn.Module):
    """Sample ``npoint`` centroids: ``(B, N, 3) -> (B, npoint, 3)`` (deterministic FPS)."""

    edgesim_kind = "sample"
    edgesim_opaque = True

    def __init__(self, npoint: int) -> None:
        super().__init__()
        self.npoint = npoint

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return _gather(xyz, farthest_point_sample(xyz, self.npoint))

    def extra_repr(self) -> str:
        return f"npoint={self.npoint}"


class BallQueryGroup(nn.Module):
    """Group neighbours: ``xyz (B,N,3), centroids (B,S,3), features (B,C,N) | None``
    -> ``(B, 3 + C, S, nsample)`` with the xyz offset from the centroid first."""

    edgesim_kind = "group"
    edgesim_opaque = True

    def __init__(self, radius: float, nsample: int) -> None:
        super().__init__()
        self.radius = radius
        self.nsample = nsample

    def forward(self, xyz: torch.Tensor, new_xyz: torch.Tensor,
                features: torch.Tensor | None) -> torch.Tensor:
        idx = ball_query(self.radius, self.nsample, xyz, new_xyz)
        grouped = _gather(xyz, idx) - new_xyz.unsqueeze(2)  # (B, S, K, 3)
        if features is not None:
            grouped = torch.cat([grouped, _gather(features.transpose(1, 2), idx)], dim=-1)
        return grouped.permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"radius={self.radius}, nsample={self.nsample}"


class GroupAll(nn.Module):
    """Group every point under one centroid at the origin: -> ``(B, 3 + C, 1, N)``."""

    edgesim_kind = "group"
    edgesim_opaque = True

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        grouped = xyz.transpose(1, 2)
        if features is not None:
            grouped = torch.cat([grouped, features], dim=1)
        return grouped.unsqueeze(2)


def _shared_mlp(in_channels: int, channels: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in channels:
        layers += [nn.Conv2d(in_channels, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
        in_channels = c
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """One set-abstraction level: ``(xyz (B,N,3), features (B,C,N) | None)``
    -> ``(centroids (B,S,3), features (B,C',S))``.

    ``npoint=None`` groups all points (S = 1, centroid at the origin).
    """

    def __init__(self, npoint: int | None, radius: float | None, nsample: int | None,
                 in_channels: int, mlp: Sequence[int]) -> None:
        super().__init__()
        self.group_all = npoint is None
        if self.group_all:
            self.group: nn.Module = GroupAll()
        else:
            assert radius is not None
            assert nsample is not None
            self.sample = FarthestPointSample(npoint)
            self.group = BallQueryGroup(radius, nsample)
        self.mlp = _shared_mlp(in_channels + 3, mlp)

    def forward(self, xyz: torch.Tensor,
                features: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.group_all:
            new_xyz = xyz.new_zeros(xyz.shape[0], 1, 3)
            grouped = self.group(xyz, features)
        else:
            new_xyz = self.sample(xyz)
            grouped = self.group(xyz, new_xyz, features)
        return new_xyz, torch.amax(self.mlp(grouped), dim=3)


class ClassifierHead(nn.Module):
    """Global feature ``(B, C, 1)`` -> logits: fc-BN-ReLU-dropout twice, then fc with bias."""

    def __init__(self, in_channels: int, hidden: Sequence[int], num_classes: int,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_channels, hidden[0], bias=False)
        self.bn1 = nn.BatchNorm1d(hidden[0])
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden[0], hidden[1], bias=False)
        self.bn2 = nn.BatchNorm1d(hidden[1])
        self.drop2 = nn.Dropout(dropout)
        self.fc3 = nn.Linear(hidden[1], num_classes)
        self.relu = nn.ReLU()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(features, 1)
        x = self.drop1(self.relu(self.bn1(self.fc1(x))))
        x = self.drop2(self.relu(self.bn2(self.fc2(x))))
        return self.fc3(x)


class PointNet2(nn.Module):
    """PointNet++ SSG: ``sa1``, ``sa2``, ``sa3``, ``head``; ``(B, N, 3) -> (B, classes)``.

    ``config`` holds the constructor arguments (used to rebuild the model from a checkpoint).
    """

    def __init__(self, num_classes: int = 40, in_points: int = 1024, width: float = 1.0) -> None:
        super().__init__()
        if in_points < 8 or width <= 0 or num_classes < 1:
            raise ValueError(f"PointNet2 needs in_points >= 8, width > 0, num_classes >= 1; got "
                             f"in_points={in_points}, width={width}, num_classes={num_classes}")
        self.config = {"num_classes": num_classes, "in_points": in_points, "width": width}

        def w(c: int) -> int:
            return max(1, round(c * width))

        c1, c2, c3 = [w(c) for c in (64, 64, 128)], [w(c) for c in (128, 128, 256)], \
            [w(c) for c in (256, 512, 1024)]
        self.sa1 = SetAbstraction(in_points // 2, 0.2, 32, 0, c1)
        self.sa2 = SetAbstraction(in_points // 8, 0.4, 64, c1[-1], c2)
        self.sa3 = SetAbstraction(None, None, None, c2[-1], c3)
        self.head = ClassifierHead(c3[-1], [w(512), w(256)], num_classes)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        xyz1, f1 = self.sa1(xyz, None)
        xyz2, f2 = self.sa2(xyz1, f1)
        _, f3 = self.sa3(xyz2, f2)
        return self.head(f3)


def pointnet2_ssg(num_classes: int = 40, in_points: int = 1024, width: float = 1.0) -> PointNet2:
    """PointNet++ SSG for ModelNet40; 1,472,360 parameters at the defaults (see the tests)."""
    return PointNet2(num_classes, in_points, width)


pointnet2_ssg.input_shape = (1024, 3)  # type: ignore[attr-defined]
