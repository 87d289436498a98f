"""edgesim beside Arm's Vela on int8 ResNet-50 v1, per operator, per stage and in total.

    python benchmarks/fidelity.py [--system u55|u65|both] [--per-op] [--csv OUT] [--check]
                                  [--vela DIR] [--model NAME]

Vela 5.2.0's estimates (``../shared/calibration/vela/``: one per-operator CSV per system and
``summary.csv``) are compared with ``edgesim.api.run(config, "dense_r50v1_laplace", inputs=2,
per_layer=True)`` on the config that states the same system:

=====  ===============================  ============
key    Vela system (memory mode)        edgesim
=====  ===============================  ============
u55    Ethos-U55-128, ``Shared_Sram``   ``ethos_u55``
u65    Ethos-U65-512, ``Dedicated_Sram``  ``ethos_u65``
=====  ===============================  ============

edgesim runs two inferences and reports the second (steady state: the SRAM holds what the
residency policy kept from the first). Vela estimates one inference with nothing carried over.

What is compared
----------------
* **Cycles per op.** Vela's ``Op Cycles`` (max of NPU cycles, which include the waits for weight
  DMA into SRAM, and each memory's access cycles; the network total is their plain sum). edgesim's
  comparable number is the op's *wall time*: the end of its compute minus the end of the previous
  op's compute (``compute_end_s`` differences x clock), i.e. ``compute_cycles`` plus the stall
  before it started (waiting for its weights, spills or the port). Those wall times add up to the
  inference's ``cycles``; whatever follows the last op's compute (an output write) is a ``(tail)``
  row, so the total is always the sum of the rows.
* **Off-chip bytes.** edgesim's per op: ``weight_dram_bytes`` and ``act_dram_bytes``. Vela's
  per-operator CSV has no byte columns, only access cycles; its off-chip memory's access cycles
  (``OffFlash AC`` on U55, ``DRAM AC`` on U65) are printed per op, and its bytes are compared in
  total only, from ``summary.csv`` (``offchip_weight_rd_B``; ``offchip_fm_rd_B`` + ``_wr_B``).
* **Matching.** Vela's names are TFLite tensor names of Keras layers, edgesim's the module names of
  the torch model; ``keras_layer`` reads the Keras layer out of a Vela row and ``edgesim_name``
  maps it (``convN_blockM_K_conv`` <-> ``layer{N-1}.{M-1}.conv{K}``, ...). Vela's fused ReLU rows
  (0 cycles) match edgesim's ``act`` ops; Vela's MEAN, lowered to a depthwise conv + MUL, matches
  ``avgpool`` (two Vela rows, one edgesim op). Ops on one side only (Vela's PAD copies and its
  ~29-op softmax chain) are listed as unmatched with their cycles and counted in their stage.
* **Stages.** stem (conv1, maxpool, the pad), conv2..conv5 (= layer1..layer4), head (avgpool,
  fc, softmax).

Targets (issue 9): total latency 0.8-1.25x of Vela on each system, each stage 0.67-1.5x, off-chip
weight bytes 0.9-1.15x. Each is marked PASS/FAIL. The script exits 0 (it is a report) unless
``--check`` is given; then it exits 1 when a target fails.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VELA = ROOT.parent / "shared" / "calibration" / "vela"
MODEL = "dense_r50v1_laplace"
INPUTS = 2            # report the second inference (steady state)
STAGES = ("stem", "conv2", "conv3", "conv4", "conv5", "head")

# system key -> (edgesim config, what to look for in Vela's file names and summary ``config``)
SYSTEMS = {"u55": ("ethos_u55", "u55"), "u65": ("ethos_u65", "u65")}

TARGET_TOTAL = (0.8, 1.25)
TARGET_STAGE = (0.67, 1.5)
TARGET_WEIGHTS = (0.9, 1.15)


# --------------------------------------------------------------------------- names

_CONV = re.compile(r"\b(conv(\d)_block(\d+)_(\d)_conv)_\d+/")
_BLOCK = re.compile(r"\b(conv(\d)_block(\d+))_(?:add|out)_\d+/")


def keras_layer(original: str, nng: str, name: str) -> str:
    """The Keras layer a Vela CSV row belongs to, from its ``Original Operator``, ``NNG Operator``
    and ``Name`` (the TFLite tensor name, often several joined by ``;``).

    Fused activations (NNG ``Relu`` rows) get the Keras name of their ReLU layer; the stem conv,
    whose output tensor Vela names after the pad that follows it, is ``conv1_conv``.

    >>> keras_layer("Conv2D", "Conv2D", "resnet50_1/conv2_block1_1_relu_1/Relu;"
    ...             "resnet50_1/conv2_block1_1_conv_1/BiasAdd;"
    ...             "resnet50_1/conv2_block1_1_conv_1/convolution")
    'conv2_block1_1_conv'
    >>> keras_layer("Conv2D", "Relu", "resnet50_1/conv2_block1_2_relu_1/Relu;"
    ...             "resnet50_1/conv2_block1_2_conv_1/convolution")
    'conv2_block1_2_relu'
    >>> keras_layer("Conv2D", "Conv2D", "resnet50_1/pool1_pad_1/Pad")
    'conv1_conv'
    >>> keras_layer("Pad", "MemoryCopy", "resnet50_1/pool1_pad_1/Pad")
    'pool1_pad'
    >>> keras_layer("Add", "Add", "resnet50_1/conv3_block2_out_1/Relu;"
    ...             "resnet50_1/conv3_block2_add_1/Add")
    'conv3_block2_add'
    >>> keras_layer("Add", "Relu", "resnet50_1/conv3_block2_out_1/Relu;"
    ...             "resnet50_1/conv3_block2_add_1/Add")
    'conv3_block2_out'
    >>> [keras_layer(o, n, "x") for o, n in [("MaxPool", "MaxPool"), ("Mean", "Mul"),
    ...  ("FullyConnected", "FullyConnected"), ("Softmax", "LUT")]]
    ['pool1_pool', 'avg_pool', 'predictions', 'predictions_softmax']
    """
    fused = nng == "Relu"
    if original == "Conv2D":
        m = _CONV.search(name)
        if m is None:
            if "pool1_pad" in name or "conv1_" in name:
                return "conv1_relu" if fused else "conv1_conv"
            raise ValueError(f"Vela row {original}/{nng} {name!r}: no Keras conv layer in its name")
        return f"{m[1][:-len('conv')]}relu" if fused else m[1]
    if original == "Add":
        m = _BLOCK.search(name)
        if m is None:
            raise ValueError(f"Vela row {original}/{nng} {name!r}: no Keras block in its name")
        return f"{m[1]}_out" if fused else f"{m[1]}_add"
    table = {"Pad": "pool1_pad", "MaxPool": "pool1_pool", "Mean": "avg_pool",
             "FullyConnected": "predictions", "Softmax": "predictions_softmax"}
    if original in table:
        return table[original]
    raise ValueError(f"Vela row {original}/{nng} {name!r}: operator {original!r} unknown to the "
                     f"ResNet-50 matching (expected one of Conv2D, Add, {', '.join(table)})")


_K_CONV = re.compile(r"conv(\d)_block(\d+)_(\d)_conv")
_K_RELU = re.compile(r"conv(\d)_block(\d+)_(\d)_relu")
_K_BLOCK = re.compile(r"conv(\d)_block(\d+)_(add|out)")
_FIXED = {"conv1_conv": "conv1", "conv1_relu": "relu", "pool1_pool": "maxpool",
          "avg_pool": "avgpool", "predictions": "fc", "pool1_pad": None,
          "predictions_softmax": None}


def edgesim_name(keras: str) -> str | None:
    """The edgesim op (torch module name in ``edgesim.zoo.resnet``) of a Keras ResNet-50 layer,
    or None when edgesim has no such op (the pad before the max pool, the softmax).

    Stage N of Keras is ``layer{N-1}``, block M is ``{M-1}``; ``_0_conv`` is the projection
    shortcut (``downsample.0``); the block's ``add`` is ``add`` and the ReLU after it (``out``)
    is the block's third ReLU, ``relu.2`` (the torch module is called three times).

    >>> edgesim_name("conv2_block1_1_conv"), edgesim_name("conv4_block6_3_conv")
    ('layer1.0.conv1', 'layer3.5.conv3')
    >>> edgesim_name("conv3_block1_0_conv")
    'layer2.0.downsample.0'
    >>> edgesim_name("conv5_block3_add"), edgesim_name("conv5_block3_out")
    ('layer4.2.add', 'layer4.2.relu.2')
    >>> edgesim_name("conv2_block1_1_relu"), edgesim_name("conv2_block1_2_relu")
    ('layer1.0.relu', 'layer1.0.relu.1')
    >>> [edgesim_name(k) for k in ("conv1_conv", "conv1_relu", "pool1_pool", "avg_pool",
    ...                             "predictions", "pool1_pad", "predictions_softmax")]
    ['conv1', 'relu', 'maxpool', 'avgpool', 'fc', None, None]
    """
    if keras in _FIXED:
        return _FIXED[keras]
    if m := _K_CONV.fullmatch(keras):
        stage, block, k = int(m[1]) - 1, int(m[2]) - 1, int(m[3])
        return f"layer{stage}.{block}.downsample.0" if k == 0 else f"layer{stage}.{block}.conv{k}"
    if m := _K_RELU.fullmatch(keras):
        stage, block, k = int(m[1]) - 1, int(m[2]) - 1, int(m[3])
        return f"layer{stage}.{block}.relu" + ("" if k == 1 else f".{k - 1}")
    if m := _K_BLOCK.fullmatch(keras):
        stage, block = int(m[1]) - 1, int(m[2]) - 1
        return f"layer{stage}.{block}." + ("add" if m[3] == "add" else "relu.2")
    raise ValueError(f"Keras layer {keras!r} is not a ResNet-50 layer name")


def stage_of(name: str) -> str:
    """The ResNet stage of an edgesim op or of an unmatched Keras layer name.

    >>> [stage_of(n) for n in ("conv1", "pool1_pad", "layer1.0.conv1", "layer4.2.add", "fc",
    ...                        "predictions_softmax", "(tail)")]
    ['stem', 'stem', 'conv2', 'conv5', 'head', 'head', 'head']
    """
    if m := re.match(r"layer(\d)\.", name):
        return f"conv{int(m[1]) + 1}"
    if name in ("conv1", "relu", "maxpool") or name.startswith(("conv1_", "pool1_")):
        return "stem"
    return "head"


# --------------------------------------------------------------------------- Vela

@dataclass(frozen=True)
class VelaOp:
    """One row of a Vela per-operator CSV (cycles; off-chip access cycles of its memory)."""

    original: str
    nng: str
    name: str
    cycles: int
    npu_cycles: int
    offchip_ac: int
    macs: int

    @property
    def keras(self) -> str:
        return keras_layer(self.original, self.nng, self.name)


@dataclass(frozen=True)
class VelaRun:
    """Vela's estimate of one system: its rows in execution order and its summary.csv totals."""

    key: str
    path: Path
    ops: tuple[VelaOp, ...]
    summary: dict[str, str]
    offchip_column: str

    @property
    def clock_hz(self) -> float:
        return float(self.summary["clock_MHz"]) * 1e6

    @property
    def cycles_total(self) -> int:
        return int(float(self.summary["cycles_total"]))

    @property
    def weight_bytes(self) -> int:
        return int(float(self.summary["offchip_weight_rd_B"]))

    @property
    def fm_bytes(self) -> int:
        return int(float(self.summary["offchip_fm_rd_B"])) + int(
            float(self.summary["offchip_fm_wr_B"]))


