"""Exact code length of Arm Ethos-U's lossless weight stream ("mlw"), from the int8 values.

Public names: ``StreamCode``, ``encode_stream``, ``stream_bytes``, ``mlw_bytes``,
``brick_order``, ``traversal``, ``LAYOUTS``, ``BLOCK_DEPTH``, ``RECORD_BYTES``,
``ALIGN_BYTES``, ``SLICE_MAX``, ``SECTION``.

The Ethos-U55/U65 weight decoder reads a bit stream that Vela writes. Vela 5.2.0 (the
calibration reference) writes it with the encoder of its C++ back end, regor
(``ethosu/regor/dependencies/mlw_codec/source/mlw_encode.cpp``, fed by ``EncodeWeights`` of
``ethosu/regor/architecture/ethosu55/ethos_u55_weight_encoder.cpp``); this module counts the
bits of such a stream without writing it (NumPy only). The format, as that encoder writes it:

* **Sections.** The encoder takes the stream ``SECTION`` (128 Ki) values at a time, each
  section with a palette and zero-run choice of its own.
* **Values.** Each weight w (9-bit signed) maps to ``palval = 2|w| + (w < 0)``. A *palette* of
  up to 32 palvals, the most frequent first (ties: the larger palval first), is used when it
  covers at least half of the coded weights (rounded down); a weight in the palette is coded as
  its rank, any other as ``palval + palsize - direct_offset`` (``direct_offset`` = unused
  palvals 0, 1, ... below the first used one, at most 31; the palval of 0 is 1, "negative
  zero", as the encoder's inverse table leaves it). Without a palette, ``palbits`` is the width
  of the largest palval.
* **Zero runs.** When zeros in runs of at least 2 make up at least half of the zeros and zeros
  are more than 5x as frequent as any other value (``_ZERO_FREQ``), zeros leave the weight
  stream: each coded weight carries the run of zeros after it, and the first slice also the run
  before the first weight (an all-zero stream codes its first zero as a weight).
* **Golomb-Rice codes.** A slice codes its weights with one of 13 parameters: divisor k in 0..5
  with a full unary quotient (``q + 1 + k`` bits, q = v >> k <= 31), the same with the quotient
  truncated (``min(q + 1, 2) + k`` bits, q <= 2), or uncompressed (``uncompressed_bits`` per
  weight; allowed only without a palette, or when every weight is in it). The unary part is
  written in chunks of 12 positions (a full quotient takes q // 2 + 1 positions of one bit plus
  ceil(q / 2) bits; a truncated one 1 position), the last chunk of a slice padded to 12 positions.
  Zero runs use divisor d in 0..3, one position per unary bit, in chunks of 12 (d < 3) or 8.
* **Parameters.** A greedy forward search (``_search``), once for the weights and once for the
  zero runs: the parameter changes where the active one cannot code a value, or where another
  has come 40 bits ahead of it.
* **Slices.** A slice takes the weights up to the end of the current weight parameter (at most
  ``SLICE_MAX``); the next starts after the shorter of that and the current zero-run
  parameter's rest (``ml_encode_section``).
* **Headers.** Each slice: ZDIV 3 + SLICELEN 15 + WDIV 3 + WTRUNC 1 + NEWPAL 1 = 23 bits. The
  first slice of a section also writes DIROFS 5 + PALSIZE 5 + PALBITS 3 bits and the palette
  (``palsize x palbits``). The stream ends with a 3-bit end marker, is padded to a byte and then
  to ``ALIGN_BYTES`` (16).
* **Per-channel records.** Vela stores, before each stream, one ``RECORD_BYTES`` (10) record per
  output channel: 40-bit bias, 32-bit scale, 6-bit shift (``encode_bias``), padded to 16 bytes.

**The order.** Vela streams a tensor in the order its weight decoder feeds the MAC array,
padding included: ``edgesim.weight_order.brick_order`` (re-exported here with ``traversal``,
``LAYOUTS`` and ``BLOCK_DEPTH``). The ``mlw`` bytes of a weight therefore depend on the op it
feeds (``layout``).

**What is counted, against Vela 5.2.0.** ``encode_stream`` gives the bytes regor's encoder
writes, checked stream for stream against that encoder built from source (all 77 weight
streams of the six MLPerf Tiny models in Vela's order, and 60 random, Laplace, sparse,
constant and multi-section streams of 1 to 140 k values: equal bytes). On the four MLPerf Tiny
models Vela compiles, the streams total within 0.3 % of Vela's ``weights_enc_B`` on
Ethos-U55 and within 1.7 % on Ethos-U65 (``tests/test_mlperf_tiny.py``; Vela 3.x's C encoder,
``mlw_encode.c``, a Viterbi parameter search, wrote 2.8 % less for VWW's sparse weights). Not
modelled in a Workload's ``mlw``, which is traced once for any hardware: (1) one stream per NPU
core: Ethos-U65-512 has 2 cores and Vela deals the output channels out to them, one stream and
record block each (``mlw_bytes(cores=2)``: with it every U65 row is within 0.31 % of Vela's);
(2) OFM-depth slices: where the op before is too short to hide a weight DMA, Vela's scheduler
cuts the weights into slices stored as streams of their own (``mlw_bytes(slices=...)``;
regor's ``ProposeSlicedWeightBuffering`` decides them from its performance estimates). No raw
fallback: where Vela's palette heuristic loses to raw (contrived histograms), so does this
count.

>>> import numpy as np
>>> stream_bytes(np.zeros(16, dtype=np.int8))      # 73 bits + 3 end marker -> 10 B -> 16 B
16
>>> encode_stream(np.array([1] * 90 + [-1] * 6 + [2] * 4)).bits   # derivation in the tests
163
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

import numpy as np

from edgesim.weight_order import BLOCK_DEPTH, LAYOUTS, brick_order, traversal

__all__ = ["ALIGN_BYTES", "BLOCK_DEPTH", "LAYOUTS", "RECORD_BYTES", "SECTION", "SLICE_MAX",
           "StreamCode", "brick_order", "encode_stream", "mlw_bytes", "stream_bytes", "traversal"]

#: Bytes of Vela's per-output-channel record: 40-bit bias + 32-bit scale + 6-bit shift (+2 pad).
RECORD_BYTES = 10
#: Alignment of each record block and each weight stream (Vela: 16 bytes).
ALIGN_BYTES = 16
#: Most weights in one slice (SLICELEN is 15 bits, stored minus one).
SLICE_MAX = 32767

#: Zero runs need zeros more than this many times as frequent as any other value (regor's
#: ``ZERO_FREQ_THRESHOLD``).
_ZERO_FREQ = 5
#: Values per section: the encoder is fed 128 Ki values at a time (``EncodeWeights`` of
#: regor's ``ethos_u55_weight_encoder.cpp``), each coded with a palette of its own.
SECTION = 131072
_SLICE_HEADER = 3 + 15 + 3 + 1 + 1          # ZDIV SLICELEN WDIV WTRUNC NEWPAL
_PALETTE_HEADER = 5 + 5 + 3                 # DIROFS PALSIZE PALBITS
_EOS_BITS = 3
_NO_UNCOMPRESSED = 100                      # the encoder's "uncompressed not allowed" width
_W_CFGS = tuple((k, 0) for k in range(6)) + tuple((k, 1) for k in range(6)) + ((-1, 2),)
_INDEX_SPAN = 1024                          # indices are < 512 + 32
_Z_CFGS = 4                                 # zero-run divisors 0..3
_CMD_BITS = 40                              # the search's charge for a parameter it cannot use
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
    """``create_palette`` of regor's mlw_encode.cpp on the 512-bin histogram of w + 256."""
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
    if pal_cnt >= all_cnt // 2:
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


