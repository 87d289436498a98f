"""Weight encodings: exact stored bytes of a real tensor under each encoding.

Public names: ``ENCODINGS``, ``Capability``, ``CAPABILITIES``, ``skips``, ``decodes``, ``CODECS``,
``SCALE_BYTES``, ``VALUE_BITS``, ``EXCLUSIVE``,
``stored_bytes``, ``holds``, ``best_encoding``, ``encoding_table``, ``candidates``,
``decodable``, ``resolve``, ``as_stored``, ``dense``, ``bitmap``, ``csr``, ``csc``,
``rle_bytes``, ``rle``, ``signed_binary_bytes``, ``signed_binary``, ``nested_bytes``,
``nested``, ``separate_csr_bytes``, ``SEGMENT_ENCODINGS``, ``segment_candidates``, ``mlw``,
``storage_note``, ``StorageWarning``, ``UNPACKED_BITS``.

Every function takes the quantized values as they will be stored (an integer NumPy array whose
first axis is the output channel), the bits per stored value, and the number of per-region scales
stored with the tensor (4 bytes each, fp32), and returns the exact number of bytes.

A tensor is viewed as a matrix with ``rows = shape[0]`` and ``cols = prod(shape[1:])``; a 1-D
tensor is one row and a 0-D tensor is a 1 x 1 matrix. "Flattened" means row-major (C) order.

**Packing rule (all encodings).** Each array of an encoding (values, indices, pointers, bitmap,
signs) is bit-packed on its own, its fields back to back, and padded at its end to a whole byte:
an array of ``n`` fields of ``w`` bits costs ``ceil(n * w / 8)`` bytes. Scales are fp32,
``SCALE_BYTES`` each. An index or pointer field is as narrow as it can be and still address its
range, and never narrower than 1 bit: ``width(m) = max(1, ceil(log2(m)))`` for ``m`` choices.

>>> import numpy as np
>>> stored_bytes(np.ones((4, 3), dtype=np.int8), "dense", bits=8, scales=4)
28
>>> encoding_table(np.array([[0, 3, 0, -2], [0, 0, 0, -1]]), bits=8)   # row 0 has both signs
{'dense': 8, 'bitmap': 4, 'csr': 5, 'csc': 6, 'rle': 5, 'nested': 5}
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edgesim.workload import LayerOp, WeightBlock, Workload

__all__ = [
    "CAPABILITIES",
    "CODECS",
    "ENCODINGS",
    "EXCLUSIVE",
    "SCALE_BYTES",
    "SEGMENT_ENCODINGS",
    "UNPACKED_BITS",
    "VALUE_BITS",
    "Capability",
    "StorageWarning",
    "as_stored",
    "best_encoding",
    "bitmap",
    "candidates",
    "csc",
    "csr",
    "decodable",
    "decodes",
    "dense",
    "encoding_table",
    "holds",
    "mlw",
    "nested",
    "nested_bytes",
    "resolve",
    "rle",
    "rle_bytes",
    "segment_candidates",
    "separate_csr_bytes",
    "signed_binary",
    "signed_binary_bytes",
    "skips",
    "storage_note",
    "stored_bytes",
]

#: Bytes of one stored scale (fp32).
SCALE_BYTES = 4


def _bits_to_bytes(bits: int) -> int:
    return (bits + 7) // 8


def _field_bits(choices: int) -> int:
    """Bits of a field that can hold ``choices`` distinct values: max(1, ceil(log2(choices)))."""
    return max(1, (int(choices) - 1).bit_length())


def _matrix(values: np.ndarray) -> np.ndarray:
    """``values`` as a rows x cols matrix (rows = shape[0], cols = prod(shape[1:]))."""
    a = np.asarray(values)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, a.shape[0])
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:], dtype=np.int64)))


def _check_bits(bits: int, encoding: str) -> None:
    if int(bits) < 1:
        raise ValueError(f"encoding {encoding!r}: bits per value must be >= 1, got {bits}")


def _csr_from_counts(nnz: int, rows: int, cols: int, bits: int, scales: int,
                     index_bits: int | None = None) -> int:
    """CSR bytes from the counts alone (values + column indices + rows+1 row pointers + scales)."""
    idx_bits = _field_bits(cols) if index_bits is None else index_bits
    ptr_bits = _field_bits(nnz + 1)
    return (_bits_to_bytes(nnz * bits) + _bits_to_bytes(nnz * idx_bits)
            + _bits_to_bytes((rows + 1) * ptr_bits) + scales * SCALE_BYTES)


def dense(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """Every value at ``bits`` bits, packed, plus the scales."""
    return _bits_to_bytes(values.size * bits) + scales * SCALE_BYTES


def bitmap(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """A 1-bit nonzero mask over every element plus the nonzero values, plus the scales.

    bytes = ceil(n / 8) + ceil(nnz * bits / 8) + 4 * scales (n elements, nnz of them nonzero).

    >>> bitmap(np.array([[0, 5, 0], [7, 0, 0]]), bits=8, scales=2)
    11
    """
    _check_bits(bits, "bitmap")
    a = np.asarray(values)
    nnz = int(np.count_nonzero(a))
    return _bits_to_bytes(a.size) + _bits_to_bytes(nnz * bits) + scales * SCALE_BYTES


def csr(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """Compressed sparse rows: values, column indices, row pointers, plus the scales.

    bytes = ceil(nnz * bits / 8)                    nonzero values
          + ceil(nnz * width(cols) / 8)             column index of each nonzero
          + ceil((rows + 1) * width(nnz + 1) / 8)   row pointers, each in 0..nnz
          + 4 * scales,
    with width(m) = max(1, ceil(log2(m))) bits; each array packed on its own (module docstring).

    >>> csr(np.array([[0, 5, 0], [7, 0, 0]]), bits=8)   # 2 + ceil(2*2/8) + ceil(3*2/8)
    4
    """
    _check_bits(bits, "csr")
    m = _matrix(values)
    return _csr_from_counts(int(np.count_nonzero(m)), m.shape[0], m.shape[1], bits, scales)


def csc(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """Compressed sparse columns: CSR of the transposed rows x cols matrix.

    bytes = ceil(nnz * bits / 8) + ceil(nnz * width(rows) / 8)
          + ceil((cols + 1) * width(nnz + 1) / 8) + 4 * scales.

    >>> csc(np.array([[0, 5, 0], [7, 0, 0]]), bits=8)   # 2 + ceil(2*1/8) + ceil(4*2/8)
    4
    """
    _check_bits(bits, "csc")
    m = _matrix(values)
    return _csr_from_counts(int(np.count_nonzero(m)), m.shape[1], m.shape[0], bits, scales)


def _rle_entries(values: np.ndarray, run_bits: int) -> int:
    """Stored entries of EIE relative indexing over the flattened tensor (pads included)."""
    flat = np.asarray(values).reshape(-1)
    pos = np.flatnonzero(flat)
    if pos.size == 0:
        return 0
    # zeros before each nonzero since the previous nonzero (or the start)
    gaps = np.diff(pos, prepend=-1) - 1
    # a pad entry stands for 2^w - 1 zeros (its run) plus itself (a stored zero): 2^w positions
    pads = int(np.sum(gaps >> run_bits))
    return int(pos.size) + pads


def rle_bytes(values: np.ndarray, bits: int, scales: int = 0, run_bits: int = 4) -> int:
    """EIE-style relative indexing: each nonzero with a ``run_bits``-wide count of zeros before it.

    The tensor is flattened row-major into one stream. An entry is (value: ``bits``, run:
    ``run_bits``). A gap of ``z`` zeros before a nonzero longer than ``2^w - 1`` (w = run_bits) is
    bridged by pad entries (value 0, run ``2^w - 1``), each covering ``2^w`` positions (its run plus
    itself), so a gap of ``z`` zeros needs ``z // 2^w`` pads. Zeros after the last nonzero are not
    stored (the decoder knows the tensor size).

    bytes = ceil(entries * (bits + run_bits) / 8) + 4 * scales.

    >>> rle_bytes(np.array([0] * 20 + [3]), bits=4)   # 1 pad + 1 entry = 2 x 8 bits
    2
    """
    _check_bits(bits, "rle")
    if int(run_bits) < 1:
        raise ValueError(f"encoding 'rle': run_bits must be >= 1, got {run_bits}")
    entries = _rle_entries(values, int(run_bits))
    return _bits_to_bytes(entries * (bits + int(run_bits))) + scales * SCALE_BYTES


def rle(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """``rle_bytes`` with the default 4-bit run field (EIE)."""
    return rle_bytes(values, bits, scales, run_bits=4)


def signed_binary_bytes(values: np.ndarray, bits: int = 1, scales: int = 0,
                        region: int | None = None) -> int:
    """Signed binary: per region one sign bit and one fp32 scale; per element a 1-bit mask.

    Each region holds values in {0, +a} or {0, -a}. Regions are consecutive runs of ``region``
    elements of the flattened (row-major) tensor; the default is one row (one output channel).
    The last region may be shorter when ``region`` does not divide the size.

    bytes = ceil(regions / 8)   sign bits
          + ceil(n / 8)         magnitude (nonzero) mask
          + 4 * regions         one fp32 scale per region.

    ``bits`` is ignored (each element costs 1 mask bit) and so is ``scales``: the encoding stores
    exactly one scale per region. Only zero/nonzero and the sign are recorded, so the nonzero
    magnitude of a region is its scale. Raises ``ValueError`` naming the first region that holds
    both positive and negative values, which this encoding cannot represent.

    >>> signed_binary_bytes(np.array([[0, 1, 1], [-1, 0, -1]]), bits=1)   # 1 + 1 + 8
    10
    """
    del bits, scales  # fixed by the encoding; kept for the common signature
    m = _matrix(values)
    flat = m.reshape(-1)
    n = int(flat.size)
    size = m.shape[1] if region is None else int(region)
    if size < 1:
        raise ValueError(f"encoding 'signed_binary': region must be >= 1 elements, got {region}")
    regions = -(-n // size) if n else 0
    if regions:
        idx = np.arange(n) // size
        has_pos = np.zeros(regions, dtype=bool)
        has_neg = np.zeros(regions, dtype=bool)
        has_pos[idx[flat > 0]] = True
        has_neg[idx[flat < 0]] = True
        mixed = np.flatnonzero(has_pos & has_neg)
        if mixed.size:
            r = int(mixed[0])
            raise ValueError(
                f"encoding 'signed_binary': region {r} (elements {r * size}..."
                f"{min(n, (r + 1) * size) - 1}) holds both positive and negative values; "
                f"expected values in {{0, +a}} or {{0, -a}} per region of {size} elements")
    return _bits_to_bytes(regions) + _bits_to_bytes(n) + regions * SCALE_BYTES


def signed_binary(values: np.ndarray, bits: int = 1, scales: int = 0) -> int:
    """``signed_binary_bytes`` with one region per output channel (row)."""
    return signed_binary_bytes(values, bits, scales)


def _level_counts(levels: np.ndarray, n_levels: int | None) -> tuple[np.ndarray, int, int]:
    """(nnz per level 1..N, rows, cols) of a level array; checks levels are in 0..N."""
    m = _matrix(levels)
    if m.size and not np.issubdtype(m.dtype, np.integer) and m.dtype != np.bool_:
        raise ValueError(f"nested levels must be integers, got dtype {m.dtype}")
    flat = m.reshape(-1).astype(np.int64)
    lo = int(flat.min()) if flat.size else 0
    hi = int(flat.max()) if flat.size else 0
    n = hi if n_levels is None else int(n_levels)
    if lo < 0 or hi > n:
        raise ValueError(f"nested levels must lie in 0..{n}, got range {lo}..{hi}")
    counts = np.bincount(flat, minlength=n + 1)[1:n + 1]
    return counts, m.shape[0], m.shape[1]


def nested_bytes(levels: np.ndarray, bits: int, index_bits: int | None = None,
                 scales: int = 0, n_levels: int | None = None) -> list[int]:
    """Cumulative stored bytes of each nested sub-network's prefix of one weight stream.

    ``levels`` has the tensor's shape: 0 = zero in every sub-network, k = the weight is first
    present in sub-network k (1 = sparsest); sub-network k holds every weight with 1 <= level <= k.
    ``n_levels`` (default ``levels.max()``) is N, the number of sub-networks.

    Layout: the scales first (read by every sub-network), then one CSR segment per level k = 1..N
    in order: the rows+1 row pointers of level k (relative to the segment, in 0..nnz_k), and the
    level-k nonzeros in row-major order, each with its value and its column index. Sub-network k
    reads segments 1..k, a prefix of the stream; row r of it is the union of row r of each segment.

    prefix(k) = 4 * scales + sum_{j<=k} [ ceil(nnz_j * bits / 8) + ceil(nnz_j * index_bits / 8)
                                          + ceil((rows + 1) * width(nnz_j + 1) / 8) ],
    index_bits = width(cols) by default (width(m) = max(1, ceil(log2(m)))). With N = 1 this is
    exactly ``csr``. Returns [prefix(1), ..., prefix(N)], non-decreasing; the last is the stream.

    >>> nested_bytes(np.array([[1, 0, 2, 0], [0, 2, 0, 1]]), bits=8)
    [4, 8]
    """
    _check_bits(bits, "nested")
    counts, rows, cols = _level_counts(levels, n_levels)
    need = _field_bits(cols)
    if index_bits is None:
        index_bits = need
    elif int(index_bits) < need:
        raise ValueError(f"nested index_bits={index_bits} cannot address {cols} columns; "
                         f"expected >= {need}")
    total = scales * SCALE_BYTES
    out: list[int] = []
    for nnz in counts.tolist():
        total += _csr_from_counts(int(nnz), rows, cols, bits, 0, int(index_bits))
        out.append(total)
    return out


def nested(values: np.ndarray, bits: int, scales: int = 0) -> int:
    """The whole nested stream of a tensor with one level (nonzero = level 1); equals ``csr``."""
    levels = (np.asarray(values) != 0).astype(np.int64)
    return nested_bytes(levels, bits, scales=scales, n_levels=1)[-1]


def separate_csr_bytes(levels: np.ndarray, bits: int, scales: int = 0,
                       n_levels: int | None = None) -> int:
    """Bytes of storing the N nested sub-networks as N separate CSR models (each with its scales).

    = sum_{k=1..N} csr bytes of the mask 1 <= level <= k, i.e. with cumulative nnz_1 + ... + nnz_k.

    >>> separate_csr_bytes(np.array([[1, 0, 2, 0], [0, 2, 0, 1]]), bits=8)   # 4 + 7
    11
    """
    _check_bits(bits, "nested")
    counts, rows, cols = _level_counts(levels, n_levels)
    cumulative = np.cumsum(counts).tolist()
    return sum(_csr_from_counts(int(nnz), rows, cols, bits, scales) for nnz in cumulative)


#: Encodings one level segment of a nested stream may be stored in besides ``nested`` (its CSR
#: segment): the generic sparse formats, each decoding the segment as a sparse tensor of its own
#: that the sub-network adds to the segments before it (their supports are disjoint). ``dense``
#: does not apply to a segment (it would store every level's zeros again).
SEGMENT_ENCODINGS: tuple[str, ...] = ("bitmap", "csr", "csc", "rle")


def segment_candidates(segment: np.ndarray, bits: int, scales: int = 0) -> dict[str, int]:
    """Bytes of one nested level segment (the tensor's values with ``level == k``, zeros
    elsewhere) under each of ``SEGMENT_ENCODINGS``; ``scales`` go with level 1.

    A level segment of a 50 %-dense sub-network's last 20 % costs, per element of the tensor,
    1 bit of bitmap + 0.2 x 8 bits of values = 2.6 bits in ``bitmap``, against 0.2 x (8 + 13)
    = 4.2 bits in CSR (3x3x512 columns: 13-bit indices).

    >>> segment_candidates(np.array([[0, 3, 0, 0, 0, 0, 0, -2]]), bits=8)   # csc: 2 + 1 + 3
    {'bitmap': 3, 'csr': 4, 'csc': 6, 'rle': 3}
    """
    return {e: stored_bytes(segment, e, bits, scales) for e in SEGMENT_ENCODINGS}


def mlw(values: np.ndarray, bits: int = 8, scales: int = 0, layout: str | None = None) -> int:
    """Arm Ethos-U's lossless weight stream (Vela's ``mlw_codec``), counted from the values.

    bytes = ceil16(10 * scales)   one 40-bit bias + 32-bit scale + 6-bit shift record per
                                  output channel (Vela stores them in place of fp32 scales)
          + the tensor's Golomb-Rice stream (palette, zero runs, 23-bit slice headers), padded
            to 16 bytes, of the values in Vela's order for the op they feed (``layout``:
            ``conv``, ``depthwise`` or ``linear``; ``edgesim.weight_codec``, which gives the
            format, the order and their source).

    >>> mlw(np.zeros((4, 4), dtype=np.int8), 8, scales=4)   # 48 B of records + a 48 B stream
    96
    """
    from edgesim.weight_codec import mlw_bytes
    return mlw_bytes(values, bits, scales, layout=layout)


#: name -> function(values, bits, scales) -> stored bytes
ENCODINGS: dict[str, Callable[..., int]] = {
    "dense": dense,
    "bitmap": bitmap,
    "csr": csr,
    "csc": csc,
    "rle": rle,
    "signed_binary": signed_binary,
    "nested": nested,
    "mlw": mlw,
}


@dataclass(frozen=True, slots=True)
class Capability:
    """What an encoding is to the hardware that reads it (``CAPABILITIES``).

    ``sparse``: it stores only the nonzero values and where they lie, so a decoder that walks
    it can skip the MACs of the zero weights: a hardware does so where ``compute.skip_formats``
    names the encoding (``skips``); a dense layout or a whole-stream codec cannot.
    ``decoded``: reading it decodes each stored nonzero's place (an index, a mask bit, a run;
    ``mlw``: its Golomb-Rice stream), one ``energy.index_decode`` per nonzero (``decodes``).
    ``value_bits``: the widths of value it stores (empty: any). ``exclusive``: a model made for
    it gets no implicit ``dense`` fallback (``decodable``). ``codec``: one hardware's
    whole-stream weight codec, left out of ``encoding_table`` unless asked for.
    """

    sparse: bool
    decoded: bool
    value_bits: tuple[int, ...] = ()
    exclusive: bool = False
    codec: bool = False


#: Each encoding's capabilities. ``signed_binary`` keeps only zero/nonzero and a sign per
#: region, so it holds 1-bit tensors only; ``mlw`` is the Ethos-U55/U65 weight decoder's format,
#: which takes int8 weights (Vela compiles int8 models only) and decodes to a dense stream.
CAPABILITIES: dict[str, Capability] = {
    "dense": Capability(sparse=False, decoded=False),
    "bitmap": Capability(sparse=True, decoded=True),
    "csr": Capability(sparse=True, decoded=True),
    "csc": Capability(sparse=True, decoded=True),
    "rle": Capability(sparse=True, decoded=True),
    "signed_binary": Capability(sparse=True, decoded=True, value_bits=(1,), exclusive=True),
    "nested": Capability(sparse=True, decoded=True),
    "mlw": Capability(sparse=False, decoded=True, value_bits=(8,), codec=True),
}

#: The widths of value each encoding that limits them stores (``Capability.value_bits``).
VALUE_BITS: dict[str, tuple[int, ...]] = {e: c.value_bits for e, c in CAPABILITIES.items()
                                          if c.value_bits}

#: Whole-stream codecs of one hardware's weight decoder (``mlw``: Arm Ethos-U55/U65), as opposed
#: to the generic sparse formats; ``encoding_table`` leaves them out unless they are asked for.
CODECS: tuple[str, ...] = tuple(e for e, c in CAPABILITIES.items() if c.codec)

#: Encodings a model is made for: a model that prefers one of them gets no implicit ``dense``
#: fallback (``decodable``), it is stored in what the hardware decodes or not at all.
EXCLUSIVE: tuple[str, ...] = tuple(e for e, c in CAPABILITIES.items() if c.exclusive)


def skips(encoding: str, skip_formats: Sequence[str]) -> bool:
    """Whether a hardware whose kernels or decoder walk ``skip_formats`` (``compute.
    skip_formats``) skips the MACs of the zero weights stored in ``encoding``: only a sparse
    encoding it walks.

    >>> skips("nested", ["nested"]), skips("csr", ["nested"]), skips("dense", ["dense"])
    (True, False, False)
    """
    cap = CAPABILITIES.get(encoding)
    return cap is not None and cap.sparse and encoding in skip_formats


def decodes(encoding: str) -> bool:
    """Whether reading a block in ``encoding`` decodes one index per stored nonzero (an
    encoding not in ``CAPABILITIES``, from a hand-made workload, is taken to: it is not dense).

    >>> decodes("dense"), decodes("csr"), decodes("mlw")
    (False, True, True)
    """
    cap = CAPABILITIES.get(encoding)
    return cap is None or cap.decoded


def holds(encoding: str, bits: int) -> bool:
    """Whether ``encoding`` can store values of ``bits`` bits (the capability check).

    >>> holds("signed_binary", 8), holds("signed_binary", 1), holds("csr", 8)
    (False, True, True)
    """
    widths = VALUE_BITS.get(encoding)
    return widths is None or int(bits) in widths


def stored_bytes(values: np.ndarray, encoding: str, bits: int, scales: int = 0,
                 region: int | None = None, layout: str | None = None) -> int:
    """Exact stored bytes of ``values`` under ``encoding``.

    ``region`` (elements per scale region, None: one row) is read by ``signed_binary`` only,
    ``layout`` (the op the weight feeds: ``conv``, ``depthwise``, ``linear``) by ``mlw`` only.
    """
    try:
        fn = ENCODINGS[encoding]
    except KeyError:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}") from None
    if encoding == "signed_binary" and region is not None:
        return int(signed_binary_bytes(np.asarray(values), bits, scales, region=region))
    if encoding == "mlw" and layout is not None:
        return int(mlw(np.asarray(values), bits, scales, layout=layout))
    return int(fn(np.asarray(values), bits, scales))


def best_encoding(values: np.ndarray, bits: int, allowed: Iterable[str],
                  scales: int = 0) -> tuple[str, int]:
    """The allowed encoding with the fewest stored bytes (first in ``allowed`` on a tie)."""
    best: tuple[str, int] | None = None
    for name in allowed:
        n = stored_bytes(values, name, bits, scales)
        if best is None or n < best[1]:
            best = (name, n)
    if best is None:
        raise ValueError("no encoding allowed")
    return best


def encoding_table(values: np.ndarray, bits: int, scales: int = 0,
                   allowed: Iterable[str] | None = None,
                   region: int | None = None, layout: str | None = None) -> dict[str, int]:
    """Stored bytes under every applicable encoding, in ``allowed`` order (default: ``ENCODINGS``
    but the hardware stream codecs, ``CODECS``, which are listed only when asked for).

    ``signed_binary`` is left out when a region holds both signs (it cannot represent it).
    ``region`` and ``layout`` are passed to ``stored_bytes``.
    """
    names = [e for e in ENCODINGS if e not in CODECS] if allowed is None else list(allowed)
    table: dict[str, int] = {}
    for name in names:
        try:
            table[name] = stored_bytes(values, name, bits, scales, region=region, layout=layout)
        except ValueError:
            if name != "signed_binary":
                raise
    return table


def candidates(values: np.ndarray, bits: int, scales: int, preferred: Sequence[str],
               region: int | None = None, layout: str | None = None) -> dict[str, int]:
    """Stored bytes under each of ``preferred`` that can hold the tensor (``holds`` and the
    encoding's own check on the values), in ``preferred`` order; what a tracer records in
    ``WeightBlock.encoded``. ``layout`` names the op the weight feeds, for ``mlw``.

    >>> candidates(np.array([[0, 3, 0, -2]]), 8, 0, ["signed_binary", "csr", "dense"])
    {'csr': 4, 'dense': 4}
    """
    return encoding_table(values, bits, scales, [e for e in preferred if holds(e, bits)],
                          region=region, layout=layout)


def decodable(preferred: Sequence[str], formats: Sequence[str] | None) -> list[str]:
    """The model's ``preferred`` encodings limited to ``formats`` (None: all), in that order.

    ``dense`` is added at the end when it is missing, unless the model prefers an ``EXCLUSIVE``
    encoding; an empty result is ``["dense"]``.

    >>> decodable(["dense", "csr"], ["csr"])
    ['csr', 'dense']
    >>> decodable(["dense", "signed_binary"], ["signed_binary"])   # no dense fallback
    ['signed_binary']
    """
    out = list(preferred) if formats is None else [e for e in preferred if e in formats]
    if "dense" not in out and not any(e in EXCLUSIVE for e in preferred):
        out.append("dense")
    return out or ["dense"]




# -- a traced Workload as a hardware stores it -------------------------------------------------
#: Resolved workloads of this process: workload -> {(formats, act_bits): resolved}.
_RESOLVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve(workload: Workload, hw: Any) -> Workload:
    """The Workload as the hardware ``hw`` stores and moves it: ``as_stored(workload,
    hw.formats, hw.act_bits)``; a ``StorageWarning`` (``storage_note``) when its weights do not
    fit a flash-only device."""
    out = as_stored(workload, tuple(hw.formats), int(hw.act_bits))
    note = storage_note(out, hw)
    if note is not None:
        import warnings
        warnings.warn(note, StorageWarning, stacklevel=2)
    return out


def as_stored(workload: Workload, formats: Sequence[str] | None,
              act_bits: int | None) -> Workload:
    """``workload`` with its weights in the ``formats`` a hardware decodes and its activation
    bytes at ``act_bits`` per element (None: leave that part as traced).

    Weights: a weight block of 1-bit values (signed-binary) where no format of ``formats``
    decodes 1-bit values (``VALUE_BITS``: only ``signed_binary`` does) is stored as int8
    weights, dense (``UNPACKED_BITS``; an int8-only device such as ``ethos_u55`` or ``stm32h7``
    reads the binarised tensor as int8). Each other block with candidates
    (``WeightBlock.encoded``) takes the smallest of them
    among ``decodable(workload.encodings, formats)`` (the first in that order on a tie)
    and sets ``encoding`` and ``stored_bytes``; a block without candidates stays as stored. A
    block that none of them can hold is a ``ConfigError`` naming it and the formats, except a
    nested level segment (``WeightBlock.level``): where the hardware decodes none of its encodings
    it stays in the ``nested`` layout, read by the model's own kernels (the paper's
    Cortex-M7 kernels, docs/references.md A4).

    Activations: a traced workload records ``Workload.act_bits`` bits per element (8: bytes =
    elements); ``in_bytes``, ``out_bytes`` and ``live_bytes`` become ``ceil(b * act_bits /
    traced)`` (``live_bytes`` at least in + out). Per-op sums are rounded once rather than per
    tensor as a trace at ``act_bits`` would: a difference of < 1 byte per tensor at non-8 bits.
    A workload without ``act_bits`` is taken to be at the hardware's bits already.

    Returns ``workload`` itself when nothing changes, and the same object for the same
    (workload, formats, act_bits) again (memoised per process), so a sweep resolves cheaply.

    >>> from edgesim.testing import tiny_workload
    >>> w = tiny_workload()
    >>> as_stored(w, ["dense"], 4) is w    # no candidates, no traced bits: as stored
    True
    """
    key = (None if formats is None else tuple(formats), None if act_bits is None else int(act_bits))
    memo = _RESOLVED.get(workload)
    if memo is None:
        memo = _RESOLVED[workload] = {}
    out = memo.get(key)
    if out is None:
        out = memo[key] = _as_stored(workload, *key)
        if out is not workload:
            _RESOLVED.setdefault(out, {})[key] = out
    return out


def _as_stored(w: Workload, formats: tuple[str, ...] | None, act_bits: int | None) -> Workload:
    from dataclasses import replace
    blocks = None if formats is None else _stored_blocks(w, formats)
    traced = w.act_bits
    scale = act_bits is not None and traced is not None and traced != act_bits
    if blocks is None and not scale:
        return w
    paths, meta = w.paths, w.meta
    if scale:
        paths = tuple(replace(p, ops=tuple(_scaled(op, traced, act_bits) for op in p.ops))
                      for p in w.paths)
        meta = {**w.meta, "act_bits": act_bits}
    return replace(w, blocks=w.blocks if blocks is None else blocks, paths=paths, meta=meta)


def _stored_blocks(w: Workload, formats: tuple[str, ...]) -> dict[str, WeightBlock] | None:
    """The blocks stored in ``formats`` (see ``as_stored``), or None when none changes."""
    from dataclasses import replace

    from edgesim.errors import ConfigError
    preferred = w.encodings
    order = None if preferred is None else decodable(list(preferred), formats)
    out: dict[str, WeightBlock] = {}
    changed = False
    for bid, b in w.blocks.items():
        if b.bits < UNPACKED_BITS and b.meta.get("role") == "weight" and not any(
                int(b.bits) in VALUE_BITS.get(f, ()) for f in formats):
            # 1-bit values are read by a decoder made for them (``VALUE_BITS``: signed_binary)
            # only; a hardware without one stores the tensor as its int8 weights
            b = _unpacked(b)
            changed = True
        elif b.encoded:
            names = decodable(list(b.encoded), formats) if order is None else order
            allowed = [e for e in names if e in b.encoded]
            if not allowed and b.level is not None and "nested" in b.encoded:
                allowed = ["nested"]
            if not allowed:
                raise ConfigError(f"weight block '{bid}': none of the encodings "
                                  f"{', '.join(names)} (formats {', '.join(formats)}) can store "
                                  f"it; it can be stored as {', '.join(b.encoded)}")
            best = min(allowed, key=b.encoded.__getitem__)   # first of the smallest on a tie
            if (best, b.encoded[best]) != (b.encoding, b.stored_bytes):
                b = replace(b, encoding=best, stored_bytes=int(b.encoded[best]))
                changed = True
        out[bid] = b
    return out if changed else None


#: Bits per value a hardware without a decoder for narrower values stores a weight in
#: (``as_stored``): every shipped config computes in int8 (``edgesim/hwconfigs``).
UNPACKED_BITS = 8


def _unpacked(b: WeightBlock) -> WeightBlock:
    """A block of 1-bit values as int8 weights: dense, one byte per element, its scales kept
    (the binarised tensor quantized to int8 per region: ``{-127, 0, 127} x a / 127``)."""
    from dataclasses import replace
    stored = dense(np.empty(int(b.elements), dtype=np.int8), UNPACKED_BITS,
                   b.scales)
    return replace(b, bits=UNPACKED_BITS, encoding="dense", stored_bytes=stored,
                   dense_bytes=stored, encoded={"dense": stored})


def _scaled(op: LayerOp, traced: int, act_bits: int) -> LayerOp:
    from dataclasses import replace

    def at(b: int) -> int:
        return -(-b * act_bits // traced)
    in_b, out_b = at(op.in_bytes), at(op.out_bytes)
    return replace(op, in_bytes=in_b, out_bytes=out_b, live_bytes=max(at(op.live_bytes),
                                                                       in_b + out_b))


class StorageWarning(UserWarning):
    """A model's stored weights do not fit the memory a hardware keeps them in."""


