"""The Ethos-U weight-stream codec (``edgesim.weight_codec``, encoding ``mlw``).

Closed forms are counted by hand from the format (module docstring of ``edgesim.weight_codec``):
slice header 23 bits, first-slice palette header 13 bits + palsize x palbits, unary parts in
chunks of 12 positions (8 for zero-run divisor 3), a 3-bit end marker, padding to 16 bytes. Each
closed form below was also checked against Arm's own encoder (ethos-u-vela
``ethosu/mlw_codec/mlw_encode.c``, built from source), which writes the same number of bits.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgesim import encodings, weight_codec
from edgesim.trace.weights import quantize
from edgesim.weight_codec import (
    _IMPOSSIBLE,
    ALIGN_BYTES,
    RECORD_BYTES,
    SLICE_MAX,
    _search,
    _w_tables,
    _z_cost,
    brick_order,
    encode_stream,
    mlw_bytes,
    stream_bytes,
    traversal,
)

SLICE_HEADER = 23          # ZDIV 3 + SLICELEN 15 + WDIV 3 + WTRUNC 1 + NEWPAL 1
PALETTE_HEADER = 13        # DIROFS 5 + PALSIZE 5 + PALBITS 3


def _laplace_int8(shape, seed=0):
    """int8 weights Laplace(0, b) with the He std sqrt(2 / fan_in) (std = b sqrt 2), quantized
    symmetric per output channel as the tracer does."""
    fan_in = int(np.prod(shape[1:]))
    b = np.sqrt(2.0 / fan_in) / np.sqrt(2.0)
    w = np.random.default_rng(seed).laplace(0.0, b, shape).astype(np.float32)
    return quantize(w, "int8")[0]


def test_all_zero_stream():
    # 16 zeros: zero is the only value, in one run of 16 (>= half the zeros in runs of >= 2) and
    # more than 5x as frequent as any other (0), so zero runs are on and (no weight left) the
    # first zero is coded as a weight. No palette (palsize 0, palbits 2, uncompressed width 2);
    # the zero's index is 1 (palval 1, "-0"). Weight: div 0 costs q + 1 = 2 bits, the first of
    # the least: one 12-position chunk + 1 unary1 bit = 13. Runs [0 (skipped first run), 15]:
    # the first run makes d = 0 (1 bit) active; at the second, (r >> d) + 1 + d gives counts 17,
    # 11, 9, 9 for d = 0..3, and 9 + 40 is not below the active count before it (1): d = 0 stays,
    # 1 + 16 = 17 positions -> two 12-bit chunks = 24. 23 + 13 + 13 + 24 = 73 bits; + 3 end
    # marker = 76 -> 10 B -> 16 B.
    code = encode_stream(np.zeros(16, dtype=np.int8))
    assert code.zero_runs
    assert code.palsize == 0
    assert code.bits == SLICE_HEADER + PALETTE_HEADER + 13 + 24 == 73
    assert code.nbytes == ALIGN_BYTES


def test_constant_stream():
    # 100 x the value 5: palval 10, the only one, so the palette is [10, 0] (a palette of one is
    # padded with palval 0): palsize 2, palbits 4 (10 < 16), every weight in it (index 0), so
    # uncompressed is allowed at ceil(log2 2) = 1 bit. The search costs div 0, truncated div 0
    # and uncompressed each 1 bit per weight -> div 0 (first), whose unary part is 100 positions
    # in ceil(100 / 12) = 9 chunks of 12 bits = 108 bits, no remainder.
    # 23 + 13 + 2 x 4 + 108 = 152 bits.
    code = encode_stream(np.full(100, 5, dtype=np.int8))
    assert (code.palsize, code.palbits, code.uncompressed_bits) == (2, 4, 1)
    assert code.bits == SLICE_HEADER + PALETTE_HEADER + 2 * 4 + 12 * 9 == 152


def test_golomb_rice_bits_by_hand():
    # 90 x 1, 6 x -1, 4 x 2: palvals 2 (90), 3 (6), 4 (4) -> palette [2, 3, 4] by frequency,
    # palsize 3, palbits 3; indices 0 (90), 1 (6), 2 (4), every weight in the palette. The first
    # value (index 0) costs 1 bit at div 0 full and truncated: div 0 full (the first) becomes
    # active; truncated div 0 is cheaper only on the four index-2 weights (2 bits against 3), 4
    # bits in all, never 40 ahead, so one slice at div 0 full: 90 + 6 + 4 x 2 = 104 positions
    # -> 9 chunks = 108 bits, + 1 unary1 bit per nonzero quotient (10) = 118.
    # 23 + 13 + 3 x 3 + 118 = 163 bits.
    code = encode_stream(np.array([1] * 90 + [-1] * 6 + [2] * 4, dtype=np.int8))
    assert code.palsize == 3
    assert code.slices == ((100, (0, 0), None),)
    assert code.bits == SLICE_HEADER + PALETTE_HEADER + 3 * 3 + 108 + 10 == 163


def test_zero_runs_by_hand():
    # 40 zeros then a 3: zero is 40x more frequent than the next value (> 4x), so zero runs are
    # on. Palette of the nonzeros: [6, 0] (palsize 2, palbits 3). The weight 3 has index 0: div 0
    # -> one chunk of 12 bits. Runs [40, 0]: search costs 42, 23, 16, 13 for d = 0..3 -> d = 3:
    # positions (40 >> 3) + 1 + 1 = 7 -> one 8-bit chunk (d = 3 chunks are 8) + 2 x 3 = 14.
    # 23 + 13 + 2 x 3 + 12 + 14 = 68 bits.
    code = encode_stream(np.array([0] * 40 + [3], dtype=np.int8))
    assert code.zero_runs
    assert code.slices == ((1, (0, 0), 3),)
    assert code.bits == SLICE_HEADER + PALETTE_HEADER + 6 + 12 + 14 == 68


def test_long_stream_is_sliced():
    # Uniform int8 has no palette (the 32 most frequent values cover ~1/8 < 1/2), so slices are
    # uncompressed at palbits = 8 (palval 255 of -127 needs 8 bits): SLICE_MAX + 1 weights take two
    # slices, each with its 23-bit header.
    v = np.random.default_rng(3).integers(-127, 128, SLICE_MAX + 1)
    code = encode_stream(v)
    assert [s[0] for s in code.slices] == [SLICE_MAX, 1]
    assert code.bits == 2 * SLICE_HEADER + PALETTE_HEADER + 8 * (SLICE_MAX + 1)


def test_palette_that_loses_is_kept_as_vela_does():
    # 51 % ones and 49 % magnitudes 64..127: the 32 most frequent values (the one and 31 tail
    # values) cover > 1/2, so Vela's heuristic takes a palette, and then cannot code
    # uncompressed (not every value is in it). A palette index costs >= 6 bits at divisor 5 and a
    # tail index (palval + 32 = 160..287) 11..14: more than raw (23 + 13 + 8 x 1000), and that
    # is what Vela stores (it has no raw fallback, nor has this count).
    rng = np.random.default_rng(1)
    n = 1000
    tail = rng.integers(64, 128, n) * rng.choice([-1, 1], n)
    v = np.where(rng.random(n) < 0.51, 1, tail)
    code = encode_stream(v)
    assert code.palsize == 32
    assert code.bits > SLICE_HEADER + PALETTE_HEADER + 8 * n


def test_search_changes_parameter_where_it_must():
    # 600 x 1 then 600 x 100: a tie of counts, the larger palval first: palette [200, 2],
    # indices 0 (100) and 1 (1); every weight is in it, so uncompressed is allowed at 1 bit.
    # The first value (index 1) costs 2 bits at div 0 and 1 uncompressed: uncompressed becomes
    # active and nothing codes a value in less than 1 bit: one slice.
    assert encode_stream(np.array([1] * 600 + [100] * 600)).slices == ((1200, (-1, 2), None),)
    # 1000 values in 0..3 then 1000 in 64..127: the palette takes the four small values (1000
    # of 2000) and 28 large ones; the small ones are indices 0..3 (div 0 full: 1-4 bits, the
    # first of the least at the first value), the large ones up to palval + 32 = 286. Div 0
    # full codes q <= 31 only, so the first slice ends exactly at the first large value not in
    # the palette (value 1000), where the active parameter must change; the stream ends at
    # divisor 5, the cheapest for the large half.
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(0, 4, 1000), rng.integers(64, 128, 1000)])
    code = encode_stream(v)
    assert code.slices[0] == (1000, (0, 0), None)
    assert code.slices[-1][1] == (5, 0)
    assert sum(n for n, _, _ in code.slices) == 2000


def _plain_search(costs, kinds):
    """``search_grc_params`` of regor's mlw_encode.cpp written plainly (not single-slice)."""
    ncfg = len(costs)
    bc, coded, reset = [0] * ncfg, [False] * ncfg, [0] * ncfg
    active, a, result = -1, 0, []
    for i, x in enumerate(kinds):
        best, best_bc = 0, None
        for j in range(ncfg):
            bits = int(costs[j][x])
            if bits < _IMPOSSIBLE:
                if not coded[j]:
                    bc[j] = a
                bc[j] += bits
                if best_bc is None or bc[j] < best_bc:
                    best, best_bc = j, bc[j]
                coded[j] = True
            else:
                reset[j] = i + 1
                bc[j] += 40
                coded[j] = False
        if active == -1 or not coded[active] or (best != active and best_bc + 40 < a):
            if active != -1:
                if not (bc[best] < bc[active] and reset[best] <= reset[active]):
                    result.append([active, i])
            active = best
        a = bc[active]
    if not result or result[-1][0] != active:
        result.append([active, len(kinds)])
    result[-1][1] = len(kinds)
    return [tuple(r) for r in result]


