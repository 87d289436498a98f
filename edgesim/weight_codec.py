"""Exact code length of Arm Ethos-U's lossless weight stream ("mlw"), from the int8 values.

Public names: ``StreamCode``, ``encode_stream``, ``stream_bytes``, ``mlw_bytes``,
``brick_order``, ``traversal``, ``LAYOUTS``, ``BLOCK_DEPTH``, ``RECORD_BYTES``,
``ALIGN_BYTES``, ``SLICE_MAX``.

The Ethos-U55/U65 weight decoder reads a bit stream that Vela's ``mlw_codec`` writes
(ethos-u-vela ``ethosu/mlw_codec/mlw_encode.c``, ``ethosu/vela/weight_compressor.py``). This
module counts the bits of such a stream without writing it (NumPy only); the format, as that
encoder writes it:

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

* **Slices.** The encoder chooses the parameters with a Viterbi search over the per-value
  costs above (padding not counted) that charges a change of parameter 40 bits (``_search``),
  once for the weights and once for the zero runs (free where a weight slice starts anyway); a
  slice starts wherever either changes, and after at most ``SLICE_MAX`` weights.

**The order.** Vela streams a tensor in the order its weight decoder feeds the MAC array,
padding included: ``edgesim.weight_order.brick_order`` (re-exported here with ``traversal``,
``LAYOUTS`` and ``BLOCK_DEPTH``). The ``mlw`` bytes of a weight therefore depend on the op it
feeds (``layout``).

**What is counted, against Vela 5.2.0.** ``encode_stream`` writes the bits Arm's encoder writes
for one palette section: checked value for value against ``mlw_encode.c`` built from source
(random, Laplace, sparse and channel-scaled streams of 1 to 120 k weights: equal bytes). Not
modelled: (1) the encoder's palette restarts (``search_palette_sections``), which change the
MLPerf Tiny streams by 0.0 % (ResNet-8, KWS, VWW) and +0.5 % (the autoencoder); (2) one stream
per NPU core: Ethos-U65-512 has 2 cores and Vela deals the output channels out to them, one
stream and record block each (``mlw_bytes(cores=2)``; +0.2 % to +1.3 % in Vela's totals),
while the ``mlw`` of a Workload is the one-core stream (a Workload is traced once, for any
hardware); (3) depth slices: where the previous op is too short to hide a weight DMA, Vela's
scheduler cuts the weights into OFM-depth slices encoded as streams of their own (for
double buffering), which costs up to 3-5 % on small, sparse models (VWW); that is a scheduling
decision, not stored bytes. No raw fallback: where Vela's palette heuristic loses to raw
(contrived histograms), so does this count.

>>> import numpy as np
>>> stream_bytes(np.zeros(16, dtype=np.int8))      # 65 bits + 3 end marker -> 9 B -> 16 B
16
>>> encode_stream(np.array([1] * 90 + [-1] * 6 + [2] * 4)).bits   # derivation in the tests
163
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgesim.weight_order import BLOCK_DEPTH, LAYOUTS, brick_order, traversal

__all__ = ["ALIGN_BYTES", "BLOCK_DEPTH", "LAYOUTS", "RECORD_BYTES", "SLICE_MAX", "StreamCode",
           "brick_order", "encode_stream", "mlw_bytes", "stream_bytes", "traversal"]

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
_Z_CFGS = 4                                 # zero-run divisors 0..3
_CMD_BITS = 40                              # the search's charge for a change of parameter
_IMPOSSIBLE = 10000                         # the search's cost of a value a parameter cannot code


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


def _w_tables(ubits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per weight index (rows, < ``_INDEX_SPAN``) and parameter (columns, ``_W_CFGS``): the
    search's cost, the unary positions and the unary1 + remainder bits the stream writes."""
    v = np.arange(_INDEX_SPAN)[:, None]
    cost = np.empty((_INDEX_SPAN, len(_W_CFGS)), dtype=np.int64)
    pos = np.ones_like(cost)
    extra = np.empty_like(cost)
    for j, (k, mode) in enumerate(_W_CFGS):
        if mode == 2:                       # no unary part is written, ``ubits`` per weight
            cost[:, j] = ubits
            pos[:, j] = 0
            extra[:, j] = ubits
            continue
        q = v[:, 0] >> k
        if mode == 0:
            cost[:, j] = np.where(q <= 31, q + 1 + k, _IMPOSSIBLE)
            pos[:, j] = q // 2 + 1
            extra[:, j] = (q + 1) // 2 + k
        else:
            cost[:, j] = np.where(q <= 2, np.minimum(q + 1, 2) + k, _IMPOSSIBLE)
            extra[:, j] = (q > 0) + k
    return cost, pos, extra


