"""edgesim.encodings.resolve: a traced Workload (every candidate encoding, 8-bit activations)
stored and moved as a hardware does it (its formats, its activation bits)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgesim import encodings as enc
from edgesim.errors import ConfigError
from edgesim.testing import tiny_config
from edgesim.trace import trace

# One 2 x 4 weight, per-channel int8: row 0 max 3 -> [0, 127, 0, -85], row 1 -> [0, 0, 0, -127]:
# 8 values, 3 nonzeros, 2 fp32 scales (8 bytes) with every encoding.
W = [[0.0, 3.0, 0.0, -2.0], [0.0, 0.0, 0.0, -1.0]]
CANDIDATES = ("dense", "csr", "bitmap", "csc")
# dense  = 8 values                                        + 8 = 16
# csr    = 3 values + ceil(3 * 2 / 8) cols + ceil(3 * 2 / 8) ptrs (3 of width(4) = 2) + 8 = 13
# bitmap = ceil(8 / 8) mask + 3 values                     + 8 = 12
# csc    = 3 values + ceil(3 * 1 / 8) rows + ceil(5 * 2 / 8) ptrs (5 of width 2)      + 8 = 14
ENCODED = {"dense": 16, "csr": 13, "bitmap": 12, "csc": 14}


def _traced(candidates=CANDIDATES):
    fc = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor(W))
    return trace(fc, torch.randn(1, 4), name="fc", family="sparse", encodings=candidates)


def _hw(formats, act_bits=8):
    return tiny_config(formats=list(formats),
                       overrides=[f"compute.activation_bits={act_bits}"])


def test_blocks_carry_every_candidate_and_the_smallest_is_stored() -> None:
    w = _traced()
    b = w.blocks["weight"]
    assert dict(b.encoded) == ENCODED
    assert list(b.encoded) == list(CANDIDATES)               # the model's order of preference
    assert (b.encoding, b.stored_bytes) == ("bitmap", 12)
    assert w.meta["act_bits"] == 8


@pytest.mark.parametrize(("formats", "expected"), [
    (("dense", "csr", "csc"), ("csr", 13)),        # bitmap not decoded: csr is the smallest left
    (("csc",), ("csc", 14)),                        # csc, and dense added as the fallback
    (("dense",), ("dense", 16)),
    (("rle", "dense", "bitmap"), ("bitmap", 12)),   # rle was not a candidate
])
def test_resolve_picks_the_smallest_decodable(formats, expected) -> None:
    w = enc.resolve(_traced(), _hw(formats))
    b = w.blocks["weight"]
    assert (b.encoding, b.stored_bytes) == expected
    assert b.encoded == ENCODED                               # the candidates stay for later
    assert b.dense_bytes == 16
    assert w.stored_bytes == expected[1]


def test_ties_go_to_the_first_in_the_models_order() -> None:
    # Two candidates that cost the same on every tensor: nested with one level is csr.
    for order in (("nested", "csr"), ("csr", "nested")):
        w = enc.resolve(_traced(order), _hw(("csr", "nested")))
        assert w.blocks["weight"].encoding == order[0]


def test_resolve_twice_gives_the_same_object() -> None:
    w = _traced()
    hw = _hw(("dense", "csr"))
    once = enc.resolve(w, hw)
    assert once is not w
    assert enc.resolve(w, hw) is once
    assert enc.resolve(once, hw) is once                     # already as hw stores it
    assert enc.resolve(w, _hw(CANDIDATES)) is w             # nothing changes: itself


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


def test_act_bits_scale_activation_bytes_with_ceil() -> None:
    # 1x1x3x3 tensors, 9 values = 9 bytes at 8 bits. conv: in 9, out 9, live 18 (x kept for the
    # add); add: in 18, out 9, live 27. At 4 bits: ceil(9 / 2) = 5, ceil(18 / 2) = 9 but live
    # >= in + out = 10, ceil(27 / 2) = 14; at 16 bits everything doubles.
    w = trace(_Conv(), torch.randn(1, 1, 3, 3), name="c", family="dense")
    assert [(o.in_bytes, o.out_bytes, o.live_bytes) for o in w.paths[0].ops] == [
        (9, 9, 18), (18, 9, 27)]
    w4 = enc.resolve(w, _hw(("dense",), act_bits=4))
    assert [(o.in_bytes, o.out_bytes, o.live_bytes) for o in w4.paths[0].ops] == [
        (5, 5, 10), (9, 5, 14)]
    assert w4.meta["act_bits"] == 4
    assert w4.blocks is w.blocks                                  # weights untouched
    w16 = enc.resolve(w, _hw(("dense",), act_bits=16))
    assert [(o.in_bytes, o.out_bytes, o.live_bytes) for o in w16.paths[0].ops] == [
        (18, 18, 36), (36, 18, 54)]


def test_a_block_no_decodable_encoding_holds_is_a_config_error() -> None:
    # A model that prefers signed_binary (EXCLUSIVE) gets no dense fallback: an int8 weight on a
    # hardware that decodes only signed_binary cannot be stored.
    w = _traced(("dense", "signed_binary"))
    assert list(w.blocks["weight"].encoded) == ["dense"]          # 8-bit: signed_binary can't
    with pytest.raises(ConfigError, match=r"weight block 'weight'.*signed_binary"):
        enc.resolve(w, _hw(("signed_binary",)))
    # Any other model falls back to dense.
    w = _traced(("dense", "csr"))
    assert enc.resolve(w, _hw(("signed_binary",))).blocks["weight"].encoding == "dense"


def test_digest_covers_the_candidates() -> None:
    from dataclasses import replace
    w = _traced()
    b = w.blocks["weight"]
    other = replace(w, blocks={**w.blocks, "weight": replace(b, encoded={"dense": 16})})
    assert other.digest() != w.digest()
