"""Input streams for tracing, calibration and routing: synthetic clustered inputs and file loaders.

Public names: ``synthetic_images``, ``synthetic_points``, ``load_inputs``, ``load_labelled``,
``labels_file``, ``check_classes``, ``IMAGE_EXTENSIONS``, ``MAX_IMAGE_PIXELS``,
``MAX_SCALED_PIXELS``.

Synthetic inputs are *clustered* (a few prototypes plus per-sample noise) so that a routed model
sees structure and its routing is not degenerate. Both generators are deterministic: cluster
prototypes in ``prototype_seed`` (default 0), per-sample noise in ``seed``, so a stream drawn with
another ``seed`` holds new samples of the same clusters (what a calibrated routed model sees).

* ``synthetic_images(n, shape=(3, H, W), clusters=8, seed=0) -> (x, labels)``: each prototype is a
  smooth random image (low-resolution noise upsampled bilinearly); a sample is its prototype plus
  smooth and pixel noise. Values are roughly zero-mean, unit-variance (like normalised ImageNet).
* ``synthetic_points(n, points=1024, clusters=8, seed=0) -> (x, labels)``: each cluster is a shape
  primitive (sphere, box, cylinder, cone, torus, plane, helix, ellipsoid) with its own aspect
  ratios; a sample is a fresh draw of points on it plus jitter, centred and scaled into the unit
  sphere like ModelNet40. ``x`` is ``(n, points, 3)``.
* ``load_inputs(path, kind="image" | "points", shape) -> Tensor``: a ``.pt`` tensor, a ``.npy``
  array, or (images) a folder of image files; images are resized (shorter side) and
  centre-cropped to ``shape`` and normalised with the ImageNet mean and std. An image's pixel
  count is read from its header and checked against ``MAX_IMAGE_PIXELS``, and the size it is
  scaled to against ``MAX_SCALED_PIXELS``, before it is decoded.
  A labelled file or folder (below) gives its inputs.
* ``load_labelled(path, kind, shape) -> (x, labels)``: inputs and one whole class number per
  input, from a ``.pt`` holding ``{"x": inputs, "y": labels}`` (or ``{"inputs", "labels"}``, or
  an ``(inputs, labels)`` pair), an ``.npz`` with arrays ``x`` and ``y`` (or ``inputs`` and
  ``labels``), a ``.npy`` of inputs with its labels beside it (``labels_file``: ``y.npy`` for
  ``x.npy``, else ``NAME_labels.npy`` for ``NAME.npy``), or an image folder with one sub-folder
  per class. Nothing read runs code: ``torch.load(weights_only=True)``,
  ``np.load(allow_pickle=False)``. ``check_classes(path, labels, classes)`` refuses a label
  outside the model's ``0..classes-1``.

>>> x, y = synthetic_images(4, shape=(3, 8, 8), clusters=2)
>>> tuple(x.shape), y.tolist()
((4, 3, 8, 8), [0, 1, 0, 1])
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgesim.errors import DataError
from edgesim.outputs import input_file

__all__ = ["IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS", "MAX_SCALED_PIXELS", "check_classes",
           "labels_file", "load_inputs", "load_labelled", "synthetic_images", "synthetic_points"]

#: File extensions ``load_inputs`` reads from an image folder (PNG natively, others via Pillow).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
#: An input image may have at most this many pixels (64 Mpx: 8192 x 8192), checked from its
#: header before decoding (a 4 KB file can claim 30000 x 30000 pixels).
MAX_IMAGE_PIXELS = 2**26

#: An image is scaled to cover the input shape before its centre is cropped; the scaled image
#: may have at most this many pixels (16 Mpx, 192 MiB as 3 float32 channels), checked from the
#: header's size before anything is decoded: a 1 x 400,000 px strip scaled to cover 224 x 224
#: would be 224 x 89,600,000 px.
MAX_SCALED_PIXELS = 2**24

#: Offset between prototype and sample generator seeds (independent streams for equal seeds).
_SAMPLE_SEED = 1_000_003

_MEAN = torch.tensor([0.485, 0.456, 0.406])
_STD = torch.tensor([0.229, 0.224, 0.225])


def _check_counts(n: int, clusters: int) -> None:
    if n < 0 or clusters < 1:
        raise ValueError(f"need n >= 0 and clusters >= 1, got n={n}, clusters={clusters}")


def _smooth_noise(gen: torch.Generator, count: int, shape: tuple[int, int, int],
                  grid: int) -> torch.Tensor:
    c, h, w = shape
    low = torch.randn(count, c, grid, grid, generator=gen)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)


def synthetic_images(n: int, shape: tuple[int, int, int] = (3, 224, 224), clusters: int = 8,
                     seed: int = 0, prototype_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clustered images ``(n, *shape)`` and labels (sample i is in cluster i % clusters).

    The cluster prototypes depend on ``prototype_seed`` only, the per-sample noise on ``seed``:
    streams with different ``seed`` are fresh samples of the same clusters.
    """
    _check_counts(n, clusters)
    protos = _smooth_noise(torch.Generator().manual_seed(prototype_seed), clusters, shape, 4)
    gen = torch.Generator().manual_seed(_SAMPLE_SEED + seed)
    protos = (protos - protos.mean(dim=(1, 2, 3), keepdim=True)) / \
        protos.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    labels = torch.arange(n) % clusters
    noise = 0.3 * _smooth_noise(gen, n, shape, 8) + 0.1 * torch.randn(n, *shape, generator=gen)
    return protos[labels] + noise, labels