def _search(costs: np.ndarray, free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The encoder's parameter search (``search_grc_params``) over one value sequence: the
    segments ``(ends, cfgs)`` of least model cost, where ``costs[j, i]`` is the cost of value i
    under parameter j and a change of parameter costs 40 bits (0 at the values in ``free``,
    where the weight stream starts a slice anyway).

    A Viterbi recursion: ``s_j <- min(s_j, min s + 40) + cost_j``, keeping the parameter unless
    switching is strictly cheaper, switching from the first parameter of least cost; then traced
    back from the first parameter of least total. Only the lags ``s - min s`` decide, and only
    up to 41 (a parameter further behind switches at the next value whatever its lag). So a
    value's costs count relative to its cheapest, capped at 81 (a parameter 81 dearer ends at
    least 41 behind), and the lags fit int8 (at most 40 + 81).

    The recursion is linear in the min-plus algebra (``s'_j = min_i (A_ji + s_i)``, ``A_jj =
    cost_j``, ``A_ji = cost_j + 40``), so the sequence is cut into chunks run side by side
    (NumPy across chunks, one step per value in a chunk): first the transfer of each chunk from
    each parameter (``P[j, i]``, least cost from i at its start to j at its end), then the
    exact lags at each chunk's start, chunk after chunk (``min_i (P[j, i] + s_i)``), then every
    chunk again from its exact start, keeping the lags before each value for the traceback.
    Python steps: ``sqrt(n / 2)`` of 169 lanes per chunk (13 x 13), as many of 13 lanes, and
    ``sqrt(2 n)`` of one 13 x 13 chunk each; no reruns (exact: ``tests/test_weight_codec.py``
    checks it against the recursion written plainly).
    """
    ncfg, n = costs.shape
    span = max(16, int(np.sqrt(n / 2)))        # values per chunk
    k = -(-n // span)
    rel = np.zeros((ncfg, k * span), dtype=np.int8)
    np.minimum(costs - costs.min(axis=0), 2 * _CMD_BITS + 1, out=rel[:, :n], casting="unsafe")
    rel = np.ascontiguousarray(rel.reshape(ncfg, k, span).transpose(2, 0, 1))   # step, cfg, chunk
    cmd = np.full(k * span, _CMD_BITS, dtype=np.int8)
    if free is not None:
        cmd[free[free < n]] = 0
    limits = cmd[:n]
    step_cmd = np.ascontiguousarray(cmd.reshape(k, span).T) if free is not None else None
    start = np.zeros((ncfg, k), dtype=np.int8)             # the lags before each chunk
    if k > 1:
        m = k - 1                           # the last chunk's transfer is not needed
        pt = np.full((ncfg, ncfg, m), _CMD_BITS + 1, dtype=np.int8)    # 41: "not there"
        pt[np.arange(ncfg), np.arange(ncfg)] = 0
        offset = np.zeros((ncfg, m), dtype=np.int32)
        for t in range(span):
            np.minimum(pt, _CMD_BITS if step_cmd is None else step_cmd[t, :m], out=pt)
            pt += rel[t, :, None, :m]
            low = pt.min(axis=0)
            pt -= low
            offset += low
        transfer = np.ascontiguousarray((pt + offset).transpose(2, 0, 1))   # chunk, j, i
        s = np.zeros(ncfg, dtype=np.int32)
        for col in range(m):
            s = (transfer[col] + s).min(axis=1)
            s -= s.min()
            np.minimum(s, _CMD_BITS + 1, out=s)
            start[:, col + 1] = s
    lags = np.empty((span + 1, ncfg, k), dtype=np.int8)    # before each step, and after the last
    lags[0] = start
    s = start.copy()
    for t in range(span):
        np.minimum(s, _CMD_BITS if step_cmd is None else step_cmd[t], out=s)
        s += rel[t]
        s -= s.min(axis=0)
        lags[t + 1] = s
    at: dict[int, np.ndarray] = {}

    def switches(c: int) -> np.ndarray:
        """The values at which parameter ``c`` switched (from the first of least cost)."""
        if c not in at:
            at[c] = np.flatnonzero(lags[:-1, c].T.reshape(-1)[:n] > limits)
        return at[c]

    cfg, limit = int(np.argmin(lags[(n - 1) % span + 1, :, k - 1])), n
    seg_ends, seg_cfgs = [n], [cfg]
    while True:                             # back from the end: where each parameter began
        i = int(np.searchsorted(switches(cfg), limit)) - 1
        if i < 0:
            break
        limit = int(at[cfg][i])
        cfg = int(np.argmin(lags[limit % span, :, limit // span]))
        seg_ends.append(limit)
        seg_cfgs.append(cfg)
    return np.array(seg_ends[::-1], dtype=np.int64), np.array(seg_cfgs[::-1], dtype=np.int64)


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
    wcost, wpos, wextra = _w_tables(ubits)
    rel = np.minimum(wcost - wcost.min(axis=1, keepdims=True), 2 * _CMD_BITS + 1)
    w_ends, w_cfgs = _search(np.ascontiguousarray(rel.T.astype(np.int8))[:, coded])
    cuts = w_ends
    if runs is not None:
        z_ends, z_cfgs = _search(_z_cost(runs), free=w_ends - 1)
        cuts = np.union1d(w_ends, z_ends[z_ends <= n])
    # slices: from each cut to the next, in pieces of at most SLICE_MAX weights
    lo = np.concatenate(([0], cuts[:-1]))
    pieces = -(-(cuts - lo) // SLICE_MAX)
    starts = np.repeat(lo, pieces) + SLICE_MAX * (np.arange(pieces.sum())
                                                   - np.repeat(np.cumsum(pieces) - pieces, pieces))
    counts = np.diff(np.append(starts, n))
    wcfg = w_cfgs[np.searchsorted(w_ends, starts, side="right")]
    of_value = np.repeat(wcfg, counts)
    pos = np.add.reduceat(wpos[coded, of_value], starts)
    unit = np.where(wcfg == len(_W_CFGS) - 1, 1, 12)
    wbits = unit * -(-pos // unit) + np.add.reduceat(wextra[coded, of_value], starts)
    bits = starts.size * _SLICE_HEADER + _PALETTE_HEADER + p["palsize"] * p["palbits"]
    bits += int(wbits.sum())
    zdiv: list[int | None] = [None] * starts.size
    if runs is not None:
        zcfg = z_cfgs[np.searchsorted(z_ends, starts, side="right")]
        # the first slice codes the run before its first weight too: runs 0..end; the others
        # the runs after their weights
        rstart = np.append(0, starts[1:] + 1)
        d = np.repeat(zcfg, np.diff(np.append(rstart, runs.size)))
        zpos = np.add.reduceat((runs >> d) + 1, rstart)
        zunit = np.where(zcfg < 3, 12, 8)
        nruns = np.diff(np.append(rstart, runs.size))
        bits += int((zunit * -(-zpos // zunit) + nruns * zcfg).sum())
        zdiv = [int(x) for x in zcfg]
    slices = tuple((int(c), _W_CFGS[int(j)], dz)
                   for c, j, dz in zip(counts, wcfg, zdiv, strict=True))
    return StreamCode(int(bits), p["palsize"], p["palbits"], zero_runs, ubits, slices)


def _z_cost(runs: np.ndarray) -> np.ndarray:
    """The search's cost of zero runs under divisors 0..3: ``(r >> d) + 1 + d``."""
    d = np.arange(_Z_CFGS)[:, None]
    return (runs >> d) + 1 + d


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
    return _encode(v.astype(np.int16).tobytes())


