"""The order in which Arm's Ethos-U weight decoder receives a layer's weights: ``brick_order``.

Public names: ``brick_order``, ``traversal``, ``LAYOUTS``, ``BLOCK_DEPTH``.

Vela does not stream a tensor as it lies: it walks it in the order the weight decoder feeds the
MAC array (``reorder`` in ethos-u-vela's ``mlw_encode.c``), with zeros where blocks overhang:
output channels to a multiple of 8, input channels to 32 for a depth-first conv or fully
connected op, to 8 for a part-kernel-first conv (at most 8 input channels, or kernels that fill
4-tap groups better), depthwise taps to a multiple of 4 (3 x 3: 12). Zero runs and the
histogram the stream codes depend on it, so the ``mlw`` bytes of a weight
(``edgesim.weight_codec``) depend on the op it feeds (``layout``: ``conv``, ``depthwise``,
``linear``), which the tracer and the file importers pass (``edgesim.trace.weights.layout_of``).
Between output-channel blocks the order depends on the OFM block depth Vela's scheduler picks
per op; ``BLOCK_DEPTH`` = 16 (its ``OFMSplitDepth``, the first depth its search tries);
measured, 16 against 128 changes the MLPerf Tiny totals by <= 0.1 %.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK_DEPTH", "LAYOUTS", "brick_order", "traversal"]

#: Layouts of a weight tensor the stream knows how Vela orders (``brick_order``).
LAYOUTS = ("conv", "depthwise", "linear")
#: OFM block depth of the order: 16 output channels (see the module docstring).
BLOCK_DEPTH = 16
_UBLOCK = 8                                 # channels of an OFM / IFM micro-block (U55, U65)
_IFM_BLOCK = 32                             # input channels of a depth-first block (int8)
_SUBKERNEL = 8                              # taps of a sub-kernel, each way (dilation 1)


def traversal(shape: tuple[int, ...], layout: str) -> str:
    """How Vela walks the weights of an op with ``layout`` and weight ``shape`` (K, C, R, S):
    ``depthwise``, ``part_kernel`` (a conv with at most 8 input channels, or whose kernel fills
    the 4-tap groups better than its channels fill 32: Vela's utilisation rule) or ``depth``.

    >>> traversal((16, 3, 3, 3), "conv"), traversal((64, 64, 1, 1), "conv")
    ('part_kernel', 'depth')
    """
    if layout == "depthwise":
        return "depthwise"
    c, taps = int(shape[1]), int(shape[2]) * int(shape[3])
    if layout == "conv" and (c <= 8 or c / _round(c, 8) * taps / _round(taps, 4)
                             >= c / _round(c, _IFM_BLOCK)):
        return "part_kernel"
    return "depth"


def _round(n: int, to: int) -> int:
    return -(-n // to) * to


def _as_ohwi(values: np.ndarray, layout: str) -> np.ndarray:
    """The tensor as (K, R, S, C) from the tracer's (K, C, R, S) or (N, K)."""
    v = np.asarray(values)
    if v.ndim == 2:
        return v[:, None, None, :]
    if v.ndim == 3:                         # a 1-D conv (K, C, S)
        v = v[:, :, None, :]
    elif v.ndim > 4:                        # a 3-D conv: its taps as one kernel row
        v = v.reshape(v.shape[0], v.shape[1], 1, -1)
    if layout == "depthwise" and v.shape[1] != 1:
        raise ValueError(f"weight stream: a depthwise weight has one input channel per "
                         f"group, got shape {v.shape}")
    return v.transpose(0, 2, 3, 1)


def brick_order(values: np.ndarray, layout: str, block_depth: int = BLOCK_DEPTH) -> np.ndarray:
    """The weights of one op as Vela streams them to the Ethos-U weight decoder, padding
    included (``mlw_encode.c`` ``reorder``): ``values`` in the tracer's layout, (K, C, R, S)
    for a ``conv`` or ``depthwise`` op, (N, K) for a ``linear`` one.

    Output channels go in blocks of ``block_depth``, then input channels in blocks of 32 (16
    part-kernel-first), then the kernel in sub-kernels of at most 8 x 8 taps; inside, output
    channels in micro-blocks of 8, and per micro-block: depth first, each tap's input channels
    in micro-blocks of 8 (the block padded to 32 channels), each as 8 output x 8 input channels;
    part-kernel first, each input micro-block's taps (padded to a multiple of 4) in turn;
    depthwise, the taps (padded to a multiple of 4) of 8 channels. Padding is zeros: output
    channels to a multiple of 8, input channels to 32 (depth first) or 8 (part-kernel first).

    >>> brick_order(np.arange(1, 7).reshape(2, 3), "linear")[:4].tolist()   # channel 0 of each
    [1, 2, 3, 0]
    >>> brick_order(np.arange(1, 7).reshape(2, 3), "linear").size          # 8 x 32
    256
    """
    if layout not in LAYOUTS:
        raise ValueError(f"weight stream: layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    w = _as_ohwi(values, layout)
    k, h, wd, c = w.shape
    how = traversal((k, c, h, wd), layout) if layout != "linear" else "depth"
    flat = np.append(w.reshape(-1), 0)      # the last entry stands for padding
    pad = flat.size - 1
    dw, pk = how == "depthwise", how == "part_kernel"
    ifm_block = 16 if pk else _IFM_BLOCK
    o8 = np.arange(_UBLOCK)[:, None]
    i8 = np.arange(1 if dw else _UBLOCK)[None, :]
    out = []
    for ob in range(0, k, block_depth):
        ou = np.arange(0, min(block_depth, k - ob), _UBLOCK)[None, :, None, None, None, None]
        for ib in range(0, 1 if dw else c, ifm_block):
            i_len = min(ifm_block, c - ib) if pk else ifm_block
            # input micro-blocks outside the taps (part-kernel first) or inside them
            io = np.arange(0, i_len, _UBLOCK) if pk else np.zeros(1, dtype=int)
            ii = np.zeros(1, dtype=int) if pk or dw else np.arange(0, i_len, _UBLOCK)
            io, ii = io[:, None, None, None, None, None], ii[None, None, None, :, None, None]
            for sy in range(0, h, _SUBKERNEL):
                sh = min(h - sy, _SUBKERNEL)
                for sx in range(0, wd, _SUBKERNEL):
                    sw = min(wd - sx, _SUBKERNEL)
                    e = np.arange(sh * sw if how == "depth" else _round(sh * sw, 4))
                    # axes: input micro-block (outer), output micro-block, tap, input
                    # micro-block (inner), output channel, input channel
                    ty, tx = ((e // sw)[None, None, :, None, None, None],
                              (e % sw)[None, None, :, None, None, None])
                    oz = ob + ou + o8
                    iz = ib + io + ii + i8
                    ok = (iz < (1 if dw else c)) & (oz < k) & (ty < sh)
                    at = ((oz * h + sy + ty) * wd + sx + tx) * c + iz
                    out.append(flat[np.where(ok, at, pad).reshape(-1)])
    return np.concatenate(out)