def _column(header: list[str], want: str, path: Path) -> str:
    """The header entry equal to ``want`` ignoring case, spaces and punctuation."""
    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())
    for h in header:
        if norm(h) == norm(want):
            return h
    raise ValueError(f"{path}: no column {want!r} (columns: {', '.join(header)})")


def _int(v: str) -> int:
    return round(float(v)) if v.strip() else 0


def read_summary(vela_dir: Path) -> list[dict[str, str]]:
    """The rows of ``summary.csv`` (one per system), keys and values stripped."""
    path = Path(vela_dir) / "summary.csv"
    with path.open(newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in
                csv.DictReader(f)]


def read_vela(vela_dir: Path, key: str) -> VelaRun:
    """Vela's per-operator CSV and summary row for system ``key`` (``u55`` or ``u65``).

    Every row is kept, repeated ones too (Vela splits the pad into four identical copies; the
    network total is the plain sum of ``Op Cycles``). The off-chip access-cycle column is the one
    of the memory summary.csv names under ``offchip`` (flash -> ``OffFlash AC``, DRAM ->
    ``DRAM AC``).
    """
    vela_dir = Path(vela_dir)
    tag = SYSTEMS[key][1]
    files = sorted(p for p in vela_dir.glob("*.csv") if tag in p.name.lower()
                   and p.name != "summary.csv")
    if len(files) != 1:
        raise ValueError(f"{vela_dir}: expected one per-operator CSV with {tag!r} in its name, "
                         f"found {[p.name for p in files]}")
    rows = [r for r in read_summary(vela_dir) if r.get("config", "").lower().startswith(tag)]
    if len(rows) != 1:
        raise ValueError(f"{vela_dir}/summary.csv: expected one row whose config starts with "
                         f"{tag!r}, found {len(rows)}")
    summary = rows[0]
    path = files[0]
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        body = [r for r in reader if any(c.strip() for c in r)]
    offchip = summary.get("offchip", "").lower()
    want = "OffFlash AC" if "flash" in offchip else "DRAM AC"
    cols = {k: header.index(_column(header, k, path)) for k in
            ("Original Operator", "NNG Operator", "Name", "Op Cycles", "NPU", "MAC Count", want)}
    ops = tuple(VelaOp(original=r[cols["Original Operator"]].strip(),
                       nng=r[cols["NNG Operator"]].strip(), name=r[cols["Name"]].strip(),
                       cycles=_int(r[cols["Op Cycles"]]), npu_cycles=_int(r[cols["NPU"]]),
                       offchip_ac=_int(r[cols[want]]), macs=_int(r[cols["MAC Count"]]))
                for r in body)
    return VelaRun(key, path, ops, summary, want)


