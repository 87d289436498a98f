"""A CPU running int8 NN kernels (CMSIS-NN / X-CUBE-AI style): an op's cycles on a Cortex-M.

Public names: ``Kernels``, ``op_cycles``, ``instructions``, ``flash_stall_cycles``,
``line_refill_cycles``, ``op_class``.

A microcontroller has no MAC array: each op is a kernel whose inner loop issues a known number
of instructions per MAC (``compute.kernels``, ``compute.array.kind: mcu``). An op costs::

    cycles = op_overhead + ceil(cpi * instructions) + flash stall

    instructions = per_mac[class] * MACs                          (the inner loop)
                 + im2col_element * pixels * C * R * S             (general conv only)
                 + im2col_run * pixels * R * S                     (one copied run per tap)
                 + requant * output elements                       (MAC ops)
    (ops without MACs: their class's instructions per element: eltwise per output element,
    pool per input element, act per output element, softmax per element)

* ``conv``: a general conv lays each output pixel's receptive field out as an int16 column
  (im2col, ``arm_q7_to_q15_with_offset``: C contiguous channels per tap, ``im2col_run``
  instructions of call and bounds per run) and multiplies it by the weights two output
  channels x two pixels at a time (``arm_nn_mat_mult_kernel_s8_s16``: dual 16-bit ``SMLAD``,
  2 MACs per instruction);
* ``pointwise``: a 1x1 conv reads its input rows directly (the 1x1 fast path, no im2col);
* ``depthwise``: one channel per group, no pairing of channels in one accumulator, so a
  ``SMLABB``/``SMLATT`` per MAC (``arm_depthwise_conv_3x3_s8``-like): a lower rate;
* ``fc``: a matrix-vector product, two weight rows at a time (``arm_nn_vec_mat_mult_t_s8``).

**Sparse kernels.** An op whose weights are in a format the config's kernels walk
(``compute.skip_formats``) runs ``executed`` (< dense) MACs, each at ``sparse_nonzero``
instructions: the stored value, its index, the gathered activation and a scalar MAC, in place
of the dense loop's SIMD pairs. The im2col, requantisation and overhead stay whole. So at
density ``d`` a layer whose dense cost per MAC is ``inner + fixed`` speeds up by
``(inner + fixed) / (d * sparse_nonzero + fixed)``.

**Flash.** Weights are read in place from flash through the data cache: a line costs
``line_refill_cycles = bus_latency_cycles + (flash_wait_states + 1) * ceil(cache_line /
flash_word)`` cycles the core waits for (no data prefetch). A general conv's kernel walks all
output channels for ``weight_pass_pixels`` im2col columns at a time (``arm_convolve_s8``), so
weights larger than the ``dcache`` are read again per that many output pixels; the 1x1, depthwise
and FC kernels keep the weights in the outer loop (``arm_nn_mat_mult_nt_t_s8`` walks the pixels
for two output channels at a time) and read each weight line once::

    flash stall = passes * ceil(weight bytes / cache_line) * line_refill_cycles
    passes      = ceil(pixels / weight_pass_pixels) for a general conv whose weights exceed
                  the dcache, else 1

Instruction counts per MAC, element and output are the kernels' inner loops counted by hand
(the config cites them); ``cpi`` is fitted (the config says on what).

>>> k = Kernels(cpi=0.5, conv=1.25, pointwise=1.375, depthwise=2.5, fc=1.875, im2col_element=2.75,
...             im2col_run=12, requant=14, eltwise=24, pool=2, act=1, softmax=40,
...             sparse_nonzero=4.1, op_overhead=300, dcache=16384, cache_line=32,
...             flash_wait_states=6, flash_word=16, bus_latency_cycles=4, weight_pass_pixels=2)
>>> line_refill_cycles(k)                    # 4 + 7 x 2
18
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from edgesim.workload import LayerOp

__all__ = ["Kernels", "flash_stall_cycles", "instructions", "line_refill_cycles", "op_class",
           "op_cycles"]

#: Functions (``LayerOp.function``) of a softmax.
SOFTMAX = ("softmax", "log_softmax")


@dataclass(frozen=True, slots=True)
class Kernels:
    """A CPU's NN kernels (``compute.kernels``): instructions per unit of work, ``cpi`` cycles
    per instruction, ``op_overhead`` cycles per op, the data cache and flash (sizes in bytes)."""

    cpi: float
    conv: float
    pointwise: float
    depthwise: float
    fc: float
    im2col_element: float
    im2col_run: float
    requant: float
    eltwise: float
    pool: float
    act: float
    softmax: float
    sparse_nonzero: float
    op_overhead: int
    dcache: int
    cache_line: int
    flash_wait_states: int
    flash_word: int
    bus_latency_cycles: int
    weight_pass_pixels: int


def op_class(op: LayerOp) -> str:
    """The kernel an op runs: conv, pointwise, depthwise, fc, eltwise, pool, softmax or act.

    >>> op_class(LayerOp("a", "eltwise", (), 2, 1, 3, 0, 0, "int8"))
    'eltwise'
    """
    if op.macs:
        dims = op.dims
        if op.kind != "conv" or "C" not in dims:
            return "fc"
        if op.groups > 1 and dims.get("C", 1) == 1:
            return "depthwise"
        if dims.get("R", 1) * dims.get("S", 1) * dims.get("T", 1) == 1:
            return "pointwise"
        return "conv"
    if op.kind in ("eltwise", "pool"):
        return op.kind
    return "softmax" if op.function in SOFTMAX else "act"


def _pixels(dims: Mapping[str, int]) -> int:
    """Output pixels of a MAC op: N*P*Q(*O) of a conv, M of a matmul."""
    if "C" in dims:
        return dims.get("N", 1) * dims.get("P", 1) * dims.get("Q", 1) * dims.get("O", 1)
    return dims.get("M", 1)


def instructions(k: Kernels, op: LayerOp, executed: int, act_bits: int) -> float:
    """Instructions the kernel of ``op`` issues (see the module docstring); ``executed`` < its
    dense MACs means a sparse kernel walks ``executed`` nonzero MACs."""
    bits = max(1, act_bits)
    cls = op_class(op)
    if not op.macs:
        elements = (op.in_bytes if cls == "pool" else op.out_bytes) * 8 // bits
        return getattr(k, cls) * elements
    dims = op.dims
    pixels = _pixels(dims)
    per_mac = k.sparse_nonzero if executed < op.macs else getattr(k, cls)
    work = per_mac * executed + k.requant * (op.out_bytes * 8 // bits)
    if cls == "conv":
        taps = dims.get("R", 1) * dims.get("S", 1) * dims.get("T", 1)
        channels = dims.get("C", 1) * op.groups
        work += k.im2col_element * pixels * channels * taps + k.im2col_run * pixels * taps
    return work


def line_refill_cycles(k: Kernels) -> int:
    """Cycles one data-cache line takes from flash: bus latency + (wait states + 1) per flash
    word of the line."""
    return k.bus_latency_cycles + (k.flash_wait_states + 1) * -(-k.cache_line // k.flash_word)


def flash_stall_cycles(k: Kernels, op: LayerOp, weight_bytes: int) -> int:
    """Cycles the core waits for weight lines from flash (see the module docstring)."""
    if not weight_bytes or not op.macs:
        return 0
    lines = -(-weight_bytes // k.cache_line)
    passes = 1
    if weight_bytes > k.dcache and op_class(op) == "conv":
        passes = -(-_pixels(op.dims) // k.weight_pass_pixels)
    return passes * lines * line_refill_cycles(k)


def op_cycles(k: Kernels, op: LayerOp, executed: int, weight_bytes: int, act_bits: int,
              producer: LayerOp | None = None) -> int:
    """Cycles of ``op`` on the CPU: overhead + ``ceil(cpi * instructions)`` + flash stall.

    A fused activation is free (the requantisation clamps it), but a softmax, which the
    runtime runs as a layer of its own over ``producer``'s output.
    """
    if op.fused:
        if op.function not in SOFTMAX or producer is None:
            return 0
        elements = producer.out_bytes * 8 // max(1, act_bits)
        return k.op_overhead + math.ceil(k.cpi * k.softmax * elements - 1e-9)
    work = instructions(k, op, executed, act_bits)
    return (k.op_overhead + math.ceil(k.cpi * work - 1e-9)
            + flash_stall_cycles(k, op, weight_bytes))
