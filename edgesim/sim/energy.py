"""Energy of one inference from its counts: MACs, PE registers, SRAM bytes, off-chip bits, leakage.

Public names: ``Energy``, ``inference_energy``, ``register_bits_per_mac``, ``ACCUMULATOR_BITS``.

    energy_j = mac + array + sram + offchip + decode + leak
    mac     = sum over ops of executed MACs x energy per MAC of the op's precision
              (a binary MAC is an add; the config's table is scaled to its technology node)
    array   = sum over ops of executed MACs x register_bits_per_mac / 8 x register energy per
              byte (``energy.pe_register``, scaled to the node): the PE registers of the MAC array
    sram    = bytes read x read energy per byte + bytes written x write energy per byte
              (per byte energies that grow with the SRAM's size: ``technology.sram_energy``)
    offchip = per off-chip memory: bytes read x 8 x its read energy per bit + bytes written x 8
              x its write energy per bit
    decode  = decoded sparse indices x energy per index (0 unless the config sets it)
    leak    = (SRAM leakage power (proportional to its size) + board power) x latency

``leak`` is the part that grows with time rather than with accesses (the ``energy_leak_j``
column). ``board`` (of it) is ``energy.board_power`` x latency: a board-level config (an MCU
board measured at its supply, as MLPerf Tiny's energy runs are) states the whole board's active
power, of which the per-access parts above are only what the accesses add; 0 on every other
config.

The array level. In a weight-stationary systolic array (DESIGN.md) the weight sits in its PE's
register for a whole fold; each MAC reads it, latches the input activation it forwards to the next
PE and the partial sum it passes down the column. Per MAC the registers see the weight's bits, the
activation's bits and one accumulator (``ACCUMULATOR_BITS``): Eyeriss's count of three operand
reads and one partial-sum write per MAC (Chen et al., ISCA'16; REFERENCE.md B2), with the
forwarding between neighbours done by the next PE's register (no separate NoC in a systolic
array). Vector-unit ops (pools, element-wise) have no MACs and are charged no array energy.

All inputs in bytes, seconds and joules; every component is returned in joules.

>>> from types import SimpleNamespace as NS
>>> hw = NS(sram_read_pj_per_byte=1.0, sram_write_pj_per_byte=2.0, offchip_read_pj_per_bit=10.0,
...         offchip_write_pj_per_bit=10.0, sram_leak_w=0.5, board_w=0.0)
>>> e = inference_energy(hw, mac_j=0.0, array_j=0.0, decode_j=0.0, sram_read_bytes=1,
...                      sram_write_bytes=1, offchip_read_bytes=1, offchip_write_bytes=0,
...                      latency_s=1e-12)
>>> round(e.sram * 1e12, 6), round(e.offchip * 1e12, 6), round(e.leak * 1e12, 6)
(3.0, 80.0, 0.5)
>>> register_bits_per_mac("int8", act_bits=8)   # 8 + 8 + 32
48
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ACCUMULATOR_BITS", "Energy", "inference_energy", "register_bits_per_mac"]

_PJ = 1e-12

#: Bits of a partial sum: int32 accumulation of int8/int4/binary products (the TensorFlow Lite
#: 8-bit quantization spec accumulates in int32); fp16 products are taken to accumulate in fp32
#: (an assumption), also 32 bits.
ACCUMULATOR_BITS = 32

#: Bits of one weight of each precision (``workload.PRECISIONS``).
_WEIGHT_BITS = {"int8": 8, "int4": 4, "fp16": 16, "binary": 1}


def register_bits_per_mac(precision: str, *, act_bits: int) -> int:
    """Bits the PE registers read or latch per MAC: weight + activation + partial sum."""
    return _WEIGHT_BITS[precision] + act_bits + ACCUMULATOR_BITS


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
                     sram_read_bytes: int, sram_write_bytes: int, offchip_read_bytes: int,
                     offchip_write_bytes: int, latency_s: float,
                     memories: Sequence[tuple[int, int, Any]] = ()) -> Energy:
    """Energy components of one inference on ``hw`` (a HardwareConfig or Machine).

    ``offchip_*_bytes`` are charged at ``hw``'s off-chip energies; ``memories`` adds, per
    memory, ``(read bytes, write bytes, memory)`` at that memory's own ``read_pj_per_bit`` /
    ``write_pj_per_bit`` (``edgesim.sim.plan.Memory``).
    """
    sram = (sram_read_bytes * hw.sram_read_pj_per_byte
            + sram_write_bytes * hw.sram_write_pj_per_byte) * _PJ
    pj = (offchip_read_bytes * 8 * hw.offchip_read_pj_per_bit
          + offchip_write_bytes * 8 * hw.offchip_write_pj_per_bit)
    for read, write, mem in memories:
        pj += read * 8 * mem.read_pj_per_bit + write * 8 * mem.write_pj_per_bit
    offchip = pj * _PJ
    board = getattr(hw, "board_w", 0.0) * latency_s
    leak = hw.sram_leak_w * latency_s + board
    return Energy(mac=mac_j, array=array_j, sram=sram, offchip=offchip, decode=decode_j,
                  leak=leak, board=board)