def _primitive(kind: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Points on primitive ``kind`` (0..7) from uniform parameters ``u, v`` in [0, 1)."""
    tau = 2 * math.pi
    if kind == 0:  # sphere
        th, z = tau * u, 2 * v - 1
        r = torch.sqrt(1 - z**2)
        return torch.stack([r * torch.cos(th), r * torch.sin(th), z], -1)
    if kind == 1:  # box surface: pick a face by u, position by (u, v)
        face = torch.floor(u * 6).long()
        a, b = (u * 6 - face) * 2 - 1, 2 * v - 1
        axis, sign = face // 2, (face % 2) * 2 - 1
        pts = torch.stack([a, b, sign.to(a.dtype)], -1)
        rolled = [pts.roll(int(k), dims=-1) for k in range(3)]
        return torch.stack(rolled, 0)[axis, torch.arange(len(u))]
    if kind == 2:  # cylinder
        th = tau * u
        return torch.stack([torch.cos(th), torch.sin(th), 2 * v - 1], -1)
    if kind == 3:  # cone
        th, h = tau * u, v
        return torch.stack([(1 - h) * torch.cos(th), (1 - h) * torch.sin(th), 2 * h - 1], -1)
    if kind == 4:  # torus
        th, ph = tau * u, tau * v
        r = 1 + 0.4 * torch.cos(ph)
        return torch.stack([r * torch.cos(th), r * torch.sin(th), 0.4 * torch.sin(ph)], -1)
    if kind == 5:  # plane with a bump
        x, y = 2 * u - 1, 2 * v - 1
        return torch.stack([x, y, 0.5 * torch.exp(-4 * (x**2 + y**2))], -1)
    if kind == 6:  # helix tube
        th = 3 * tau * u
        return torch.stack([torch.cos(th) + 0.1 * torch.cos(tau * v),
                            torch.sin(th) + 0.1 * torch.sin(tau * v), 2 * u - 1], -1)
    th, z = tau * u, 2 * v - 1  # ellipsoid (kind 7)
    r = torch.sqrt(1 - z**2)
    return torch.stack([r * torch.cos(th), 0.5 * r * torch.sin(th), 0.3 * z], -1)


def synthetic_points(n: int, points: int = 1024, clusters: int = 8, seed: int = 0,
                     prototype_seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clustered point clouds ``(n, points, 3)`` in the unit sphere and their labels.

    Cluster shapes (primitive and aspect ratios) depend on ``prototype_seed`` only, the sampled
    points and jitter on ``seed``.
    """
    _check_counts(n, clusters)
    if points < 1:
        raise ValueError(f"need points >= 1, got {points}")
    aspects = 0.5 + torch.rand(clusters, 3, generator=torch.Generator().manual_seed(prototype_seed))
    gen = torch.Generator().manual_seed(_SAMPLE_SEED + seed)
    labels = torch.arange(n) % clusters
    clouds = []
    for i in range(n):
        c = int(labels[i])
        u, v = torch.rand(points, generator=gen), torch.rand(points, generator=gen)
        pts = _primitive(c % 8, u, v) * aspects[c]
        pts = pts + 0.01 * torch.randn(points, 3, generator=gen)
        pts = pts - pts.mean(0)
        clouds.append(pts / pts.norm(dim=1).max().clamp_min(1e-6))
    x = torch.stack(clouds) if clouds else torch.zeros(0, points, 3)
    return x, labels


def _cover(h0: int, w0: int, h: int, w: int) -> tuple[int, int]:
    """The (height, width) an h0 x w0 image is scaled to so that it covers h x w."""
    scale = max(h / h0, w / w0)
    return max(h, round(h0 * scale)), max(w, round(w0 * scale))


def _resize_crop(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Scale ``img`` (n, C, H0, W0) so it covers (h, w), then centre-crop to (h, w)."""
    h0, w0 = img.shape[-2:]
    if (h0, w0) == (h, w):
        return img
    nh, nw = _cover(h0, w0, h, w)
    img = F.interpolate(img, size=(nh, nw), mode="bilinear", align_corners=False)
    top, left = (nh - h) // 2, (nw - w) // 2
    return img[..., top:top + h, left:left + w]


def _check_size(file: Path, width: int, height: int, h: int, w: int) -> None:
    """Refuse an image of more than ``MAX_IMAGE_PIXELS``, or one whose scaling to cover
    ``h`` x ``w`` would exceed ``MAX_SCALED_PIXELS`` (a thin strip), before allocating."""
    if width < 1 or height < 1:
        raise DataError(f"{file}: image of {width} x {height} pixels; expected a non-empty "
                        "image")
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{file}: image of {width} x {height} pixels; at most "
                        f"{MAX_IMAGE_PIXELS:,} pixels are read")
    nh, nw = _cover(height, width, h, w)
    if nh * nw > MAX_SCALED_PIXELS:
        raise DataError(f"{file}: image of {width} x {height} pixels would be scaled to "
                        f"{nw:,} x {nh:,} to cover the input {w} x {h}; at most "
                        f"{MAX_SCALED_PIXELS:,} pixels after scaling (crop the image nearer "
                        "to the input's aspect ratio)")


def _check_pixels(file: Path, h: int, w: int) -> None:
    """``_check_size`` from the image's header (nothing decoded)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - depends on the environment
        return
    try:
        with warnings.catch_warnings():   # over Pillow's warning limit: refused below anyway
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as im:   # reads the header only
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise DataError(f"{file}: image too large ({exc})") from None
    _check_size(file, width, height, h, w)


def _read_image(file: Path, h: int, w: int) -> np.ndarray:
    _check_pixels(file, h, w)
    if file.suffix.lower() == ".png":
        import matplotlib.image as mpimg

        return np.asarray(mpimg.imread(file), dtype=np.float32)
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError(f"{file}: reading {file.suffix} needs Pillow; convert to PNG") from exc
    with Image.open(file) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _entries(path: Path, kind: str) -> list[Path]:
    """The regular files (``kind="file"``) or folders of ``path``; an entry that cannot be
    looked at (it vanished, or is not ours to read: ``/proc``) is not one."""
    try:
        found = list(os.scandir(path))
    except OSError as exc:
        raise DataError(f"{path}: cannot read folder ({exc.strerror or exc})") from None
    out = []
    for e in found:
        try:
            if e.is_file() if kind == "file" else e.is_dir():
                out.append(Path(e.path))
        except OSError:
            continue
    return out


def _image_files(path: Path) -> list[Path]:
    return sorted(p for p in _entries(path, "file") if p.suffix.lower() in IMAGE_EXTENSIONS)


def _class_folders(path: Path) -> list[Path]:
    """Sub-folders of ``path`` (hidden ones skipped), in class order: numerically when every
    name is a whole number, else by name."""
    dirs = [d for d in _entries(path, "dir") if not d.name.startswith(".")]
    if dirs and all(d.name.isdigit() for d in dirs):
        return sorted(dirs, key=lambda d: (int(d.name), d.name))
    return sorted(dirs, key=lambda d: d.name)


def _image_folder(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    files = _image_files(path)
    if not files:
        raise DataError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder; "
                        f"expected images for input shape {shape}")
    if len(shape) != 3 or shape[0] != 3:
        raise DataError(f"{path}: image folders give 3 channels; expected input shape (3, H, W), "
                        f"got {shape}")
    _, h, w = shape
    out = []
    for f in files:
        try:
            arr = _read_image(f, h, w)
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{f}: cannot read image ({exc})") from exc
        _check_size(f, arr.shape[1], arr.shape[0], h, w)    # as decoded (without Pillow)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.max() > 1.0:  # integer-valued images read as 0..255
            arr = arr / 255.0
        arr = arr[..., :3] if arr.shape[-1] >= 3 else np.repeat(arr[..., :1], 3, axis=-1)
        img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None]
        img = _resize_crop(img, h, w)[0]
        out.append((img - _MEAN[:, None, None]) / _STD[:, None, None])
    return torch.stack(out)


def _class_image_folder(path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of every class sub-folder of ``path`` and their labels: a folder named by a whole
    number is that class; otherwise classes are numbered 0.. in sorted name order."""
    dirs = _class_folders(path)
    if not dirs:
        loose = len(_image_files(path))
        raise DataError(f"{path}: no class sub-folders (found {loose} loose images); expected "
                        "one sub-folder of images per class (e.g. 0/, 1/, ... or cat/, dog/)")
    numeric = all(d.name.isdigit() for d in dirs)
    xs, ys = [], []
    for k, d in enumerate(dirs):
        x = _image_folder(d, shape)
        xs.append(x)
        ys.append(torch.full((x.shape[0],), int(d.name) if numeric else k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def labels_file(path: str | Path) -> Path:
    """Where the labels of the ``.npy`` inputs ``path`` are: ``y.npy`` beside ``x.npy``, else
    ``NAME_labels.npy`` beside ``NAME.npy``."""
    p = Path(path)
    return p.with_name("y.npy") if p.stem == "x" else p.with_name(f"{p.stem}_labels.npy")


#: Names of the (inputs, labels) entries of a labelled ``.pt`` mapping or ``.npz``.
_PAIRS = (("x", "y"), ("inputs", "labels"))
_LABELLED_FORMS = ("{'x': inputs, 'y': labels} (or 'inputs'/'labels') in a .pt, arrays x and y "
                   "in an .npz, x.npy with y.npy, or a folder of class sub-folders")


def _load_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _container(path: Path, shape: tuple[int, ...]) -> tuple[object, object]:
    """(inputs, labels or None) as stored in the file ``path`` (nothing in it is run)."""
    want = f"(n, {', '.join(map(str, shape))})"
    try:
        if path.suffix == ".npy":
            return _load_npy(path), None
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = set(z.files)
                for xk, yk in _PAIRS:
                    if xk in names:
                        return z[xk], (z[yk] if yk in names else None)
            raise DataError(f"{path}: holds arrays {sorted(names)[:5]}; expected arrays 'x' "
                            f"(inputs {want}) and 'y' (labels)")
        with warnings.catch_warnings():    # torch's notes on a refused pickle: the line says
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except DataError:
        raise
    except Exception as exc:
        said = " ".join(str(exc).split())
        said = said if len(said) <= 200 else said[:197] + "..."
        raise DataError(f"{path}: cannot read inputs ({type(exc).__name__}: {said}); "
                        f"expected a tensor of shape {want}") from None
    if isinstance(obj, dict):
        for xk, yk in _PAIRS:
            if xk in obj:
                return obj[xk], obj.get(yk)
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        raise DataError(f"{path}: holds a mapping of {keys}; expected {{'x': inputs {want}, "
                        "'y': labels}")
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        return obj[0], obj[1]
    return obj, None


def _as_tensor(path: Path, obj: object, what: str, expected: str) -> torch.Tensor:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise DataError(f"{path}: {what} of dtype {obj.dtype}; expected {expected}")
        return torch.from_numpy(np.ascontiguousarray(obj))
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path}: holds {what} as a {type(obj).__name__}; expected {expected}")
    return obj


def _shaped(p: Path, x: torch.Tensor, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
    """``x`` as a float batch ``(n, *shape)``: one example gains the batch dimension; another
    size is refused (image files of a folder are resized, a tensor never is)."""
    want = f"(n, {', '.join(map(str, shape))})"
    if x.dim() == len(shape):
        x = x.unsqueeze(0)
    if x.is_complex():
        raise DataError(f"{p}: complex inputs; expected real inputs of shape {want}")
    x = x.float()
    if kind == "image":
        if x.dim() != 4 or len(shape) != 3 or tuple(x.shape[1:]) != shape:
            got = "x".join(map(str, x.shape[1:]))
            raise DataError(f"{p}: got inputs of shape {tuple(x.shape)}, expected {want} (the "
                            "shape the model is traced at); a tensor is never resized: pass "
                            f"--input-shape {got} to trace the model at the data's shape")
        return x.contiguous()
    if x.dim() != 3 or tuple(x.shape[1:]) != shape:
        raise DataError(f"{p}: got inputs of shape {tuple(x.shape)}, expected {want}")
    return x.contiguous()


def _check_path(p: Path, kind: str, shape: tuple[int, ...], labelled: bool) -> None:
    want = f"(n, {', '.join(map(str, shape))})"
    if kind not in ("image", "points"):
        raise DataError(f"{p}: kind must be 'image' or 'points', got {kind!r}")
    if not p.exists():
        what = "labelled inputs" if labelled else "inputs"
        raise DataError(f"{p}: no such file or folder; expected {what} of shape {want}")
    if not p.is_dir():   # a FIFO or device would block or never end: refused before opening
        input_file(p, "--data")
    if p.is_dir():
        if kind != "image":
            raise DataError(f"{p}: a folder is only read for images; expected a .pt, .npz or "
                            f".npy point tensor of shape {want}")
        return
    if p.suffix not in (".pt", ".pth", ".npy", ".npz"):
        raise DataError(f"{p}: unknown input file type {p.suffix!r}; expected .pt, .pth, .npz, "
                        ".npy" + (" or an image folder" if kind == "image" else ""))


def load_inputs(path: str | Path, kind: str = "image",
                shape: tuple[int, ...] = (3, 224, 224)) -> torch.Tensor:
    """Read a batch of model inputs ``(n, *shape)`` (float32) from ``path``.

    ``kind="image"``, ``shape=(C, H, W)``: a ``.pt``/``.npy`` of ``(n, C, H, W)`` or ``(C, H, W)``
    (other H, W are refused: ``--input-shape`` traces at the data's shape) or a folder of
    images (sorted by name, resized, cropped, ImageNet-normalised). ``kind="points"``,
    ``shape=(N, 3)``: a ``.pt``/``.npy`` of ``(n, N, 3)`` or ``(N, 3)``. The inputs of a
    labelled file or folder (``load_labelled``) are read the same way, their labels ignored.
    Anything else raises ``DataError`` naming the path and the shape.
    """
    p = Path(path)
    shape = tuple(int(s) for s in shape)
    _check_path(p, kind, shape, labelled=False)
    if p.is_dir():
        if _image_files(p) or not _class_folders(p):
            return _image_folder(p, shape)
        return _class_image_folder(p, shape)[0]
    want = f"a tensor of shape (n, {', '.join(map(str, shape))})"
    x, _ = _container(p, shape)
    return _finite(p, _shaped(p, _as_tensor(p, x, "the inputs", want), kind, shape))


def _finite(p: Path, x: torch.Tensor) -> torch.Tensor:
    """``x``, once every input is finite (a NaN would be routed and reported as normal)."""
    bad = ~torch.isfinite(x.flatten(1)).all(dim=1) if x.numel() else torch.zeros(0, dtype=bool)
    if bad.any():
        raise DataError(f"{p}: input {int(bad.nonzero()[0])} holds NaN or infinite values; "
                        "expected finite inputs")
    return x


def load_labelled(path: str | Path, kind: str = "image",
                  shape: tuple[int, ...] = (3, 224, 224),
                  classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(n, *shape)`` (float32, as ``load_inputs`` reads them) and their labels
    ``(n,)`` (int64 class numbers) from a labelled file or folder (see the module docstring).

    Labels must be whole numbers >= 0, one per input (and below ``classes`` when given); the
    inputs finite. Anything else is a ``DataError`` naming the path and what was expected.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "d.pt"
    >>> torch.save({"x": torch.zeros(3, 2, 3), "y": torch.tensor([0, 2, 1])}, f)
    >>> x, y = load_labelled(f, "points", (2, 3))
    >>> tuple(x.shape), y.tolist()
    ((3, 2, 3), [0, 2, 1])
    """
    p = Path(path)
    shape = tuple(int(s) for s in shape)
    _check_path(p, kind, shape, labelled=True)
    want = f"a tensor of shape (n, {', '.join(map(str, shape))})"
    if p.is_dir():
        x, y = _class_image_folder(p, shape)
    else:
        xs, ys = _container(p, shape)
        if ys is None and p.suffix == ".npy":
            lab = labels_file(p)
            if not lab.is_file():
                raise DataError(f"{p}: no labels file {lab.name} beside it; expected the class "
                                f"of each input in {lab} (or {_LABELLED_FORMS})")
            try:
                ys = _load_npy(lab)
            except Exception as exc:
                raise DataError(f"{lab}: cannot read labels ({type(exc).__name__}: {exc}); "
                                "expected a .npy of whole class numbers") from exc
            p_labels = lab
        else:
            p_labels = p
        if ys is None:
            raise DataError(f"{p}: holds inputs without labels; expected {_LABELLED_FORMS}")
        x = _shaped(p, _as_tensor(p, xs, "the inputs", want), kind, shape)
        y = _labels(p_labels, _as_tensor(p_labels, ys, "the labels",
                                         "a 1-D tensor of whole class numbers"))
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{p_labels}: {y.shape[0]} labels for {x.shape[0]} inputs; "
                            "expected one label per input")
    if x.shape[0] == 0:
        raise DataError(f"{p}: holds no inputs; expected at least one labelled input")
    _finite(p, x)
    if classes is not None:
        check_classes(p, y, classes)
    return x, y


def _labels(p: Path, y: torch.Tensor) -> torch.Tensor:
    """``y`` as int64 class numbers: 1-D (or ``(n, 1)``), whole, >= 0."""
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise DataError(f"{p}: labels of shape {tuple(y.shape)}; expected one whole class "
                        "number per input, shape (n,)")
    if y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"{p}: labels of dtype {y.dtype}; expected whole class numbers")
    if y.is_floating_point():
        frac = ~torch.isfinite(y) | (y != y.round())
        if frac.any():
            i = int(frac.nonzero()[0])
            raise DataError(f"{p}: label {float(y[i])!r} of input {i} is not a whole class "
                            "number")
    y = y.long()
    neg = y < 0
    if neg.any():
        i = int(neg.nonzero()[0])
        raise DataError(f"{p}: label {int(y[i])} of input {i} is negative; expected class "
                        "numbers 0, 1, ...")
    return y


def check_classes(path: str | Path, y: torch.Tensor, classes: int) -> None:
    """Refuse labels outside ``0..classes-1`` (``classes``: the model's output width)."""
    out = (y < 0) | (y >= classes)
    if out.any():
        i = int(out.nonzero()[0])
        raise DataError(f"{path}: label {int(y[i])} of input {i} is out of range; expected "
                        f"classes 0..{classes - 1} (the model has {classes} outputs)")
