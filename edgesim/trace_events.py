"""The per-op timeline as Chrome / Perfetto trace events (``run --timeline trace.json``).

Public names: ``TraceWriter``, ``TRACKS``.

The JSON object form of the Trace Event Format (Google's "Trace Event Format" document, the
format ``chrome://tracing`` and ui.perfetto.dev open): ``{"traceEvents": [...],
"displayTimeUnit": "ns"}``, one complete event (``"ph": "X"``) per op per resource, ``ts`` and
``dur`` in microseconds from the start of the stream. The engine runs the inferences back to
back, so inference i starts where inference i-1 ended (its last op's end: its latency);
times are kept in integer picoseconds (the engine's unit) and divided once, so an op's end is
exactly the next op's start.

Tracks (``tid``) of one process named ``model on config``:

* ``compute`` (1): each op from its start to its end, the wait for its bytes included; args
  give its kind, bound, stall, MACs and off-chip bytes. The events of an inference add up to
  its latency, of the stream to the sum of the latencies (the busy time of the array).
* ``stall`` (2): the part of an op spent waiting for bytes (``stall_s``), at the op's end.
* ``off-chip`` (3, 4, ...): each op's transfers, from its first start to its last end. Two
  memories on two ports can move an op's bytes while another op's move: an event that would
  overlap the one before it on a lane goes on the next lane, so no track overlaps itself.

An op of no duration (an activation fused into its producer) has no event. Rows are written
as they come: the file holds no more than one event in memory.
"""

from __future__ import annotations

import json
from typing import Any

from edgesim.outputs import end_atomically, open_atomically

__all__ = ["TRACKS", "TraceWriter"]

#: Track ids of the compute and stall tracks; off-chip lanes are ``OFFCHIP``, ``OFFCHIP + 1``...
TRACKS = {"compute": 1, "stall": 2}
OFFCHIP = 3


def _ps(seconds: float | None) -> int | None:
    """Seconds (a ``LayerRow`` time, integer ps x 1e-12) back to integer picoseconds."""
    return None if seconds is None or seconds != seconds else round(seconds * 1e12)


def _us(ps: int) -> float:
    return ps / 1e6


class TraceWriter:
    """``__call__(layer_row)`` per op row in stream order; ``close(ok)`` finishes the file
    (written beside ``path`` and renamed over it; ``close(False)`` leaves ``path`` as it was).
    ``name`` heads the process (``dense_mbv2 on npu_small``)."""

    def __init__(self, path: str, name: str, flag: str = "--timeline") -> None:
        self.path, self.name, self.flag = path, name, flag
        self.opened = None
        self.file = None
        self.events = 0
        self.input: int | None = None
        self.offset = 0                      # ps: where the current inference started
        self.end = 0                         # ps: the latest op end of the current inference
        self.lanes: list[int] = []           # ps from the stream's start: each off-chip
                                             # lane's last event's end

    def _emit(self, event: dict[str, Any]) -> None:
        if self.file is None:
            self.opened = open_atomically(self.path, self.flag)
            self.file = self.opened.__enter__()
            self.file.write('{"traceEvents": [\n')
        self.file.write((",\n" if self.events else "") + json.dumps(event, sort_keys=True))
        self.events += 1

    def _complete(self, tid: int, name: str, start: int, end: int, args: dict) -> None:
        self._emit({"ph": "X", "pid": 1, "tid": tid, "name": name, "cat": args.get("kind", ""),
                    "ts": _us(self.offset + start), "dur": _us(end - start), "args": args})

    def __call__(self, row) -> None:
        if row.input != self.input:          # a new inference starts where the last ended
            if self.input is not None:
                self.offset += self.end
            self.input, self.end = row.input, 0
        cs, ce = _ps(row.compute_start_s), _ps(row.compute_end_s)
        self.end = max(self.end, ce)
        stall = _ps(row.stall_s) or 0
        args = {"input": row.input, "op": row.op, "kind": row.kind, "bound": row.bound,
                "macs": row.macs, "weight_dram_bytes": row.weight_dram_bytes,
                "act_dram_bytes": row.act_dram_bytes, "stall_us": _us(stall)}
        if ce > cs:
            self._complete(TRACKS["compute"], row.name, cs, ce, args)
        if stall > 0:
            self._complete(TRACKS["stall"], row.name, ce - min(stall, ce - cs), ce, args)
        ds, de = _ps(row.dma_start_s), _ps(row.dma_end_s)
        if ds is not None and de is not None and de > ds:
            at = self.offset + ds            # lanes hold absolute ends: a wasted guess may
            lane = next((k for k, busy in enumerate(self.lanes) if busy <= at), None)
            if lane is None:                 # outlast its inference's last op
                lane = len(self.lanes)
                self.lanes.append(0)
            self.lanes[lane] = self.offset + de
            self._complete(OFFCHIP + lane, row.name, ds, de, args)

    def _metadata(self) -> list[dict[str, Any]]:
        names = {**{v: k for k, v in TRACKS.items()},
                 **{OFFCHIP + k: f"off-chip {k + 1}" for k in range(max(1, len(self.lanes)))}}
        meta = [{"ph": "M", "pid": 1, "name": "process_name", "args": {"name": self.name}}]
        meta += [{"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": n}}
                 for tid, n in sorted(names.items())]
        return meta

    def close(self, ok: bool) -> None:
        """Finish the document (``ok``) or drop it."""
        if ok:
            for event in self._metadata():
                self._emit(event)
            self.file.write('\n], "displayTimeUnit": "ns"}\n')
        if self.opened is not None:
            opened, self.opened = self.opened, None
            end_atomically(opened, ok)
