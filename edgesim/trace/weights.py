"""Weights as deployed: quantized (symmetric, per output channel) and encoded (NumPy only).

Public names: ``BITS``, ``bits_of``, ``quantize``, ``quantize_regions``, ``quantize_bias``,
``weight_block``, ``stored_block``, ``layout_of``.

``quantize(values, precision, channel_axis)`` returns the integers that are stored and one fp32
scale per output channel (``channel_axis=None``: one scale for the whole tensor):

* ``int8``: ``q = round(v / s)`` in [-127, 127] with ``s = max|v| / 127`` per channel;
* ``int4``: the same in [-7, 7] with ``s = max|v| / 7``;
* ``fp16``: the values cast to float16, no scales;
* ``binary``: signed-binary weights, already {0, +a} or {0, -a} per channel, or plain binary
  ones, {-a, +a} with no zero (XNOR-Net's, ``edgesim.zoo.baselines``): ``q = sign(v)`` in
  {-1, 0, 1} and ``s = a`` (the mean nonzero magnitude) per channel; one bit per value either
  way (the mask bit or the sign bit).

A value that rounds to 0 is a real zero of the stored tensor (it is counted as a zero). A channel
that is all zero has scale 0.

>>> q, s = quantize(np.array([[1.0, -0.5, 0.001], [0.0, 0.0, 0.0]]), "int8")
>>> q.tolist(), [round(float(x), 5) for x in s]
([[127, -64, 0], [0, 0, 0]], [0.00787, 0.0])
>>> bits_of("int4")
4

``weight_block`` turns one parameter into a ``WeightBlock``: quantized once at its precision,
nonzeros counted after quantization, and its stored bytes under every candidate encoding that
can hold it (``WeightBlock.encoded``; ``edgesim.encodings.resolve`` later picks what a hardware
decodes). Biases are int32, stored dense. Norm affine weights and other auxiliary parameters are
quantized per tensor (int8 when the precision is binary). ``stored_block`` is its second half,
for integers already stored (the file importers, ``edgesim.frontends``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgesim import encodings
from edgesim.errors import TraceError
from edgesim.workload import WeightBlock

__all__ = ["BITS", "bits_of", "layout_of", "quantize", "quantize_bias", "quantize_regions",
           "stored_block", "weight_block"]

#: Bits per stored weight value for each precision.
BITS: dict[str, int] = {"int8": 8, "int4": 4, "fp16": 16, "binary": 1}
_QMAX = {"int8": 127, "int4": 7}
_INT32_MAX = 2**31 - 1


def bits_of(precision: str) -> int:
    """Bits per stored weight value: int8 8, int4 4, fp16 16, binary 1."""
    try:
        return BITS[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; expected one of "
                         f"{', '.join(BITS)}") from None


def _channel_max(a: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel max |a| (shape: channels) and the same broadcastable against ``a``."""
    mag = np.abs(a)
    if axis is None or a.ndim == 0:
        m = np.asarray([mag.max()]) if a.size else np.zeros(1)
        return m, m.reshape((1,) * a.ndim)
    other = tuple(i for i in range(a.ndim) if i != axis)
    keep = mag.max(axis=other, keepdims=True) if a.size else np.zeros(
        [a.shape[i] if i == axis else 1 for i in range(a.ndim)])
    return keep.reshape(-1), keep


def _axis(values: np.ndarray, channel_axis: int | None) -> int | None:
    if channel_axis is None or values.ndim == 0:
        return None
    if not -values.ndim <= channel_axis < values.ndim:
        raise ValueError(f"channel_axis {channel_axis} out of range for a tensor of shape "
                         f"{values.shape}")
    return channel_axis % values.ndim


def quantize(values: np.ndarray, precision: str,
             channel_axis: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """Quantize ``values`` symmetric per channel; returns ``(q, scales)``, scales in fp32."""
    bits_of(precision)
    a = np.asarray(values, dtype=np.float32)
    if precision == "fp16":
        return a.astype(np.float16), np.zeros(0, dtype=np.float32)
    axis = _axis(a, channel_axis)
    if precision == "binary":
        return _binary(a, axis)
    qmax = _QMAX[precision]
    amax, amax_b = _channel_max(a, axis)
    scale_b = amax_b / qmax
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale_b > 0, np.rint(a / np.where(scale_b > 0, scale_b, 1.0)), 0.0)
    q = np.clip(q, -qmax, qmax).astype(np.int8)
    return q, (amax / qmax).astype(np.float32)


