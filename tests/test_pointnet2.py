"""PointNet++ SSG: shapes, the parameter count, farthest-point sampling and ball query."""

from __future__ import annotations

import pytest
import torch

from edgesim.zoo.pointnet2 import (
    BallQueryGroup,
    FarthestPointSample,
    ball_query,
    farthest_point_sample,
    pointnet2_ssg,
)


def test_param_count_matches_the_layer_sum() -> None:
    # Shared MLPs and the two hidden fc layers have no bias (BatchNorm follows); each BN has
    # weight + bias. Weights: sa1 3*64 + 64*64 + 64*128 = 12,480;
    # sa2 131*128 + 128*128 + 128*256 = 65,920; sa3 259*256 + 256*512 + 512*1024 = 721,664;
    # head 1024*512 + 512*256 + 256*40 + 40 (bias) = 665,640.
    # BN: 2 * (64+64+128 + 128+128+256 + 256+512+1024 + 512+256) = 2 * 3,328 = 6,656.
    # Total 12,480 + 65,920 + 721,664 + 665,640 + 6,656 = 1,472,360.
    model = pointnet2_ssg()
    assert sum(p.numel() for p in model.parameters()) == 1_472_360


def test_forward_shapes_of_a_tiny_model() -> None:
    model = pointnet2_ssg(num_classes=5, in_points=64, width=0.125).eval()
    xyz = torch.rand(2, 64, 3)
    with torch.no_grad():
        c1, f1 = model.sa1(xyz, None)
        c2, f2 = model.sa2(c1, f1)
        c3, f3 = model.sa3(c2, f2)
        out = model(xyz)
    # sa1 keeps N/2 = 32 centroids with 128/8 = 16 channels; sa2 N/8 = 8 with 32; sa3 one, 128.
    assert c1.shape == (2, 32, 3)
    assert f1.shape == (2, 16, 32)
    assert c2.shape == (2, 8, 3)
    assert f2.shape == (2, 32, 8)
    assert c3.shape == (2, 1, 3)
    assert f3.shape == (2, 128, 1)
    assert out.shape == (2, 5)


def test_sampling_and_grouping_modules_are_marked_opaque() -> None:
    model = pointnet2_ssg(in_points=64, width=0.125)
    kinds = {type(m).__name__: getattr(m, "edgesim_kind", None) for m in model.modules()
             if getattr(m, "edgesim_opaque", False)}
    assert kinds == {"FarthestPointSample": "sample", "BallQueryGroup": "group",
                     "GroupAll": "group"}
    assert not list(FarthestPointSample(4).parameters())


def test_fps_indices_are_distinct_and_start_at_zero() -> None:
    xyz = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(1))
    idx = farthest_point_sample(xyz, 50)
    assert idx.shape == (3, 50)
    assert (idx[:, 0] == 0).all()
    for row in idx:
        assert len(set(row.tolist())) == 50


def test_fps_picks_the_farthest_point_each_step() -> None:
    # On a line at 0, 1, 3, 10: start at 0 -> farthest is 10 (index 3) -> then 3 (min distance
    # to {0, 10} is 3, versus 1 for the point at 1) -> then 1.
    xyz = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [10, 0, 0]]])
    assert farthest_point_sample(xyz, 4).tolist() == [[0, 3, 2, 1]]


def test_fps_is_deterministic_and_module_gathers_its_points() -> None:
    xyz = torch.rand(2, 100, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(farthest_point_sample(xyz, 20), farthest_point_sample(xyz, 20))
    idx = farthest_point_sample(xyz, 20)
    picked = FarthestPointSample(20)(xyz)
    assert torch.equal(picked, torch.stack([xyz[b, idx[b]] for b in range(2)]))


def test_ball_query_stays_within_radius() -> None:
    gen = torch.Generator().manual_seed(3)
    xyz = torch.rand(2, 300, 3, generator=gen)
    centroids = xyz[:, :40]
    radius = 0.2
    idx = ball_query(radius, 16, xyz, centroids)
    assert idx.shape == (2, 40, 16)
    for b in range(2):
        dist = (xyz[b][idx[b]] - centroids[b].unsqueeze(1)).norm(dim=-1)
        assert (dist <= radius + 1e-6).all()


def test_ball_query_takes_points_in_index_order_and_pads_with_the_first() -> None:
    # Points at x = 0, 5, 0.1, 0.2; ball of radius 0.15 around x = 0 holds indices 0 and 2.
    xyz = torch.tensor([[[0.0, 0, 0], [5, 0, 0], [0.1, 0, 0], [0.2, 0, 0]]])
    idx = ball_query(0.15, 4, xyz, xyz[:, :1])
    assert idx.tolist() == [[[0, 2, 0, 0]]]


def test_grouping_gives_offsets_from_the_centroid_then_features() -> None:
    xyz = torch.tensor([[[0.0, 0, 0], [0.1, 0, 0]]])
    feats = torch.tensor([[[7.0, 8.0]]])  # (B=1, C=1, N=2)
    grouped = BallQueryGroup(1.0, 2)(xyz, xyz[:, 1:], feats)  # centroid = point 1
    assert grouped.shape == (1, 4, 1, 2)
    # neighbour 0 is at offset -0.1 in x with feature 7; neighbour 1 at offset 0 with feature 8.
    assert torch.allclose(grouped[0, :, 0, 0], torch.tensor([-0.1, 0, 0, 7.0]))
    assert torch.allclose(grouped[0, :, 0, 1], torch.tensor([0.0, 0, 0, 8.0]))


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="npoint"):
        farthest_point_sample(torch.rand(1, 4, 3), 5)
    with pytest.raises(ValueError, match="in_points"):
        pointnet2_ssg(in_points=4)
