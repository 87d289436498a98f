"""``edgesim columns [NAME ...]``: what every column of the CSV and JSON outputs means.

Public names: ``COLUMNS``, ``SUFFIXES``, ``describe``, ``add_parser``, ``main``.

``COLUMNS`` is the one table: column -> (unit, meaning with its formula). It covers the rows of
``run`` (``InferenceRow``), of ``run --per-layer`` / ``--timeline`` (``LayerRow``), the model
fields of a report (``api.model_info``), the keys of ``run --format json`` and the columns of
a sweep table (``SweepRow``), whose metric columns are a metric of ``run`` with a statistic
suffix (``SUFFIXES``: ``weight_dram_bytes_steady`` is ``weight_dram_bytes``, steady-state
mean). ``tests/test_columns.py`` checks that every column those outputs emit is here.

>>> unit, meaning = describe("latency_s_p99")
>>> unit, meaning.endswith("(99th percentile over inferences 2..N)")
('s', True)
"""

from __future__ import annotations

import textwrap

from edgesim.errors import EdgesimError

__all__ = ["COLUMNS", "SUFFIXES", "add_parser", "describe", "main"]

_E = "energy of one inference "

#: column -> (unit, meaning and formula). Units: B bytes, s seconds, J joules, "-" none.
COLUMNS: dict[str, tuple[str, str]] = {
    # --- one inference (run: CSV, JSON "inferences")
    "input": ("-", "index of the input in the stream, 0.. (0 is the cold inference)"),
    "path": ("-", "the route the input took through a routed model (a tree's branch "
                  "choices, e.g. R-L); the family's name for a model with one path"),
    "weight_dram_bytes": ("B", "weight bytes read from off-chip memory = kept (loaded into "
                               "SRAM) + streamed + speculative"),
    "weight_stream_bytes": ("B", "of weight_dram_bytes, bytes streamed in tiles through the "
                                 "SRAM and not kept"),
    "spec_wasted_bytes": ("B", "weight bytes prefetched for a path guess that was wrong "
                               "(--prefetch speculative)"),
    "weight_refetch_bytes": ("B", "of weight_dram_bytes, weights read again per input "
                                  "stripe when an op is tiled"),
    "act_dram_bytes": ("B", "activation bytes moved off-chip = spills written + read back "
                            "(+ input re-reads per weight tile)"),
    "act_reread_bytes": ("B", "of act_dram_bytes, input re-reads per weight tile (tiling)"),
    "sram_read_bytes": ("B", "bytes read from on-chip SRAM (weights and activations)"),
    "sram_write_bytes": ("B", "bytes written to on-chip SRAM (fills and outputs)"),
    "macs": ("-", "multiply-accumulates executed (effective ones when zero weights are "
                  "skipped)"),
    "compute_cycles": ("cycles", "sum over ops of each op's compute cycles on its unit (MAC "
                                 "array folds, vector unit), no waiting"),
    "stall_cycles": ("cycles", "cycles - compute_cycles: time spent waiting for off-chip "
                               "bytes"),
    "cycles": ("cycles", "ceil(latency_s x clock_hz), at least compute_cycles"),
    "latency_s": ("s", "wall-clock time of one inference = its simulated picoseconds x 1e-12"),
    "energy_j": ("J", _E + "= energy_mac_j + energy_array_j + energy_sram_j + "
                      "energy_offchip_j + energy_decode_j + energy_leak_j (per op: its "
                      "share, the ops of an inference adding up to its energy_j)"),
    "energy_mac_j": ("J", "macs x energy per MAC of their precision (energy.mac, scaled to "
                          "the technology node)"),
    "energy_array_j": ("J", "macs x register bits per MAC of the dataflow / 8 x PE register "
                            "energy per byte"),
    "energy_sram_j": ("J", "sram_read_bytes x read energy per byte + sram_write_bytes x write "
                           "energy per byte (grows with SRAM size)"),
    "energy_offchip_j": ("J", "off-chip bytes read x 8 x read energy per bit + bytes written "
                              "x 8 x write energy per bit, per memory"),
    "energy_decode_j": ("J", "decoded sparse indices x energy per index (0 unless the config "
                             "sets energy.index_decode)"),
    "energy_leak_j": ("J", "(SRAM leakage power + board power) x latency_s"),
    "bound": ("-", "what decided when it ended (edgesim.sim.bound): compute, vector, "
                   "sram_port, weights, activations (it waited for those bytes) or none; "
                   "an inference's is the bound most of its time passed under"),
    # --- one op of one inference (run --per-layer, --timeline: CSV, JSON "layers")
    "op": ("-", "index of the op on its path, in execution order"),
    "name": ("-", "the op's name (module path in the model, or the file's tensor name); in "
                  "JSON 'model', the model's name"),
    "kind": ("-", "op class: conv, linear, dwconv, pool, act, add, ... (edgesim.workload)"),
    "precision": ("-", "weight precision of the op (int8, int4, fp16, binary); in JSON "
                       "'model', the model's"),
    "encoding": ("-", "encodings of the op's weight blocks as stored, e.g. csr+dense; empty "
                      "without weights"),
    "weight_sparsity": ("fraction", "zero weights / all weights, 0..1 (per op; in 'model' and "
                                    "a sweep, over the whole model)"),
    "rule": ("-", "what a model transform decided for the op's weights (Mix-and-Match: the "
                  "layer rule that set its sparsity range); empty when nothing did"),
    "weight_bytes": ("B", "stored bytes of the op's weight blocks in their encoding"),
    "tiling": ("-", "loop order and tile count when the op does not fit: once, "
                    "weights_outer/3, ..."),
    "util": ("fraction", "macs / (compute_cycles x peak MACs per cycle); 0 without MACs"),
    "dma_start_s": ("s", "when the op's off-chip transfer started, from the inference start "
                         "(empty: it moved nothing)"),
    "dma_end_s": ("s", "when the op's off-chip transfer ended (empty: it moved nothing)"),
    "compute_start_s": ("s", "when the op started computing, from the inference start"),
    "compute_end_s": ("s", "when the op finished"),
    "stall_s": ("s", "time the op waited for off-chip bytes (before it started and at its "
                     "end)"),
    # --- the model (JSON "model"; a sweep row)
    "family": ("-", "model family: dense, sigmab (routed tree), sparse, nested, "
                    "signed_binary"),
    "total_params": ("-", "stored parameter values, all paths (BatchNorm folded)"),
    "active_params": ("-", "parameters one inference uses, mean over paths"),
    "active_fraction": ("fraction", "active_params / total_params"),
    "paths": ("-", "distinct execution paths (1 unless routed)"),
    "stored_weight_bytes": ("B", "weight bytes as this hardware stores them (its encodings, "
                                 "scales and biases)"),
    "dense_weight_bytes": ("B", "the same weights stored dense"),
    # --- run --format json: top-level keys and the "run" object
    "model": ("-", "JSON: the model fields (name, family, params, bytes); a sweep row: "
                   "the model's name"),
    "hardware": ("-", "JSON: the hardware config as validated (units spelled out)"),
    "inferences": ("-", "JSON: one object per inference, with the columns above"),
    "layers": ("-", "JSON (--per-layer): one object per op and inference"),
    "summary": ("-", "JSON: per metric, cold (first inference), steady_mean, p50 and p99 "
                     "of the rest; 'inputs' the count"),
    "run": ("-", "JSON: the run's settings (policy, prefetch, inputs, seed, input_shape)"),
    "accuracy": ("-", "JSON (--eval): top1, correct, inputs, data"),
    "cold": ("as metric", "summary: the metric of the first inference (empty SRAM)"),
    "steady_mean": ("as metric", "summary: mean of the metric over inferences 2..N"),
    "p50": ("as metric", "summary: median over inferences 2..N"),
    "p99": ("as metric", "summary: 99th percentile over inferences 2..N"),
    "policy": ("-", "SRAM residency policy: lru, pinned, belady"),
    "prefetch": ("-", "weight prefetch mode: next, none, speculative"),
    "inputs": ("-", "inferences in the stream (JSON summary: those summarised)"),
    "seed": ("-", "seed of the synthetic inputs and random weights"),
    "input_shape": ("-", "the shape one input was traced at, without the batch"),
    "top1": ("fraction", "top-1 accuracy over the labelled --data, 0..1 (--eval)"),
    "correct": ("-", "--eval: inputs classified correctly"),
    "data": ("-", "--eval: the labelled data file or folder"),
    # --- a sweep table (sweep.csv)
    "point": ("-", "grid point index, 0.. in grid order"),
    "<swept key>": ("as set", "one column per --set key of the sweep (e.g. sram.size), the "
                              "value as given"),
    "config": ("-", "the hardware config's name"),
    "sram_bytes": ("B", "on-chip SRAM size (sram.size)"),
    "weight_sram_bytes": ("B", "SRAM bytes weights may use = sram_bytes - the activation "
                               "reserve"),
    "offchip_bytes_per_s": ("B/s", "off-chip bandwidth (offchip.bandwidth)"),
    "clock_hz": ("Hz", "accelerator clock (clock)"),
    "status": ("-", "ok, or failed: the task raised (its metrics empty, error says why)"),
    "error": ("-", "the one-line error of a failed task, else empty"),
}

