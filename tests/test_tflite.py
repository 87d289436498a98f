"""TFLite import (edgesim.frontends.tflite) and the Graph -> Workload builder (graph.to_workload),
on small files written by tests/tflite_files.py."""

from __future__ import annotations

import numpy as np
import pytest
from tflite_files import (
    ADD,
    AVG_POOL,
    CONV,
    DEPTHWISE,
    FC,
    FLOAT32,
    INT32,
    RELU,
    RESHAPE,
    SVDF,
    Op,
    T,
    build,
    conv_opts,
    dw_opts,
    fc_opts,
    pool_opts,
    write,
)

from edgesim.errors import ModelError
from edgesim.frontends import graph
from edgesim.frontends import tflite as tfl
from edgesim.trace.weights import quantize

RNG = np.random.default_rng(7)


def _ints(shape, axis=0):
    """Random int8 values whose max |q| per output channel (``axis``) is 127."""
    q = RNG.integers(-60, 61, shape).astype(np.int8)
    idx = [0] * len(shape)
    for k in range(shape[axis]):
        idx[axis] = k
        q[tuple(idx)] = 127
    return q


def _conv_file(tmp_path, hw=8, k=4, c=3, r=3, stride=2, padding=0, act=0, w=None):
    w = _ints((k, r, r, c)) if w is None else w
    out = -(-hw // stride) if padding == 0 else (hw - r) // stride + 1
    ts = [T((1, hw, hw, c), scales=(0.1,)), T((k, r, r, c), data=w, scales=(0.01,) * k),
          T((k,), INT32, np.arange(1, k + 1, dtype=np.int32)), T((1, out, out, k), scales=(0.1,))]
    return write(tmp_path / "conv.tflite", ts,
                 [Op(CONV, (0, 1, 2), (3,), conv_opts(padding, stride, act))], [0], [3]), w


def test_conv_same_stride2_macs_and_asymmetric_pads(tmp_path):
    path, w = _conv_file(tmp_path, act=1)
    g = tfl.load(path)
    (node,) = g.nodes
    # out = ceil(8 / 2) = 4; MACs = K C R S P Q = 4 * 3 * 3 * 3 * 4 * 4 = 1728
    assert node.macs == 1728
    assert dict(node.shape) == {"N": 1, "K": 4, "C": 3, "R": 3, "S": 3, "P": 4, "Q": 4}
    # 'SAME' total pad = (4 - 1) * 2 + 3 - 8 = 1: none at the top/left, one at the bottom/right
    assert node.meta["pads"] == (0, 0, 1, 1)
    # weights in the tracer's layout (K, C, R, S), the stored int8 values exactly
    np.testing.assert_array_equal(node.weight.values, w.transpose(0, 3, 1, 2))
    assert g.tensors[g.inputs[0]].shape == (1, 3, 8, 8)            # NHWC -> NCHW
    wl = graph.to_workload(g)
    ops = wl.paths[0].ops
    assert [(o.kind, o.fused) for o in ops] == [("conv", False), ("act", True)]
    assert ops[0].in_bytes == 8 * 8 * 3
    assert ops[0].out_bytes == 4 * 4 * 4
    assert wl.meta["input"] == {"shape": [3, 8, 8]}
    assert wl.meta["file"] == "conv.tflite"


def test_valid_stride1_has_no_pads(tmp_path):
    path, _ = _conv_file(tmp_path, hw=7, stride=1, padding=1)
    (node,) = tfl.load(path).nodes
    # out = 7 - 3 + 1 = 5; MACs = 4 * 3 * 9 * 25 = 2700
    assert node.meta["pads"] == (0, 0, 0, 0)
    assert node.macs == 2700


def test_depthwise_multiplier_macs_and_layout(tmp_path):
    w = _ints((1, 3, 3, 8), axis=3)
    ts = [T((1, 6, 6, 4), scales=(0.1,)), T((1, 3, 3, 8), data=w, scales=(0.01,) * 8, axis=3),
          T((1, 4, 4, 8), scales=(0.1,))]
    (node,) = tfl.load(write(tmp_path / "dw.tflite", ts,
                             [Op(DEPTHWISE, (0, 1), (2,), dw_opts(2, padding=1))],
                             [0], [2])).nodes
    # K = 4 channels x multiplier 2 = 8, C = 1 per group, out 6 - 3 + 1 = 4:
    # MACs = K R S P Q = 8 * 9 * 16 = 1152
    assert node.macs == 1152
    assert node.groups == 4
    assert node.meta["depth_multiplier"] == 2
    assert dict(node.shape)["C"] == 1
    # tracer layout (K, 1, R, S): channel k of the file's last axis
    np.testing.assert_array_equal(node.weight.values[:, 0], w[0].transpose(2, 0, 1))
    op = graph.to_workload(tfl.load(tmp_path / "dw.tflite")).paths[0].ops[0]
    assert op.meta["groups"] == 4


def test_fully_connected_after_a_view(tmp_path):
    w = _ints((5, 16))
    ts = [T((1, 2, 2, 4), scales=(0.1,)), T((2,), INT32, np.array([1, 16], dtype=np.int32)),
          T((1, 16), scales=(0.1,)), T((5, 16), data=w, scales=(0.02,)),
          T((1, 5), scales=(0.1,))]
    g = tfl.load(write(tmp_path / "fc.tflite", ts, [Op(RESHAPE, (0, 1), (2,)),
                                                    Op(FC, (2, 3), (4,), fc_opts())], [0], [4]))
    (node,) = g.nodes                   # the reshape is a view, not an op
    assert g.aliases == {"t2": "t0"}
    # M N K = 1 x 5 x 16: 80 MACs
    assert node.macs == 80
    assert dict(node.shape) == {"M": 1, "N": 5, "K": 16}
    op = graph.to_workload(g).paths[0].ops[0]
    assert op.in_bytes == 16
    assert op.live_bytes == 16 + 5
    # a per-tensor scale: one fp32 scale, and Vela's mlw still writes a record per channel
    b = graph.to_workload(g).blocks[f"{node.name}.weight"]
    assert b.meta["scales"] == 1
    assert b.dense_bytes == 80 + 4


def test_stored_ints_kept_and_zeros_counted_on_them(tmp_path):
    # channel 0's max |q| is 3: dequantising and quantising again (max -> 127) would change
    # every value; the import keeps them, and counts the zeros of the stored integers
    w = _ints((4, 3, 3, 3))
    w[0] = np.clip(w[0], -3, 3)
    w[1, :, :, :2] = 0
    path, _ = _conv_file(tmp_path, w=w)
    g = tfl.load(path)
    np.testing.assert_array_equal(g.nodes[0].weight.values, w.transpose(0, 3, 1, 2))
    b = graph.to_workload(g).blocks[f"{g.nodes[0].name}.weight"]
    assert b.nonzeros == np.count_nonzero(w)
    assert b.elements == w.size
    requant, _ = quantize(w.transpose(0, 3, 1, 2) * 0.01, "int8")
    assert not np.array_equal(requant, g.nodes[0].weight.values)
    op = graph.to_workload(g).paths[0].ops[0]
    assert op.effective_macs == op.macs * np.count_nonzero(w) // w.size


def test_zero_point_is_the_zero_of_a_uint8_tensor():
    w = graph.Weights(np.array([[128, 130, 128, 0]], dtype=np.uint8), np.ones(1),
                      np.array([128]))
    node = graph.Node("fc", "linear", "FULLY_CONNECTED", ("x",), ("y",),
                      (("M", 1), ("N", 1), ("K", 4)), 4, weight=w)
    g = graph.Graph("u8", {"x": graph.Tensor("x", (1, 4)), "y": graph.Tensor("y", (1, 1))},
                    (node,), ("x",), ("y",))
    assert graph.to_workload(g).blocks["fc.weight"].nonzeros == 2     # 130 and 0, not 128


def test_float_model_quantised_as_the_tracer(tmp_path):
    wf = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
    ts = [T((1, 8, 8, 3), FLOAT32), T((4, 3, 3, 3), FLOAT32, wf), T((1, 4, 4, 4), FLOAT32)]
    g = tfl.load(write(tmp_path / "f.tflite", ts, [Op(CONV, (0, 1), (2,), conv_opts(0, 2))],
                       [0], [2]))
    q, s = quantize(wf.transpose(0, 3, 1, 2), "int8", channel_axis=0)
    np.testing.assert_array_equal(g.nodes[0].weight.values, q)
    np.testing.assert_allclose(g.nodes[0].weight.scales, s)


def test_residual_add_keeps_the_branch_live(tmp_path):
    w = _ints((4, 1, 1, 4))
    ts = [T((1, 4, 4, 4), scales=(0.1,)), T((4, 1, 1, 4), data=w, scales=(0.01,) * 4),
          T((1, 4, 4, 4), scales=(0.1,)), T((1, 4, 4, 4), scales=(0.1,)),
          T((1, 4, 4, 4), scales=(0.1,))]
    g = tfl.load(write(tmp_path / "res.tflite", ts, [
        Op(CONV, (0, 1), (2,), conv_opts()), Op(ADD, (0, 2), (3,)), Op(RELU, (3,), (4,))],
        [0], [4]))
    ops = graph.to_workload(g).paths[0].ops
    # the add reads the input (64 B) and the conv's output (64 B) and writes 64 B; the relu
    # is the add's only reader, so it fuses into it
    assert [o.kind for o in ops] == ["conv", "eltwise", "act"]
    assert ops[2].fused
    assert ops[1].in_bytes == 128
    assert ops[1].live_bytes == 192
    assert ops[0].readers == (ops[1].name,)


def test_same_network_as_an_nn_module_gives_the_same_workload(tmp_path):
    # The law: a TFLite model and the same network written as an nn.Module with the same int8
    # weights (float = int8 x per-channel scale, max |q| = 127 per channel so the tracer's
    # quantisation returns the same integers) give the same blocks and MACs.
    torch = pytest.importorskip("torch")
    from torch import nn

    from edgesim.trace import record
    from edgesim.trace.weights import quantize_bias
    w1, w2, w3, w4 = _ints((8, 3, 3, 3)), _ints((1, 3, 3, 8), axis=3), _ints((4, 1, 1, 8)), \
        _ints((5, 4))
    w1[2] = 0                                       # a dead channel
    w1[2, 0, 0, 0] = 127
    s1, s2, s3, s4 = (RNG.uniform(0.001, 0.01, n) for n in (8, 8, 4, 5))
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
                        nn.Conv2d(8, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(4, 5))
    file_w = {0: (w1, (0, 3, 1, 2), s1), 2: (w2, (3, 0, 1, 2), s2), 4: (w3, (0, 3, 1, 2), s3),
              7: (w4, (0, 1), s4)}
    with torch.no_grad():
        for i, (w, perm, s) in file_w.items():
            t = w.transpose(perm).astype(np.float64)
            t = t * s.reshape((-1,) + (1,) * (t.ndim - 1))
            net[i].weight.copy_(torch.tensor(t.reshape(net[i].weight.shape)))
    bias = {i: quantize_bias(net[i].bias.detach().numpy()) for i in file_w}
    f32 = [T((1, 6, 6, 3), scales=(0.1,)),
           T(w1.shape, data=w1, scales=tuple(s1)), T((8,), INT32, bias[0]),
           T((1, 6, 6, 8), scales=(0.1,)),
           T(w2.shape, data=w2, scales=tuple(s2), axis=3), T((8,), INT32, bias[2]),
           T((1, 6, 6, 8), scales=(0.1,)),
           T(w3.shape, data=w3, scales=tuple(s3)), T((4,), INT32, bias[4]),
           T((1, 6, 6, 4), scales=(0.1,)), T((1, 1, 1, 4), scales=(0.1,)),
           T((2,), INT32, np.array([1, 4], dtype=np.int32)), T((1, 4), scales=(0.1,)),
           T(w4.shape, data=w4, scales=tuple(s4)), T((5,), INT32, bias[7]),
           T((1, 5), scales=(0.1,))]
    ops = [Op(CONV, (0, 1, 2), (3,), conv_opts(0, 1, act=1)),
           Op(DEPTHWISE, (3, 4, 5), (6,), dw_opts(1, 0, 1, act=3)),
           Op(CONV, (6, 7, 8), (9,), conv_opts()), Op(AVG_POOL, (9,), (10,), pool_opts(6)),
           Op(RESHAPE, (10, 11), (12,)), Op(FC, (12, 13, 14), (15,), fc_opts())]
    g = tfl.load(write(tmp_path / "net.tflite", f32, ops, [0], [15]))
    wl = graph.to_workload(g)
    blocks, traced = record(net, torch.zeros(1, 3, 6, 6), encodings=graph.IMPORT_ENCODINGS)

    def law(op):
        return op.kind, op.shape, op.macs, op.effective_macs, op.fused, op.in_bytes, \
            op.out_bytes, op.live_bytes

    assert [law(o) for o in wl.paths[0].ops] == [law(o) for o in traced]
    mine = list(wl.blocks.values())
    assert len(mine) == len(blocks)
    for a, b in zip(mine, blocks, strict=True):
        assert (a.elements, a.nonzeros, a.bits, a.meta["scales"], a.dense_bytes) == \
            (b.elements, b.nonzeros, b.bits, b.meta["scales"], b.dense_bytes), a.id
        assert dict(a.encoded) == dict(b.encoded), a.id


def test_importing_never_runs_code_from_the_file(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    payload = f"__import__('os').system('touch {marker}')"
    ts = [T((1, 4), scales=(0.1,), name=payload), T((3, 4), data=_ints((3, 4)), scales=(0.1,),
                                                    name=payload), T((1, 3), name=payload)]
    path = write(tmp_path / "evil.tflite", ts, [Op(FC, (0, 1), (2,), fc_opts())], [0], [2],
                 description=payload)
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(f"builtins.{name}", lambda *a, _n=name, **k: pytest.fail(_n))
    g = tfl.load(path)
    assert not marker.exists()
    assert g.nodes[0].meta["tensor"] == payload


def _one_line(path, match):
    with pytest.raises(ModelError) as err:
        graph.to_workload(tfl.load(path))
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    assert match in msg, msg
    return msg


def _fc_tensors(**over):
    ts = [T((1, 4), scales=(0.1,)), T((3, 4), data=_ints((3, 4)), scales=(0.1,)),
          T((1, 3), scales=(0.1,))]
    for i, t in over.items():
        ts[int(i[1:])] = t
    return ts


def test_unknown_operator_is_one_line_naming_it(tmp_path):
    path = write(tmp_path / "svdf.tflite", _fc_tensors(), [Op(SVDF, (0,), (2,))], [0], [2])
    msg = _one_line(path, "SVDF")
    assert "operator 0" in msg


@pytest.mark.parametrize("case", ["truncated", "garbage", "not_tflite", "oversized",
                                  "huge_claim", "short_buffer", "buffer_index",
                                  "buffer_offset", "cycle", "absurd_shape", "bad_output_shape"])
def test_hostile_files_are_one_model_error_line(tmp_path, monkeypatch, case):
    path = tmp_path / f"{case}.tflite"
    fc = [Op(FC, (0, 1), (2,), fc_opts())]
    good = build(_fc_tensors(), fc, [0], [2])
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
        match = "TFLite"
    elif case == "garbage":
        path.write_bytes(good[:8] + bytes(RNG.integers(0, 256, 400, dtype=np.uint8)))
        match = ""
    elif case == "not_tflite":
        path.write_bytes(b"\x00" * 64)
        match = "TFL3"
    elif case == "oversized":
        path.write_bytes(good)
        monkeypatch.setattr(tfl, "MAX_FILE_BYTES", len(good) - 1)
        match = "larger than"
    elif case == "huge_claim":       # a 64 Ki x 64 Ki int8 weight (4 GiB) in a 12-byte buffer
        write(path, _fc_tensors(t1=T((65536, 65536), data=_ints((3, 4)), scales=(0.1,))),
              fc, [0], [2])
        match = "[65536, 65536]"        # over MAX_ELEMENTS: refused before any allocation
    elif case == "short_buffer":     # 2 Gi elements (at the cap) in a 12-byte buffer
        write(path, _fc_tensors(t1=T((32768, 65536), data=_ints((3, 4)), scales=(0.1,))),
              fc, [0], [2])
        match = "claims 2147483648 bytes; its buffer 1 holds 12"
    elif case == "buffer_index":
        write(path, _fc_tensors(t1=T((3, 4), scales=(0.1,), buffer=99)), fc, [0], [2])
        match = "buffer 99"
    elif case == "buffer_offset":
        write(path, _fc_tensors(t1=T((3, 4), scales=(0.1,), buffer=1)), fc, [0], [2],
              external={1: (10**9, 12)})
        match = "past the"
    elif case == "cycle":            # op 0 reads what op 1 writes
        ts = [*_fc_tensors(), T((1, 3), scales=(0.1,))]
        write(path, ts, [Op(RELU, (3,), (2,)), Op(FC, (0, 1), (3,), fc_opts())], [0], [2])
        match = "before any operator writes it"
    elif case == "absurd_shape":
        ts = [T((1, 4), scales=(0.1,)), T((1, 2**20, 2**20, 2**20), scales=(0.1,))]
        write(path, ts, [Op(RELU, (0,), (1,))], [0], [1])
        match = "shape"
    else:
        write(path, _fc_tensors(t2=T((1, 7), scales=(0.1,))), fc, [0], [2])
        match = "output"
    _one_line(path, match)


def test_a_missing_file_is_one_line(tmp_path):
    _one_line(tmp_path / "none.tflite", "cannot read")


def test_to_workload_refuses_a_tensor_read_before_written():
    node = graph.Node("relu", "act", "RELU", ("z",), ("y",))
    g = graph.Graph("g", {"x": graph.Tensor("x", (1, 4)), "y": graph.Tensor("y", (1, 4)),
                          "z": graph.Tensor("z", (1, 4))}, (node,), ("x",), ("y",))
    with pytest.raises(ModelError, match="before any node writes it"):
        graph.to_workload(g)


def test_a_shared_buffer_is_one_block(tmp_path):
    w = _ints((4, 4))
    ts = [T((1, 4), scales=(0.1,)), T((4, 4), data=w, scales=(0.1,)), T((1, 4), scales=(0.1,)),
          T((4, 4), scales=(0.1,), buffer=1), T((1, 4), scales=(0.1,))]
    wl = graph.to_workload(tfl.load(write(tmp_path / "shared.tflite", ts, [
        Op(FC, (0, 1), (2,), fc_opts()), Op(FC, (2, 3), (4,), fc_opts())], [0], [4])))
    a, b = wl.paths[0].ops
    assert len(wl.blocks) == 1
    assert a.weights == b.weights


def test_an_input_shape_is_checked_against_the_file(tmp_path, capsys):
    # a TFLite file's shapes are fixed: --input-shape that agrees runs, one that differs is one
    # line (it was a TypeError traceback); the conv file's input is 1x8x8x3 NHWC = 3x8x8
    from edgesim.cli import main
    from edgesim.testing import error_line
    path, _ = _conv_file(tmp_path)
    assert main(["run", "npu_small", "--model", str(path), "--input-shape", "3x8x8",
                 "--inputs", "1", "--format", "csv"]) == 0
    capsys.readouterr()
    assert main(["run", "npu_small", "--model", str(path), "--input-shape", "3x16x16",
                 "--inputs", "1"]) == 2
    assert error_line(capsys.readouterr().err).endswith(
        "is a tflite file whose input is 3x8x8; its shapes are fixed")
