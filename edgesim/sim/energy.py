"""Energy of one inference from its counts: MACs, SRAM bytes, off-chip bits, leakage.

Public names: ``Energy``, ``inference_energy``.

    energy_j = mac + sram + offchip + decode + leak
    mac     = sum over ops of executed MACs x energy per MAC of the op's precision
              (a binary MAC is an add; the config's table is scaled to its technology node)
    sram    = bytes read x read energy per byte + bytes written x write energy per byte
    offchip = bytes read x 8 x read energy per bit + bytes written x 8 x write energy per bit
    decode  = decoded sparse indices x energy per index (0 unless the config sets it)
    leak    = SRAM leakage power x latency

All inputs in bytes, seconds and joules; every component is returned in joules.

>>> from types import SimpleNamespace as NS
>>> hw = NS(sram_read_pj_per_byte=1.0, sram_write_pj_per_byte=2.0, offchip_read_pj_per_bit=10.0,
...         offchip_write_pj_per_bit=10.0, sram_leak_w=0.5)
>>> e = inference_energy(hw, mac_j=0.0, decode_j=0.0, sram_read_bytes=1, sram_write_bytes=1,
...                      offchip_read_bytes=1, offchip_write_bytes=0, latency_s=1e-12)
>>> round(e.sram * 1e12, 6), round(e.offchip * 1e12, 6), round(e.leak * 1e12, 6)
(3.0, 80.0, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Energy", "inference_energy"]

_PJ = 1e-12


@dataclass(frozen=True, slots=True)
class Energy:
    """Energy components of one inference, in joules; ``total`` is their sum."""

    mac: float
    sram: float
    offchip: float
    decode: float
    leak: float

    @property
    def total(self) -> float:
        return self.mac + self.sram + self.offchip + self.decode + self.leak


def inference_energy(hw, *, mac_j: float, decode_j: float, sram_read_bytes: int,
                     sram_write_bytes: int, offchip_read_bytes: int, offchip_write_bytes: int,
                     latency_s: float) -> Energy:
    """Energy components of one inference on ``hw`` (a HardwareConfig)."""
    sram = (sram_read_bytes * hw.sram_read_pj_per_byte
            + sram_write_bytes * hw.sram_write_pj_per_byte) * _PJ
    offchip = (offchip_read_bytes * 8 * hw.offchip_read_pj_per_bit
               + offchip_write_bytes * 8 * hw.offchip_write_pj_per_bit) * _PJ
    leak = hw.sram_leak_w * latency_s
    return Energy(mac=mac_j, sram=sram, offchip=offchip, decode=decode_j, leak=leak)