def storage_note(workload: Workload, hw: Any) -> str | None:
    """One line when ``workload``'s stored weights exceed a flash-only device's flash, else None.

    A device is flash-only for weights when they are placed in its ``offchip`` memory
    (``placement_weights``) of kind ``flash``; its size is ``hw.offchip_bytes`` (None: unknown,
    nothing to check). The line names the model, its stored bytes (for a nested model: the
    whole stream and what each level reads) and the flash size. ``workload`` is as stored on
    ``hw`` (``resolve``).
    """
    size = getattr(hw, "offchip_bytes", None)
    if (size is None or getattr(hw, "offchip_kind", None) != "flash"
            or getattr(hw, "placement_weights", "offchip") != "offchip"):
        return None
    stored = int(workload.stored_bytes)
    if stored <= int(size):
        return None
    name = getattr(hw, "name", "the device")
    levels: dict[int, int] = {}
    for b in workload.blocks.values():
        k = b.level
        if k is not None:
            levels[k] = levels.get(k, 0) + int(b.stored_bytes)
    if levels:
        acc, reads = stored - sum(levels.values()), []
        for k in sorted(levels):
            acc += levels[k]
            reads.append(f"{acc:,}")
        return (f"nested model {workload.name}: its weight stream ({stored:,} B; levels "
                f"1..{max(levels)} read {' / '.join(reads)} B) does not fit the {int(size):,} B "
                f"flash of {name}, and switching levels at run time needs all of it stored")
    return (f"model {workload.name}: its stored weights ({stored:,} B) do not fit the "
            f"{int(size):,} B flash of {name}")
