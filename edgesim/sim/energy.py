"""Energy of one inference from its counts: MACs, PE registers, SRAM bytes, off-chip bits, leakage.

Public names: ``Energy``, ``inference_energy``, ``compute_energy``, ``op_energy``,
``layer_energy``, ``register_bits_per_mac``, ``REGISTER_ACCESSES``, ``ACCUMULATOR_BITS``.

    energy_j = mac + array + sram + offchip + decode + leak
    mac     = sum over precisions of executed MACs x energy per MAC of that precision
              (``energy.mac``, scaled to the technology node; a binary MAC is an add)
    array   = sum over ops of executed MACs x register_bits_per_mac(dataflow) / 8 x register
              energy per byte (``energy.pe_register``, scaled to the node): the PE registers
    sram    = bytes read x read energy per byte + bytes written x write energy per byte
              (per byte energies that grow with the SRAM's size: ``technology.sram_energy``)
    offchip = per off-chip memory: bytes read x 8 x its read energy per bit + bytes written x 8
              x its write energy per bit
    decode  = decoded sparse indices x energy per index (0 unless the config sets it)
    leak    = (SRAM leakage power + board power) x latency

Everything that turns a count into joules is here: ``sim.plan`` counts MACs per precision,
register bits and decoded indices and calls ``compute_energy``, and per op the bytes it reads
and writes in SRAM and moves off-chip (``op_energy``); ``sim.engine`` calls
``inference_energy`` with an inference's bytes and ``layer_energy`` with an op's weight bytes
and time. Nothing here feeds back into the cycle model.

``leak`` is the part that grows with time rather than with accesses (the ``energy_leak_j``
column). No shipped NPU config charges SRAM leakage (``sram.leakage: 0 W``): docs/references.md has
no leakage figure for any node, and the two peers (nn-dataflow's ``--unit-idle-cost`` default
0, ZigZag's hardware files) charge none either; a config with a cited figure may set it.
``board`` (of ``leak``) is ``energy.board_power`` x latency: a board-level config (an MCU board
measured at its supply, as MLPerf Tiny's energy runs are) states the whole board's active power;
0 on every other config.

The array level: register bits per MAC by dataflow (``REGISTER_ACCESSES``). Each MAC needs a
weight, an activation and a partial sum. Counting as Eyeriss does (Chen, Emer, Sze, ISCA'16,
sec. V: a MAC reads its three operands and writes one partial sum) and as Timeloop does
(Parashar et al., ISPASS'19: an operand that stays in a PE's register is read there once per
MAC; an operand that moves is written into the register it arrives in and read from it), the
register accesses per MAC are, for (weight, activation, partial sum):

* ``weight_stationary`` (1, 2, 2): the weight stays (one read; its load once per fold is
  amortised over the fold's outputs and not counted); the activation arrives from the left
  neighbour (one write) and is read once, which drives both the multiplier and the next PE; the
  partial sum arrives from above (one read of the upstream register) and the new sum is
  latched for the PE below (one write).
* ``output_stationary`` (2, 2, 2): the partial sum stays in the PE's accumulator (one read,
  one write per MAC; its drain once per output is amortised over the output's MACs); weight
  and activation both arrive (one write, one read each). Ethos-U's broadcast dot-product
  engine is of this kind: operands latched at the PE, accumulators local.
* ``row_stationary`` (1, 1, 2): Eyeriss's RF: a filter row and an input row sit in the PE's
  scratchpad and are reused across the row's sliding window, so per MAC only Eyeriss's 3
  reads + 1 write remain (fills amortised over the reuse). Not a ``compute.array.dataflow``
  value today (edgesim's arrays are systolic or broadcast); listed for the comparison.

Bits per MAC = sum of accesses x operand bits (weight bits of the op's precision, the config's
activation bits, ``ACCUMULATOR_BITS`` for a partial sum). For int8 with 8-bit activations:
weight-stationary 8 + 2x8 + 2x32 = 88 bits (11 B), output-stationary 2x8 + 2x8 + 2x32 = 96 bits
(12 B), row-stationary 8 + 8 + 2x32 = 80 bits (10 B). A read and a write of a register bit cost
the same (``energy.pe_register``; an assumption: Aladdin tabulates the read). Vector-unit ops
(pools, element-wise) have no MACs and are charged no array energy.

All inputs in bytes, seconds and joules; every component is returned in joules.

>>> from types import SimpleNamespace as NS
>>> hw = NS(sram_read_pj_per_byte=1.0, sram_write_pj_per_byte=2.0, sram_leak_w=0.5, board_w=0.0)
>>> dram = NS(read_pj_per_bit=10.0, write_pj_per_bit=10.0)
>>> e = inference_energy(hw, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=1,
...                      sram_write_bytes=1, latency_s=1e-12, memories=[(1, 0, dram)])
>>> round(e.sram * 1e12, 6), round(e.offchip * 1e12, 6), round(e.leak * 1e12, 6)
(3.0, 80.0, 0.5)
>>> register_bits_per_mac("int8", act_bits=8, dataflow="weight_stationary")   # 8 + 16 + 64
88
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ACCUMULATOR_BITS", "REGISTER_ACCESSES", "Energy", "compute_energy",
           "inference_energy", "layer_energy", "op_energy", "register_bits_per_mac"]

_PJ = 1e-12

#: Bits of a partial sum: int32 accumulation of int8/int4/binary products (the TensorFlow Lite
#: 8-bit quantization spec accumulates in int32); fp16 products are taken to accumulate in fp32
#: (an assumption), also 32 bits.
ACCUMULATOR_BITS = 32

#: Bits of one weight of each precision (``workload.PRECISIONS``).
_WEIGHT_BITS = {"int8": 8, "int4": 4, "fp16": 16, "binary": 1}

#: Register accesses (reads + writes) per MAC of (weight, activation, partial sum), by dataflow;
#: derivation in the module docstring.
REGISTER_ACCESSES: dict[str, tuple[int, int, int]] = {
    "weight_stationary": (1, 2, 2),
    "output_stationary": (2, 2, 2),
    "row_stationary": (1, 1, 2),
}


def register_bits_per_mac(precision: str, *, act_bits: int, dataflow: str) -> int:
    """Register bits read or written per MAC in a PE of ``dataflow`` (``REGISTER_ACCESSES``).

    ``sim.plan`` passes the array's ``compute.array.dataflow``.
    """
    try:
        w, a, p = REGISTER_ACCESSES[dataflow]
    except KeyError:
        raise ValueError(f"dataflow {dataflow!r}: expected one of "
                         f"{sorted(REGISTER_ACCESSES)}") from None
    return w * _WEIGHT_BITS[precision] + a * act_bits + p * ACCUMULATOR_BITS


def compute_energy(m, *, macs: Mapping[str, int], register_bits: int,
                   decoded: int) -> tuple[float, float, float]:
    """``(mac, array, decode)`` joules of executed ``macs`` per precision on ``m``.

    ``m`` has ``mac_pj`` (pJ per MAC by precision), ``register_pj_per_byte`` and
    ``index_decode_pj`` (``sim.plan.Machine``, ``HardwareConfig``).

    >>> from types import SimpleNamespace as NS
    >>> m = NS(mac_pj={"int8": 0.5}, register_pj_per_byte=0.25, index_decode_pj=2.0)
    >>> [round(x * 1e12, 6) for x in compute_energy(m, macs={"int8": 4}, register_bits=64,
    ...                                              decoded=3)]
    [2.0, 2.0, 6.0]
    """
    mac = sum(n * m.mac_pj[p] for p, n in sorted(macs.items()))
    return (mac * _PJ, register_bits / 8 * m.register_pj_per_byte * _PJ,
            decoded * m.index_decode_pj * _PJ)


@dataclass(frozen=True, slots=True)
class Energy:
    """Energy components of one inference, in joules; ``total`` is the sum of the first six.

    ``board`` is the share of ``leak`` that is the board's active power (already in ``leak``).
    """

    mac: float
    array: float
    sram: float
    offchip: float
    decode: float
    leak: float
    board: float = 0.0

    @property
    def total(self) -> float:
        return self.mac + self.array + self.sram + self.offchip + self.decode + self.leak


def inference_energy(hw, *, mac_j: float, array_j: float, decode_j: float,
                     sram_read_bytes: int, sram_write_bytes: int, latency_s: float,
                     memories: Sequence[tuple[int, int, Any]] = ()) -> Energy:
    """Energy components of one inference on ``hw`` (a HardwareConfig).

    ``memories`` gives, per off-chip memory, ``(read bytes, write bytes, memory)``, charged at
    that memory's own ``read_pj_per_bit`` / ``write_pj_per_bit`` (``edgesim.sim.plan.Memory``).
    """
    parts = energy_parts(hw, mac_j, array_j, decode_j, sram_read_bytes, sram_write_bytes,
                         latency_s, memories)
    return Energy(*parts[1:])


def energy_parts(hw, mac_j: float, array_j: float, decode_j: float, sram_read_bytes: int,
                 sram_write_bytes: int, latency_s: float,
                 memories: Sequence[tuple[int, int, Any]]) -> tuple[float, ...]:
    """``inference_energy`` as a tuple ``(total, mac, array, sram, offchip, decode, leak,
    board)``, ``total`` as ``Energy.total`` sums it: what the engine puts in a row, without
    making an ``Energy`` (a frozen dataclass takes ~2 us to make; rows are made by the
    million)."""
    sram = (sram_read_bytes * hw.sram_read_pj_per_byte
            + sram_write_bytes * hw.sram_write_pj_per_byte) * _PJ
    pj = 0
    for read, write, mem in memories:
        pj += read * 8 * mem.read_pj_per_bit + write * 8 * mem.write_pj_per_bit
    offchip = pj * _PJ
    board = getattr(hw, "board_w", 0.0) * latency_s
    leak = hw.sram_leak_w * latency_s + board
    return (mac_j + array_j + sram + offchip + decode_j + leak,
            mac_j, array_j, sram, offchip, decode_j, leak, board)


def op_energy(hw, *, mac_j: float, array_j: float, decode_j: float, sram_read_bytes: int,
              sram_write_bytes: int, transfers: Iterable[tuple[Any, bool, int]] = ()) -> float:
    """Joules of one op that do not depend on the stream: its MAC, array and decode energy
    (``compute_energy``), its SRAM bytes read and written, and ``transfers``, its activation
    bytes moved off-chip as ``(memory, is a write, bytes)`` at that memory's energy per bit.

    >>> from types import SimpleNamespace as NS
    >>> hw = NS(sram_read_pj_per_byte=1.0, sram_write_pj_per_byte=2.0)
    >>> dram = NS(read_pj_per_bit=10.0, write_pj_per_bit=20.0)
    >>> round(op_energy(hw, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=3,
    ...                 sram_write_bytes=1, transfers=[(dram, True, 1)]) * 1e12, 6)   # 3+2+160
    165.0
    """
    pj = sram_read_bytes * hw.sram_read_pj_per_byte + sram_write_bytes * hw.sram_write_pj_per_byte
    for mem, write, nbytes in transfers:
        pj += nbytes * 8 * (mem.write_pj_per_bit if write else mem.read_pj_per_bit)
    return mac_j + array_j + decode_j + pj * _PJ


def layer_energy(hw, weights_mem, *, fixed_j: float, moved_bytes: int, wasted_bytes: int,
                 time_ps: int) -> float:
    """An op's share of its inference's energy: its fixed part (``op_energy``), the weight
    bytes it moved (read from ``weights_mem``, written into SRAM), a wrong speculative guess's
    bytes charged to it (read only, never written) and leakage and board power over its
    ``time_ps`` picoseconds (its end less the previous op's). Over an inference's ops these
    add up to ``inference_energy``'s total.

    >>> from types import SimpleNamespace as NS
    >>> hw = NS(sram_write_pj_per_byte=2.0, sram_leak_w=0.0, board_w=1.0)
    >>> flash = NS(read_pj_per_bit=1.0)
    >>> round(layer_energy(hw, flash, fixed_j=0.0, moved_bytes=1, wasted_bytes=1,
    ...                    time_ps=5) * 1e12, 6)   # (8 + 2) + 8 + 1 W x 5 ps
    23.0
    """
    pj = moved_bytes * (8 * weights_mem.read_pj_per_bit + hw.sram_write_pj_per_byte)
    if wasted_bytes:
        pj += wasted_bytes * 8 * weights_mem.read_pj_per_bit
    return fixed_j + pj * _PJ + (hw.sram_leak_w + hw.board_w) * time_ps * _PJ
