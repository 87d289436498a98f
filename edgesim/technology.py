"""Energy scaling between CMOS technology nodes and supply voltages, and with SRAM capacity.

Public names: ``TECH_NODES_NM``, ``SRAM_ENERGY_EXPONENT``, ``energy_factor``, ``energy_scale``,
``sram_energy``.

Source: A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS device
performance from 180 nm to 7 nm", Integration 58 (2017) 74-81, doi:10.1016/j.vlsi.2017.02.002,
with the coefficients as tabulated by Accelergy (Accelergy-Project/hwcomponents,
``hwcomponents/scaling/techscaling.py``; docs/references.md B6). At a tabulated node the relative
energy per operation is ``a*Vdd**2 + b*Vdd + c``.

Between two tabulated nodes the factor is interpolated linearly in nanometres between the two
nodes' polynomials evaluated at the same Vdd (as Accelergy does). Outside 7-130 nm the node is
clamped to the nearest end of the table and the result is multiplied by ``(nm/end)**0.5`` (the
square-root rule Accelergy attributes to IRDS 2016/2017 fJ/switch projections).

>>> round(energy_scale(45, 0.8, 7, 0.8), 3)
0.094

SRAM capacity (``sram_energy``): the energy of one access grows with the square root of the
capacity, leakage (where a config cites a figure; the shipped ones charge none) in proportion to
it. A CACTI-style banked array is a square of cells fed by an H-tree; the wires an access
charges (word and bit lines, the H-tree to the accessed bank) are as long as the array's side,
which grows as sqrt(capacity), while the number of cells -- each leaking -- grows with the
capacity itself. Horowitz ISSCC'14 (docs/references.md B1) gives, per 64-bit access at 45 nm:
8 KB 10 pJ [V], 32 KB 20 pJ, 1 MB 100 pJ [M]. 8 KB -> 32 KB is 4x the capacity and exactly 2x the
energy (exponent 0.5); 8 KB -> 1 MB is 128x and 10x (exponent 0.47), which the square-root law
from 8 KB overestimates by 13 % (113 pJ). Horowitz is the shipped configs' one SRAM source, for
a read and a write alike (README, "Energy against the peers", compares CACTI).
"""

from __future__ import annotations

__all__ = ["SRAM_ENERGY_EXPONENT", "TECH_NODES_NM", "energy_factor", "energy_scale",
           "sram_energy"]

#: SRAM access energy ~ capacity ** this (wire length ~ side of a square array; see above).
SRAM_ENERGY_EXPONENT = 0.5

#: node (nm) -> (a, b, c) with energy factor a*Vdd**2 + b*Vdd + c; Stillmaker & Baas 2017.
_COEFFS: dict[float, tuple[float, float, float]] = {
    130: (7.171, -6.709, 2.904),
    90: (4.762, -4.781, 2.092),
    65: (3.755, -4.398, 1.975),
    45: (1.103, -0.362, 0.2767),
    32: (0.9559, -0.7823, 0.471),
    20: (0.373, -0.1582, 0.04104),
    16: (0.2958, -0.1241, 0.03024),
    14: (0.2363, -0.09675, 0.02239),
    10: (0.2068, -0.09311, 0.02375),
    7: (0.1776, -0.09097, 0.02447),
}

#: Tabulated nodes, largest first.
TECH_NODES_NM: tuple[float, ...] = tuple(sorted(_COEFFS, reverse=True))


def _poly(node_nm: float, vdd_v: float) -> float:
    a, b, c = _COEFFS[node_nm]
    return a * vdd_v * vdd_v + b * vdd_v + c


def energy_factor(node_nm: float, vdd_v: float) -> float:
    """Relative energy per operation at ``node_nm`` and ``vdd_v`` (arbitrary common scale).

    Only ratios of two factors mean anything; see ``energy_scale``.
    """
    if not node_nm > 0 or not vdd_v > 0:
        raise ValueError(f"technology node {node_nm} nm at {vdd_v} V: both must be > 0")
    smallest, largest = TECH_NODES_NM[-1], TECH_NODES_NM[0]
    clamped = min(max(node_nm, smallest), largest)
    outside = (node_nm / clamped) ** 0.5  # 1.0 inside the table
    if clamped in _COEFFS:
        return _poly(clamped, vdd_v) * outside
    above = min(n for n in TECH_NODES_NM if n > clamped)
    below = max(n for n in TECH_NODES_NM if n < clamped)
    t = (clamped - below) / (above - below)
    return ((1 - t) * _poly(below, vdd_v) + t * _poly(above, vdd_v)) * outside


def energy_scale(from_nm: float, from_vdd: float, to_nm: float, to_vdd: float) -> float:
    """The factor taking an energy at (``from_nm``, ``from_vdd``) to (``to_nm``, ``to_vdd``).

    ``energy_factor(to) / energy_factor(from)``; 1.0 when both points are the same.

    >>> energy_scale(45, 0.9, 45, 0.9)
    1.0
    >>> round(energy_scale(45, 0.8, 130, 0.8), 2)
    3.07
    """
    return energy_factor(to_nm, to_vdd) / energy_factor(from_nm, from_vdd)


def sram_energy(read_pj: float, write_pj: float, leak_w: float, *, size_bytes: int,
                reference_bytes: int, reference: tuple[float, float],
                node: tuple[float, float]) -> tuple[float, float, float]:
    """Read and write pJ per byte and leakage watts of an SRAM of ``size_bytes`` at ``node``.

    ``read_pj``/``write_pj``/``leak_w`` are quoted for an SRAM of ``reference_bytes`` at
    ``reference`` = (node nm, Vdd). Access energies scale by
    ``(size/reference_bytes) ** SRAM_ENERGY_EXPONENT`` times ``energy_scale(reference, node)``;
    leakage by ``size/reference_bytes`` only: the Stillmaker-Baas factors are for switching
    energy, and leakage per bit does not fall with the node (docs/references.md B6), so the quoted
    leakage is taken to be the chip node's (an assumption).

    >>> sram_energy(1.25, 1.75, 1e-3, size_bytes=32768, reference_bytes=8192,
    ...             reference=(45, 0.9), node=(45, 0.9))
    (2.5, 3.5, 0.004)
    """
    if size_bytes < 0 or reference_bytes <= 0:
        raise ValueError(f"SRAM of {size_bytes} B against a reference of {reference_bytes} B: "
                         "the size must be >= 0 and the reference > 0")
    ratio = size_bytes / reference_bytes
    access = ratio ** SRAM_ENERGY_EXPONENT * energy_scale(*reference, *node)
    return read_pj * access, write_pj * access, leak_w * ratio