# --------------------------------------------------------------------------- edgesim

@dataclass(frozen=True)
class EsOp:
    """One edgesim op of the reported inference: wall cycles, compute cycles, off-chip bytes."""

    name: str
    kind: str
    cycles: int
    compute_cycles: int
    weight_bytes: int
    fm_bytes: int
    macs: int


@dataclass(frozen=True)
class EsRun:
    """edgesim's reported (steady-state) inference on one config."""

    config: str
    clock_hz: float
    ops: tuple[EsOp, ...]
    cycles_total: int
    latency_s: float
    weight_bytes: int
    fm_bytes: int


def es_ops(layers, clock_hz: float, cycles_total: int) -> list[EsOp]:
    """edgesim's per-op rows of one inference (a ``Run.layers`` slice) with their wall cycles.

    An op's wall cycles are the end of its compute minus the end of the previous op's (the first
    from the inference's start), rounded at the boundaries so that they telescope: they add up
    to the last op's end; a ``(tail)`` row holds ``cycles_total`` minus that.

    >>> import pandas as pd
    >>> df = pd.DataFrame({"name": ["a", "b"], "kind": ["conv", "act"], "compute_end_s":
    ...     [1e-6, 1e-6], "compute_cycles": [400, 0], "weight_dram_bytes": [10, 0],
    ...     "act_dram_bytes": [0, 0], "macs": [99, 0]})
    >>> [(o.name, o.cycles) for o in es_ops(df, 1e9, 1003)]
    [('a', 1000), ('b', 0), ('(tail)', 3)]
    """
    out, prev = [], 0
    for r in layers.itertuples(index=False):
        end = round(float(r.compute_end_s) * clock_hz)
        out.append(EsOp(r.name, r.kind, end - prev, int(r.compute_cycles),
                        int(r.weight_dram_bytes), int(r.act_dram_bytes), int(r.macs)))
        prev = end
    if cycles_total != prev:
        out.append(EsOp("(tail)", "tail", cycles_total - prev, 0, 0, 0, 0))
    return out