@lru_cache(maxsize=16)
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
    for table in (cost, pos, extra):
        table.flags.writeable = False       # shared by every call (lru_cache)
    return cost, pos, extra


def _search(costs: np.ndarray, kinds: np.ndarray) -> list[tuple[int, int]]:
    """The encoder's parameter search (``search_grc_params`` of regor's ``mlw_encode.cpp``)
    over one value sequence: its segments ``[(parameter, end), ...]``. ``costs[j, x]`` is the
    bits of a value of kind x under parameter j (``_IMPOSSIBLE`` or more: j cannot code it),
    ``kinds`` the kind of each value.

    The encoder's rule, value by value: each parameter j that can code the value adds its bits
    to its count ``bc[j]``, restarting from the active parameter's count ``A`` if it could not
    code the value before; one that cannot adds 40 (the "command cost") and notes the position
    after it (``reset``). The best is the first codable parameter of least count. The active
    parameter changes to it when the active one cannot code the value, or when the best's count
    plus 40 is below ``A`` as it stood before the value; the segment so far is then closed with
    the old parameter, unless the best's count is below the active one's and it has been
    codable at least as long, in which case the open segment takes the best parameter instead.

    Vectorised between changes: while the active parameter stays, ``A`` is its running sum and
    every other count is a running sum restarted from ``A`` where it becomes codable again, so
    a window of values is computed at once (cumulative sums, the restarts as a cumulative sum
    of offset changes) up to the first value that changes the parameter, which is then taken by
    the rule above (``_step``); windows double while nothing changes. Exact:
    ``tests/test_weight_codec.py`` checks it against the rule written plainly, and the stream
    sizes against the encoder built from source.
    """
    ncfg, n = costs.shape[0], kinds.size
    can_of = costs < _IMPOSSIBLE
    step_of = np.where(can_of, costs, _CMD_BITS).astype(np.int32)
    all_can = can_of.all(axis=0)
    penalty = np.where(can_of, 0, 1 << 29).astype(np.int32)   # no count reaches it
    s = _State(np.zeros(ncfg, dtype=np.int64), np.zeros(ncfg, dtype=bool),
               np.zeros(ncfg, dtype=np.int64))
    result: list[list[int]] = []
    t, win = 0, _WINDOW
    while t < n:
        if s.active >= 0:
            upto, hit = _window(s, kinds[t:t + win], t, can_of, step_of, all_can, penalty)
            t += upto
            if not hit:
                win = min(2 * win, _WINDOW_MAX)
                continue
            win = _WINDOW
        _step(s, t, can_of[:, kinds[t]], costs[:, kinds[t]], result)
        t += 1
    if not result or result[-1][0] != s.active:
        result.append([s.active, n])
    result[-1][1] = n
    return [(int(c), int(e)) for c, e in result]