#: Statistic suffixes of a sweep table's metric columns (``latency_s_steady``).
SUFFIXES: dict[str, str] = {
    "_cold": "of the first inference",
    "_steady": "mean over inferences 2..N",
    "_p50": "median over inferences 2..N",
    "_p99": "99th percentile over inferences 2..N",
}


def describe(column: str) -> tuple[str, str] | None:
    """``(unit, meaning)`` of ``column`` (a metric with a statistic suffix included), or None."""
    if column in COLUMNS:
        return COLUMNS[column]
    for suffix, what in SUFFIXES.items():
        base = column.removesuffix(suffix)
        if base != column and base in COLUMNS:
            unit, meaning = COLUMNS[base]
            return unit, f"{meaning} ({what})"
    if "." in column:      # a swept key, as it is spelled in --set
        return COLUMNS["<swept key>"]
    return None


def add_parser(subparsers) -> None:
    """Add ``columns`` to an argparse subparsers object."""
    c = subparsers.add_parser("columns", help="explain every column of the CSV and JSON "
                              "outputs (unit and formula)")
    c.add_argument("names", nargs="*", metavar="COLUMN",
                   help="only these columns (a sweep metric with _cold, _steady, _p50, _p99)")


def main(a) -> int:
    """Handler of ``edgesim columns``: a table of column, unit, meaning, wrapped to 100."""
    names = a.names or list(COLUMNS)
    rows = []
    for name in names:
        got = describe(name)
        if got is None:
            import difflib
            close = difflib.get_close_matches(name, list(COLUMNS), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise EdgesimError(f"no column {name!r}{hint} (`edgesim columns` lists them all)")
        rows.append((name, *got))
    wide = max(len("column"), *(len(n) for n, _, _ in rows))
    unit = max(len("unit"), *(len(u) for _, u, _ in rows))
    room = max(30, 100 - wide - unit - 4)
    lines = [f"{'column'.ljust(wide)}  {'unit'.ljust(unit)}  meaning"]
    for name, u, meaning in rows:
        parts = textwrap.wrap(meaning, room) or [""]
        lines.append(f"{name.ljust(wide)}  {u.ljust(unit)}  {parts[0]}")
        lines += [f"{'':{wide + unit + 4}}{p}" for p in parts[1:]]
    if not a.names:
        lines += ["", *textwrap.wrap("A sweep table's metric columns are the metrics above "
                                     "with a suffix: " + "; ".join(
                                         f"{s} {w}" for s, w in SUFFIXES.items()) + ".", 100)]
    print("\n".join(line.rstrip() for line in lines))
    return 0
