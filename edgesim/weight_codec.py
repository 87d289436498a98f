"""Exact code length of Arm Ethos-U's lossless weight stream ("mlw"), from the int8 values.

Public names: ``StreamCode``, ``encode_stream``, ``stream_bytes``, ``mlw_bytes``,
``RECORD_BYTES``, ``ALIGN_BYTES``, ``SLICE_MAX``.

The Ethos-U55/U65 weight decoder reads a bit stream that Vela's ``mlw_codec`` writes
(ethos-u-vela ``ethosu/mlw_codec/mlw_encode.c``, ``ethosu/vela/weight_compressor.py``). This
module counts the bits of such a stream without writing it (NumPy, histograms only); the
format, as that encoder writes it:

* **Values.** Each weight w (9-bit signed) maps to ``palval = 2|w| + (w < 0)``. A *palette* of
  up to 32 palvals, the most frequent first (ties: the larger palval first), is used when it
  covers more than half of the coded weights; a weight in the palette is coded as its rank, any
  other as ``palval + palsize - direct_offset`` (``direct_offset`` = unused palvals 0, 1, ...
  below the first used one, at most 31; the palval of 0 is 1, "negative zero", as the encoder's
  inverse table leaves it). Without a palette, ``palbits`` is the width of the largest palval.
* **Zero runs.** When 0 is the most frequent value and more than 4x as frequent as the second
  (``ZERO_RUN_THRES``), zeros leave the weight stream: each coded weight carries the run of
  zeros after it, and the first slice also the run before the first weight (an all-zero stream
  codes its first zero as a weight).
* **Golomb-Rice codes.** A slice codes its weights with one of 13 parameters: divisor k in 0..5
  with a full unary quotient (``q + 1 + k`` bits, q = v >> k <= 31), the same with the quotient
  truncated (``min(q + 1, 2) + k`` bits, q <= 2), or uncompressed (``uncompressed_bits`` per
  weight; allowed only without a palette, or when every weight is in it). The unary part is
  written in chunks of 12 positions (a full quotient takes q // 2 + 1 positions of one bit plus
  ceil(q / 2) bits; a truncated one 1 position), the last chunk of a slice padded to 12 positions.
  Zero runs use divisor d in 0..3, one position per unary bit, in chunks of 12 (d < 3) or 8.
* **Headers.** Each slice: ZDIV 3 + SLICELEN 15 + WDIV 3 + WTRUNC 1 + NEWPAL 1 = 23 bits, at most
  32767 weights. The first slice of the stream also writes DIROFS 5 + PALSIZE 5 + PALBITS 3 bits
  and the palette (``palsize x palbits``). The stream ends with a 3-bit end marker, is padded to
  a byte and then to ``ALIGN_BYTES`` (16).
* **Per-channel records.** Vela stores, before each stream, one ``RECORD_BYTES`` (10) record per
  output channel: 40-bit bias, 32-bit scale, 6-bit shift (``encode_bias``), padded to 16 bytes.

Where this estimator differs from Vela's encoder (both write valid streams of the same format):
Vela picks slice boundaries and parameters with a Viterbi search over the per-value costs above
(padding not counted) that charges a parameter change 40 bits; here every slice is a run of
``SLICE_MAX`` weights and takes the parameter of least search cost (the first on a tie, as the
search does), its bits then counted exactly. Vela's search may also switch parameters inside a
slice where that pays (it saves 0.2 % on a Laplace layer of 2.4 M weights), and may restart the
palette mid-stream (``search_palette_sections``) where a local palette pays; here the stream has
one palette. A stream whose code would exceed its raw form (no palette, every slice
uncompressed) is stored raw, so no stream costs more than raw plus headers; Vela has no such
fallback (its palette heuristic can lose to raw on contrived histograms, never on the layers
measured). Values are taken in the tensor's row-major order (output channel first), not Vela's
brick order (which interleaves 8-16 channels and pads some kernels with zeros); only zero runs
depend on the order. One stream per tensor is Vela's full-depth encoding (one NPU core); Vela
splits a tensor into depth slices only when it double-buffers weights in a small SRAM.

>>> import numpy as np
>>> stream_bytes(np.zeros(16, dtype=np.int8))      # 65 bits + 3 end marker -> 9 B -> 16 B
16
>>> encode_stream(np.array([1] * 90 + [-1] * 6 + [2] * 4)).bits   # derivation in the tests
163
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ALIGN_BYTES", "RECORD_BYTES", "SLICE_MAX", "StreamCode", "encode_stream",
           "mlw_bytes", "stream_bytes"]

#: Bytes of Vela's per-output-channel record: 40-bit bias + 32-bit scale + 6-bit shift (+2 pad).
RECORD_BYTES = 10
#: Alignment of each record block and each weight stream (Vela: 16 bytes).
ALIGN_BYTES = 16
#: Most weights in one slice (SLICELEN is 15 bits, stored minus one).
SLICE_MAX = 32767

_ZERO_RUN_THRES = 4
_SLICE_HEADER = 3 + 15 + 3 + 1 + 1          # ZDIV SLICELEN WDIV WTRUNC NEWPAL
_PALETTE_HEADER = 5 + 5 + 3                 # DIROFS PALSIZE PALBITS
_EOS_BITS = 3
_NO_UNCOMPRESSED = 100                      # the encoder's "uncompressed not allowed" width
_W_CFGS = tuple((k, 0) for k in range(6)) + tuple((k, 1) for k in range(6)) + ((-1, 2),)
_INDEX_SPAN = 1024                          # indices are < 512 + 32


@dataclass(frozen=True)
class StreamCode:
    """How one stream is coded: ``bits`` before the end marker, the palette, the slices.

    ``slices`` holds (weights, weight parameter, zero-run divisor or None) per slice; a weight
    parameter is (k, 0) full Golomb-Rice, (k, 1) truncated, (-1, 2) uncompressed.
    """

    bits: int
    palsize: int
    palbits: int
    zero_runs: bool
    uncompressed_bits: int
    slices: tuple[tuple[int, tuple[int, int], int | None], ...]

    @property
    def nbytes(self) -> int:
        """Stored bytes: end marker, byte alignment, padding to ``ALIGN_BYTES``."""
        return _align(-(-(self.bits + _EOS_BITS) // 8))


def _align(n: int) -> int:
    return -(-n // ALIGN_BYTES) * ALIGN_BYTES


def _palvals() -> np.ndarray:
    w = np.arange(-256, 256)
    return (np.abs(w) << 1) | (w < 0)


_PALVAL = _palvals()                        # index w + 256 -> palval


def _palette(freq: np.ndarray, zero_runs: bool) -> dict:
    """``create_palette`` of mlw_encode.c on the 512-bin histogram of w + 256."""
    f = freq.astype(np.int64).copy()
    f[0] = 0                                # -256 is out of range (the encoder loops -255..255)
    if zero_runs:
        f[256] = 0
    byval = np.zeros(512, dtype=np.int64)
    byval[_PALVAL[1:]] = f[1:]              # palval -> count
    used = np.flatnonzero(byval)
    all_cnt = int(byval.sum())
    all_max = int(used.max()) if used.size else 0
    low = np.flatnonzero(byval[:31])
    direct_offset = int(low[0]) if low.size else 31
    order = np.lexsort((-np.arange(512), -byval))   # count descending, then palval descending
    counts = byval[order]
    only_zeros = counts[0] == 0
    if only_zeros:
        direct_offset = 0
    only_palette = bool(counts[0] > 0 and counts[32] == 0)
    cap = 32 if only_palette else min(32, 511 - all_max)
    if cap == 1:
        cap = 0
    n = int(np.count_nonzero(counts[:cap]))
    lut = [int(v) for v in order[:n]]
    pal_cnt = int(counts[:n].sum())
    pal_max = max(lut, default=0)
    if n == 1:
        lut.append(0)                       # a palette of one is not supported: add palval 0
    if pal_cnt > all_cnt // 2:
        palsize, width_of = len(lut), pal_max
    else:
        palsize, width_of, lut = 0, all_max, []
    palbits = max(2, int(width_of).bit_length())
    return {"lut": lut, "palsize": palsize, "palbits": palbits, "direct_offset": direct_offset,
            "only_palette": only_palette, "only_zeros": bool(only_zeros)}


def _index_table(p: dict) -> np.ndarray:
    """w + 256 -> coded weight index (the encoder's inverse palette)."""
    table = _PALVAL + p["palsize"] - p["direct_offset"]
    table[256] = 1 + p["palsize"] - p["direct_offset"]      # palval 1 ("-0") wins in the C loop
    for rank, palval in enumerate(p["lut"][:p["palsize"]]):
        sign, mag = palval & 1, palval >> 1
        table[(-mag if sign else mag) + 256] = rank
    return table


def _choose(model: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice (row): the parameter of least ``model`` cost (the first on a tie), as the
    encoder's search picks it, and its ``exact`` bits."""
    best = np.argmin(model, axis=1)
    rows = np.arange(len(best))
    return exact[rows, best], best


def _weight_cost(hist: np.ndarray, counts: np.ndarray, ubits: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact weight bits of each slice (rows of ``hist``) under the parameter the encoder picks.

    The encoder's search costs a weight ``q + 1 + k`` bits (full), ``min(q + 1, 2) + k``
    (truncated) or ``uncompressed_bits``; the stream also pads each slice's last unary chunk to 12
    positions, which the search does not see and the exact count does.
    """
    v = np.arange(hist.shape[1])
    present = hist > 0
    top = np.where(present.any(axis=1), (present * v).max(axis=1), 0)
    never = np.iinfo(np.int64).max // 4
    model = np.empty((hist.shape[0], len(_W_CFGS)), dtype=np.int64)
    exact = np.empty_like(model)
    for j, (k, mode) in enumerate(_W_CFGS):
        if mode == 2:
            model[:, j] = exact[:, j] = counts * ubits if ubits < _NO_UNCOMPRESSED else never
            continue
        q = v >> k
        if mode == 0:
            pos = hist @ (q // 2 + 1)
            extra = hist @ ((q + 1) // 2)
            ok = (top >> k) <= 31
        else:
            pos = counts
            extra = hist @ (q > 0)
            ok = (top >> k) <= 2
        rem = counts * k
        model[:, j] = np.where(ok, pos + extra + rem, never)
        exact[:, j] = np.where(ok, 12 * -(-pos // 12) + extra + rem, never)
    return _choose(model, exact)


def _zrun_cost(runs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-run bits of each slice (runs[starts[i]:starts[i+1]]) under the divisor the
    encoder picks (its search costs a run ``(r >> d) + 1 + d``; chunks of 12 or 8 positions)."""
    n = np.diff(np.append(starts, runs.size))
    model = np.empty((starts.size, 4), dtype=np.int64)
    exact = np.empty_like(model)
    for d in range(4):
        pos = np.add.reduceat(runs >> d, starts) + n
        unit = 12 if d < 3 else 8
        model[:, d] = pos + n * d
        exact[:, d] = unit * -(-pos // unit) + n * d
    return _choose(model, exact)


def _code(values: np.ndarray, freq: np.ndarray, p: dict, zero_runs: bool) -> StreamCode:
    if p["only_palette"]:
        ubits = max(0, int(p["palsize"] - 1).bit_length())
    elif p["palsize"] == 0:
        ubits = p["palbits"]
    else:
        ubits = _NO_UNCOMPRESSED
    table = _index_table(p)
    if zero_runs:
        nz = np.flatnonzero(values)
        if nz.size == 0:                    # all zeros: the first zero is coded as a weight
            nz = np.zeros(1, dtype=np.int64)
            runs = np.array([0, values.size - 1], dtype=np.int64)
        else:
            runs = np.diff(np.concatenate(([-1], nz, [values.size]))) - 1
        coded = table[values[nz] + 256]
    else:
        coded = table[values + 256]
        runs = None
    n = coded.size
    slice_id = np.arange(n) // SLICE_MAX
    nslices = int(slice_id[-1]) + 1
    hist = np.bincount(slice_id * _INDEX_SPAN + coded,
                       minlength=nslices * _INDEX_SPAN).reshape(nslices, _INDEX_SPAN)
    counts = np.bincount(slice_id, minlength=nslices)
    wbits, wcfg = _weight_cost(hist, counts, ubits)
    bits = nslices * _SLICE_HEADER + _PALETTE_HEADER + p["palsize"] * p["palbits"]
    bits += int(wbits.sum())
    zdiv: list[int | None] = [None] * nslices
    if runs is not None:
        # the first slice codes len + 1 runs (the one before its first weight too), others len
        starts = np.concatenate(([0], np.arange(1, nslices) * SLICE_MAX + 1))
        zbits, zcfg = _zrun_cost(runs, starts)
        bits += int(zbits.sum())
        zdiv = [int(d) for d in zcfg]
    slices = tuple((int(c), _W_CFGS[int(j)], d) for c, j, d in zip(counts, wcfg, zdiv, strict=True))
    return StreamCode(int(bits), p["palsize"], p["palbits"], zero_runs, ubits, slices)


def encode_stream(values: np.ndarray) -> StreamCode:
    """The code of one weight stream (integers in -255..255, taken flattened, row-major).

    >>> encode_stream(np.full(100, 5)).bits   # 23 + 13 + 2 x 4 palette + 12 x ceil(100 / 12)
    152
    """
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if v.size == 0:
        raise ValueError("weight stream: empty; expected at least one value")
    lo, hi = int(v.min()), int(v.max())
    if lo < -255 or hi > 255:
        raise ValueError(f"weight stream: values must lie in -255..255, got range {lo}..{hi}")
    freq = np.bincount(v + 256, minlength=512)
    top = int(np.argmax(freq))
    second = int(np.partition(freq, -2)[-2])
    zero_runs = top == 256 and int(freq[256]) > _ZERO_RUN_THRES * second
    code = _code(v, freq, _palette(freq, zero_runs), zero_runs)
    raw = _raw(v, freq)
    return raw if raw.bits < code.bits else code


def _raw(v: np.ndarray, freq: np.ndarray) -> StreamCode:
    """The stream with no palette and no zero runs, every slice uncompressed at ``palbits``."""
    f = freq.copy()
    f[0] = 0
    used = _PALVAL[np.flatnonzero(f)]
    palbits = max(2, int(used.max()).bit_length())
    counts = [min(SLICE_MAX, v.size - s) for s in range(0, v.size, SLICE_MAX)]
    bits = len(counts) * _SLICE_HEADER + _PALETTE_HEADER + v.size * palbits
    return StreamCode(int(bits), 0, palbits, False, palbits,
                      tuple((c, _W_CFGS[-1], None) for c in counts))


def stream_bytes(values: np.ndarray) -> int:
    """Stored bytes of one weight stream (``encode_stream(values).nbytes``)."""
    return encode_stream(values).nbytes


def mlw_bytes(values: np.ndarray, bits: int = 8, scales: int = 0) -> int:
    """Stored bytes of a weight tensor as Vela stores it for Ethos-U: one record block of
    ``RECORD_BYTES`` per scale (per output channel) padded to ``ALIGN_BYTES``, then the tensor's
    weight stream (``stream_bytes``). ``bits`` is the stored width (at most 9, the codec's range).

    >>> mlw_bytes(np.zeros((4, 4), dtype=np.int8), 8, scales=4)   # 40 -> 48 B records + 16 B
    64
    """
    if not 1 <= int(bits) <= 9:
        raise ValueError(f"encoding 'mlw': values of {bits} bits; the Ethos-U weight codec "
                         "codes at most 9-bit signed weights")
    records = _align(int(scales) * RECORD_BYTES) if scales else 0
    return records + stream_bytes(values)
