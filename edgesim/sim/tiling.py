"""Tiling within one op: the loop order and tile sizes that move the fewest off-chip bytes.

Public names: ``Tiling``, ``ONCE``, ``ORDERS``, ``PSUM_BITS``, ``plan_tiling``, ``TileError``.

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

from typing import NamedTuple

from edgesim.errors import ConfigError

__all__ = ["ONCE", "ORDERS", "PSUM_BITS", "TileError", "Tiling", "plan_tiling"]

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
                psum_bytes: int | None = None) -> Tiling:
    """The cheaper of weights outer and input outer for one op (see the module docstring).

    ``channels`` is the op's output channels (the unit of a weight tile), ``rows`` its output
    rows or tokens (the unit of an input stripe); ``weight_buf`` and ``act_buf`` the SRAM
    bytes the op may use for weight tiles and input stripes; ``psum_bytes`` the partial sums
    of its whole output (``None``: the op cannot split its reduction).
    """
    if weight_bytes <= weight_buf or input_offchip <= 0:
        return ONCE
    if psum_bytes is not None and psum_bytes <= act_buf:
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
    best = min(options, key=lambda t: t.weight_refetch + t.act_reread)
    # one stripe holds the whole input (or one tile the weights): nothing crosses twice
    return best if best.weight_refetch + best.act_reread else ONCE
