"""Swin Transformer (Swin-Tiny) from scratch, with shifted windows and relative position bias.

Public names: ``SwinTransformer``, ``swin_tiny``, ``swin_tiny_cifar``, ``window_partition``,
``window_reverse``, ``shifted_window_mask``, ``relative_position_index``.

Layout (Liu et al., ICCV 2021; parameter names follow timm so ``"patch_embed"``, ``"attn"`` and
``"mlp"`` name the parts): ``patch_embed.proj`` (4x4 stride-4 conv to ``embed_dim``) +
``patch_embed.norm``; ``layers.{i}.blocks.{j}`` each ``norm1 -> attn (qkv, proj,
relative_position_bias_table) -> norm2 -> mlp (fc1, GELU, fc2)`` with residuals, odd blocks shifted
by ``window // 2``; ``layers.{i}.downsample`` (patch merging: 2x2 neighbours concatenated to 4C,
LayerNorm, ``Linear(4C, 2C, bias=False)``) after every stage but the last; final ``norm``,
global average pool, ``head``.

Attention is kept as explicit ``q @ k.transpose(-2, -1)`` and ``attn @ v`` (activation x activation
matmuls, no weights), so a recording tracer sees them as weight-free ops; qkv/proj/fc1/fc2/head are
``nn.Linear``. Masked attention logits are ``-inf`` (not the customary ``-100``), so tokens from
different regions of a shifted window get attention probability exactly 0.

>>> m = swin_tiny(num_classes=1000)
>>> sum(p.numel() for p in m.parameters())
28288354
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from edgesim.errors import ModelError

__all__ = [
    "SwinTransformer",
    "relative_position_index",
    "shifted_window_mask",
    "swin_tiny",
    "swin_tiny_cifar",
    "window_partition",
    "window_reverse",
]


def window_partition(x: Tensor, window: int) -> Tensor:
    """Split ``(B, H, W, C)`` into non-overlapping windows ``(B * nW, window * window, C)``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def window_reverse(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, window * window, C)`` -> ``(B, H, W, C)``."""
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // window) * (w // window))
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def relative_position_index(window: int) -> Tensor:
    """``(window^2, window^2)`` index into the ``(2*window-1)^2`` relative position bias table."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), each in [-(window-1), window-1]
    rel = rel.permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shifted_window_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """Additive attention mask ``(nW, window^2, window^2)`` for a cyclic shift of ``shift`` tokens.

    After ``torch.roll(x, (-shift, -shift))`` the bottom/right windows hold tokens from up to four
    regions that were not neighbours in the image. The entry is 0 where query and key come from the
    same region and ``-inf`` otherwise. ``shift == 0`` gives all zeros.
    """
    region = torch.zeros(1, h, w, 1)
    if shift > 0:
        label = 0
        bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for hs in bands:
            for ws in bands:
                region[:, hs, ws, :] = label
                label += 1
    ids = window_partition(region, window).squeeze(-1)  # (nW, N)
    same = ids[:, :, None] == ids[:, None, :]
    zero = torch.zeros(same.shape)
    return torch.where(same, zero, torch.full(same.shape, float("-inf")))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ModelError(f"swin attention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window - 1) ** 2, heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer(
            "relative_position_index", relative_position_index(window), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (bw, heads, n, d)
        attn = (q * self.scale) @ k.transpose(-2, -1)  # activation x activation matmul
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]
            attn = attn.view(bw, self.heads, n, n)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(bw, n, c)  # activation x activation matmul
        return self.proj(out)


class Mlp(nn.Module):
    """Two-layer MLP with GELU, hidden width ``ratio * dim``."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """One Swin block on a fixed ``resolution``; ``shift > 0`` makes it a shifted-window block."""

    def __init__(
        self, dim: int, resolution: tuple[int, int], heads: int, window: int, shift: int,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        h, w = resolution
        if min(h, w) <= window:  # the window covers the whole map: no partition, no shift
            window, shift = min(h, w), 0
        if h % window or w % window:
            raise ModelError(
                f"swin block: resolution {h}x{w} is not a multiple of window {window}; "
                "choose img_size so every stage's map divides by the window"
            )
        self.resolution, self.window, self.shift = (h, w), window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)
        mask = shifted_window_mask(h, w, window, shift) if shift > 0 else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), self.attn_mask)
        y = window_reverse(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (C -> 4C), LayerNorm, linear 4C -> 2C; halves H and W."""

    def __init__(self, dim: int, resolution: tuple[int, int]) -> None:
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        parts = (x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2])
        x = torch.cat(parts, dim=-1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` conv to ``dim`` channels, flattened to tokens, then LN."""

    def __init__(self, in_chans: int, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Stage(nn.Module):
    """``depth`` blocks alternating regular / shifted windows, then optional patch merging."""

    def __init__(
        self, dim: int, resolution: tuple[int, int], depth: int, heads: int, window: int,
        mlp_ratio: float, downsample: bool,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim, resolution) if downsample else None

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class SwinTransformer(nn.Module):
    """Swin Transformer classifier for ``(B, in_chans, img_size, img_size)`` images."""

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        img_size: int = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        heads: Sequence[int] = (3, 6, 12, 24),
        window: int = 7,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(depths) != len(heads):
            raise ModelError(
                f"swin: depths {tuple(depths)} and heads {tuple(heads)} differ in length"
            )
        if img_size % patch_size:
            raise ModelError(f"swin: img_size {img_size} is not a multiple of patch {patch_size}")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        res = img_size // patch_size
        stages = []
        for i, (depth, nh) in enumerate(zip(depths, heads, strict=True)):
            last = i == len(depths) - 1
            if not last and res % 2:
                raise ModelError(f"swin: stage {i} map {res}x{res} is odd; cannot merge patches")
            dim = embed_dim * 2**i
            stages.append(Stage(dim, (res, res), depth, nh, window, mlp_ratio, not last))
            res = res if last else res // 2
        self.layers = nn.ModuleList(stages)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)
        self.apply(_init_weights)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.head(self.norm(x).mean(dim=1))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def swin_tiny(
    num_classes: int = 1000,
    img_size: int = 224,
    *,
    embed_dim: int = 96,
    depths: Sequence[int] = (2, 2, 6, 2),
    heads: Sequence[int] = (3, 6, 12, 24),
    window: int = 7,
) -> SwinTransformer:
    """Swin-T (28,288,354 parameters at 1000 classes, same as torchvision ``swin_t``).

    ``embed_dim``/``depths``/``heads``/``window`` shrink it for tests, e.g.
    ``swin_tiny(10, 56, embed_dim=16, depths=(2, 2), heads=(1, 2))``.
    """
    return SwinTransformer(
        num_classes=num_classes, img_size=img_size, embed_dim=embed_dim, depths=depths,
        heads=heads, window=window,
    )


def swin_tiny_cifar(num_classes: int = 100, img_size: int = 224, **shape: Any) -> SwinTransformer:
    """Swin-T with a 100-class head, as in Mix-and-Match (CIFAR-100 upsampled to 224x224).

    ``shape`` takes the keyword arguments of :func:`swin_tiny` (``embed_dim``, ``depths``, ...).
    """
    return swin_tiny(num_classes, img_size, **shape)