#: First window of ``_search`` and its largest (windows double while no parameter changes).
_WINDOW = 256
_WINDOW_MAX = 1 << 15


@dataclass
class _State:
    """The search's state before a value: counts, codable before, reset positions, active."""

    bc: np.ndarray
    coded: np.ndarray
    reset: np.ndarray
    active: int = -1
    a: int = 0                              # the active parameter's count


def _step(s: _State, t: int, can: np.ndarray, bits: np.ndarray, result: list) -> None:
    """Value ``t`` by the encoder's rule (``_search``), closing a segment where it changes."""
    s.bc = np.where(can, np.where(s.coded, s.bc, s.a) + bits, s.bc + _CMD_BITS)
    s.reset = np.where(can, s.reset, t + 1)
    s.coded = can
    best = int(np.argmin(np.where(can, s.bc, np.iinfo(np.int64).max)))
    if s.active == -1 or not can[s.active] or (best != s.active
                                                and s.bc[best] + _CMD_BITS < s.a):
        if s.active != -1 and not (s.bc[best] < s.bc[s.active]
                                   and s.reset[best] <= s.reset[s.active]):
            result.append([s.active, t])
        s.active = best
    s.a = int(s.bc[s.active])


def _window(s: _State, kinds: np.ndarray, t: int, can_of: np.ndarray, step_of: np.ndarray,
            all_can: np.ndarray, penalty: np.ndarray) -> tuple[int, bool]:
    """Run ``s`` over the values ``kinds`` (starting at ``t``) up to the first one that changes
    the active parameter: (values passed, whether one changes it). Per kind of value:
    ``can_of`` whether a parameter codes it, ``step_of`` what it adds to the parameter's count,
    ``all_can`` whether every parameter codes it, ``penalty`` 0 or more than any count."""
    m = kinds.size
    st = np.take(step_of, kinds, axis=1)
    cum = np.cumsum(st, axis=1, dtype=np.int32)        # through each value
    base = (s.bc - s.a).astype(np.int32)               # counts less A, before the window
    a_before = np.empty(m, dtype=np.int32)             # A before each value, less A
    a_before[0] = 0
    a_before[1:] = cum[s.active, :-1]
    rel = cum + base[:, None]
    if s.coded.all() and all_can[kinds].all():
        can = None
        least = rel.min(axis=0)
    else:
        can = np.take(can_of, kinds, axis=1)
        entry = np.empty_like(can)                     # codable again after a value it was not
        entry[:, 0] = can[:, 0] & ~s.coded
        np.greater(can[:, 1:], can[:, :-1], out=entry[:, 1:])
        rows = np.flatnonzero(entry.any(axis=1))
        if rows.size:
            # after an entry r a count runs from A before r: cum - cum(r - 1) + a_before(r);
            # the offset filled forward as a cumulative sum of its changes
            at = np.flatnonzero(entry if rows.size == entry.shape[0] else entry[rows])
            row, col = np.divmod(at, m)
            flat = rows[row] * m + col
            off = a_before[col] - (cum.ravel()[flat] - st.ravel()[flat])
            prev = np.empty_like(off)
            prev[1:] = off[:-1]
            first = np.ones(at.size, dtype=bool)
            first[1:] = row[1:] != row[:-1]
            prev[first] = base[rows[row[first]]]
            jumps = np.zeros((rows.size, m), dtype=np.int32)
            jumps.flat[at] = off - prev
            fill = np.cumsum(jumps, axis=1, dtype=np.int32)
            fill += base[rows, None]
            fill += cum[rows]
            rel[rows] = fill
        least = (rel + np.take(penalty, kinds, axis=1)).min(axis=0)
    change = least + _CMD_BITS < a_before
    if can is not None:
        change |= ~can[s.active]
    hit = np.flatnonzero(change)
    upto = int(hit[0]) if hit.size else m
    if upto:
        u = upto - 1
        a0 = s.a
        s.a = a0 + int(cum[s.active, u])
        s.bc = a0 + rel[:, u].astype(np.int64)
        if can is None:
            s.coded = np.ones_like(s.coded)
        else:
            s.coded = can[:, u].copy()
            gap = ~can[:, upto - 1::-1]                    # back from the last value passed
            last = np.where(gap.any(axis=1), t + upto - np.argmax(gap, axis=1), 0)
            s.reset = np.maximum(s.reset, last)
    return upto, bool(hit.size)


