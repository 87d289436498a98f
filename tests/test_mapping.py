"""Array mapping: folds, the vector unit, the SRAM port cap, per-op utilisation."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from edgesim.sim import simulate
from edgesim.sim.mapping import Array, mac_cycles, op_cycles, port_cycles, utilisation
from edgesim.testing import tiny_config, tiny_workload
from edgesim.workload import LayerOp, WeightBlock, Workload

WS = Array(rows=8, cols=8, dataflow="weight_stationary", vector_rate=8, port_bytes=0)
OS = Array(rows=2, cols=8, dataflow="output_stationary", vector_rate=8, port_bytes=0)


def _conv(k, c, r, p, *, groups=1, macs=None, in_bytes=0, out_bytes=0):
    shape = (("N", 1), ("K", k), ("C", c), ("R", r), ("S", r), ("P", p), ("Q", p))
    n = macs if macs is not None else k * c * r * r * p * p
    return LayerOp("c", "conv", ("w",), in_bytes, out_bytes, in_bytes + out_bytes, n, n,
                   "int8", shape, {"groups": groups})


def test_one_fold_closed_form():
    # C*R*S = 8 <= 8 rows, K = 8 <= 8 columns: one fold = 8 (weight load, one row per cycle)
    # + 8 + 8 - 2 (fill, drain) + 100 pixels streamed = 122
    assert mac_cycles(WS, {"N": 1, "K": 8, "C": 8, "R": 1, "S": 1, "P": 10, "Q": 10},
                      64, 6400) == 122


def test_conv_folds_counted_by_hand():
    # 3x3 conv, C 16, K 20, 7x7 out: rows hold C*R*S = 144 -> 18 folds; columns K = 20 -> 3;
    # 54 folds x (8 + 14 + 49) = 3834 cycles
    assert mac_cycles(WS, {"K": 20, "C": 16, "R": 3, "S": 3, "P": 7, "Q": 7}, 64,
                      20 * 144 * 49) == 54 * (8 + 14 + 49)
    # output-stationary 2 x 8 array of 8-MAC PEs (peak 128): 49 pixels -> 25 row folds,
    # K 20 -> 3 column folds; each streams 9 taps x ceil(16/8) = 18 cycles + 8 fill/drain
    assert mac_cycles(OS, {"K": 20, "C": 16, "R": 3, "S": 3, "P": 7, "Q": 7}, 128,
                      20 * 144 * 49) == 75 * (18 + 8)
    # a 3-channel tap fills 3 of a PE's 8 lanes: 49 taps x 1 cycle each
    assert mac_cycles(OS, {"K": 8, "C": 3, "R": 7, "S": 7, "P": 1, "Q": 2}, 128,
                      8 * 147 * 2) == 1 * (49 + 8)


def test_fc_at_batch_one_is_weight_load_bound():
    # FC 2048 -> 1000, M = 1: 256 row folds x 125 column folds, each 8 + 14 + 1 cycles;
    # the weight loads alone (8 per fold) exceed the 32,000-cycle MAC bound 8x
    folds = 256 * 125
    cycles = mac_cycles(WS, {"M": 1, "N": 1000, "K": 2048}, 64, 2048 * 1000)
    assert cycles == folds * (8 + 14 + 1)
    assert folds * 8 > 8 * math.ceil(2048 * 1000 / 64) - 1
    # a larger batch amortises the loads: M = 256 streams 256 pixels per fold
    assert mac_cycles(WS, {"M": 256, "N": 1000, "K": 2048}, 64, 256 * 2048 * 1000) == \
        folds * (8 + 14 + 256)


def test_pipelined_folds_hide_their_fixed_cost_under_streaming():
    # the OS 2 x 8 array, 1x1 conv C 64 -> K 64 over 56 x 56: 3136 pixels / 2 rows = 1568 row
    # folds x 64 / 8 = 8 column folds = 12,544 folds, each streaming ceil(64 / 8) = 8 cycles
    # with 8 cycles of fill and drain: 12,544 x 16 = 200,704 unpipelined. Pipelined, the
    # first fold shows its 8 + 8, the rest max(8, 8) each: 16 + 12,543 x 8 = 100,360
    # (Vela: 101,952 cycles for this layer on Ethos-U55-128, calibration/vela).
    dims = {"K": 64, "C": 64, "R": 1, "S": 1, "P": 56, "Q": 56}
    macs = 64 * 64 * 56 * 56
    assert mac_cycles(OS, dims, 128, macs) == 12_544 * 16
    piped = Array(OS.rows, OS.cols, OS.dataflow, OS.vector_rate, OS.port_bytes, True)
    assert mac_cycles(piped, dims, 128, macs) == 16 + 12_543 * 8
    # a batch-1 FC stays weight-load bound: 256 x 125 folds whose fixed 8 + 14 exceeds the
    # 1-cycle stream: 22 + 1 + (32,000 - 1) x 22
    ws = Array(WS.rows, WS.cols, WS.dataflow, WS.vector_rate, WS.port_bytes, True)
    assert mac_cycles(ws, {"M": 1, "N": 1000, "K": 2048}, 64, 2048 * 1000) == \
        22 + 1 + (256 * 125 - 1) * 22
    # one fold: nothing to overlap, the same as unpipelined
    one = {"N": 1, "K": 8, "C": 8, "R": 1, "S": 1, "P": 10, "Q": 10}
    assert mac_cycles(ws, one, 64, 6400) == mac_cycles(WS, one, 64, 6400) == 122


def test_depthwise_goes_to_the_vector_unit():
    # 3x3 depthwise, 32 channels, 10x10 out: 32*100 outputs x 9 MACs = 28,800 MACs at 8 per
    # cycle on the vector unit = 3600 cycles (not folds on the array)
    op = _conv(32, 1, 3, 10, groups=32)
    assert op_cycles(WS, op, 64, op.macs, 288, 8) == 3600
    # a 2x faster vector unit halves it: the array's folds play no part (never below the
    # MAC roofline, 28,800 / 64 = 450)
    fast = Array(8, 8, "weight_stationary", 16, 0)
    assert op_cycles(fast, op, 64, op.macs, 288, 8) == 1800


def test_eltwise_add_costs_its_input_elements():
    # add of two 1000-element int8 tensors reads 2000 elements: ceil(2000 / 3) cycles at 3/cycle
    add = LayerOp("add", "eltwise", (), 2000, 1000, 3000, 0, 0, "int8")
    assert op_cycles(Array(8, 8, "weight_stationary", 3, 0), add, 64, 0, 0, 8) == 667
    # a fused activation is free
    relu = LayerOp("relu", "act", (), 0, 0, 0, 0, 0, "int8", fused=True)
    assert op_cycles(WS, relu, 64, 0, 0, 8) == 0


def test_port_cap_binds_when_the_port_is_narrow():
    # one fold streaming 100 pixels: 122 cycles; reads 800 B in + 64 B weights, writes 800 B:
    # 1664 B over a 1 B/cycle port = 1664 cycles; over 64 B/cycle (26) the array binds
    op = _conv(8, 8, 1, 10, in_bytes=800, out_bytes=800)
    narrow = Array(8, 8, "weight_stationary", 8, 1)
    wide = Array(8, 8, "weight_stationary", 8, 64)
    assert port_cycles(narrow, 1664) == 1664
    assert op_cycles(narrow, op, 64, op.macs, 64, 8) == 1664
    assert op_cycles(wide, op, 64, op.macs, 64, 8) == 122
    # through the config: sram.port_width caps the tiny workload's ops
    base = simulate(tiny_config(), tiny_workload()).inferences.compute_cycles[0]
    capped = simulate(tiny_config(overrides=["sram.port_width=1 B"]),
                      tiny_workload()).inferences.compute_cycles[0]
    assert capped > base


_dims = st.fixed_dictionaries({
    "K": st.integers(1, 300), "C": st.integers(1, 300), "R": st.sampled_from([1, 3, 5, 7]),
    "P": st.integers(1, 60), "groups": st.sampled_from([1, 1, 2, 4])})
_arrays = st.builds(Array, rows=st.integers(1, 64), cols=st.integers(1, 64),
                    dataflow=st.sampled_from(["weight_stationary", "output_stationary"]),
                    vector_rate=st.floats(0.5, 128), port_bytes=st.integers(0, 64),
                    pipelined=st.booleans())


@settings(max_examples=200, deadline=None)
@given(d=_dims, a=_arrays, pack=st.sampled_from([1, 2, 8]), slow=st.booleans(),
       skip=st.floats(0.0, 1.0))
def test_util_at_most_one_and_cycles_at_least_roofline(d, a, pack, slow, skip):
    # util = MACs / (cycles x peak) <= 1 for any shape, array, precision packing and
    # zero-skipping: cycles never fall below the MAC roofline ceil(MACs / peak)
    peak = max(1, a.rows * a.cols // 4) if slow else a.rows * a.cols * pack
    k = d["K"] * d["groups"]
    op = _conv(k, d["C"], d["R"], d["P"], groups=d["groups"], in_bytes=100, out_bytes=100)
    executed = int(op.macs * skip)
    cycles = op_cycles(a, op, peak, executed, 50, 8)
    assert cycles >= math.ceil(executed / peak)
    assert utilisation(executed, cycles, peak) <= 1.0


def test_latency_never_below_mac_roofline_and_util_column():
    # per-layer util = macs / (compute_cycles x 64) for MAC ops, 0.0 for the ReLU
    r = simulate(tiny_config(), tiny_workload(inputs=2), per_layer=True)
    rows = r.layers[r.layers.input == 0]
    assert list(rows.util) == [64_000 / (1022 * 64), 0.0, 2_000 / (736 * 64)]
    for row in r.inferences.itertuples():
        assert row.latency_s >= row.macs / (64 * 1e9)
        assert row.cycles == row.compute_cycles + row.stall_cycles


def test_zero_skipping_shortens_only_the_stream():
    # half the MACs skipped: the 100-pixel stream halves (50), load and fill (22) stay
    d = {"K": 8, "C": 8, "R": 1, "S": 1, "P": 10, "Q": 10}
    assert mac_cycles(WS, d, 64, 3200, 6400) == 22 + 50


def test_mapping_reads_shipped_configs():
    blocks = [WeightBlock("w", 64, 64, 8, "dense", 64, 64)]
    w = Workload.single_path("one", "dense", blocks, [_conv(8, 8, 1, 10)])
    hw = tiny_config(overrides=["compute.array.dataflow=output_stationary",
                                "compute.vector.elements_per_cycle=2"])
    assert (hw.array_dataflow, hw.vector_elements_per_cycle) == ("output_stationary", 2)
    # OS 8x8, one MAC per PE: 100 pixels -> 13 row folds x 1 column fold, each 8 taps... of
    # C 8 = 8 cycles + 14 fill/drain
    assert simulate(hw, w).inferences.compute_cycles[0] == 13 * (8 + 14)


@settings(max_examples=200, deadline=None)
@given(d=_dims, a=_arrays, pack=st.sampled_from([1, 2, 8]))
def test_pipelining_never_slows_an_op(d, a, pack):
    # overlapping a fold's fixed cost with the previous fold's streaming can only hide time:
    # fixed + s + (f - 1) max(s, fixed) <= f (fixed + s)
    peak = a.rows * a.cols * pack
    dims = {"K": d["K"], "C": d["C"], "R": d["R"], "S": d["R"], "P": d["P"], "Q": d["P"]}
    macs = d["K"] * d["C"] * d["R"] ** 2 * d["P"] ** 2
    flat = Array(a.rows, a.cols, a.dataflow, a.vector_rate, a.port_bytes, False)
    piped = Array(a.rows, a.cols, a.dataflow, a.vector_rate, a.port_bytes, True)
    assert mac_cycles(piped, dims, peak, macs) <= mac_cycles(flat, dims, peak, macs)


def test_an_mcu_array_runs_the_cpu_kernels():
    # kind mcu hands the op to edgesim.sim.mcu: a 1x1 conv C 8 -> K 16 over 4 x 4, no weights
    # read: 100 + ceil(1 x (2 x 2,048 MACs + 3 x 256 outputs)) = 4,964 cycles
    from edgesim.sim.mcu import Kernels
    k = Kernels(cpi=1, conv=1, pointwise=2, depthwise=1, fc=1, im2col_element=0, im2col_run=0,
                requant=3, eltwise=1, pool=1, act=1, softmax=1, sparse_nonzero=1,
                op_overhead=100, dcache=0, cache_line=32, flash_wait_states=0, flash_word=16,
                bus_latency_cycles=0, weight_pass_pixels=1)
    cpu = Array(rows=1, cols=2, dataflow="output_stationary", vector_rate=1, port_bytes=0,
                kind="mcu", kernels=k)
    op = _conv(16, 8, 1, 4, out_bytes=256)
    assert op_cycles(cpu, op, 2, op.macs, 0, 8) == 100 + 2 * 2048 + 3 * 256


def test_a_u85_depthwise_conv_runs_on_the_pools_micro_block():
    # regor gives an Ethos-U85-1024 depthwise conv the 2x4x16 micro-block of its pools
    # (ethos_u85_edge: compute.pooling.ublock; Vela's debug database for KWS: ofm_ublock
    # 2x4x16, 1,248 MAC cycles a block). KWS's 3x3 depthwise conv, 25x5x64: 13 x 2 = 26
    # micro-blocks a 16-deep slice, a step 4 x 26 = 104 cycles (write-back 32 x 16 / 32 = 16
    # below it), ceil(9 / 4) = 3 steps, 64 / 16 = 4 slices: 1,248 MAC cycles; the output
    # stage 8,000 x 0.0625 = 500, a quarter of it (one slice's) after the last: 1,248 + 125.
    from edgesim.config import load_config
    from edgesim.sim.mapping import broadcast_cycles
    from edgesim.sim.plan import Machine
    a = Machine.from_config(load_config("ethos_u85_edge")).array
    dims = {"N": 1, "K": 64, "C": 1, "R": 3, "S": 3, "P": 25, "Q": 5, "G": 64}
    assert broadcast_cycles(a, dims, 1024, 72_000, depthwise=True) == 1248 + 125


# The sections whose keys are the fields of their names (Array.from_config builds them by name,
# HardwareConfig.section), what holds those fields, the config to vary them on (the kernels
# are built only for an mcu), and the fields derived instead of copied from a key.
_BY_NAME = {
    "compute.array": (lambda a: a, "npu_small",
                      # compute.vector.elements_per_cycle or cols; sram.port_width; sections
                      {"vector_rate", "port_bytes", "rates", "kernels", "pooling"}),
    "compute.ops": (lambda a: a.rates, "npu_small",
                    # the read latency and bandwidth of the weights' memory
                    {"const_latency", "const_bytes_per_cycle"}),
    "compute.pooling": (lambda a: a.pooling, "npu_small", set()),
    "compute.kernels": (lambda a: a.kernels, "stm32h7a3", set()),
}


def _other_values(value, info):
    """YAML values other than ``value`` (a key's value as HardwareConfig holds it) for a key of
    schema field ``info``, with the value each gives the field: other choices of a Literal, the
    negation of a flag, a larger number, size or tuple, a number for a None."""
    import typing

    from edgesim.schema import Unit, meta
    ann = info.annotation
    unit = meta(info, Unit)
    if typing.get_origin(ann) is typing.Literal:
        return [(c, c) for c in typing.get_args(ann) if c != value]
    if isinstance(value, bool):
        return [(not value, not value)]
    if unit is not None:
        assert unit.kind == "size", f"add a {unit.kind} value here"
        return [(f"{2 * value + 1} B", 2 * value + 1)]
    if value is None:
        kind = next(a for a in typing.get_args(ann) if a is not type(None))
        if typing.get_origin(kind) is tuple:
            two = (2,) * len(typing.get_args(kind))
            return [(list(two), two)]
        return [(1.5, 1.5)]
    if isinstance(value, tuple):
        return [([v + 1 for v in value], tuple(v + 1 for v in value))]
    if isinstance(value, float):
        return [(value + 0.5, value + 0.5)]
    return [(value + 1, value + 1), (value * 2, value * 2)]


def test_every_key_of_the_array_ops_pooling_and_kernels_sections_reaches_its_field():
    # Array.from_config copies no key by hand: each key of these sections is the field of its
    # name (a new key: a schema line, the YAMLs and the code that reads it). So (1) the fields
    # are the section's keys plus the declared derived ones, (2) changing a key's value in the
    # YAML changes that field to it, (3) a field's default is the key's (an Array written by
    # hand in a test means what a config leaving the key out means).
    import copy
    import dataclasses

    from edgesim.config import config_from_dict, read_config
    from edgesim.errors import ConfigError
    from edgesim.schema import section_at

    for path, (holder, config, derived) in _BY_NAME.items():
        keys = {k: i for k, i in section_at(path.split(".")).model_fields.items()
                if k != "source"}
        raw, file = read_config(config)
        base = holder(Array.from_config(config_from_dict(raw, file=file)))
        fields = {f.name: f for f in dataclasses.fields(base)}
        assert set(fields) - derived == set(keys), path
        for key, info in keys.items():
            default = fields[key].default
            if not info.is_required() and default is not dataclasses.MISSING:
                assert default == info.default, f"{path}.{key}"
            old = getattr(base, key)
            for yaml_value, expected in _other_values(old, info):
                edited = copy.deepcopy(raw)
                section = edited
                for part in path.split("."):
                    section = section.setdefault(part, {"source": "test"})
                section[key] = yaml_value
                try:
                    hw = config_from_dict(edited, file=file)
                except ConfigError:     # not valid on this config (another value may be)
                    continue
                got = getattr(holder(Array.from_config(hw)), key)
                assert (got, old != expected) == (expected, True), f"{path}.{key}"
                break
            else:
                raise AssertionError(f"{path}.{key}: no other value of it loads on {config}")


def test_the_block_buffer_is_built_from_its_section_by_key():
    # BlockBuffer's fields are compute.block's keys, so the plan builds it by name: a new key
    # is a schema line, the YAMLs and the field of its name. ethos_u65 states a block buffer.
    from edgesim.checked_configs import load
    from edgesim.schema import section_at
    from edgesim.sim.plan import Machine
    from edgesim.sim.tiling import BlockBuffer

    keys = [k for k in section_at(["compute", "block"]).model_fields if k != "source"]
    assert sorted(BlockBuffer._fields) == sorted(keys)
    hw = load("ethos_u65")
    block = Machine.from_config(hw).block
    assert block is not None
    assert block.buffer == hw.block["buffer"] > 0
    assert block._asdict() == {k: hw.block[k] for k in BlockBuffer._fields}