def _binary(a: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    q = np.sign(a).astype(np.int8)
    moved = q.reshape(1, -1) if axis is None else np.moveaxis(q, axis, 0).reshape(
        q.shape[axis], -1)
    # both signs and a zero in one channel is ternary: more than one bit a value
    mixed = np.flatnonzero((moved > 0).any(axis=1) & (moved < 0).any(axis=1)
                           & (moved == 0).any(axis=1))
    if mixed.size:
        raise ValueError(f"binary precision: channel {int(mixed[0])} holds positive, negative "
                         "and zero values; expected {0, +a}, {0, -a} or {-a, +a} per output "
                         "channel")
    mag = (np.abs(a).reshape(1, -1) if axis is None
           else np.moveaxis(np.abs(a), axis, 0).reshape(q.shape[axis], -1))
    # one magnitude a per channel: weights not binarised yet (many magnitudes) would otherwise
    # be stored as their signs, silently; 1e-4 relative leaves room for a folded BatchNorm's
    # float32 rounding
    top = np.where(moved != 0, mag, 0.0).max(axis=1)
    low = np.where(moved != 0, mag, np.inf).min(axis=1)
    spread = np.flatnonzero(np.isfinite(low) & (top > low * (1 + 1e-4)))
    if spread.size:
        c = int(spread[0])
        raise ValueError(f"binary precision: channel {c} holds magnitudes from {low[c]:.6g} to "
                         f"{top[c]:.6g}; expected one magnitude a per output channel (weights "
                         "binarised before tracing)")
    nnz = np.count_nonzero(moved, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.where(nnz > 0, mag.sum(axis=1) / np.maximum(nnz, 1), 0.0)
    return q, scales.astype(np.float32)


def quantize_regions(values: np.ndarray, precision: str,
                     region: int) -> tuple[np.ndarray, np.ndarray]:
    """``quantize`` with one scale per ``region`` consecutive elements of the flattened tensor
    (the regions of ``encodings.signed_binary_bytes``); ``region`` must divide the size.

    >>> q, s = quantize_regions(np.array([[1.0, 1.0, -2.0, 0.0]]), "binary", region=2)
    >>> q.tolist(), s.tolist()
    ([[1, 1, -1, 0]], [1.0, 2.0])
    """
    a = np.asarray(values, dtype=np.float32)
    if int(region) < 1 or a.size % int(region):
        raise ValueError(f"region={region} does not divide the {a.size} elements of a tensor "
                         f"of shape {a.shape}")
    q, scales = quantize(a.reshape(-1, int(region)), precision, channel_axis=0)
    return q.reshape(a.shape), scales


def weight_block(bid: str, values: np.ndarray, role: str, axis: int | None, precision: str,
                 preferred: Sequence[str], region: int | None = None,
                 layout: str | None = None) -> WeightBlock:
    """The block of one parameter read as ``role`` (``weight``, ``bias`` or ``aux``).

    ``axis`` is the output-channel axis of a weight (one scale per channel); ``region`` (a
    module's ``edgesim_region`` hint) gives a weight one scale per region of that many elements
    instead; ``layout`` is the op a weight feeds (``stored_block``). ``encoding`` /
    ``stored_bytes`` are the smallest of ``encoded`` (first on a tie).
    """
    if role == "bias":
        q, bits, nscales = quantize_bias(values), 32, 0
    else:
        prec = precision
        if role == "aux":
            prec = "int8" if precision == "binary" else precision
            axis = None
        try:
            q, scales = (quantize_regions(values, prec, region)
                         if region is not None and role == "weight"
                         else quantize(values, prec, channel_axis=axis))
        except ValueError as exc:
            raise TraceError(f"parameter '{bid}': {exc}") from exc
        bits, nscales = bits_of(prec), int(scales.size)
    try:
        return stored_block(bid, q, bits, nscales, preferred, role=role, precision=precision,
                            shape=tuple(np.shape(values)),
                            region=region if role == "weight" else None,
                            layout=layout if role == "weight" else None)
    except ValueError as exc:
        raise TraceError(f"parameter '{bid}': {exc}") from exc


def stored_block(bid: str, q: np.ndarray, bits: int, nscales: int, preferred: Sequence[str], *,
                 role: str, precision: str, shape: tuple[int, ...],
                 region: int | None = None, records: int | None = None,
                 layout: str | None = None) -> WeightBlock:
    """The block of stored integers ``q`` (``bits`` each, ``nscales`` fp32 scales): nonzeros
    counted on ``q``; a bias is dense with no candidates; any other tensor carries its bytes
    under every one of ``preferred`` that can hold it (``encodings.candidates``), and
    ``encoding`` / ``stored_bytes`` are the smallest generic one (first on a tie; a hardware
    codec, ``encodings.CODECS``, only where nothing else can). ``records``: the output
    channels a codec writes a per-channel record for (``mlw``), when not one per scale (a
    per-tensor scale). ``layout`` is the op the weight feeds, ``conv``, ``depthwise`` or
    ``linear`` (``edgesim.weight_codec.brick_order``: the order ``mlw`` streams it in; None:
    told from the shape, a depthwise weight taken for a conv). Raises ``ValueError`` when no
    candidate can hold ``q``.

    >>> b = stored_block("w", np.array([[0, 3], [0, 0]]), 8, 2, ["dense", "csr"],
    ...                  role="weight", precision="int8", shape=(2, 2))
    >>> b.nonzeros, b.dense_bytes, dict(b.encoded), b.encoding   # 4 B + 2 fp32 scales
    (1, 12, {'dense': 12, 'csr': 11}, 'csr')
    """
    nnz = int(np.count_nonzero(q))
    dense = encodings.stored_bytes(q, "dense", bits, nscales)
    encoded: dict[str, int] = {}
    if role == "bias":
        encoding, stored = "dense", encodings.stored_bytes(q, "dense", bits, 0)
    else:
        encoded = encodings.candidates(q, bits, nscales, preferred, region=region, layout=layout)
        if not encoded:
            raise ValueError(f"none of the encodings {', '.join(preferred)} can store it")
        for codec in encodings.CODECS:
            if records is not None and codec in encoded:
                encoded[codec] = encodings.stored_bytes(q, codec, bits, records, layout=layout)
        # first of the smallest on a tie; a hardware codec (encodings.CODECS) only where a
        # hardware lists it (encodings.resolve), never as the hardware-free default
        generic = [e for e in encoded if e not in encodings.CODECS] or list(encoded)
        encoding = min(generic, key=encoded.__getitem__)
        stored = encoded[encoding]
    return WeightBlock(bid, int(q.size), nnz, bits, encoding, int(stored), int(dense),
                       {"shape": tuple(shape), "role": role, "precision": precision,
                        "scales": nscales}, encoded=encoded)


def layout_of(kind: str, groups: int, shape: Sequence[int]) -> str | None:
    """The op a weight of ``shape`` (output channels first) feeds, as the ``mlw`` encoding
    orders it (``edgesim.weight_codec.brick_order``): ``depthwise`` for a conv whose groups
    each read one input channel (``groups`` > 1, ``shape[1] == 1``: the shape alone cannot tell
    it from a conv of one input channel), ``conv`` for any other conv, ``linear`` for a fully
    connected op; None for the rest (a constant matmul operand, an embedding table).

    >>> layout_of("conv", 64, (64, 1, 3, 3)), layout_of("conv", 1, (64, 1, 10, 4))
    ('depthwise', 'conv')
    """
    if kind == "conv":
        return "depthwise" if int(groups) > 1 and len(shape) > 1 and shape[1] == 1 else "conv"
    return "linear" if kind == "linear" and len(shape) == 2 else None


def quantize_bias(values: np.ndarray, scales: np.ndarray | float | None = None) -> np.ndarray:
    """Biases as int32: ``round(b / scale)``.

    ``scales`` is the bias scale (weight scale x input activation scale, per output channel or
    one number). Without it a per-tensor scale maps max|b| to 2**31 - 1, which keeps every
    nonzero bias nonzero.

    >>> quantize_bias(np.array([0.5, 0.0, -1.0])).tolist()
    [1073741824, 0, -2147483647]
    """
    b = np.asarray(values, dtype=np.float64)
    if scales is None:
        amax = float(np.abs(b).max()) if b.size else 0.0
        s = np.asarray(amax / _INT32_MAX if amax > 0 else 1.0)
    else:
        s = np.asarray(scales, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(s > 0, np.rint(b / np.where(s > 0, s, 1.0)), 0.0)
    return np.clip(q, -_INT32_MAX, _INT32_MAX).astype(np.int32)