def run_edgesim(config: str, model: str = MODEL) -> EsRun:
    """Simulate ``model`` on ``config`` for ``INPUTS`` inputs; the last inference's rows."""
    from edgesim import api
    r = api.run(config, model, inputs=INPUTS, per_layer=True)
    clock = float(r.hardware["clock_hz"])
    inf = r.inferences.iloc[-1]
    last = int(inf["input"])
    layers = r.layers[r.layers["input"] == last].sort_values("op")
    total = int(inf["cycles"])
    return EsRun(config, clock, tuple(es_ops(layers, clock, total)), total,
                 float(inf["latency_s"]), int(inf["weight_dram_bytes"]),
                 int(inf["act_dram_bytes"]))


# --------------------------------------------------------------------------- comparison

@dataclass
class Row:
    """One line of the comparison: an edgesim op with the Vela rows matched to it, or an op of
    one side only. Cycles in each side's own clock."""

    name: str                      # edgesim op name, or the Keras layer when Vela-only
    stage: str
    es: list[EsOp] = field(default_factory=list)
    vela: list[VelaOp] = field(default_factory=list)

    @property
    def keras(self) -> str:
        return ",".join(dict.fromkeys(v.keras for v in self.vela))

    @property
    def matched(self) -> bool:
        return bool(self.es) and bool(self.vela)

    @property
    def es_cycles(self) -> int:
        return sum(o.cycles for o in self.es)

    @property
    def vela_cycles(self) -> int:
        return sum(v.cycles for v in self.vela)