@lru_cache(maxsize=8)
def _encode(key: bytes) -> StreamCode:
    """``encode_stream`` of the int16 values in ``key``, remembered: an import measures a
    tensor's stream once per record count (``edgesim.trace.weights.stored_block``)."""
    v = np.frombuffer(key, dtype=np.int16).astype(np.int64)
    freq = np.bincount(v + 256, minlength=512)
    top = int(np.argmax(freq))
    second = int(np.partition(freq, -2)[-2])
    zero_runs = top == 256 and int(freq[256]) > _ZERO_RUN_THRES * second
    return _code(v, freq, _palette(freq, zero_runs), zero_runs)


def stream_bytes(values: np.ndarray) -> int:
    """Stored bytes of one weight stream (``encode_stream(values).nbytes``)."""
    return encode_stream(values).nbytes


def mlw_bytes(values: np.ndarray, bits: int = 8, scales: int = 0, layout: str | None = None,
              cores: int = 1) -> int:
    """Stored bytes of a weight tensor as Vela stores it for Ethos-U: per NPU core, one record
    block of ``RECORD_BYTES`` per scale (per output channel) padded to ``ALIGN_BYTES``, then
    the core's weight stream (``stream_bytes``) of the tensor in Vela's order for the op it
    feeds (``brick_order`` with ``layout``; None: ``linear`` for a 2-D tensor, ``conv`` for
    more dimensions, the values as they lie for fewer). ``cores`` > 1 (Ethos-U65-512: 2) deals
    the output channels out in turn, one stream each. ``bits`` is the stored width (at most
    9, the codec's range).

    >>> mlw_bytes(np.zeros((4, 4), dtype=np.int8), 8, scales=4)   # 40 -> 48 B records + 16 B
    64
    """
    if not 1 <= int(bits) <= 9:
        raise ValueError(f"encoding 'mlw': values of {bits} bits; the Ethos-U weight codec "
                         "codes at most 9-bit signed weights")
    v = np.asarray(values)
    if layout is None and v.ndim >= 2:
        layout = "linear" if v.ndim == 2 else "conv"
    if layout is None or cores == 1:
        records = _align(int(scales) * RECORD_BYTES) if scales else 0
        return records + stream_bytes(v if layout is None else brick_order(v, layout))
    total = 0
    for core in range(min(int(cores), v.shape[0])):
        share = len(range(core, int(scales), int(cores))) if scales else 0
        total += _align(share * RECORD_BYTES) + stream_bytes(
            brick_order(v[core::cores], layout, -(-BLOCK_DEPTH // int(cores))))
    return total