@pytest.mark.parametrize("seed", range(24))
def test_search_is_the_plain_rule(seed, monkeypatch):
    # the vectorised search (_search) against the encoder's rule itself, on weight indices
    # (13 parameters, uncodable ones at 10000 bits) and zero runs (4 divisors, runs up to 40 k),
    # with its windows as they are and cut to 2..8 values (every window boundary exercised)
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 7, 40, 300, 700, 1500, 2500]))
    wcost = _w_tables(int(rng.choice([2, 5, 8, 100])))[0].T
    idx = np.minimum(rng.geometric(1 / rng.uniform(1.5, 60), n) - 1, wcost.shape[1] - 1)
    idx[rng.random(n) < 0.05] = rng.integers(0, 544)     # a few outliers
    runs = rng.geometric(1 / rng.uniform(1, 30), n) - 1
    runs[rng.random(n) < 0.01] = rng.integers(0, 40000)
    zcost = _z_cost(runs)
    plain_w = _plain_search(wcost, idx)
    plain_z = _plain_search(zcost, range(n))
    for window, most in ((weight_codec._WINDOW, weight_codec._WINDOW_MAX), (2, 8)):
        monkeypatch.setattr(weight_codec, "_WINDOW", window)
        monkeypatch.setattr(weight_codec, "_WINDOW_MAX", most)
        assert _search(np.ascontiguousarray(wcost), idx) == plain_w
        assert _search(zcost, np.arange(n)) == plain_z


