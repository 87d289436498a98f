"""``edgesim compare``: two runs side by side, B less A, per op and in total.

Public names: ``add_parser``, ``main``, ``compare``, ``Side``.

    edgesim compare CONFIG_A CONFIG_B --model M        two configs, one model
    edgesim compare CONFIG --model A B                 one config, two models
    edgesim compare CONFIG --model M --policy lru belady   (or --prefetch next none)

Exactly one of the config, ``--model``, ``--policy`` and ``--prefetch`` takes two values; the
other settings are shared. Both runs are simulated with per-op rows and compared over their
steady state (inferences 2..N; the one inference when N is 1), as means per inference:

* ``totals``: per metric of the inference rows (off-chip bytes, cycles, latency, energy and
  its parts) A, B, B - A and the change in percent; then the inference's bound in A and B;
* ``by bound``: the time per inference each bound held the ops, in A and B, and B - A;
* ``per op`` (when both runs are of one model, ops matched by name): per op its off-chip
  bytes, time, compute cycles and energy (``LayerRow.energy_j``), B - A, and its bound in A
  and B (``compute>weights`` when it moved, ``=`` when not). An op a routed inference skips
  counts as 0 in that inference. The per-op deltas add up to the totals' (tested).

``--format csv`` prints the per-op table (the totals when the models differ); ``json`` all
three. A run compared with itself is all zeros (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edgesim.cli._common import (
    INPUTS,
    MAX_INPUTS,
    UsageError,
    policies,
    prefetch_modes,
    with_prefetch,
    write,
)

__all__ = ["Side", "add_parser", "compare", "main"]

#: Inference-row metrics the totals compare, in order.
TOTALS = ("weight_dram_bytes", "act_dram_bytes", "sram_read_bytes", "sram_write_bytes", "macs",
          "compute_cycles", "stall_cycles", "cycles", "latency_s", "energy_j", "energy_mac_j",
          "energy_array_j", "energy_sram_j", "energy_offchip_j", "energy_decode_j",
          "energy_leak_j")


def add_parser(subparsers) -> None:
    """Add ``compare`` to an argparse subparsers object."""
    c = subparsers.add_parser("compare", help="two configs, models, policies or prefetch "
                              "modes side by side (B - A per op and in total)")
    c.add_argument("config", nargs="+", metavar="CONFIG",
                   help="hardware config (two to compare two configs)")
    c.add_argument("--model", nargs="+", required=True, help="model (two to compare models)")
    c.add_argument("--policy", nargs="+", choices=policies(), default=["lru"])
    c.add_argument("--prefetch", nargs="+", choices=prefetch_modes(), default=None,
                   help="prefetch.mode of both runs, or of each (default: the config's)")
    c.add_argument("--inputs", type=INPUTS, default=None,
                   help="inferences per run (default 8; the steady state 2..N is compared; "
                   f"at most {MAX_INPUTS:,})")
    c.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of both configs")
    c.add_argument("--format", choices=("table", "csv", "json"), default="table")
    c.add_argument("--out", help="write to this file instead of standard output")


@dataclass(frozen=True)
class Side:
    """One run of a comparison: what it is (``label``) and its settings."""

    label: str
    config: str
    model: str
    policy: str
    #: ``prefetch.mode`` for the run (None: the config's)
    prefetch: str | None


def _sides(a) -> tuple[Side, Side, str]:
    """The two runs the flags describe, and the name of the setting that differs."""
    options = {"CONFIG": a.config, "--model": a.model, "--policy": a.policy,
               "--prefetch": a.prefetch or [None]}
    for name, values in options.items():
        if len(values) > 2:
            raise UsageError(f"compare: {name} takes one or two values, got {len(values)}: "
                             f"{' '.join(values)}")
    two = [name for name, values in options.items() if len(values) == 2]
    if len(two) != 1:
        got = ", ".join(two) if two else "none"
        raise UsageError(f"compare: give two values to exactly one of CONFIG, --model, "
                         f"--policy, --prefetch (two values: {got})")
    differ = two[0]
    sides = []
    for k in range(2):
        pick = {n: v[k] if len(v) == 2 else v[0] for n, v in options.items()}
        sides.append(Side(pick[differ], pick["CONFIG"], pick["--model"], pick["--policy"],
                          pick["--prefetch"]))
    return sides[0], sides[1], differ


def _steady(rows: Sequence[Any]) -> set[int]:
    """The inputs compared: 1..N-1, or 0 when the stream is one inference."""
    inputs = sorted({r.input for r in rows})
    return set(inputs[1:] or inputs)


def _mean_totals(rows, keep: set[int]) -> dict[str, float]:
    import math
    sel = [r for r in rows if r.input in keep]
    return {m: math.fsum(float(getattr(r, m)) for r in sel) / len(sel) for m in TOTALS}


def _bound_of(rows, keep: set[int]) -> str:
    """The bound most of the compared inferences have (ties: ``BOUNDS`` order)."""
    from edgesim.sim.bound import BOUNDS
    counts = dict.fromkeys(BOUNDS, 0)
    for r in rows:
        if r.input in keep:
            counts[r.bound] += 1
    return max(BOUNDS, key=lambda b: counts[b])


def _per_op(layers, keep: set[int]) -> dict[str, dict[str, Any]]:
    """Per op name, means per compared inference of its off-chip bytes, time (s), compute
    cycles and energy (J), its kind and its most frequent bound."""
    from edgesim.sim.bound import BOUNDS
    n = len(keep)
    out: dict[str, dict[str, Any]] = {}
    for r in layers:
        if r.input not in keep:
            continue
        o = out.setdefault(r.name, {"kind": r.kind, "bytes": 0, "time": 0.0, "cycles": 0,
                                    "energy": 0.0, "bounds": dict.fromkeys(BOUNDS, 0)})
        o["bytes"] += r.weight_dram_bytes + r.act_dram_bytes
        o["time"] += r.compute_end_s - r.compute_start_s
        o["energy"] += r.energy_j
        o["cycles"] += r.compute_cycles
        o["bounds"][r.bound] += 1
    for o in out.values():
        for k in ("bytes", "time", "cycles", "energy"):
            o[k] /= n
        o["bound"] = max(BOUNDS, key=lambda b, c=o["bounds"]: c[b])
    return out


def _moved(a: str, b: str) -> str:
    return "=" if a == b else f"{a}>{b}"


def _num(v: float) -> float | int:
    """A mean shown as an integer when it is one (bytes and cycles of identical inferences)."""
    return int(v) if (float(v).is_integer() and abs(v) >= 1) or v == 0 else v


def compare(run_a, run_b) -> dict[str, Any]:
    """The comparison of two ``api.Run``s made with per-op rows (module docstring): a dict of
    ``totals``, ``bound``, ``by_bound`` and (one model) ``ops`` tables, B - A."""
    from edgesim.report import time_by
    ka, kb = _steady(run_a.result.rows), _steady(run_b.result.rows)
    ta, tb = _mean_totals(run_a.result.rows, ka), _mean_totals(run_b.result.rows, kb)
    totals = []
    for m in TOTALS:
        d = tb[m] - ta[m]
        pct = round(100 * d / ta[m], 2) if ta[m] else (0.0 if not d else None)
        totals.append({"metric": m, "a": _num(ta[m]), "b": _num(tb[m]), "delta": _num(d),
                       "delta_%": pct})
    la = [r for r in run_a.result.layer_rows if r.input in ka]
    lb = [r for r in run_b.result.layer_rows if r.input in kb]
    spent_a = {t[0]: t[2] for t in time_by(la, "bound")}
    spent_b = {t[0]: t[2] for t in time_by(lb, "bound")}
    from edgesim.sim.bound import BOUNDS
    by_bound = [{"bound": b, "time_us_a": spent_a.get(b, 0.0), "time_us_b": spent_b.get(b, 0.0),
                 "delta_us": round(spent_b.get(b, 0.0) - spent_a.get(b, 0.0), 3)}
                for b in BOUNDS if b in spent_a or b in spent_b]
    out: dict[str, Any] = {
        "totals": totals,
        "bound": {"a": _bound_of(run_a.result.rows, ka), "b": _bound_of(run_b.result.rows, kb)},
        "by_bound": by_bound}
    if run_a.model["name"] == run_b.model["name"]:
        oa, ob = _per_op(la, ka), _per_op(lb, kb)
        empty = {"kind": "", "bytes": 0, "time": 0.0, "cycles": 0, "energy": 0.0,
                 "bound": "none"}
        ops = []
        for name in dict.fromkeys([*oa, *ob]):
            a, b = oa.get(name, empty), ob.get(name, empty)
            ops.append({"op": name, "kind": a["kind"] or b["kind"],
                        "bound": _moved(a["bound"], b["bound"]),
                        "d_offchip_bytes": _num(b["bytes"] - a["bytes"]),
                        "d_time_us": round((b["time"] - a["time"]) * 1e6, 3),
                        "d_cycles": _num(b["cycles"] - a["cycles"]),
                        "d_energy_uj": round((b["energy"] - a["energy"]) * 1e6, 6)})
        out["ops"] = ops
    return out


def _table(records: list[dict[str, Any]]) -> tuple[list[str], list[tuple]]:
    cols = list(records[0]) if records else []
    return cols, [tuple(r[c] for c in cols) for r in records]


def render_comparison(result: dict[str, Any], head: str, fmt: str) -> str:
    """The comparison as text tables, CSV (per op, or the totals) or JSON."""
    from edgesim.report import render, render_table
    if fmt == "json":
        return render(None, "json", json_obj={"compare": head, **result})
    if fmt == "csv":
        cols, rows = _table(result.get("ops") or result["totals"])
        return render(cols, "csv", rows=rows)
    bound = result["bound"]
    lines = [head, "", "# totals per inference (B - A)",
             render_table(*_table(result["totals"])),
             f"bound: {bound['a']} -> {bound['b']}" if bound["a"] != bound["b"]
             else f"bound: {bound['a']} (unchanged)",
             "", "# time per inference by bound (µs)", render_table(*_table(result["by_bound"]))]
    if "ops" in result:
        moved = sum(1 for o in result["ops"] if o["bound"] != "=")
        lines += ["", f"# per op (B - A; bound A>B where it moved: {moved} of "
                  f"{len(result['ops'])} ops)", render_table(*_table(result["ops"]))]
    else:
        lines += ["", "# per op: the models differ, so their ops are not matched"]
    return "\n".join(lines)


def main(a) -> int:
    """Handler of ``edgesim compare``."""
    from edgesim import api
    from edgesim.cli._common import progress_printer
    side_a, side_b, differ = _sides(a)
    runs = [api.run(s.config, s.model, inputs=a.inputs, policy=s.policy,
                    overrides=with_prefetch(a.sets, s.prefetch), per_layer=True,
                    progress=progress_printer())
            for s in (side_a, side_b)]
    shared = {"CONFIG": side_a.config, "--model": side_a.model, "--policy": side_a.policy,
              "--prefetch": runs[0].meta["prefetch"]}
    del shared[differ]
    inputs = runs[0].meta["inputs"]
    steady = "inference 0" if inputs == 1 else f"steady state, inferences 1-{inputs - 1}"
    sets = f", --set {' '.join(a.sets)}" if a.sets else ""
    head = (f"# compare {differ.lstrip('-').lower()}: A = {side_a.label}, B = {side_b.label}\n# "
            + ", ".join(f"{k.lstrip('-').lower()} {v}" for k, v in shared.items())
            + f"{sets}; {steady} of {inputs}")
    write(render_comparison(compare(*runs), head, a.format), a.out)
    return 0
