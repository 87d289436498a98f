"""Swin-Tiny: shapes, parameter count, shifted-window mask, relative position index."""

from __future__ import annotations

import pytest
import torch

from edgesim.errors import ModelError
from edgesim.zoo.swin import (
    SwinBlock,
    relative_position_index,
    shifted_window_mask,
    swin_tiny,
    swin_tiny_cifar,
    window_partition,
    window_reverse,
)


def tiny(num_classes: int = 10):
    # 56x56 image, patch 4 -> 14x14 tokens (stage 0, shifted by 3), merge -> 7x7 (stage 1: the
    # window covers the whole map, so no shift and no mask there).
    return swin_tiny(num_classes, 56, embed_dim=16, depths=(2, 2), heads=(1, 2))


def test_tiny_forward_shape() -> None:
    m = tiny().eval()
    assert m(torch.randn(2, 3, 56, 56)).shape == (2, 10)


def test_tiny_stage_layout() -> None:
    m = tiny()
    s0, s1 = m.layers
    assert [b.shift for b in s0.blocks] == [0, 3]  # odd blocks shift by window // 2 = 3
    assert [(b.window, b.shift) for b in s1.blocks] == [(7, 0), (7, 0)]  # 7x7 map == window
    assert s0.downsample is not None
    assert s1.downsample is None
    assert s0.blocks[1].attn_mask.shape == (4, 49, 49)  # (14/7)^2 windows of 7*7 tokens


def test_swin_tiny_param_count_matches_torchvision() -> None:
    # Per block at width C with h heads: norm1 2C + qkv 3C^2+3C + proj C^2+C + bias table 169h
    # + norm2 2C + fc1 4C^2+4C + fc2 4C^2+C = 12C^2 + 13C + 169h.
    # Patch merging at C: LayerNorm(4C) 8C + Linear(4C, 2C, no bias) 8C^2.
    # Patch embed: 3*4*4*96 + 96 + LayerNorm 192 = 4,896. Final norm 1,536. Head 768*1000+1000.
    def block(c: int, h: int) -> int:
        return 12 * c * c + 13 * c + 169 * h

    def merge(c: int) -> int:
        return 8 * c + 8 * c * c

    expected = (
        4896
        + 2 * block(96, 3) + merge(96)
        + 2 * block(192, 6) + merge(192)
        + 6 * block(384, 12) + merge(384)
        + 2 * block(768, 24)
        + 1536 + 768 * 1000 + 1000
    )
    assert expected == 28_288_354  # torchvision swin_t
    assert sum(p.numel() for p in swin_tiny(1000).parameters()) == expected


def test_swin_tiny_cifar_differs_only_in_head() -> None:
    # 100-class head: 28,288,354 - (768 + 1) * (1000 - 100) = 27,596,254 (the paper's "27.6 M").
    assert sum(p.numel() for p in swin_tiny_cifar().parameters()) == 27_596_254


def test_attention_is_linear_layers_plus_matmuls() -> None:
    attn = tiny().layers[0].blocks[0].attn
    assert isinstance(attn.qkv, torch.nn.Linear)
    assert isinstance(attn.proj, torch.nn.Linear)
    assert attn.relative_position_bias_table.shape == (13 * 13, 1)  # (2*7-1)^2 offsets x heads


def test_window_partition_round_trip() -> None:
    x = torch.randn(2, 14, 14, 5)
    w = window_partition(x, 7)
    assert w.shape == (8, 49, 5)
    assert torch.equal(w[0].view(7, 7, 5), x[0, :7, :7])  # window 0 is the top-left 7x7
    assert torch.equal(window_reverse(w, 7, 14, 14), x)


def test_relative_position_index() -> None:
    idx = relative_position_index(7)
    assert idx.shape == (49, 49)
    assert int(idx.min()) == 0
    assert int(idx.max()) == 13 * 13 - 1
    # zero offset (dy, dx) = (0, 0) -> (0 + 6) * 13 + (0 + 6) = 84 on the diagonal
    assert bool((idx.diagonal() == 84).all())


def test_shifted_mask_closed_form() -> None:
    # 14x14 map, window 7, shift 3: after the roll, window 0 (top-left) holds one region; window 3
    # (bottom-right) holds four regions of 4x4, 4x3, 3x4 and 3x3 tokens, so the allowed
    # (query, key) pairs there are 16^2 + 12^2 + 12^2 + 9^2 = 625 of 49^2 = 2401.
    mask = shifted_window_mask(14, 14, 7, 3)
    allowed = (mask == 0).sum(dim=(1, 2))
    assert allowed.tolist() == [2401, 28**2 + 21**2, 28**2 + 21**2, 625]
    assert bool(((mask == 0) | (mask == float("-inf"))).all())
    assert torch.equal(mask, mask.transpose(1, 2))  # "same region" is symmetric
    assert bool((mask.diagonal(dim1=1, dim2=2) == 0).all())  # every token sees itself
    assert bool((shifted_window_mask(14, 14, 7, 0) == 0).all())


def changed_tokens(block: SwinBlock, pos: tuple[int, int]) -> set[tuple[int, int]]:
    """Tokens (row, col) of the 14x14 output that change when input token ``pos`` changes."""
    x = torch.randn(1, 14 * 14, 16)
    y = x.clone()
    y[0, pos[0] * 14 + pos[1]] += torch.randn(16)  # not a constant: LayerNorm would remove it
    with torch.no_grad():
        diff = (block(x) != block(y))[0].any(dim=-1).view(14, 14)
    return {(int(r), int(c)) for r, c in diff.nonzero()}


def test_shifted_block_tokens_from_other_regions_do_not_attend() -> None:
    # Token (0, 0) rolls by -3 to (11, 11): the bottom-right window, region rows/cols 11..13,
    # i.e. the image's top-left 3x3 corner. Masked logits are -inf, so the softmax gives
    # exactly 0 to every other token of that window and only the 3x3 corner can change.
    block = tiny().layers[0].blocks[1].eval()
    assert changed_tokens(block, (0, 0)) == {(r, c) for r in range(3) for c in range(3)}


def test_regular_block_mixes_whole_window() -> None:
    # Without a shift, token (0, 0) is in the top-left 7x7 window and reaches all 49 tokens.
    block = tiny().layers[0].blocks[0].eval()
    assert changed_tokens(block, (0, 0)) == {(r, c) for r in range(7) for c in range(7)}


def test_bad_image_size_names_the_problem() -> None:
    with pytest.raises(ModelError, match="img_size 50"):
        swin_tiny(10, 50, embed_dim=16, depths=(2, 2), heads=(1, 2))
    with pytest.raises(ModelError, match="window 7"):
        swin_tiny(10, 96, embed_dim=16, depths=(2, 2), heads=(1, 2))  # 24x24 map, 24 % 7 != 0
