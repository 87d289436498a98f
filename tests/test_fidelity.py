"""benchmarks/fidelity.py: Vela's CSVs read, Keras <-> torch names matched, the comparison summed.

These tests check that the comparison is computed correctly, never the calibration targets
(that is the benchmark's report). Vela's files are the shipped ones in
``../shared/calibration/vela`` beside the checkout.
"""

from __future__ import annotations

import csv
import doctest
import importlib.util
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "fidelity.py"
VELA = REPO.parent / "shared" / "calibration" / "vela"

needs_vela = pytest.mark.skipif(not (VELA / "summary.csv").exists(),
                                reason=f"Vela's calibration CSVs are not at {VELA}")


def _load(name: str, path: Path):
    """A benchmark script as a module (``name`` in ``sys.modules``, as the scripts find it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


fid = _load("fidelity", SCRIPT)


def test_doctests():
    res = doctest.testmod(fid)
    assert res.attempted > 0
    assert res.failed == 0


@pytest.mark.parametrize(("keras", "torch_name"), [
    ("conv1_conv", "conv1"),
    ("conv1_relu", "relu"),
    ("pool1_pool", "maxpool"),
    ("conv2_block1_0_conv", "layer1.0.downsample.0"),
    ("conv2_block1_1_conv", "layer1.0.conv1"),
    ("conv3_block4_2_conv", "layer2.3.conv2"),
    ("conv4_block6_3_conv", "layer3.5.conv3"),
    ("conv5_block3_add", "layer4.2.add"),
    ("conv5_block3_out", "layer4.2.relu.2"),
    ("conv4_block2_1_relu", "layer3.1.relu"),
    ("conv4_block2_2_relu", "layer3.1.relu.1"),
    ("avg_pool", "avgpool"),
    ("predictions", "fc"),
    ("pool1_pad", None),
    ("predictions_softmax", None),
])
def test_edgesim_name(keras, torch_name):
    assert fid.edgesim_name(keras) == torch_name


def test_edgesim_name_rejects_unknown_layer():
    with pytest.raises(ValueError, match="conv9_foo"):
        fid.edgesim_name("conv9_foo")


def test_keras_layer_rejects_unknown_operator():
    with pytest.raises(ValueError, match="Gather"):
        fid.keras_layer("Gather", "Gather", "x")


@needs_vela
@pytest.mark.parametrize("key", ["u55", "u65"])
def test_read_vela_keeps_every_row_and_matches_summary(key):
    v = fid.read_vela(VELA, key)
    with v.path.open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert len(v.ops) == len(raw)                  # repeated pad rows are kept, not deduplicated
    assert sum(o.cycles for o in v.ops) == v.cycles_total       # Vela: total = plain sum
    assert sum(o.npu_cycles for o in v.ops) == int(v.summary["cycles_npu"])
    assert sum(o.offchip_ac for o in v.ops) == int(v.summary["cycles_offchip"])
    assert sum(o.macs for o in v.ops) == int(v.summary["macs"])
    assert v.offchip_column == {"u55": "OffFlash AC", "u65": "DRAM AC"}[key]
    assert v.clock_hz == {"u55": 500e6, "u65": 1000e6}[key]
    assert v.weight_bytes == int(v.summary["offchip_weight_rd_B"])
    assert v.fm_bytes == int(v.summary["offchip_fm_rd_B"]) + int(v.summary["offchip_fm_wr_B"])


@needs_vela
@pytest.mark.parametrize("key", ["u55", "u65"])
def test_every_vela_row_has_a_keras_layer(key):
    v = fid.read_vela(VELA, key)
    layers = Counter(o.keras for o in v.ops)
    assert layers["pool1_pad"] == 4
    assert layers["avg_pool"] == 2                  # MEAN -> depthwise conv + MUL
    assert layers["predictions"] == 1
    convs = [o for o in v.ops if o.nng in ("Conv2D", "FullyConnected")]
    assert len(convs) == 53 + 1                      # 53 convs (4 of them projections) + FC


def test_es_ops_rows_add_up_to_the_inference():
    df = pd.DataFrame({"name": ["a", "b", "c"], "kind": ["conv", "act", "pool"],
                       "compute_end_s": [1.2345e-6, 1.2345e-6, 3.5e-6],
                       "compute_cycles": [1000, 0, 2000], "weight_dram_bytes": [5, 0, 0],
                       "act_dram_bytes": [1, 0, 2], "macs": [7, 0, 0]})
    ops = fid.es_ops(df, 1e9, 3600)
    assert [o.name for o in ops] == ["a", "b", "c", "(tail)"]
    assert sum(o.cycles for o in ops) == 3600
    assert [o.cycles for o in ops[:3]] == [1234, 0, 3500 - 1234]
    assert fid.es_ops(df, 1e9, 3500)[-1].name == "c"   # no tail when the last op ends it


@pytest.fixture(scope="module")
def r50v1_ops():
    from edgesim import api
    w = api.workload(fid.MODEL)
    assert len(w.paths) == 1
    return w.paths[0].ops


@needs_vela
@pytest.mark.slow
@pytest.mark.parametrize("key", ["u55", "u65"])
def test_vela_conv_fc_rows_map_one_to_one_onto_the_trace(key, r50v1_ops):
    """Every Vela conv/FC row names exactly one edgesim conv/linear op, and every edgesim
    conv/linear op is named by exactly one such row."""
    v = fid.read_vela(VELA, key)
    kinds = {op.name: op.kind for op in r50v1_ops}
    names = Counter(op.name for op in r50v1_ops)
    targets = [fid.edgesim_name(o.keras) for o in v.ops
               if o.nng in ("Conv2D", "FullyConnected")]
    assert all(t is not None and names[t] == 1 for t in targets), targets
    assert all(kinds[t] in ("conv", "linear") for t in targets)
    assert Counter(targets) == Counter(n for n, k in kinds.items() if k in ("conv", "linear"))
    # every other Vela row maps to an op the trace has, or is one of Vela's own
    others = {fid.edgesim_name(o.keras) for o in v.ops} - set(targets)
    assert others - {None} <= set(names)


@needs_vela
@pytest.mark.slow
@pytest.mark.parametrize("key", ["u55", "u65"])
def test_match_places_every_row_once(key):
    vela = fid.read_vela(VELA, key)
    es = fid.run_edgesim(fid.SYSTEMS[key][0])
    rows = fid.match(es, vela)
    assert sum(len(r.vela) for r in rows) == len(vela.ops)
    assert [o for r in rows for o in r.es] == list(es.ops)   # edgesim order kept, each once
    assert sum(r.es_cycles for r in rows) == es.cycles_total
    assert sum(r.vela_cycles for r in rows) == vela.cycles_total
    assert {r.name for r in rows if r.vela and not r.es} == {"pool1_pad", "predictions_softmax"}
    lines = fid.compare(key, es, vela, rows)
    stages = [ln for ln in lines if ln.level == "stage"]
    assert [ln.what for ln in stages] == list(fid.STAGES)
    assert sum(ln.vela for ln in stages) == pytest.approx(vela.cycles_total / vela.clock_hz * 1e3)
    assert sum(ln.edgesim for ln in stages) == pytest.approx(es.cycles_total / es.clock_hz * 1e3)


@needs_vela
@pytest.mark.slow
def test_script_end_to_end_u55(tmp_path):
    out = tmp_path / "fid.csv"
    p = subprocess.run([sys.executable, str(SCRIPT), "--system", "u55", "--per-op",
                        "--csv", str(out), "--vela", str(VELA)],
                       capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stderr               # a report: exit 0 whatever the ratios
    assert "stage conv2" in p.stdout
    assert "total latency" in p.stdout
    df = pd.read_csv(out)
    assert set(df.system) == {"u55"}
    ops, tot = df[df.level == "op"], df[df.level == "total"].set_index("name")
    assert ops.edgesim.sum() == tot.loc["cycles", "edgesim"]
    assert ops.vela.sum() == tot.loc["cycles", "vela"]
    assert ops.vela_ops.sum() == len(fid.read_vela(VELA, "u55").ops)
    summary = {r["config"][:3]: r for r in fid.read_summary(VELA)}["u55"]
    assert tot.loc["cycles", "vela"] == int(summary["cycles_total"])
    assert tot.loc["offchip_weight", "vela"] == int(summary["offchip_weight_rd_B"])
    assert ops.edgesim_weight_B.sum() == tot.loc["offchip_weight", "edgesim"]
    assert ops.edgesim_fm_B.sum() == tot.loc["offchip_fm", "edgesim"]
    for st, grp in ops.groupby("stage"):
        stage = df[(df.level == "stage") & (df.name == st)].iloc[0]
        assert grp.vela.sum() / 500e6 * 1e3 == pytest.approx(stage.vela)
    # --check turns a failed target into a non-zero exit, and only then
    failed = (df.verdict == "FAIL").any()
    c = subprocess.run([sys.executable, str(SCRIPT), "--system", "u55", "--check",
                        "--vela", str(VELA)], capture_output=True, text=True, timeout=600,
                       check=False)
    assert c.returncode == (1 if failed else 0), c.stderr


# --------------------------------------------------------------------------- MLPerf Tiny

TINY = REPO / "benchmarks" / "fidelity_tiny.py"
MODELS = REPO.parent / "shared" / "models" / "mlperf_tiny"
needs_tiny = pytest.mark.skipif(not (VELA / "mlperf_tiny" / "summary.csv").exists()
                                or not MODELS.is_dir(),
                                reason="the MLPerf Tiny models and Vela CSVs are not in ../shared")


tiny = _load("fidelity_tiny", TINY)


def test_tiny_doctests():
    assert doctest.testmod(tiny).failed == 0


@needs_tiny
def test_every_vela_operator_of_the_tiny_models_is_matched_once():
    """Each Vela operator group lands on exactly one edgesim op (by the TFLite tensor it
    writes), and both sides' per-op cycles add up to their totals."""
    cases = tiny.cases(VELA / "mlperf_tiny", MODELS)
    assert len(cases) >= 16               # 4 models x the systems with a shipped config
    for c in cases:
        assert not [ln for ln in c.lines if ln.name.startswith("vela:")], (c.model, c.system)
        assert sum(ln.es for ln in c.lines) == c.es_cycles
        assert sum(ln.vela for ln in c.lines) == c.vela_cycles