def match(es: EsRun, vela: VelaRun) -> list[Row]:
    """The comparison rows in edgesim's op order, Vela-only rows where Vela runs them.

    Every Vela row lands in exactly one Row: with the edgesim op ``edgesim_name`` gives, or in a
    Vela-only row named by its Keras layer (consecutive rows of one layer, e.g. the four pad
    copies or the softmax chain, share it). An edgesim name Vela's rows point to but the trace
    lacks is an error (the mapping or the model changed).
    """
    rows: list[Row] = []
    by_name: dict[str, Row] = {}
    for o in es.ops:
        row = Row(o.name, stage_of(o.name), es=[o])
        if o.name in by_name:
            raise ValueError(f"{es.config}: edgesim op name {o.name!r} appears twice")
        by_name[o.name] = row
        rows.append(row)
    only: dict[str, Row] = {}
    last_at = -1                   # where the previous matched Vela row sits in ``rows``
    for v in vela.ops:
        target = edgesim_name(v.keras)
        if target is None:
            row = only.get(v.keras)
            if row is None:
                row = only[v.keras] = Row(v.keras, stage_of(v.keras))
                last_at += 1
                rows.insert(last_at, row)
            row.vela.append(v)
            continue
        if target not in by_name:
            raise ValueError(f"Vela row {v.keras!r} maps to edgesim op {target!r}, which the "
                             f"trace of {es.config} does not have")
        by_name[target].vela.append(v)
        last_at = max(last_at, rows.index(by_name[target]))
    return rows


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def verdict(r: float, band: tuple[float, float]) -> str:
    return "PASS" if band[0] <= r <= band[1] else "FAIL"


@dataclass(frozen=True)
class Line:
    """One reported comparison (a stage, a total or a byte count) with its target."""

    system: str
    level: str                     # op | stage | total
    what: str                      # stage name, or latency | cycles | offchip_weight | ...
    edgesim: float
    vela: float
    unit: str                      # ms | cycles | B
    band: tuple[float, float] | None = None

    @property
    def ratio(self) -> float:
        return ratio(self.edgesim, self.vela)

    @property
    def verdict(self) -> str:
        return verdict(self.ratio, self.band) if self.band else ""


def compare(key: str, es: EsRun, vela: VelaRun, rows: list[Row]) -> list[Line]:
    """Stage and total lines for one system; stage cycles are the sums of their rows, compared
    as time (each side's cycles over its own clock), as the total is."""
    lines = []
    for st in STAGES:
        mine = [r for r in rows if r.stage == st]
        lines.append(Line(key, "stage", st,
                          sum(r.es_cycles for r in mine) / es.clock_hz * 1e3,
                          sum(r.vela_cycles for r in mine) / vela.clock_hz * 1e3,
                          "ms", TARGET_STAGE))
    lines += [
        Line(key, "total", "latency", es.latency_s * 1e3,
             vela.cycles_total / vela.clock_hz * 1e3, "ms", TARGET_TOTAL),
        Line(key, "total", "cycles", es.cycles_total, vela.cycles_total, "cycles"),
        Line(key, "total", "offchip_weight", es.weight_bytes, vela.weight_bytes, "B",
             TARGET_WEIGHTS),
        Line(key, "total", "offchip_fm", es.fm_bytes, vela.fm_bytes, "B"),
    ]
    return lines


# --------------------------------------------------------------------------- printing

def _n(x: float) -> str:
    return f"{x:,.0f}"


def _r(x: float) -> str:
    return "-" if x != x else f"{x:.2f}"


