"""Shape arithmetic of the ONNX importer, shared by constants and activations: pure functions
of tuples of ints that raise ``Bad`` for a shape the operator cannot have.

Public names: ``count``, ``axis_index``, ``broadcast``, ``reshaped``, ``squeezed``,
``unsqueezed``, ``sliced``, ``spatial`` (a conv or pool window's output size, strides,
dilations and pads), ``nest`` (the tracer's conv loop nest).

>>> spatial({"strides": [2, 2], "pads": [1, 1, 1, 1]}, [16, 16], [3, 3])[0]
[8, 8]
>>> nest(1, 8, 3, [3, 3], [8, 8])
(('N', 1), ('K', 8), ('C', 3), ('R', 3), ('S', 3), ('P', 8), ('Q', 8))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgesim.frontends.onnx_values import Bad

__all__ = ["axis_index", "broadcast", "count", "nest", "reshaped", "sliced", "spatial",
           "squeezed", "unsqueezed"]


def count(shape: Sequence[int]) -> int:
    """The elements of a tensor of ``shape``."""
    return math.prod(int(d) for d in shape)


def axis_index(a: int, rank: int) -> int:
    """Axis ``a`` (negative: from the end) of a tensor of ``rank`` dims, from 0."""
    if not -rank <= a < max(rank, 1):
        raise Bad(f"axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


def broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise Bad(f"shapes {', '.join(map(str, shapes))} do not broadcast") from None


def reshaped(shape: tuple[int, ...], target: Sequence[int], allowzero: int) -> tuple[int, ...]:
    out = [shape[i] if d == 0 and not allowzero and i < len(shape) else int(d)
           for i, d in enumerate(target)]
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise Bad(f"reshape target {list(target)} is invalid")
    n, known = count(shape), count(d for d in out if d != -1)
    if -1 in out:
        if known == 0 or n % known:
            raise Bad(f"cannot reshape {shape} to {list(target)}")
        out[out.index(-1)] = n // known
    if count(out) != n:
        raise Bad(f"cannot reshape {shape} ({n} elements) to {tuple(out)}")
    return tuple(out)


def squeezed(shape: tuple[int, ...], axes: Sequence[int] | None) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = {axis_index(a, len(shape)) for a in axes}
    if any(shape[a] != 1 for a in drop):
        raise Bad(f"cannot squeeze axes {list(axes)} of {shape}")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueezed(shape: tuple[int, ...], axes: Sequence[int]) -> tuple[int, ...]:
    rank = len(shape) + len(axes)
    add = sorted({axis_index(a, rank) for a in axes})
    it = iter(shape)
    return tuple(1 if i in add else next(it) for i in range(rank))


def sliced(shape: tuple[int, ...], starts: Sequence[int], ends: Sequence[int],
            axes: Sequence[int] | None, steps: Sequence[int] | None) -> tuple[int, ...]:
    out = list(shape)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise Bad("Slice starts, ends, axes and steps differ in length")
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st == 0:
            raise Bad("Slice step 0")
        a = axis_index(int(a), len(shape))
        out[a] = len(range(*slice(int(s), int(e), int(st)).indices(shape[a])))
    return tuple(out)


def _window(size: int, k: int, stride: int, dil: int, pads: tuple[int, int],
            ceil: bool = False) -> int:
    span = dil * (k - 1) + 1
    room = size + pads[0] + pads[1] - span
    if room < 0:
        raise Bad(f"window of {span} larger than the padded input {size + sum(pads)}")
    out = (-(-room // stride) if ceil else room // stride) + 1
    if ceil and (out - 1) * stride >= size + pads[0]:
        out -= 1      # the last window may not start in the end padding
    return out


def spatial(a: dict[str, Any], size: Sequence[int], kernel: Sequence[int]
             ) -> tuple[list[int], list[int], list[int], list[int]]:
    """Output size, strides, dilations and pads (begins then ends) of a conv or pool window."""
    n = len(size)
    strides = a.get("strides", [1] * n)
    dils = a.get("dilations", [1] * n)
    pads = a.get("pads", [0] * (2 * n))
    auto = a.get("auto_pad", "NOTSET")
    if len(strides) != n or len(dils) != n or len(pads) != 2 * n:
        raise Bad(f"strides {strides}, dilations {dils} or pads {pads} do not fit "
                   f"{n} spatial dims")
    if min(strides, default=1) < 1 or min(dils, default=1) < 1 or min(pads, default=0) < 0:
        raise Bad(f"strides {strides}, dilations {dils} and pads {pads} must be positive")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            out = -(-size[i] // strides[i])
            total = max((out - 1) * strides[i] + dils[i] * (kernel[i] - 1) + 1 - size[i], 0)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * n)
    elif auto != "NOTSET":
        raise Bad(f"auto_pad {auto!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID")
    ceil = bool(a.get("ceil_mode", 0))
    out = [_window(size[i], kernel[i], strides[i], dils[i], (pads[i], pads[i + n]), ceil)
           for i in range(n)]
    return out, strides, dils, pads


def nest(n: int, k: int, c: int, kernel: Sequence[int], pq: Sequence[int]
          ) -> tuple[tuple[str, int], ...]:
    """The tracer's conv loop nest: ``N K C R S P Q`` (1-D: R = P = 1; 3-D: T R S, D P Q)."""
    sp = len(kernel)
    rs = [1] * (2 - min(sp, 2)) + list(kernel)
    out = [1] * (2 - min(sp, 2)) + list(pq)
    names = ("R", "S") if sp <= 2 else ("T", "R", "S")
    pqn = ("P", "Q") if sp <= 2 else ("D", "P", "Q")
    return (("N", n), ("K", k), ("C", c), *zip(names, rs, strict=True),
            *zip(pqn, out, strict=True))