def test_laplace_layer_near_vela():
    # A ResNet-50 3x3 conv (256 x 256 x 3 x 3 = 590 k weights) with Laplace He-std weights: its
    # int8 histogram has zero-order entropy ~6.5 bit (calibration/vela README), so a Golomb-Rice
    # code with a palette lands near 6.8 bit/weight; Vela stores the whole ResNet-50 at 87.3 %.
    q = _laplace_int8((256, 256, 3, 3))
    ratio = encodings.stored_bytes(q, "mlw", 8, scales=256) / q.size
    assert 0.80 <= ratio <= 0.95


def test_uniform_layer_near_raw():
    # Uniform int8 carries 7.99 bit/weight: no palette, every slice uncompressed at 8 bits, plus
    # 10 B of record per channel (10 / 2304 = 0.4 %).
    q = np.random.default_rng(0).integers(-127, 128, (256, 256, 3, 3)).astype(np.int8)
    ratio = encodings.stored_bytes(q, "mlw", 8, scales=256) / q.size
    assert 0.97 <= ratio <= 1.05


def test_records_are_ten_bytes_per_channel_aligned():
    # Vela's encode_bias: 40-bit bias + 32-bit scale + 6-bit shift = 10 B per output channel,
    # the block padded to 16 B: 3 channels -> 30 -> 32 B, then the stream: the 3 x 5 zeros as a
    # fully connected weight, 8 x 32 = 256 zeros (brick_order). As in test_all_zero_stream, the
    # first zero is a weight (13 bits) and the run of 255 after it stays at divisor 0 (its count
    # 4 + 36 + 40 is not below 1): 257 positions -> 22 chunks = 264 bits; 23 + 13 + 13 + 264 =
    # 313, + 3 = 316 bits -> 40 B -> 48 B.
    z = np.zeros((3, 5), dtype=np.int8)
    assert RECORD_BYTES == 10
    assert stream_bytes(brick_order(z, "linear")) == 48
    assert mlw_bytes(z, 8, scales=3) == 32 + 48
    assert mlw_bytes(z, 8, scales=0) == 48