def print_ops(key: str, rows: list[Row], vela: VelaRun) -> None:
    print(f"\n### {key}: per operator (cycles: edgesim wall = compute + stall; Vela Op Cycles)")
    head = (f"{'edgesim op':24} {'Vela layer':22} {'n':>2} {'es cycles':>11} "
            f"{'es compute':>11} {'Vela cycles':>11} {'ratio':>6} {'es weight B':>12} "
            f"{'es fm B':>11} {'Vela ' + vela.offchip_column:>15}")
    print(head)
    print("-" * len(head))
    for r in rows:
        es_name = r.name if r.es else "(Vela only)"
        vk = r.keras if r.vela else "(edgesim only)"
        if not r.vela and r.es and r.es[0].kind == "tail":
            vk = "(after last op)"
        print(f"{es_name:24.24} {vk:22.22} {len(r.vela):>2} {_n(r.es_cycles):>11} "
              f"{_n(sum(o.compute_cycles for o in r.es)):>11} {_n(r.vela_cycles):>11} "
              f"{_r(ratio(r.es_cycles, r.vela_cycles)) if r.matched else '-':>6} "
              f"{_n(sum(o.weight_bytes for o in r.es)):>12} "
              f"{_n(sum(o.fm_bytes for o in r.es)):>11} "
              f"{_n(sum(v.offchip_ac for v in r.vela)):>15}")


def print_summary(key: str, es: EsRun, vela: VelaRun, rows: list[Row],
                  lines: list[Line]) -> None:
    cfg = SYSTEMS[key][0]
    sysname = f"{vela.summary.get('accel', key)} {vela.summary.get('mem_mode', '')}".strip()
    print(f"\n## {key}: Vela {sysname} ({vela.path.name}) vs edgesim {cfg} "
          f"({es.clock_hz / 1e6:g} MHz vs Vela {vela.clock_hz / 1e6:g} MHz), {MODEL}, "
          f"inference {INPUTS} of {INPUTS} (steady state)")
    unmatched_v = [r for r in rows if r.vela and not r.es]
    unmatched_e = [r for r in rows if r.es and not r.vela]
    vsum = sum(v.cycles for v in vela.ops)
    print(f"Vela rows: {len(vela.ops)}, Op Cycles sum {_n(vsum)} "
          f"{'=' if vsum == vela.cycles_total else '!='} summary.csv cycles_total "
          f"{_n(vela.cycles_total)}; edgesim ops: {len(es.ops)}, wall cycles sum "
          f"{_n(sum(o.cycles for o in es.ops))} = inference cycles {_n(es.cycles_total)}")
    print(f"matched edgesim ops: {sum(r.matched for r in rows)}; "
          f"Vela-only: " + (", ".join(f"{r.name} ({len(r.vela)} ops, {_n(r.vela_cycles)} cyc)"
                                      for r in unmatched_v) or "none")
          + "; edgesim-only: " + (", ".join(f"{r.name} ({_n(r.es_cycles)} cyc)"
                                           for r in unmatched_e) or "none"))
    print(f"{'':18} {'edgesim':>14} {'Vela':>14} {'ratio':>6}  target")
    for ln in lines:
        label = f"{ln.level} {ln.what}" + ("" if ln.unit == ln.what else f" {ln.unit}")
        fmt = (lambda x: f"{x:,.3f}") if ln.unit == "ms" else _n
        band = f"{ln.band[0]:g}-{ln.band[1]:g}x {ln.verdict}" if ln.band else ""
        print(f"{label:18} {fmt(ln.edgesim):>14} {fmt(ln.vela):>14} {_r(ln.ratio):>6}  {band}")


