"""Tiling within one op: the loop order and tile sizes that move the fewest off-chip bytes.

Public names: ``Tiling``, ``ONCE``, ``ORDERS``, ``PSUM_BITS``, ``plan_tiling``, ``TileError``,
``BlockBuffer``, ``Block``, ``output_block``, ``in_place_bytes``, ``part_kernel``.

An op with weights reads them (``W`` stored bytes) and its input (``I`` bytes, of which
``I_off`` come from off-chip: a spill of its producer read back, or the network input in an
off-chip arena). When both the weights and the off-chip input exceed what SRAM can hold for the
op, one of them has to cross the bus more than once. The two orders that matter (nn-dataflow,
Gao et al. ASPLOS 2017; Timeloop, Parashar et al. ISPASS 2019, call them weight- and
input-stationary at the buffer level):

* **weights outer**: the weights are cut into ``n_w`` tiles of whole output channels, each
  filling at most the weight SRAM (``weight_buf`` bytes), and the whole input streams past
  every tile: weights cross once, the off-chip input ``n_w`` times, ``act_reread = (n_w - 1) *
  I_off``. A tile holds ``floor(weight_buf / channel_bytes)`` output channels.
* **input outer**: the input is cut into ``n_i`` stripes of whole output rows (``P`` of a conv,
  ``M`` tokens of a matmul), each filling at most the activation share (``act_buf`` bytes), and
  all the streamed weights pass over every stripe: the input crosses once, the weights ``n_i``
  times, ``weight_refetch = (n_i - 1) * W``. A stripe holds ``floor(act_buf / row_bytes)``
  output rows' worth of input (the halo of ``R - 1`` rows a conv stripe also needs is not
  counted: an assumption that favours input outer slightly).

* **reduction outer**: input channels and the matching weight slices are cut together, each
  crossing once, while the partial sums of the whole output stay on chip (``psum_bytes``: the
  output at the accumulator width, 32 bits: an assumption). It costs no extra bytes, so it is
  taken whenever those partial sums fit the activation share, as they do for a batch-1 FC.

``plan_tiling`` takes the order with the fewer extra bytes (weights outer on a tie). When the
weights fit (``W <= weight_buf``) or the input is on chip (``I_off == 0``) the op is
``"once"``: every byte crosses once (so is an op whose input fits one stripe). The extra
bytes of either order fall as either buffer grows, so the chosen total never rises with SRAM.
An op whose tiling is needed but whose smallest tile fits neither buffer (one output channel's
weights in ``weight_buf``, one output row's input in ``act_buf``) raises ``TileError`` naming
the op and the bytes it needs.

>>> plan_tiling("fc", weight_bytes=4000, input_offchip=1000, input_bytes=1000, channels=4,
...             rows=4, weight_buf=2000, act_buf=500)
Tiling(order='weights_outer', weight_tiles=2, input_stripes=1, weight_refetch=0, act_reread=1000)
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from edgesim.errors import ConfigError

__all__ = ["ONCE", "ORDERS", "PSUM_BITS", "Block", "BlockBuffer", "TileError", "Tiling",
           "in_place_bytes", "output_block", "part_kernel", "plan_tiling"]

#: Bits of one partial sum held on chip while a reduction is split (assumption: 32-bit
#: accumulators, as Ethos-U and TPU v1 have).
PSUM_BITS = 32

#: The schedules an op can get, by name.
ORDERS = ("once", "reduction_outer", "weights_outer", "input_outer")


class TileError(ConfigError):
    """An op's smallest tile fits neither the weight SRAM nor the activation share (the config's
    SRAM is too small for the model)."""


class Tiling(NamedTuple):
    """One op's schedule: its order, tile counts and the extra off-chip bytes it costs.

    ``weight_refetch`` is for the op's whole weights streamed; the engine charges
    ``(input_stripes - 1)`` times the bytes it actually streams (kept bytes stay on chip).
    """

    order: str
    weight_tiles: int
    input_stripes: int
    weight_refetch: int
    act_reread: int


ONCE = Tiling("once", 1, 1, 0, 0)


def plan_tiling(name: str, *, weight_bytes: int, input_offchip: int, input_bytes: int,
                channels: int, rows: int, weight_buf: int, act_buf: int,
                psum_bytes: int | None = None, schedule: str = "optimal",
                sram_bytes: int | None = None) -> Tiling:
    """The cheaper of weights outer and input outer for one op (see the module docstring);
    ``schedule="vela"``: input outer whenever it fits (Vela streams an op's weights once per
    OFM stripe when the cache cannot hold its working set), weights outer only when one output
    row's input does not fit ``act_buf``.

    ``channels`` is the op's output channels (the unit of a weight tile), ``rows`` its output
    rows or tokens (the unit of an input stripe); ``weight_buf`` and ``act_buf`` the SRAM
    bytes the op may use for weight tiles and input stripes; ``psum_bytes`` the partial sums
    of its whole output (``None``: the op cannot split its reduction). ``sram_bytes``: the
    SRAM ``act_buf`` is a share of; given, the ``vela`` schedule also weighs the schedule Vela
    compiles for the largest smaller SRAM whose share holds no output row
    (``_below_threshold``), which keeps its bytes from rising with SRAM.
    """
    if weight_bytes <= weight_buf or input_offchip <= 0:
        return ONCE
    if schedule == "optimal" and psum_bytes is not None and psum_bytes <= act_buf:
        return Tiling("reduction_outer", -(-weight_bytes // max(1, weight_buf)), 1, 0, 0)
    channels, rows = max(1, channels), max(1, rows)
    channel_bytes = -(-weight_bytes // channels)
    row_bytes = -(-input_bytes // rows)
    options = []
    per_tile = weight_buf // channel_bytes
    if per_tile:
        n_w = -(-channels // per_tile)
        options.append(Tiling("weights_outer", n_w, 1, 0, (n_w - 1) * input_offchip))
    per_stripe = act_buf // row_bytes
    if per_stripe:
        n_i = -(-rows // per_stripe)
        options.append(Tiling("input_outer", 1, n_i, (n_i - 1) * weight_bytes, 0))
    if not options:
        raise TileError(
            f"op {name}: its smallest tile does not fit the SRAM: one output channel's weights "
            f"need {channel_bytes} B (the weight SRAM has {weight_buf} B) and one output row's "
            f"input needs {row_bytes} B (the activation share has {act_buf} B); raise sram.size")
    if schedule == "vela":
        if options[-1].order == "input_outer" and sram_bytes and len(options) == 2:
            options = [options[-1], *_below_threshold(channels, channel_bytes, input_offchip,
                                                      row_bytes, weight_buf, act_buf,
                                                      sram_bytes)]
        else:
            options = options[-1:]      # input outer if it exists
    best = min(options, key=lambda t: t.weight_refetch + t.act_reread)
    # one stripe holds the whole input (or one tile the weights): nothing crosses twice
    return best if best.weight_refetch + best.act_reread else ONCE


def _below_threshold(channels: int, channel_bytes: int, input_offchip: int, row_bytes: int,
                     weight_buf: int, act_buf: int, sram_bytes: int) -> list[Tiling]:
    """The weights-outer schedule Vela compiles for the largest SRAM smaller than
    ``sram_bytes`` whose activation share (the same fraction, ``act_buf / sram_bytes``, floored
    to whole bytes as a percentage reserve is) holds no output row of input; [] if its weight
    SRAM holds no output channel.

    Vela's rule (input outer as soon as one row's input fits the share) is not monotone in SRAM:
    where a bigger cache first fits a row it trades re-reads of the input for re-reads of the
    weights, which may cost more. A cache can run any schedule compiled for a smaller one (it
    holds every tile that one does), so the ``vela`` schedule takes the cheaper of Vela's rule at
    its size and this one. Below the threshold Vela's rule is weights outer already; above it,
    the candidate is the same for every size (the threshold's weight SRAM, capped by
    ``weight_buf``), so the minimum never rises as the SRAM grows, and it equals Vela's rule
    wherever input outer is the cheaper (as on ResNet-50's layer3/4 1x1 convs).
    """
    below = (row_bytes * sram_bytes - 1) // act_buf     # largest S' with share(S') < row
    wb = min(weight_buf, below - below * act_buf // sram_bytes)
    per_tile = max(0, wb) // channel_bytes
    if not per_tile:
        return []
    n_w = -(-channels // per_tile)
    return [Tiling("weights_outer", n_w, 1, 0, (n_w - 1) * input_offchip)]


# ---------------------------------------------------------------------------------------------
# reading an input in place, per output block
# ---------------------------------------------------------------------------------------------

class BlockBuffer(NamedTuple):
    """The NPU's output-block buffer (Ethos-U's SHRAM; ``compute.block`` of the config).

    The array computes its output one block (``h x w`` pixels x ``d`` channels) at a time; the
    buffer holds the block's input window (``ifm_depth``-channel slices, banks of ``bank``
    bytes rounded to ``ifm_granule`` banks) and its accumulators (``acc_bytes`` each, rounded
    to ``acc_granule`` banks), each double-buffered, in at most ``buffer`` bytes (the input
    alone when the accumulators have their own RAM of ``acc_buffer`` bytes). The fields are
    the section's keys, so a config builds it by name (``HardwareConfig.section``). A block's sides
    are multiples of the micro-block (``ublock``: height, width, depth) and at most ``max``;
    a block of fewer channels than the op's output takes whole multiples of ``split_depth``.
    An input slice holds up to 32 channels (16 part-kernel first; Ethos-U's IFM brick,
    ethos-u-vela architecture_allocator._ifm_blockdepth) rounded up to ``ifm_depth``.
    """

    buffer: int
    bank: int
    ifm_granule: int
    acc_granule: int
    acc_bytes: int
    ublock: tuple[int, int, int]
    max: tuple[int, int, int]
    split_depth: int
    ifm_depth: int
    acc_buffer: int = 0                 # a separate accumulator RAM (0: they share the buffer)
    sub_kernel: tuple[int, int] = (0, 0)  # the largest kernel piece of one pass (0: any)
    latency: int = 0                    # cycles before the first / after the last block


class Block(NamedTuple):
    """One op's output block (``h x w x d``) and the input window it reads (``ih x iw`` pixels
    of ``ifm_d`` channels per slice)."""

    h: int
    w: int
    d: int
    ih: int
    iw: int
    ifm_d: int


def _up(a: int, b: int) -> int:
    return -(-a // b) * b


def part_kernel(c: int, taps: int) -> bool:
    """Whether a conv with ``c`` input channels and ``taps`` kernel taps runs part-kernel first:
    always at most 8 channels, else when it fills the 32-channel brick worse than 8-channel
    slices of 4 taps do (ethos-u-vela architecture_allocator._choose_kernel_method)."""
    if c <= 8:
        return True
    return c * taps / (_up(c, 8) * _up(taps, 4)) > c / _up(c, 32)


@lru_cache(maxsize=4096)
def output_block(buf: BlockBuffer, *, P: int, Q: int, K: int, C: int, R: int, S: int,
                 stride: tuple[int, int] = (1, 1),
                 depthwise: tuple[int, int, int] | None = None) -> Block:
    """The output block a compiler picks for a conv: of the blocks whose double-buffered input
    window and accumulators fit ``buf``, the one fetching the fewest input and weight elements
    per output element (ties: the first, the smallest depth, height and width; the mechanism of
    ethos-u-vela architecture_allocator.find_block_config, SHRAM as one buffer).

    A block of ``d < K`` channels reads the input window once per depth block; an input window
    is ``(h - 1) * stride + R`` rows by ``(w - 1) * stride + S`` columns, rounded up to the
    micro-block. Raises ``ValueError`` when no block fits (a buffer smaller than a micro-block).
    Memoised: a network compiles its convs' blocks once per buffer and shape.

    ``depthwise``: the micro-block a depthwise conv runs on, given when the buffer has its own
    accumulator RAM (``acc_buffer``; Ethos-U85): regor sizes a depthwise conv's block by
    area fit on that micro-block with ONE block's accumulators in the accumulator RAM (regor
    ethos_u85.cpp ``FindDepthwiseConfig`` / ``AreaFit``: accRequired = h x w x d <= accElements;
    a convolution's search keeps two, ``numBlocksInRam = 2``).
    """
    uh, uw, ud = buf.ublock
    acc_blocks = 2
    if depthwise is not None and buf.acc_buffer:
        (uh, uw, ud), acc_blocks = depthwise, 1
    mh, mw, md = buf.max
    ifm_d = _up(min(C, 16 if part_kernel(C, R * S) else 32), buf.ifm_depth)
    sh, sw, sd = _up(min(P, mh), uh), _up(min(Q, mw), uw), _up(min(K, md), ud)
    banks = buf.buffer // buf.bank
    acc_ram = buf.acc_buffer // buf.bank     # 0: accumulators share ``banks``
    best: tuple[float, Block] | None = None
    sy, sx = stride
    d = max(ud, min(sd, buf.split_depth))
    if d < K:
        d = _up(d, buf.split_depth)
    while d <= sd:
        acc_row = _up(d, ud) * buf.acc_bytes
        for h in range(uh, sh + 1, uh):
            ih = _up((h - 1) * sy + R, uh)
            for w in range(uw, sw + 1, uw):
                iw = _up((w - 1) * sx + S, uw)
                ifm_banks = _up(-(-ih * iw * ifm_d // buf.bank) * 2, buf.ifm_granule)
                acc_banks = _up(-(-h * w * acc_row // buf.bank) * acc_blocks,
                                buf.acc_granule)
                if (ifm_banks > banks or acc_banks > acc_ram if acc_ram
                        else ifm_banks + acc_banks > banks):
                    break            # wider blocks of this height fit no better
                blocks_xy = (P / h) * (Q / w)
                weights = R * S * C * -(-P // h) * -(-Q // w) * K
                inputs = ih * iw * C * blocks_xy * -(-K // d)
                cost = (inputs + weights) / (P * Q * K)
                if best is None or cost < best[0]:
                    best = (cost, Block(h, w, d, ih, iw, ifm_d))
        d += ud
        if d < K:
            d = _up(d, buf.split_depth)
    if best is None:
        raise ValueError(f"no output block of a {R}x{S} conv fits a {buf.buffer} B block "
                         "buffer")
    return best[1]


def in_place_bytes(block: Block, *, P: int, Q: int, K: int, C: int, H: int, W: int,
                   burst: int, run: int | None = None, pieces: int = 1) -> int:
    """Bus bytes of a conv reading its ``H x W x C`` input in place from off-chip memory, one
    output block at a time: each of the ``ceil(P/h) * ceil(Q/w) * ceil(K/d)`` blocks reads its
    input window (clipped to the input) with the halo its kernel needs, once per kernel piece
    (``pieces``: a kernel beyond ``BlockBuffer.sub_kernel`` is run in pieces, each a pass over
    the window; regor EthosU55Performance::MeasureElementAccess ``ifmRead = ifmFetch x
    subkernels x ofmBlockCount``); a read of contiguous runs of ``run`` bytes shorter than a
    ``burst`` moves at ``run / burst`` of the bandwidth, so it costs ``burst / run`` times its
    bytes (``run`` None: runs of a burst or more).

    >>> b = Block(h=8, w=8, d=16, ih=17, iw=17, ifm_d=8)
    >>> in_place_bytes(b, P=16, Q=16, K=16, C=3, H=32, W=32, burst=64, run=8)
    27744
    """
    blocks = -(-P // block.h) * -(-Q // block.w) * -(-K // block.d) * pieces
    raw = min(block.ih, H) * min(block.iw, W) * C * blocks
    if run is None or run >= burst:
        return raw
    return -(-raw * burst // run)
