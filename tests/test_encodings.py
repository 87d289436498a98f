"""Tests of edgesim.encodings: hand-counted stored bytes of every encoding, and laws they obey.

Notation in the derivations: n elements, nnz nonzeros, a rows x cols matrix view,
width(m) = max(1, ceil(log2(m))) bits, every array packed on its own and rounded up to whole
bytes, 4 bytes per fp32 scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgesim import encodings
from edgesim.encodings import (
    CAPABILITIES,
    ENCODINGS,
    SCALE_BYTES,
    VALUE_BITS,
    best_encoding,
    bitmap,
    csc,
    csr,
    decodes,
    encoding_table,
    nested_bytes,
    rle_bytes,
    separate_csr_bytes,
    signed_binary_bytes,
    skips,
    stored_bytes,
)

ALL = list(ENCODINGS)

# A = [[0, 5, 0], [7, 0, 0]], 8 bits: rows 2, cols 3, n 6, nnz 2.
A = np.array([[0, 5, 0], [7, 0, 0]], dtype=np.int8)


def test_registered_names_in_order():
    # dense first and unchanged; the new encodings after it in a fixed (tie-breaking) order.
    assert ALL == ["dense", "bitmap", "csr", "csc", "rle", "signed_binary", "nested", "mlw"]


def test_every_encoding_says_what_it_is_and_only_a_sparse_one_skips_macs():
    # one capability row per encoding: none reaches the simulator without saying whether it
    # is sparse and whether reading it decodes indices
    assert list(CAPABILITIES) == ALL
    for name, cap in CAPABILITIES.items():
        # a layout that hands the array every weight skips no MAC, whatever a config lists
        assert skips(name, ALL) == cap.sparse
        assert not skips(name, [e for e in ALL if e != name])
        # a sparse layout stores where its nonzeros lie: reading it decodes that
        assert decodes(name) or not cap.sparse
    assert not decodes("dense")
    assert VALUE_BITS == {"signed_binary": (1,), "mlw": (8,)}


def test_the_simulator_names_no_encoding_and_reads_no_meta():
    # what an encoding is to the hardware lives in CAPABILITIES, what the simulator reads of a
    # workload in typed accessors (LayerOp.strides, WeightBlock.level, Workload.act_bits, ...)
    sim = Path(encodings.__file__).parent / "sim"
    for path in sorted(sim.glob("*.py")):
        text = path.read_text()
        assert not [e for e in ALL if f'"{e}"' in text], path.name
        assert ".meta.get(" not in text, path.name
        assert ".meta[" not in text, path.name


def test_small_matrix_every_encoding():
    # dense:  6 x 8 bits = 6.
    # bitmap: ceil(6/8) = 1 mask + 2 values = 3.
    # csr:    2 values + ceil(2 x width(3)=2 / 8) = 1 idx + ceil(3 ptrs x width(3)=2 / 8) = 1 -> 4.
    # csc:    2 values + ceil(2 x width(2)=1 / 8) = 1 idx + ceil(4 ptrs x 2 / 8) = 1 -> 4.
    # rle:    flat 0 5 0 7 0 0: 2 entries (runs 1, 1, no pad) x (8+4) = 24 bits = 3.
    # signed_binary: 2 rows, both positive: ceil(2/8) = 1 sign + ceil(6/8) = 1 mask + 2 x 4 = 10.
    # nested: one level = csr = 4.
    assert encoding_table(A, bits=8) == {
        "dense": 6, "bitmap": 3, "csr": 4, "csc": 4, "rle": 3, "signed_binary": 10, "nested": 4,
    }


def test_all_zeros():
    # 3 x 4 zeros, 8 bits, 3 scales (12 bytes): n 12, nnz 0.
    # dense:  12 + 12 = 24.        bitmap: ceil(12/8) = 2 + 0 + 12 = 14.
    # csr:    4 ptrs x width(1)=1 = 4 bits -> 1, + 12 = 13.   csc: 5 ptrs x 1 -> 1, + 12 = 13.
    # rle:    no entries -> 0 + 12 = 12.
    # signed_binary: 3 regions: 1 sign byte + 2 mask bytes + 3 x 4 = 15 (its own scales only).
    z = np.zeros((3, 4), dtype=np.int8)
    assert encoding_table(z, bits=8, scales=3) == {
        "dense": 24, "bitmap": 14, "csr": 13, "csc": 13, "rle": 12, "signed_binary": 15,
        "nested": 13,
    }


def test_no_zeros():
    # 2 x 2 ones, 4 bits: n = nnz = 4.
    # dense:  16 bits = 2.         bitmap: 1 mask byte + 16 bits = 2 -> 3.
    # csr:    2 values + 4 idx x width(2)=1 -> 1 + 3 ptrs x width(5)=3 = 9 bits -> 2 = 5; csc alike.
    # rle:    4 entries x (4+4) = 32 bits = 4.
    # signed_binary: 1 sign byte + 1 mask byte + 2 x 4 = 10.
    ones = np.ones((2, 2), dtype=np.int8)
    assert encoding_table(ones, bits=4) == {
        "dense": 2, "bitmap": 3, "csr": 5, "csc": 5, "rle": 4, "signed_binary": 10, "nested": 5,
    }


ROW = [0, 0, 2, 0, 0, 0, 0, 0, 0, 3]  # n 10, nnz 2 at positions 2 and 9


def test_one_row():
    # 1 x 10, 8 bits.
    # dense 10.  bitmap: ceil(10/8) = 2 + 2 = 4.
    # csr: 2 + ceil(2 x width(10)=4 / 8) = 1 + ceil(2 ptrs x width(3)=2 / 8) = 1 -> 4.
    # csc: 2 + ceil(2 x width(1)=1 / 8) = 1 + ceil(11 ptrs x 2 / 8) = 3 -> 6.
    # rle: runs 2 and 6, no pads: 2 x 12 bits = 3.
    # signed_binary: 1 region: 1 + 2 + 4 = 7.
    expected = {"dense": 10, "bitmap": 4, "csr": 4, "csc": 6, "rle": 3, "signed_binary": 7,
                "nested": 4}
    assert encoding_table(np.array([ROW]), bits=8) == expected


def test_one_column():
    # 10 x 1, 8 bits: csr and csc swap roles against the one-row case.
    # csr: 2 + ceil(2 x width(1)=1 / 8) = 1 + ceil(11 ptrs x width(3)=2 / 8) = 3 -> 6.
    # csc: 2 + ceil(2 x width(10)=4 / 8) = 1 + ceil(2 ptrs x 2 / 8) = 1 -> 4.
    # signed_binary: 10 one-element regions: ceil(10/8) = 2 + 2 + 10 x 4 = 44.
    col = np.array(ROW).reshape(10, 1)
    assert encoding_table(col, bits=8) == {
        "dense": 10, "bitmap": 4, "csr": 6, "csc": 4, "rle": 3, "signed_binary": 44, "nested": 6,
    }


def test_one_d_tensor_is_one_row():
    # A 1-D tensor (e.g. a bias) is one row: every encoding equals the 1 x 10 case.
    assert encoding_table(np.array(ROW), bits=8) == encoding_table(np.array([ROW]), bits=8)


def test_conv_tensor_is_rows_by_prod_rest():
    # (2, 1, 2, 2) conv weights -> 2 rows x 4 cols; the encodings see only that matrix.
    w = np.array([0, 1, 0, 0, 2, 0, 0, 3]).reshape(2, 1, 2, 2)
    assert encoding_table(w, bits=8) == encoding_table(w.reshape(2, 4), bits=8)


def test_scales_add_four_bytes_each():
    # Every encoding but signed_binary (which stores exactly one scale per region) adds 4 x scales.
    base = encoding_table(A, bits=8)
    more = encoding_table(A, bits=8, scales=5)
    for name in base:
        extra = 0 if name == "signed_binary" else 5 * SCALE_BYTES
        assert more[name] == base[name] + extra, name


# --- rle -------------------------------------------------------------------------------------


def test_rle_run_of_20_zeros_needs_one_pad():
    # 20 zeros then 3, 4-bit runs (max run 15): one pad entry (value 0, run 15) covers 16
    # positions, leaving a run of 4 before the 3 -> 2 entries x (8 + 4) bits = 24 bits = 3 bytes.
    x = np.array([0] * 20 + [3])
    assert rle_bytes(x, bits=8) == 3
    assert stored_bytes(x, "rle", bits=8) == 3


@pytest.mark.parametrize(
    ("zeros", "entries"),
    [
        (15, 1),  # run 15 fits in 4 bits: no pad
        (16, 2),  # one pad covers 16 positions, run 0 left
        (31, 2),  # one pad, run 15 left
        (32, 3),  # two pads, run 0 left
    ],
)
def test_rle_pad_boundaries(zeros, entries):
    # bytes = ceil(entries x 12 / 8) with 8-bit values and 4-bit runs.
    x = np.array([0] * zeros + [1])
    assert rle_bytes(x, bits=8) == math.ceil(entries * 12 / 8)


def test_rle_run_width_parameter():
    # 2-bit runs cover 2^2 = 4 positions per pad: 20 zeros -> 5 pads + the value = 6 entries
    # x (8 + 2) bits = 60 bits = 8 bytes.
    assert rle_bytes(np.array([0] * 20 + [3]), bits=8, run_bits=2) == 8


def test_rle_trailing_zeros_are_free_and_flattening_is_row_major():
    # [[0, 1, 0], [0, 0, 0]]: one entry (run 1); the trailing zeros are not stored: 12 bits = 2.
    assert rle_bytes(np.array([[0, 1, 0], [0, 0, 0]]), bits=8) == 2
    # Runs cross row ends: [[0,0,0,0,0],[0,0,0,0,0],[0,0,0,0,0],[0,9,0,0,0]] has 16 zeros before
    # the 9 in row-major order -> 1 pad + 1 entry = 24 bits = 3.
    x = np.zeros((4, 5), dtype=np.int8)
    x[3, 1] = 9
    assert rle_bytes(x, bits=8) == 3


def _eie_encode(flat: list[int], run_bits: int) -> list[tuple[int, int]]:
    """Reference EIE encoder, one element at a time: (value, zeros before it) entries."""
    max_run = 2 ** run_bits - 1
    entries: list[tuple[int, int]] = []
    run = 0
    for v in flat:
        if v == 0:
            if run == max_run:  # the run field is full: this zero becomes a pad entry
                entries.append((0, max_run))
                run = 0
            else:
                run += 1
        else:
            entries.append((v, run))
            run = 0
    # drop pads after the last nonzero: trailing zeros are implied by the tensor size
    while entries and entries[-1][0] == 0:
        entries.pop()
    return entries


def _eie_decode(entries: list[tuple[int, int]], n: int) -> list[int]:
    out: list[int] = []
    for v, run in entries:
        out.extend([0] * run)
        out.append(v)
    return out + [0] * (n - len(out))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.int8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=12),
               elements=st.sampled_from([0, 0, 0, 0, 0, 1, -2])),
    st.integers(1, 4),
)
def test_rle_matches_reference_encoder(x, run_bits):
    # Law: the closed form counts exactly the entries of a one-element-at-a-time EIE encoder,
    # and that encoder's stream decodes back to the tensor.
    flat = x.reshape(-1).tolist()
    entries = _eie_encode(flat, run_bits)
    assert _eie_decode(entries, len(flat)) == flat
    assert rle_bytes(x, bits=8, run_bits=run_bits) == math.ceil(len(entries) * (8 + run_bits) / 8)


# --- signed binary ---------------------------------------------------------------------------


def test_signed_binary_mixed_sign_region_is_an_error():
    with pytest.raises(ValueError, match=r"region 1 .*both positive and negative"):
        signed_binary_bytes(np.array([[0, 1, 1], [1, 0, -1]]), bits=1)
    with pytest.raises(ValueError, match="both positive and negative"):
        stored_bytes(np.array([[1, -1]]), "signed_binary", bits=1)


def test_signed_binary_region_parameter():
    # flat 1 1 0 0 | -1 0 0 -1 (8 elements).
    x = np.array([[1, 1, 0, 0], [-1, 0, 0, -1]])
    # region 4 = one row: 2 regions -> 1 sign byte + 1 mask byte + 2 x 4 = 10.
    assert signed_binary_bytes(x, 1, region=4) == signed_binary_bytes(x, 1) == 10
    # region 2: 4 regions -> 1 + 1 + 16 = 18.
    assert signed_binary_bytes(x, 1, region=2) == 18
    # region 3: [1 1 0] [0 -1 0] [0 -1] (last one short) -> 3 regions: 1 + 1 + 12 = 14.
    assert signed_binary_bytes(x, 1, region=3) == 14
    # region 8: one region holds +1 and -1.
    with pytest.raises(ValueError, match="region 0"):
        signed_binary_bytes(x, 1, region=8)
    with pytest.raises(ValueError, match="region must be >= 1"):
        signed_binary_bytes(x, 1, region=0)


def test_signed_binary_ignores_bits():
    # 1 mask bit per element whatever the nominal precision.
    x = np.array([[0, 3, 3, 0]])
    assert signed_binary_bytes(x, bits=8) == signed_binary_bytes(x, bits=1) == 1 + 1 + 4


def test_encoding_table_skips_mixed_sign_signed_binary():
    # Row 0 holds +3 and -2: signed_binary is left out, everything else stays, order kept.
    x = np.array([[0, 3, 0, -2], [0, 0, 0, -1]])
    table = encoding_table(x, bits=8)
    assert list(table) == ["dense", "bitmap", "csr", "csc", "rle", "nested"]
    only = encoding_table(x, bits=8, allowed=["signed_binary", "bitmap"])
    assert only == {"bitmap": 4}  # ceil(8/8) + 3 values


def test_encoding_table_unknown_name_is_an_error():
    with pytest.raises(ValueError, match="unknown encoding 'zip'"):
        encoding_table(A, bits=8, allowed=["dense", "zip"])


# --- nested ----------------------------------------------------------------------------------

# L: 2 rows x 4 cols, two level-1 and two level-2 weights.
L = np.array([[1, 0, 2, 0], [0, 2, 0, 1]])


def test_nested_small_case():
    # Each level is a CSR segment: 2 values (8 bits) = 2 + 2 idx x width(4)=2 -> 1
    # + 3 ptrs x width(3)=2 -> 1 = 4 bytes. Prefixes: [4, 8].
    assert nested_bytes(L, bits=8) == [4, 8]
    # With 2 scales (8 bytes) read by every sub-network: [12, 16].
    assert nested_bytes(L, bits=8, scales=2) == [12, 16]
    # Wider indices: 2 idx x 8 bits = 2 bytes per segment -> 5 per level: [5, 10].
    assert nested_bytes(L, bits=8, index_bits=8) == [5, 10]
    # Separate CSR models: level<=1 = 4 bytes; level<=2: 4 values + 4 x 2 idx bits = 1
    # + 3 ptrs x width(5)=3 = 9 bits -> 2 = 7. Total 11 > 8.
    assert separate_csr_bytes(L, bits=8) == 11


def test_nested_errors():
    with pytest.raises(ValueError, match="index_bits=1 cannot address 4 columns"):
        nested_bytes(L, bits=8, index_bits=1)
    with pytest.raises(ValueError, match=r"0\.\.1, got range 0\.\.2"):
        nested_bytes(L, bits=8, n_levels=1)
    with pytest.raises(ValueError, match="range -1"):
        nested_bytes(np.array([[-1, 1]]), bits=8)


def test_nested_all_zero_levels():
    # N = max level = 0: no sub-network, no prefix.
    assert nested_bytes(np.zeros((2, 3), dtype=int), bits=8) == []
    # Forced N = 2: each segment is only 3 ptrs x width(1)=1 bit -> 1 byte: [1, 2].
    assert nested_bytes(np.zeros((2, 3), dtype=int), bits=8, n_levels=2) == [1, 2]


def test_nested_three_levels_random_tensor():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 4, size=(16, 3, 3, 3))  # levels 0..3, N = 3
    prefix = nested_bytes(levels, bits=8, scales=16)
    assert len(prefix) == 3
    # Monotonic: a deeper sub-network reads a longer prefix.
    assert prefix == sorted(prefix)
    assert prefix[0] < prefix[1] < prefix[2]
    # The last prefix is the whole stream: the scales once + one CSR segment per level.
    whole = 16 * SCALE_BYTES + sum(csr(levels == k, bits=8) for k in (1, 2, 3))
    assert prefix[-1] == whole
    # Prefix k is the first k segments.
    assert prefix[0] == 16 * SCALE_BYTES + csr(levels == 1, bits=8)
    # One nested stream beats three separate CSR models (each re-storing the shallower levels).
    assert prefix[-1] < separate_csr_bytes(levels, bits=8, scales=16)


def test_nested_registered_is_csr_of_nonzeros():
    # "nested" in ENCODINGS = one level (nonzero = level 1) = exactly csr.
    assert stored_bytes(A, "nested", bits=8, scales=2) == csr(A, bits=8, scales=2) == 12


# --- best_encoding ---------------------------------------------------------------------------


def test_best_encoding_picks_the_smallest():
    # A: dense 6, bitmap 3, csr 4 (test_small_matrix_every_encoding).
    assert best_encoding(A, 8, ["dense", "csr", "bitmap"]) == ("bitmap", 3)
    # Dense ones: dense 2 beats bitmap 3, csr 5, rle 4 (test_no_zeros).
    assert best_encoding(np.ones((2, 2)), 4, ALL) == ("dense", 2)


def test_best_encoding_ties_pick_the_first_listed():
    # csr and csc are both 4 bytes on A; nested always equals csr.
    assert best_encoding(A, 8, ["csr", "csc"]) == ("csr", 4)
    assert best_encoding(A, 8, ["csc", "csr"]) == ("csc", 4)
    assert best_encoding(A, 8, ["nested", "csr"]) == ("nested", 4)


def test_stored_bytes_unknown_encoding():
    with pytest.raises(ValueError, match="unknown encoding 'huffman'"):
        stored_bytes(A, "huffman", bits=8)


def test_bits_must_be_positive():
    with pytest.raises(ValueError, match="bits per value must be >= 1, got 0"):
        stored_bytes(A, "csr", bits=0)
    with pytest.raises(ValueError, match="run_bits must be >= 1"):
        rle_bytes(A, bits=8, run_bits=0)


# --- properties ------------------------------------------------------------------------------

tensors = hnp.arrays(
    np.int8,
    hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6),
    elements=st.integers(-3, 3),
)


@settings(max_examples=80, deadline=None)
@given(tensors, st.integers(1, 8), st.integers(0, 4))
def test_every_encoding_is_nonnegative_and_bitmap_closed_form(x, bits, scales):
    table = encoding_table(x, bits, scales)
    assert all(isinstance(v, int) and v >= 0 for v in table.values())
    n, nnz = x.size, int(np.count_nonzero(x))
    assert bitmap(x, bits, scales) == math.ceil(n / 8) + math.ceil(nnz * bits / 8) + 4 * scales
    # Law: a sparse format never needs fewer value bytes than its nonzeros hold.
    for name in ("bitmap", "csr", "csc", "rle", "nested"):
        assert table[name] >= math.ceil(nnz * bits / 8) + 4 * scales
    # Law: csc is csr of the transposed matrix view.
    m = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)
    assert csc(m, bits, scales) == csr(np.ascontiguousarray(m.T), bits, scales)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.int64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
               elements=st.integers(0, 4)),
    st.integers(1, 8),
)
def test_nested_laws(levels, bits):
    n = int(levels.max())
    prefix = nested_bytes(levels, bits)
    assert len(prefix) == n
    assert prefix == sorted(prefix)
    if n:
        # Never more than N separate CSR models.
        assert prefix[-1] <= separate_csr_bytes(levels, bits)