def csv_rows(key: str, rows: list[Row], lines: list[Line], vela: VelaRun) -> list[dict]:
    out = [{"system": key, "level": "op", "stage": r.stage, "name": r.name if r.es else "",
            "vela_layer": r.keras, "vela_ops": len(r.vela), "edgesim": r.es_cycles,
            "vela": r.vela_cycles, "ratio": ratio(r.es_cycles, r.vela_cycles)
            if r.matched and r.vela_cycles else "", "unit": "cycles", "edgesim_compute_cycles":
            sum(o.compute_cycles for o in r.es), "edgesim_weight_B":
            sum(o.weight_bytes for o in r.es), "edgesim_fm_B": sum(o.fm_bytes for o in r.es),
            "vela_offchip_ac": sum(v.offchip_ac for v in r.vela), "target": "", "verdict": ""}
           for r in rows]
    out.extend({"system": key, "level": ln.level,
                "stage": ln.what if ln.level == "stage" else "", "name": ln.what,
                "vela_layer": "", "vela_ops": "", "edgesim": ln.edgesim, "vela": ln.vela,
                "ratio": ln.ratio, "unit": ln.unit, "edgesim_compute_cycles": "",
                "edgesim_weight_B": "", "edgesim_fm_B": "", "vela_offchip_ac": "",
                "target": f"{ln.band[0]}-{ln.band[1]}" if ln.band else "",
                "verdict": ln.verdict} for ln in lines)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--system", choices=("u55", "u65", "both"), default="both")
    ap.add_argument("--per-op", action="store_true", help="print the per-operator table")
    ap.add_argument("--csv", metavar="OUT", help="write every row (ops, stages, totals) here")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a target fails (default: always exit 0)")
    ap.add_argument("--vela", metavar="DIR", default=os.environ.get("EDGESIM_VELA_DIR",
                                                                    str(DEFAULT_VELA)),
                    help=f"Vela's CSVs (default {DEFAULT_VELA})")
    ap.add_argument("--model", default=MODEL, help=argparse.SUPPRESS)
    ap.add_argument("--no-tiny", action="store_true",
                    help="leave out the MLPerf Tiny table (benchmarks/fidelity_tiny.py)")
    args = ap.parse_args(argv)
    keys = list(SYSTEMS) if args.system == "both" else [args.system]
    print(f"# edgesim vs Vela 5.2.0 ({args.vela}); ratios are edgesim / Vela; stage and latency "
          f"ratios compare time; edgesim reports inference {INPUTS} of {INPUTS} (steady state)")
    failed, table = [], []
    for key in keys:
        vela = read_vela(Path(args.vela), key)
        es = run_edgesim(SYSTEMS[key][0], args.model)
        rows = match(es, vela)
        lines = compare(key, es, vela, rows)
        if args.per_op:
            print_ops(key, rows, vela)
        print_summary(key, es, vela, rows, lines)
        failed += [f"{key} {ln.level} {ln.what}" for ln in lines if ln.verdict == "FAIL"]
        table += csv_rows(key, rows, lines, vela)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    print(f"\ntargets failed: {len(failed)}" + (f" ({', '.join(failed)})" if failed else ""))
    tiny_failed = 0
    if not args.no_tiny and args.system == "both":   # the MLPerf Tiny models, five systems
        import importlib.util
        spec = importlib.util.spec_from_file_location(
            "fidelity_tiny", Path(__file__).with_name("fidelity_tiny.py"))
        tiny = importlib.util.module_from_spec(spec)
        sys.modules["fidelity_tiny"] = tiny
        spec.loader.exec_module(tiny)
        tiny_dir = Path(args.vela) / "mlperf_tiny"
        if (tiny_dir / "summary.csv").exists() and tiny.DEFAULT_MODELS.is_dir():
            print()
            lines, tiny_failed = tiny.table(tiny.cases(tiny_dir, tiny.DEFAULT_MODELS))
            print("\n".join(lines))
        silicon_failed = _silicon_table()
        tiny_failed += silicon_failed
    return 1 if args.check and (failed or tiny_failed) else 0


def _silicon_table() -> int:
    """Print ``benchmarks/fidelity_silicon.py``'s table (the Cortex-M7 board's two MLPerf Tiny
    rows); the number of failed targets (0 when the silicon CSV is absent)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "fidelity_silicon", Path(__file__).with_name("fidelity_silicon.py"))
    silicon = importlib.util.module_from_spec(spec)
    sys.modules["fidelity_silicon"] = silicon
    spec.loader.exec_module(silicon)
    path = silicon.DEFAULT_SILICON / silicon.CSV_NAME
    if not path.exists() or not silicon.DEFAULT_MODELS.is_dir():
        return 0
    rows = silicon.read_silicon(path)
    runs = [silicon.run(s, silicon.DEFAULT_MODELS, silicon.CONFIG) for s in rows]
    lines, failed = silicon.table(rows, runs, silicon.CONFIG)
    print()
    print("\n".join(lines))
    return failed


if __name__ == "__main__":
    sys.exit(main())
