"""What bounds an op: the resource whose speed decides when the op ends.

Public names: ``BOUNDS``, ``compute_unit``, ``op_bounds``, ``stall_bounds``, ``dominant``.

An op ends when its compute is done and its last off-chip byte has arrived (``sim.engine``:
the compute process waits for the op's kept and streamed transfers after its compiled cycles).
So the op is bound by

* a transfer when it waited (``stall > 0``): making compute faster would not end it sooner.
  ``weights`` when more of the bytes moved for it were weights (kept or streamed, re-fetches
  included) than activations, else ``activations`` (spills written out or read back, the
  network's input or output in an off-chip arena). Bytes, not arrival order: one port moves
  an op's transfers in a queue, so the last to arrive (often a small output write) waited
  behind the others and is not what held the op;
* otherwise by the unit whose cycles the compiled count is (``sim.mapping.op_cycles``: the
  mapped cycles, at least what the SRAM port feeds): ``sram_port`` when the port's cycles are
  the op's cycles, ``compute`` when the op runs on the MAC array (a pool the array runs
  included; every op of an MCU's CPU), ``vector`` when it runs on the vector unit or its op
  class's own unit (element-wise ops, pools, activations, a depthwise conv on the vector unit,
  a fused softmax's chain of commands);
* ``none``: an op that takes no time (an activation fused into its producer).

The bound of an inference is the bound under which most of its time passed (``dominant``:
each op's time is its end less the previous op's end; ties go to the first in ``BOUNDS``).

>>> dominant(["compute", "weights", "compute"], [10, 25, 10])
'weights'
"""

from __future__ import annotations

from collections.abc import Sequence

from edgesim.sim.mapping import ARRAY_POOLS, Array, fuses, port_cycles
from edgesim.workload import LayerOp

__all__ = ["BOUNDS", "compute_unit", "dominant", "op_bounds", "stall_bounds"]

#: The bounds an op can have, in the order ties are broken.
BOUNDS = ("compute", "vector", "sram_port", "weights", "activations", "none")


def compute_unit(a: Array, op: LayerOp, cycles: int, weight_bytes: int,
                 producer: LayerOp | None) -> str:
    """The unit whose cycles ``cycles`` (``op_cycles`` of ``op``) are: ``compute``, ``vector``,
    ``sram_port``, or ``none`` for an op of no cycles. Reads the same facts ``op_cycles`` does
    (never changes them)."""
    if cycles <= 0:
        return "none"
    if a.kind == "mcu":
        return "compute"
    if not op.fused and not fuses(a, op, producer):
        port = port_cycles(a, op.in_bytes + op.out_bytes + weight_bytes)
        if port >= cycles:
            return "sram_port"
    if op.fused:                      # a softmax's chain of commands
        return "vector"
    if op.macs:
        groups = op.groups if op.kind == "conv" else 1
        depthwise = op.kind == "conv" and groups > 1 and op.dims.get("C", 1) == 1
        return "vector" if depthwise and a.depthwise == "vector" else "compute"
    if (op.kind == "pool" and a.pooling.unit == "array" and op.window is not None
            and op.function in ARRAY_POOLS):
        return "compute"
    return "vector"


def op_bounds(units: Sequence[str], compute_ps: Sequence[int], ended: Sequence[int],
              weight_bytes: Sequence[int], act_bytes: Sequence[int]) -> tuple[list[str], str]:
    """Per op, its bound (module docstring) from the timeline of one inference: ``ended[j]``
    when op j ended and ``compute_ps[j]`` its compute (integer ps), the weight and activation
    bytes moved off-chip for it; and the inference's bound (``dominant`` of the ops' bounds
    and times, each op's time its end less the previous op's end)."""
    out = []
    append = out.append
    spent = dict.fromkeys(BOUNDS, 0)
    prev = 0
    for unit, c, end, w, a in zip(units, compute_ps, ended, weight_bytes, act_bytes,
                                  strict=True):
        bound = unit if end - prev <= c else _waited(w, a)
        append(bound)
        spent[bound] += end - prev
        prev = end
    return out, _most(spent)


def stall_bounds(units: Sequence[str], unit_time: dict[str, int], compute_ps: Sequence[int],
                 ended: Sequence[int], kept: Sequence[int], streamed: Sequence[int],
                 act_bytes: Sequence[int], ops: Sequence[int]) -> tuple[list[str], str]:
    """``op_bounds`` when only ``ops`` can have waited (the ops that moved bytes: every other
    op ends its compute time after the one before), looking at those alone: ``unit_time`` is
    the compute time per unit of all ops, the weight bytes of op j ``kept[j] +
    streamed[j]``."""
    out = list(units)
    waits = []
    for j in ops:
        took = ended[j] - (ended[j - 1] if j else 0)
        if took > compute_ps[j]:
            waits.append((j, took, kept[j] + streamed[j]))
            out[j] = _waited(kept[j] + streamed[j], act_bytes[j])
    return out, wait_bound(units, unit_time, compute_ps, act_bytes, waits)


def wait_bound(units: Sequence[str], unit_time: dict[str, int], compute_ps: Sequence[int],
               act_bytes: Sequence[int], waits: Sequence[tuple[int, int, int]]) -> str:
    """``stall_bounds``' bound of the inference from the ops that waited, ``(op, its end less
    the previous op's end, its weight bytes)`` (each longer than its compute time; the
    compiled timeline finds them, ``_kernel.run``)."""
    spent = dict.fromkeys(BOUNDS, 0)
    spent.update(unit_time)
    for j, took, weight_bytes in waits:
        spent[units[j]] -= compute_ps[j]
        spent[_waited(weight_bytes, act_bytes[j])] += took
    return _most(spent)


def _waited(weight_bytes: int, act_bytes: int) -> str:
    """The bound of an op that waited: what most of its bytes were (module docstring)."""
    return "weights" if weight_bytes >= act_bytes else "activations"


def dominant(bounds: Sequence[str], times: Sequence[int]) -> str:
    """The bound under which the most time passed (ties: the first in ``BOUNDS``); ``none``
    when no time passed."""
    spent = dict.fromkeys(BOUNDS, 0)
    for b, t in zip(bounds, times, strict=True):
        spent[b] += t
    return _most(spent)


def _most(spent: dict[str, int]) -> str:
    """``dominant`` of the time spent per bound."""
    spent["none"] = 0
    best = max(BOUNDS, key=spent.__getitem__)     # max keeps the first of equal ones
    return best if spent[best] > 0 else "none"