def test_depth_slices_are_streams_of_their_own():
    # Vela's OFM-depth slices (weight_compressor.encode_weight_and_scale_tensor): each slice
    # stores its own record block and stream, per core; one slice is the tensor itself.
    q = _laplace_int8((48, 16, 3, 3), seed=2)
    whole = mlw_bytes(q, 8, scales=48, layout="conv")
    assert mlw_bytes(q, 8, scales=48, layout="conv", slices=(0, 48)) == whole
    parts = sum(mlw_bytes(q[a:b], 8, scales=b - a, layout="conv")
                for a, b in ((0, 16), (16, 32), (32, 48)))
    assert mlw_bytes(q, 8, scales=48, layout="conv", slices=(0, 16, 32, 48)) == parts
    with pytest.raises(ValueError, match=r"depth slices \(0, 16\) must rise from 0 to the 48"):
        mlw_bytes(q, 8, scales=48, layout="conv", slices=(0, 16))


def test_registered_for_int8_only():
    # The Ethos-U55/U65 weight decoder takes int8 weights: a 4-bit or 1-bit tensor is not held.
    q = np.array([[1, -2, 0, 3]], dtype=np.int8)
    assert encodings.holds("mlw", 8)
    assert not encodings.holds("mlw", 4)
    got = encodings.candidates(q, 8, 1, ["dense", "mlw"])
    # a 2-D tensor is streamed as a fully connected weight: 1 x 4 padded to 8 x 32 (brick_order)
    assert got == {"dense": 8, "mlw": 16 + stream_bytes(brick_order(q, "linear"))}
    assert "mlw" not in encodings.candidates(q, 4, 1, ["dense", "mlw"])
    assert "mlw" not in encodings.encoding_table(q, 8)       # codecs only when asked for


def test_bad_values_name_the_range():
    with pytest.raises(ValueError, match=r"-255\.\.255, got range 0\.\.300"):
        encode_stream(np.array([0, 300]))
    with pytest.raises(ValueError, match="empty"):
        encode_stream(np.array([], dtype=np.int8))
    with pytest.raises(ValueError, match="encoding 'mlw': values of 16 bits"):
        mlw_bytes(np.zeros(4), 16)


def test_deterministic():
    q = _laplace_int8((64, 64, 3, 3), seed=4)
    assert encode_stream(q) == encode_stream(q.copy())


# -- the order Vela streams a tensor in (brick_order) -----------------------------------------
def test_linear_order_is_8x8_micro_blocks_padded_to_32_inputs():
    # A 2 x 3 fully connected weight: one OFM micro-block (outputs 0..7, 2 real) x one IFM
    # block of 32 inputs (3 real), as 4 micro-blocks of 8 inputs, each 8 outputs x 8 inputs.
    # First come output 0's inputs 0..7 (1, 2, 3 and 5 pad zeros), then output 1's (4, 5, 6,
    # 5 zeros), then 6 padded outputs: 64 values; then 3 all-pad micro-blocks: 256 in all.
    s = brick_order(np.arange(1, 7).reshape(2, 3), "linear")
    assert s.size == 8 * 32
    assert s[:16].tolist() == [1, 2, 3, 0, 0, 0, 0, 0, 4, 5, 6, 0, 0, 0, 0, 0]
    assert not s[16:].any()


def test_depthwise_taps_padded_to_12():
    # 8 channels of 3 x 3 depthwise taps: per tap (padded 9 -> 12) the 8 channels' values in
    # turn: tap (0, 0) of channels 0..7 first, then tap (0, 1), ...; 3 pad taps x 8 = 24 zeros.
    w = np.arange(1, 73).reshape(8, 1, 3, 3)
    s = brick_order(w, "depthwise")
    assert s.size == 12 * 8
    assert s[:8].tolist() == w[:, 0, 0, 0].tolist()
    assert s[8:16].tolist() == w[:, 0, 0, 1].tolist()
    assert not s[72:].any()
    # The same tensor as a conv of one input channel (its shape cannot tell them apart) is
    # part-kernel first: per tap (12) 8 outputs x an 8-input micro-block of 1 real input.
    c = brick_order(w, "conv")
    assert c.size == 12 * 8 * 8
    assert c[:9].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 10]


