"""edgesim beside Arm's Vela on the four MLPerf Tiny int8 models, five Ethos-U systems, per op,
per op class and in total, imported from the very ``.tflite`` files Vela compiled.

    python benchmarks/fidelity_tiny.py [--per-op] [--csv OUT] [--vela DIR] [--models DIR]

Vela 5.2.0's estimates live in ``../shared/calibration/vela/mlperf_tiny/`` (one per-operator CSV
per model and system, ``summary.csv`` for totals); the models in ``../shared/models/mlperf_tiny/``.
edgesim imports each ``.tflite`` (``edgesim.frontends.tflite``) and runs one inference from
a cold cache on the config that states the system: Vela estimates one inference and carries
nothing over (the tiny models' weights would otherwise stay in the cache).
``benchmarks/fidelity.py`` prints this table after its ResNet-50 one.

Matching: Vela's rows are grouped into the file's operators (a row's ``Name`` is the TFLite
output tensor of its operator; fused ReLU rows and the ~29 rows of a lowered softmax join the
operator they belong to); a group matches the edgesim op whose ``meta["tensor"]`` is one of its
names. Op classes (issue 19): ``stem`` (the first conv, on at most 4 input channels), ``conv1x1``,
``convkxk``, ``depthwise``, ``fc``, ``eltwise``, ``pool``, ``other`` (softmax, pad, ...).
Targets: each total 0.8-1.25x of Vela, each op class 0.67-1.5x. The script is a report: it
exits 0 unless ``--check`` is given and a target fails.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VELA = ROOT.parent / "shared" / "calibration" / "vela" / "mlperf_tiny"
DEFAULT_MODELS = ROOT.parent / "shared" / "models" / "mlperf_tiny"

#: Vela's model name -> the file in ../shared/models/mlperf_tiny (its README).
MODELS = {"pretrainedResnet_quant": "ic_resnet8_int8",
          "kws_ref_model": "kws_dscnn_int8",
          "vww_96_int8": "vww_mobilenetv1_025_96_int8",
          "ad01_int8": "ad_autoencoder_int8"}
#: Vela's system -> the edgesim config that states it.
SYSTEMS = {"u55-128_shared": "ethos_u55",
           "u65-512_dedicated": "ethos_u65",
           "u65-512_dedicated384K": "ethos_u65_384k",
           "u65-512_edge8GBps512K": "ethos_u65_edge",
           "u85-1024_edge8GBps512K": "ethos_u85_edge"}
CLASSES = ("stem", "conv1x1", "convkxk", "depthwise", "fc", "eltwise", "pool", "other")
TARGET_TOTAL = (0.8, 1.25)
TARGET_CLASS = (0.67, 1.5)
#: One inference, nothing on chip before it: what Vela estimates (it keeps nothing across
#: inferences; edgesim's steady state with weights kept in the cache is its own question).
INPUTS = 1


def _fidelity():
    """The sibling ``fidelity.py`` (its CSV readers and per-op wall cycles)."""
    if "fidelity" in sys.modules:
        return sys.modules["fidelity"]
    spec = importlib.util.spec_from_file_location("fidelity", Path(__file__).with_name(
        "fidelity.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fidelity"] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- Vela

@dataclass
class Group:
    """Vela's rows of one file operator, in execution order."""

    original: str
    names: list[str] = field(default_factory=list)
    cycles: int = 0
    npu: int = 0
    macs: int = 0
    rows: int = 0


