"""Input streams: clustered synthetic images and point clouds, and the file loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edgesim.errors import DataError
from edgesim.zoo.data import load_inputs, synthetic_images, synthetic_points


def _nearest_centroid_accuracy(x: torch.Tensor, labels: torch.Tensor) -> float:
    flat = x.flatten(1)
    centroids = torch.stack([flat[labels == c].mean(0) for c in labels.unique()])
    return float((torch.cdist(flat, centroids).argmin(1) == labels).float().mean())


def test_synthetic_images_are_clustered_and_deterministic() -> None:
    x, y = synthetic_images(32, shape=(3, 16, 16), clusters=4, seed=5)
    assert x.shape == (32, 3, 16, 16)
    assert y.tolist() == [i % 4 for i in range(32)]
    assert torch.equal(x, synthetic_images(32, shape=(3, 16, 16), clusters=4, seed=5)[0])
    assert not torch.equal(x, synthetic_images(32, shape=(3, 16, 16), clusters=4, seed=6)[0])
    # another seed draws new samples of the same clusters; another prototype seed, new clusters
    other = synthetic_images(32, shape=(3, 16, 16), clusters=4, seed=6)[0]
    assert _nearest_centroid_accuracy(torch.cat([x, other]), torch.cat([y, y])) == 1.0
    moved = synthetic_images(4, shape=(3, 16, 16), clusters=4, seed=5, prototype_seed=1)[0]
    assert float((moved - x[:4]).abs().mean()) > 0.3
    # clustered: every sample is nearest to its own cluster mean
    assert _nearest_centroid_accuracy(x, y) == 1.0
    assert abs(float(x.mean())) < 0.3
    assert 0.5 < float(x.std()) < 2.0


def test_synthetic_points_are_clustered_in_the_unit_sphere() -> None:
    x, y = synthetic_points(16, points=128, clusters=8, seed=0)
    assert x.shape == (16, 128, 3)
    radii = x.norm(dim=-1)
    assert float(radii.max()) <= 1.0 + 1e-6
    assert torch.allclose(x.mean(1), torch.zeros(16, 3), atol=0.1)
    # a permutation-invariant descriptor (sorted radii) separates the eight primitives
    desc = radii.sort(dim=1).values
    assert _nearest_centroid_accuracy(desc, y) == 1.0


def test_load_pt_and_npy_round_trip(tmp_path: Path) -> None:
    x = torch.randn(3, 3, 8, 8)
    torch.save(x, tmp_path / "x.pt")
    np.save(tmp_path / "x.npy", x.numpy())
    assert torch.equal(load_inputs(tmp_path / "x.pt", "image", (3, 8, 8)), x)
    assert torch.equal(load_inputs(tmp_path / "x.npy", "image", (3, 8, 8)), x)
    # a tensor of another size is refused, never silently resized
    with pytest.raises(DataError, match=r"--input-shape 3x8x8"):
        load_inputs(tmp_path / "x.pt", "image", (3, 4, 4))
    pts = torch.rand(10, 3)
    torch.save(pts, tmp_path / "p.pt")
    assert torch.equal(load_inputs(tmp_path / "p.pt", "points", (10, 3)), pts[None])


def test_load_image_folder_resizes_crops_and_normalises(tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    folder = tmp_path / "imgs"
    folder.mkdir()
    # a 10x20 white image: resized to cover 8x8 (-> 8x16) and centre-cropped to 8x8
    mpimg.imsave(folder / "a.png", np.ones((10, 20, 3)))
    mpimg.imsave(folder / "b.png", np.zeros((12, 12, 3)))
    x = load_inputs(folder, "image", (3, 8, 8))
    assert x.shape == (2, 3, 8, 8)
    # white -> (1 - mean) / std per channel; black -> -mean / std (ImageNet statistics)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 4, 4], (1 - mean) / std, atol=1e-4)
    assert torch.allclose(x[1, :, 0, 0], -mean / std, atol=1e-4)


def test_wrong_shape_names_path_and_expected_shape(tmp_path: Path) -> None:
    torch.save(torch.rand(2, 5, 3), tmp_path / "p.pt")
    with pytest.raises(DataError, match=r"p\.pt.*\(n, 1024, 3\)"):
        load_inputs(tmp_path / "p.pt", "points", (1024, 3))
    torch.save(torch.rand(2, 1, 8, 8), tmp_path / "g.pt")
    with pytest.raises(DataError, match=r"g\.pt.*\(n, 3, 8, 8\)"):
        load_inputs(tmp_path / "g.pt", "image", (3, 8, 8))


def test_missing_corrupt_and_unknown_files_raise_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.pt.*no such file"):
        load_inputs(tmp_path / "missing.pt", "image", (3, 8, 8))
    (tmp_path / "bad.pt").write_bytes(b"not a tensor")
    with pytest.raises(DataError, match=r"bad\.pt.*cannot read"):
        load_inputs(tmp_path / "bad.pt", "image", (3, 8, 8))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match="unknown input file type"):
        load_inputs(tmp_path / "x.csv", "points", (4, 3))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_inputs(tmp_path / "empty", "image", (3, 8, 8))
    with pytest.raises(DataError, match="kind"):
        load_inputs(tmp_path / "x.csv", "audio", (4, 3))