def test_part_kernel_first_for_few_inputs():
    # 8 outputs x 3 inputs x 1 x 2 taps: at most 8 inputs -> part-kernel first, taps 2 -> 4.
    # Per tap: 8 outputs x 8 inputs (3 real): output 0's inputs 0..2 at tap 0 first.
    w = np.arange(1, 49).reshape(8, 3, 1, 2)
    assert traversal(w.shape, "conv") == "part_kernel"
    s = brick_order(w, "conv")
    assert s.size == 4 * 8 * 8
    assert s[:8].tolist() == [w[0, 0, 0, 0], w[0, 1, 0, 0], w[0, 2, 0, 0], 0, 0, 0, 0, 0]
    assert not s[128:].any()                    # taps 2 and 3 are padding


@pytest.mark.parametrize(("shape", "how"), [
    ((16, 16, 3, 3), "part_kernel"),   # 16/16 x 9/12 = 0.75 >= 16/32 (ResNet-8's 3x3 at 16)
    ((32, 32, 3, 3), "depth"),         # 32/32 x 0.75 < 32/32
    ((32, 16, 1, 1), "depth"),         # 1 x 1/4 < 16/32
    ((64, 1, 10, 4), "part_kernel"),   # 1 input channel (KWS's first conv)
])
def test_traversal_follows_vela_utilisation(shape, how):
    assert traversal(shape, "conv") == how


def test_kernel_split_into_8x8_sub_kernels():
    # KWS's first conv: 64 outputs, 1 input, 10 x 4 taps -> sub-kernels of 8 x 4 (32 taps) and
    # 2 x 4 (8 taps); per 8-output micro-block (8 of them) 8 x 8 values per tap:
    # 8 x (32 + 8) x 64 = 20,480 values (Vela's reorder gives the same length).
    assert brick_order(np.ones((64, 1, 10, 4)), "conv").size == 20480


def test_zero_runs_follow_the_order():
    # 16 outputs x 64 inputs (1 x 1, depth first), outputs 8..15 dead (all zero), the rest
    # nonzero. Row-major: one run of 8 x 64 = 512 zeros at the end. Brick order: output block
    # 0..15, IFM blocks 0..31 and 32..63, each: OFM micro-block 0..7 (all nonzero) then 8..15
    # (4 x 64 = 256 zeros): two runs of 256.
    w = np.ones((16, 64, 1, 1), dtype=np.int64)
    w[8:] = 0

    def runs(v):
        z = np.diff(np.concatenate(([0], (np.asarray(v) == 0).astype(int), [0])))
        return (np.flatnonzero(z == -1) - np.flatnonzero(z == 1)).tolist()
    assert runs(w.reshape(-1)) == [512]
    assert runs(brick_order(w, "conv")) == [256, 256]


@pytest.mark.parametrize("seed", range(8))
def test_order_is_the_values_plus_zeros(seed):
    # Law: the stream holds every value once, in some order, plus padding zeros.
    rng = np.random.default_rng(seed)
    layout = ("conv", "depthwise", "linear")[seed % 3]
    k, c = int(rng.integers(1, 40)), int(rng.integers(1, 70))
    shape = {"conv": (k, c, int(rng.integers(1, 10)), int(rng.integers(1, 10))),
             "depthwise": (k, 1, 3, 3), "linear": (k, c)}[layout]
    w = rng.integers(1, 100, shape)
    s = brick_order(w, layout)
    assert np.array_equal(np.sort(s[s != 0]), np.sort(w.reshape(-1)))


def test_two_cores_deal_out_channels():
    # Ethos-U65-512: outputs 0, 2, 4, ... to core 0 and 1, 3, ... to core 1, each with its own
    # record block (8 x 10 = 80 B) and stream, ordered with an 8-deep OFM block.
    q = _laplace_int8((16, 32, 3, 3))
    two = mlw_bytes(q, 8, scales=16, layout="conv", cores=2)
    assert two == sum(80 + stream_bytes(brick_order(q[c::2], "conv", 8)) for c in (0, 1))
    assert mlw_bytes(q, 8, scales=16, layout="conv") == 160 + stream_bytes(brick_order(q, "conv"))


def test_layout_from_the_op():
    from edgesim.trace.weights import layout_of
    assert layout_of("conv", 64, (64, 1, 3, 3)) == "depthwise"
    assert layout_of("conv", 1, (64, 1, 10, 4)) == "conv"
    assert layout_of("linear", 1, (10, 64)) == "linear"
    assert layout_of("matmul", 1, (64, 10)) is None
    q = _laplace_int8((64, 1, 3, 3))
    dw = encodings.stored_bytes(q, "mlw", 8, 64, layout="depthwise")
    assert dw == 640 + stream_bytes(brick_order(q, "depthwise"))
    assert dw != encodings.stored_bytes(q, "mlw", 8, 64)       # taken for a conv otherwise