def groups(path: Path) -> list[Group]:
    """Vela's per-operator CSV as file operators: a row starts a new group unless it is a fused
    activation (NNG ``Relu``...) of the operator before, or one more row of a lowered operator
    (``Softmax``) whose ``Original Operator`` it shares.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.csv"
    >>> _ = p.write_text("Original Operator,NNG Operator,Op Cycles,NPU,MAC Count,Name\\n"
    ...     "Conv2D,Conv2D,10,9,100,a\\nConv2D,Relu,0,0,0,a\\nConv2D,Conv2D,5,5,50,b\\n"
    ...     "Softmax,MaxPool,3,3,0,s0\\nSoftmax,Sub,2,2,0,s1\\n")
    >>> [(g.original, g.names, g.cycles) for g in groups(p)]
    [('Conv2D', ['a'], 10), ('Conv2D', ['b'], 5), ('Softmax', ['s0', 's1'], 5)]
    """
    with path.open(newline="") as f:
        rows = [{k.strip(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
    out: list[Group] = []
    for r in rows:
        orig, nng, name = r["Original Operator"], r["NNG Operator"], r["Name"]
        prev = out[-1] if out else None
        joins = prev is not None and prev.original == orig and (
            name in prev.names or orig in ("Softmax", "Mean") or nng in ("Relu", "Relu6",
                                                                          "ReluN1To1"))
        if not joins:
            prev = Group(orig)
            out.append(prev)
        if name not in prev.names:
            prev.names.append(name)
        prev.cycles += round(float(r["Op Cycles"] or 0))
        prev.npu += round(float(r["NPU"] or 0))
        prev.macs += round(float(r["MAC Count"] or 0))
        prev.rows += 1
    return out


# --------------------------------------------------------------------------- edgesim

def op_class(op, first_mac: bool) -> str:
    """The class of an edgesim ``LayerOp`` (see the module docstring)."""
    dims = op.dims
    if op.kind == "conv":
        groups_ = int(op.meta.get("groups", 1))
        if first_mac and dims.get("C", 0) * groups_ <= 4:
            return "stem"
        if groups_ > 1:
            return "depthwise"
        return "conv1x1" if dims.get("R", 1) * dims.get("S", 1) == 1 else "convkxk"
    if op.kind in ("linear", "matmul"):
        return "fc"
    if op.kind in ("eltwise", "pool"):
        return op.kind
    return "other"


def vela_class(original: str) -> str:
    """The class of a Vela-only group, from its TFLite operator."""
    return {"Add": "eltwise", "Mul": "eltwise", "Sub": "eltwise", "AvgPool": "pool",
            "MaxPool": "pool", "Mean": "pool", "FullyConnected": "fc"}.get(original, "other")


@dataclass
class Line:
    """One compared operator: edgesim's wall cycles and Vela's op cycles (each side's clock)."""

    name: str
    cls: str
    es: int = 0
    vela: int = 0
    matched: bool = False


@dataclass
class Case:
    """One model on one system: its operators and totals."""

    model: str
    system: str
    config: str
    lines: list[Line]
    es_cycles: int
    vela_cycles: int
    es_clock: float
    vela_clock: float
    es_weight_bytes: int
    vela_weight_bytes: int
    es_fm_bytes: int
    vela_fm_bytes: int

    def time(self, side: str, cls: str | None = None) -> float:
        """Seconds on ``side`` (``es`` / ``vela``), of one class or in total."""
        clock = self.es_clock if side == "es" else self.vela_clock
        if cls is None:
            return (self.es_cycles if side == "es" else self.vela_cycles) / clock
        return sum(getattr(ln, side) for ln in self.lines if ln.cls == cls) / clock


def run_case(model: str, system: str, vela_dir: Path, models_dir: Path) -> Case:
    """edgesim and Vela for one model on one system."""
    from edgesim import api
    fid = _fidelity()
    config = SYSTEMS[system]
    path = models_dir / f"{MODELS[model]}.tflite"
    w = api.workload(str(path))
    ops = {op.name: op for op in w.paths[0].ops}
    first = next(op.name for op in w.paths[0].ops if op.macs)
    r = api.run(config, str(path), inputs=INPUTS, per_layer=True)
    clock = float(r.hardware["clock_hz"])
    inf = r.inferences.iloc[-1]
    layers = r.layers[r.layers["input"] == int(inf["input"])].sort_values("op")
    es = fid.es_ops(layers, clock, int(inf["cycles"]))
    (summary,) = [s for s in fid.read_summary(vela_dir)
                  if s["model"] == model and s["config"] == system]
    vgroups = groups(vela_dir / f"{model}__{system}.csv")
    by_tensor = {}
    for g in vgroups:
        for n in g.names:
            by_tensor.setdefault(n, g)
    lines, used = [], set()
    for o in es:
        op = ops.get(o.name)
        if op is None:       # the (tail) row: the output write Vela counts in the last op
            last = next((ln for ln in reversed(lines) if ln.matched), None)
            if last is not None:
                last.es += o.cycles
            else:
                lines.append(Line(o.name, "other", o.cycles))
            continue
        tensor = op.meta.get("tensor")
        g = by_tensor.get(tensor)
        cls = op_class(op, op.name == first)
        if g is not None and id(g) not in used:
            used.add(id(g))
            lines.append(Line(o.name, cls, o.cycles, g.cycles, True))
        else:
            lines.append(Line(o.name, cls, o.cycles))
    lines += [Line(f"vela:{g.original}:{g.names[-1][-40:]}", vela_class(g.original), 0,
                   g.cycles) for g in vgroups if id(g) not in used]
    return Case(MODELS[model], system, config, lines, int(inf["cycles"]),
                round(float(summary["cycles_total"])), clock,
                float(summary["clock_MHz"]) * 1e6, int(inf["weight_dram_bytes"]),
                round(float(summary["offchip_weight_rd_B"])), int(inf["act_dram_bytes"]),
                round(float(summary["offchip_fm_rd_B"])) + round(float(
                    summary["offchip_fm_wr_B"])))


def cases(vela_dir: Path = DEFAULT_VELA, models_dir: Path = DEFAULT_MODELS) -> list[Case]:
    """Every model x system in ``vela_dir/summary.csv``, in its order."""
    from edgesim.config import shipped_configs
    fid = _fidelity()
    shipped = {p.stem for p in shipped_configs()}
    out = []
    for s in fid.read_summary(vela_dir):
        if s["model"] in MODELS and s["config"] in SYSTEMS:
            if SYSTEMS[s["config"]] not in shipped:
                print(f"# {s['model']} on {s['config']}: no config {SYSTEMS[s['config']]} "
                      "shipped; left out", file=sys.stderr)
                continue
            out.append(run_case(s["model"], s["config"], vela_dir, models_dir))
    return out


# --------------------------------------------------------------------------- report

def _ratio(a: float, b: float) -> float:
    if not b:
        return float("inf") if a else float("nan")
    return a / b


def _mark(r: float, band: tuple[float, float]) -> str:
    return "PASS" if band[0] <= r <= band[1] else "FAIL"


def table(all_cases: list[Case]) -> tuple[list[str], int]:
    """The report lines (totals, then op classes per case) and the number of failed targets."""
    lines = ["# MLPerf Tiny: edgesim / Vela latency of one cold inference, each side at its "
             "own clock",
             f"{'model':30s} {'system':24s} {'config':16s} {'total':>6s} "
             + " ".join(f"{c:>9s}" for c in CLASSES) + "  weightB  fmB"]
    failed = 0
    for c in all_cases:
        total = _ratio(c.time("es"), c.time("vela"))
        failed += _mark(total, TARGET_TOTAL) == "FAIL"
        cells = []
        for cls in CLASSES:
            v = c.time("vela", cls)
            e = c.time("es", cls)
            if v == 0 and e == 0:
                cells.append(f"{'-':>9s}")
                continue
            r = _ratio(e, v)
            bad = _mark(r, TARGET_CLASS) == "FAIL"
            failed += bad
            cells.append(f"{r:8.2f}{'!' if bad else ' '}")
        lines.append(f"{c.model:30s} {c.system:24s} {c.config:16s} {total:5.2f}"
                     f"{'!' if _mark(total, TARGET_TOTAL) == 'FAIL' else ' '}"
                     + " ".join(cells)
                     + f"  {_ratio(c.es_weight_bytes, c.vela_weight_bytes):5.2f}"
                     f"  {_ratio(c.es_fm_bytes, c.vela_fm_bytes):5.2f}")
    n = len(all_cases)
    ok = sum(TARGET_TOTAL[0] <= _ratio(c.time("es"), c.time("vela")) <= TARGET_TOTAL[1]
             for c in all_cases)
    lines.append(f"# totals within {TARGET_TOTAL[0]}-{TARGET_TOTAL[1]}x: {ok} of {n}; "
                 f"! marks a total outside it or a class outside {TARGET_CLASS[0]}-"
                 f"{TARGET_CLASS[1]}x; weightB / fmB: off-chip weight / feature-map bytes")
    return lines, failed


def per_op(c: Case) -> list[str]:
    """The operators of one case: edgesim and Vela cycles and their ratio."""
    out = [f"## {c.model} on {c.system} ({c.config})",
           f"{'op':44s} {'class':10s} {'edgesim cyc':>12s} {'Vela cyc':>10s} {'ratio':>6s}"]
    for ln in c.lines:
        r = _ratio(ln.es / c.es_clock, ln.vela / c.vela_clock) if ln.matched else float("nan")
        out.append(f"{ln.name[:44]:44s} {ln.cls:10s} {ln.es:12,d} {ln.vela:10,d} {r:6.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vela", type=Path, default=DEFAULT_VELA)
    ap.add_argument("--models", type=Path, default=DEFAULT_MODELS)
    ap.add_argument("--per-op", action="store_true")
    ap.add_argument("--csv", type=Path, help="write one row per case and op class here")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target fails")
    a = ap.parse_args(argv)
    all_cases = cases(a.vela, a.models)
    lines, failed = table(all_cases)
    print("\n".join(lines))
    if a.per_op:
        for c in all_cases:
            print()
            print("\n".join(per_op(c)))
    if a.csv:
        with a.csv.open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["model", "system", "config", "class", "edgesim_s", "vela_s", "ratio"])
            for c in all_cases:
                for cls in (*CLASSES, None):
                    e, v = c.time("es", cls), c.time("vela", cls)
                    if e or v:
                        wr.writerow([c.model, c.system, c.config, cls or "total",
                                     f"{e:.9g}", f"{v:.9g}", f"{_ratio(e, v):.4f}"])
    return 1 if a.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