def _zero_runs(v: np.ndarray, freq: np.ndarray) -> bool:
    """regor's choice of zero runs (``update_palette``): zeros in runs of at least 2 make up at
    least half of the zeros, and zeros are more than ``_ZERO_FREQ`` times as frequent as the
    most frequent other value."""
    zeros = int(freq[256])
    if zeros == 0:
        return False
    edges = np.diff(np.concatenate(([0], (v == 0).view(np.int8), [0])))
    lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
    other = int(np.delete(freq, 256).max())
    return int(lengths[lengths >= 2].sum()) >= zeros // 2 and zeros > _ZERO_FREQ * other


def _section(values: np.ndarray) -> StreamCode:
    """The code of one section (at most ``SECTION`` values, its own palette)."""
    freq = np.bincount(values + 256, minlength=512)
    zero_runs = _zero_runs(values, freq)
    p = _palette(freq, zero_runs)
    if p["only_palette"]:
        ubits = max(0, int(p["palsize"] - 1).bit_length())
    elif p["palsize"] == 0:
        ubits = p["palbits"]
    else:
        ubits = _NO_UNCOMPRESSED
    table = _index_table(p)
    runs = None
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
    n = coded.size
    wcost, wpos, wextra = _w_tables(ubits)
    wseg = _search(np.ascontiguousarray(wcost.T), coded)
    zseg: list[tuple[int, int]] = []
    if runs is not None:
        zseg = _search(_z_cost(runs), np.arange(runs.size))
    # the slices, as ml_encode_section cuts them: each takes the weights up to the end of the
    # current weight segment (at most SLICE_MAX) and moves on by the shorter of that and the
    # zero-run segment's rest; the first also codes the run before its first weight
    bits = _PALETTE_HEADER + p["palsize"] * p["palbits"]
    pos = iw = iz = 0
    slices = []
    while pos < n or not slices:
        w_len = min(wseg[iw][1] - pos, SLICE_MAX) if iw < len(wseg) else 0
        wcfg = wseg[iw][0] if w_len else 0
        ci = coded[pos:pos + w_len]
        bits += _SLICE_HEADER + int(wextra[ci, wcfg].sum())
        if _W_CFGS[wcfg][1] != 2:
            bits += 12 * -(-int(wpos[ci, wcfg].sum()) // 12)
        zdiv, z_len = None, 0
        if runs is not None and iz < len(zseg):
            z_len = min(zseg[iz][1] - pos, SLICE_MAX)
            zdiv = zseg[iz][0]
            r = runs[pos:pos + w_len + 1] if not slices else runs[pos + 1:pos + 1 + w_len]
            unit = 12 if zdiv < 3 else 8
            bits += unit * -(-int(((r >> zdiv) + 1).sum()) // unit) + r.size * zdiv
        step = (w_len if z_len <= 0 < w_len else z_len if w_len <= 0 < z_len
                else min(z_len, w_len))
        if step <= 0:                       # the searches' segments always move on
            raise AssertionError(f"weight stream: slice of {step} values at {pos} of {n}")
        slices.append((w_len, _W_CFGS[wcfg], zdiv))
        pos += step
        if iw < len(wseg) and wseg[iw][1] <= pos:
            iw += 1
        if iz < len(zseg) and zseg[iz][1] <= pos:
            iz += 1
    return StreamCode(int(bits), p["palsize"], p["palbits"], zero_runs, ubits, tuple(slices))


def _z_cost(runs: np.ndarray) -> np.ndarray:
    """The bits of zero runs under divisors 0..3: ``(r >> d) + 1 + d``."""
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
    tensor's stream once per record count (``edgesim.trace.weights.stored_block``). Sections
    of ``SECTION`` values are coded one after the other, each with its own palette; the code
    reports the first section's palette and every section's slices."""
    v = np.frombuffer(key, dtype=np.int16).astype(np.int64)
    codes = [_section(v[a:a + SECTION]) for a in range(0, v.size, SECTION)]
    first = codes[0]
    return StreamCode(sum(c.bits for c in codes), first.palsize, first.palbits,
                      first.zero_runs, first.uncompressed_bits,
                      tuple(x for c in codes for x in c.slices))


def stream_bytes(values: np.ndarray) -> int:
    """Stored bytes of one weight stream (``encode_stream(values).nbytes``)."""
    return encode_stream(values).nbytes


def mlw_bytes(values: np.ndarray, bits: int = 8, scales: int = 0, layout: str | None = None,
              cores: int = 1, slices: tuple[int, ...] | None = None,
              block_depth: int = BLOCK_DEPTH) -> int:
    """Stored bytes of a weight tensor as Vela stores it for Ethos-U: per NPU core, one record
    block of ``RECORD_BYTES`` per scale (per output channel) padded to ``ALIGN_BYTES``, then
    the core's weight stream (``stream_bytes``) of the tensor in Vela's order for the op it
    feeds (``brick_order`` with ``layout`` and ``block_depth``; None: ``linear`` for a 2-D
    tensor, ``conv`` for more dimensions, the values as they lie for fewer). ``cores`` > 1
    (Ethos-U65-512: 2) deals the output channels out in turn, one stream each. ``bits`` is
    the stored width (at most 9, the codec's range).

    ``slices``: the output-channel bounds ``(0, d1, ..., K)`` of Vela's OFM-depth slices
    (``ofm_depth_slices``, ``vela_depth_slices``); each slice is stored on its own, records
    and streams per core, as ``encode_weight_and_scale_tensor`` of ethos-u-vela's
    ``weight_compressor.py`` does. None: one slice.

    >>> mlw_bytes(np.zeros((4, 4), dtype=np.int8), 8, scales=4)   # 40 -> 48 B records + 48 B
    96
    >>> mlw_bytes(np.zeros((32, 4), dtype=np.int8), 8, scales=32, slices=(0, 16, 32))
    480
    """
    if not 1 <= int(bits) <= 9:
        raise ValueError(f"encoding 'mlw': values of {bits} bits; the Ethos-U weight codec "
                         "codes at most 9-bit signed weights")
    v = np.asarray(values)
    if layout is None and v.ndim >= 2:
        layout = "linear" if v.ndim == 2 else "conv"
    scales, cores = int(scales), int(cores)
    if layout is None or (cores == 1 and slices is None):
        records = _align(scales * RECORD_BYTES) if scales else 0
        return records + stream_bytes(v if layout is None else brick_order(v, layout,
                                                                           block_depth))
    k = v.shape[0]
    bounds = (0, k) if slices is None else tuple(int(b) for b in slices)
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != k or any(
            lo >= hi for lo, hi in pairwise(bounds)):
        raise ValueError(f"encoding 'mlw': depth slices {bounds} must rise from 0 to the "
                         f"{k} output channels")
    total = 0
    for lo, hi in pairwise(bounds):
        for core in range(min(cores, k)):
            if lo + core >= hi:
                continue
            # Vela: each core's block depth is its share of the OFM block
            depth = (block_depth + cores - 1 - core) // cores
            share = len(range(lo + core, min(hi, scales), cores))
            total += _align(share * RECORD_BYTES) + stream_bytes(
                brick_order(v[lo + core:hi:cores], layout, depth))
    return total
