"""edgesim.trace.weights: quantization (int8/int4 per channel, fp16, signed binary, int32 bias)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edgesim.trace.weights import bits_of, quantize, quantize_bias


def test_bits_of() -> None:
    assert [bits_of(p) for p in ("int8", "int4", "fp16", "binary")] == [8, 4, 16, 1]
    with pytest.raises(ValueError, match="int3"):
        bits_of("int3")


def test_int8_closed_form() -> None:
    # Row 0: max|v| = 2 -> scale 2/127; 1.0 -> 63.5 -> 64 (round half to even), 0.001 -> 0.
    # Row 1 is all zero: scale 0, q 0.
    v = np.array([[2.0, -1.0, 0.001], [0.0, 0.0, 0.0]])
    q, s = quantize(v, "int8")
    assert q.tolist() == [[127, -64, 0], [0, 0, 0]]
    assert s.tolist() == pytest.approx([2 / 127, 0.0])
    # A value rounded to zero is a real zero of the stored tensor.
    assert np.count_nonzero(q) == 2


def test_int4_range_and_channel_axis() -> None:
    # channel_axis=1: columns are channels; column maxima 3 and 0.7 -> scales 3/7 and 0.1.
    v = np.array([[3.0, 0.7], [-1.5, -0.05]])
    q, s = quantize(v, "int4", channel_axis=1)
    assert q.tolist() == [[7, 7], [-4, 0]]   # -1.5/(3/7) = -3.5 -> -4 ; -0.05/0.1 = -0.5 -> 0
    assert s.tolist() == pytest.approx([3 / 7, 0.1])


def test_per_tensor_scale() -> None:
    q, s = quantize(np.array([1.0, -0.5, 0.25]), "int8", channel_axis=None)
    assert s.size == 1
    assert q.tolist() == [127, -64, 32]   # 0.25*127 = 31.75 -> 32


def test_fp16_casts_without_scales() -> None:
    q, s = quantize(np.array([[1.0, 1e-9]]), "fp16")
    assert q.dtype == np.float16
    assert s.size == 0
    assert q.tolist() == [[1.0, 0.0]]   # 1e-9 underflows fp16: a real zero


def test_binary_sign_per_channel() -> None:
    v = np.array([[0.0, 0.5, 0.5], [-0.2, 0.0, -0.2], [0.0, 0.0, 0.0]])
    q, s = quantize(v, "binary")
    assert q.tolist() == [[0, 1, 1], [-1, 0, -1], [0, 0, 0]]
    assert s.tolist() == pytest.approx([0.5, 0.2, 0.0])


def test_binary_holds_one_bit_a_value() -> None:
    # {-a, +a} (plain binary: the bit is the sign) is one bit a value, and so is {0, +a}
    # (signed binary: the bit is the mask); both signs and a zero in one channel is not
    q, s = quantize(np.array([[0.5, -0.5, 0.5], [0.0, 0.3, 0.3]]), "binary")
    assert q.tolist() == [[1, -1, 1], [0, 1, 1]]
    assert s.tolist() == pytest.approx([0.5, 0.3])
    with pytest.raises(ValueError, match="channel 1"):
        quantize(np.array([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0]]), "binary")


def test_bias_int32() -> None:
    q = quantize_bias(np.array([0.5, 0.0, -1.0]))
    assert q.dtype == np.int32
    assert q.tolist() == [2**30, 0, -(2**31 - 1)]
    assert quantize_bias(np.array([0.3, -0.1]), scales=0.1).tolist() == [3, -1]


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6)),
              elements=st.floats(-100, 100, width=32)),
       st.sampled_from(["int8", "int4"]))
def test_dequantization_error_is_half_a_step(v: np.ndarray, precision: str) -> None:
    # Law: |v - q*s| <= s/2 per channel, and |q| never exceeds the range.
    q, s = quantize(v, precision)
    qmax = {"int8": 127, "int4": 7}[precision]
    assert np.abs(q).max() <= qmax
    err = np.abs(v - q * s[:, None])
    assert np.all(err <= s[:, None] / 2 + 1e-5 * np.abs(v).max(initial=1.0))
