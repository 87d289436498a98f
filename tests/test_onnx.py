"""edgesim.frontends.onnx: ONNX files -> Graph (MACs, pads, weights as stored or quantised like
the tracer, views, hostile files) and, through ``to_workload``, the tracer's Workload."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_files import F, model, save

from edgesim.errors import ModelError
from edgesim.frontends import onnx as eonnx
from edgesim.frontends.graph import to_workload
from edgesim.trace.weights import quantize, quantize_bias

U8, I8 = TensorProto.UINT8, TensorProto.INT8
node = helper.make_node


def load(m: onnx.ModelProto, tmp_path, **kw):
    return eonnx.load(save(m, tmp_path), **kw)


def conv_model(w: np.ndarray, hw: int, *, b: np.ndarray | None = None, **attrs):
    inits = {"w": w} if b is None else {"w": w, "b": b}
    ins = ["x", "w"] if b is None else ["x", "w", "b"]
    c = w.shape[1] * attrs.get("group", 1)
    return model([node("Conv", ins, ["y"], **attrs)], [("x", F, ["n", c, hw, hw])], ["y"], inits)


def test_module_imports_the_onnx_package_not_itself():
    # edgesim/frontends/onnx.py is named like the package it imports: absolute imports
    # make ``import onnx`` inside it the top-level protobuf package
    assert eonnx.ModelProto is onnx.ModelProto
    assert eonnx.__name__ == "edgesim.frontends.onnx"


def test_conv_macs_closed_form(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    g = load(conv_model(w, 16, pads=[1, 1, 1, 1]), tmp_path)
    (n,) = g.nodes
    # K=8 outputs x C=3 x R*S=9 taps x P*Q=16*16 pixels (padding 1 keeps 16x16)
    assert n.macs == 8 * 3 * 9 * 16 * 16 == 55_296
    assert dict(n.shape) == {"N": 1, "K": 8, "C": 3, "R": 3, "S": 3, "P": 16, "Q": 16}
    assert g.tensors["y"].shape == (1, 8, 16, 16)   # dynamic batch "n" is 1
    assert (n.kind, n.op, n.groups) == ("conv", "Conv", 1)


def test_depthwise_is_group_c(tmp_path):
    w = np.ones((8, 1, 3, 3), np.float32)
    g = load(conv_model(w, 16, group=8, strides=[2, 2], pads=[1, 1, 1, 1]), tmp_path)
    (n,) = g.nodes
    # out = floor((16 + 2 - 3) / 2) + 1 = 8; each of K=8 channels reads C/groups=1 channel:
    # 8 x 1 x 9 x 8 x 8
    assert n.macs == 8 * 1 * 9 * 8 * 8 == 4_608
    assert (n.groups, dict(n.shape)["C"], n.weight.values.shape) == (8, 1, (8, 1, 3, 3))


def test_gemm_and_matmul_give_the_same_fc(tmp_path):
    rng = np.random.default_rng(1)
    wt = rng.standard_normal((10, 64)).astype(np.float32)           # (N, K)
    b = rng.standard_normal(10).astype(np.float32)
    gemm = load(model([node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
                      [("x", F, [1, 64])], ["y"], {"w": wt, "b": b}), tmp_path)
    mm = eonnx.load(save(model([node("MatMul", ["x", "w"], ["t"]), node("Add", ["t", "b"], ["y"])],
                               [("x", F, [1, 64])], ["y"], {"w": wt.T.copy(), "b": b}),
                         tmp_path, "mm.onnx"))
    for g in (gemm, mm):
        (n,) = g.nodes           # MatMul + Add of a per-output vector: one op with a bias
        assert (n.kind, n.macs, dict(n.shape)) == ("linear", 640, {"M": 1, "N": 10, "K": 64})
        q, s = quantize(wt, "int8", channel_axis=0)     # (N, K), one scale per output
        np.testing.assert_array_equal(n.weight.values, q)
        np.testing.assert_array_equal(n.weight.scales, s)
        np.testing.assert_array_equal(n.bias.values, quantize_bias(b))
        assert (n.weight.bits, n.bias.bits) == (8, 32)


@pytest.mark.parametrize(("auto_pad", "pads"), [("SAME_UPPER", [0, 0, 1, 1]),
                                                ("SAME_LOWER", [1, 1, 0, 0])])
def test_same_pads_stride_2_are_asymmetric(tmp_path, auto_pad, pads):
    m = conv_model(np.ones((4, 3, 3, 3), np.float32), 8, strides=[2, 2], auto_pad=auto_pad)
    (n,) = load(m, tmp_path).nodes
    # out = ceil(8 / 2) = 4; total pad = (4 - 1) * 2 + 3 - 8 = 1, odd: UPPER puts it at the end
    assert n.meta["pads"] == pads
    assert dict(n.shape)["P"] == dict(n.shape)["Q"] == 4
    inferred = onnx.shape_inference.infer_shapes(m).graph.output[0].type.tensor_type.shape
    assert [d.dim_value for d in inferred.dim][1:] == [4, 4, 4]


def test_float_conv_quantised_like_the_tracer(tmp_path):
    rng = np.random.default_rng(2)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    w[2] = 0.0                                         # an all-zero channel: scale 0
    b = rng.standard_normal(6).astype(np.float32)
    (n,) = load(conv_model(w, 5, b=b), tmp_path).nodes
    q, s = quantize(w, "int8", channel_axis=0)
    np.testing.assert_array_equal(n.weight.values, q)
    np.testing.assert_array_equal(n.weight.scales, s)
    assert n.weight.values.dtype == np.int8
    assert not n.weight.zero_points.any()
    np.testing.assert_array_equal(n.bias.values, quantize_bias(b))


def qdq_conv(values: np.ndarray, scales: np.ndarray, zps: np.ndarray, etype: int):
    """x -> Q -> DQ -> Conv(DQ(w as stored, per channel)) -> Q -> DQ: the QDQ format."""
    k = values.shape[0]
    bias = np.arange(k, dtype=np.int32) * 1000 - 2000
    nodes = [node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             node("DequantizeLinear", ["bq", "bs"], ["bd"], axis=0),
             node("Conv", ["xd", "wd", "bd"], ["y"], pads=[1, 1, 1, 1]),
             node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    inits = {"xs": np.float32(0.02), "xz": np.uint8(128), "ys": np.float32(0.05),
             "yz": np.uint8(128), "wq": values, "ws": scales, "wz": zps, "bq": bias,
             "bs": (scales * np.float32(0.02)).astype(np.float32)}
    return model(nodes, [("x", F, [1, values.shape[1], 6, 6])], ["out"], inits), bias


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_qdq_weights_kept_as_stored(tmp_path, dtype):
    rng = np.random.default_rng(3)
    zps = np.array([128, 120, 131, 128], dtype) if dtype == np.uint8 else \
        np.array([0, -3, 5, 0], dtype)
    values = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (4, 3, 3, 3)).astype(dtype)
    values[1, 0] = zps[1]                                  # 9 values equal to their zero point
    scales = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    m, bias = qdq_conv(values, scales, zps, U8 if dtype == np.uint8 else I8)
    g = load(m, tmp_path)
    (n,) = g.nodes                     # the Q/DQ pairs are not ops: an int8 runtime folds them
    assert n.weight.values.dtype == dtype
    np.testing.assert_array_equal(n.weight.values, values)
    np.testing.assert_array_equal(n.weight.zero_points, zps)
    np.testing.assert_array_equal(n.weight.scales, scales)
    np.testing.assert_array_equal(n.bias.values, bias)
    assert n.bias.bits == 32
    assert g.aliases == {"xq": "x", "xd": "x", "yq": "y", "out": "y"}
    w = to_workload(g)
    block = w.blocks[w.paths[0].ops[0].weights[0]]
    # a value equal to its channel's zero point is a zero of the stored tensor
    zeros = int((values == zps.reshape(-1, 1, 1, 1)).sum())
    assert zeros >= 9
    assert (block.elements, block.nonzeros) == (108, 108 - zeros)


def test_qdq_float_weight_is_quantised_as_quantizelinear_does(tmp_path):
    w = np.array([[[[0.5]]], [[[-0.25]]]], np.float32)          # (2, 1, 1, 1)
    nodes = [node("QuantizeLinear", ["w", "ws", "wz"], ["wq"], axis=0),
             node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             node("Conv", ["x", "wd"], ["y"])]
    inits = {"w": w, "ws": np.array([0.01, 0.01], np.float32), "wz": np.array([0, 3], np.int8)}
    (n,) = load(model(nodes, [("x", F, [1, 1, 2, 2])], ["y"], inits), tmp_path).nodes
    # round(0.5 / 0.01) + 0 = 50; round(-0.25 / 0.01) + 3 = -22
    assert n.weight.values.reshape(-1).tolist() == [50, -22]


def test_qlinearconv_weights_as_stored(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.integers(-128, 127, (4, 2, 3, 3)).astype(np.int8)
    ws = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    wz = np.zeros(4, np.int8)
    b = np.array([7, -7, 0, 100], np.int32)
    nodes = [node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                  pads=[1, 1, 1, 1], strides=[2, 2])]
    inits = {"xs": np.float32(0.5), "xz": np.uint8(128), "w": w, "ws": ws, "wz": wz,
             "ys": np.float32(0.25), "yz": np.uint8(128), "b": b}
    g = load(model(nodes, [("x", U8, [1, 2, 9, 9])], ["y"], inits), tmp_path)
    (n,) = g.nodes
    np.testing.assert_array_equal(n.weight.values, w)
    np.testing.assert_array_equal(n.weight.scales, ws)
    np.testing.assert_array_equal(n.bias.values, b)
    np.testing.assert_allclose(n.bias.scales, ws * 0.5)       # input scale x weight scale
    # out = floor((9 + 2 - 3) / 2) + 1 = 5: 4 x 2 x 9 x 5 x 5
    assert (n.op, n.macs) == ("QLinearConv", 4 * 2 * 9 * 25)


def test_qlinearmatmul_and_qlinearadd(tmp_path):
    b = np.arange(12, dtype=np.uint8).reshape(4, 3)                # (K, N) as stored
    bs = np.array([0.1, 0.2, 0.3], np.float32)                      # per output column
    bz = np.array([0, 1, 2], np.uint8)
    nodes = [node("QLinearMatMul", ["x", "xs", "xz", "b", "bs", "bz", "ys", "yz"], ["y"]),
             node("QLinearAdd", ["y", "ys", "yz", "x2", "xs", "xz", "ys", "yz"], ["z"],
                  domain="com.microsoft")]
    inits = {"xs": np.float32(0.5), "xz": np.uint8(0), "b": b, "bs": bs, "bz": bz,
             "ys": np.float32(0.25), "yz": np.uint8(0)}
    g = load(model(nodes, [("x", U8, [2, 4]), ("x2", U8, [2, 3])], ["z"], inits, ms=True),
             tmp_path)
    mm, add = g.nodes
    np.testing.assert_array_equal(mm.weight.values, b.T)           # (N, K)
    np.testing.assert_array_equal(mm.weight.zero_points, bz)
    assert (mm.kind, mm.macs) == ("linear", 2 * 3 * 4)
    assert (add.kind, add.inputs, g.tensors["z"].shape) == ("eltwise", ("y", "x2"), (2, 3))


def test_views_are_aliases(tmp_path):
    w = np.ones((4, 3, 3, 3), np.float32)
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             node("Shape", ["c"], ["s"]),
             node("Gather", ["s", "zero"], ["n"], axis=0),
             node("Unsqueeze", ["n", "ax0"], ["n1"]),
             node("Concat", ["n1", "minus1"], ["target"], axis=0),
             node("Reshape", ["c", "target"], ["r"]),                 # x.view(x.size(0), -1)
             node("Unsqueeze", ["r", "ax0"], ["u"]),
             node("Squeeze", ["u", "ax0"], ["sq"]),
             node("Identity", ["sq"], ["id"]),
             node("Gemm", ["id", "fc", "fcb"], ["y"], transB=1)]
    inits = {"w": w, "zero": np.int64(0), "ax0": np.array([0], np.int64),
             "minus1": np.array([-1], np.int64), "fc": np.ones((2, 64), np.float32),
             "fcb": np.zeros(2, np.float32)}
    g = load(model(nodes, [("x", F, [1, 3, 4, 4])], ["y"], inits), tmp_path)
    assert [n.op for n in g.nodes] == ["Conv", "Gemm"]
    assert {k: g.aliases[k] for k in ("r", "u", "sq", "id")} == dict.fromkeys(
        ("r", "u", "sq", "id"), "c")
    assert (g.tensors["r"].shape, g.tensors["u"].shape) == ((1, 64), (1, 1, 64))
    ops = to_workload(g).paths[0].ops
    # the Gemm reads the conv's buffer: 4 x 4 x 4 = 64 int8 bytes
    assert [(op.kind, op.in_bytes) for op in ops] == [("conv", 48), ("linear", 64)]


def test_bn_folds_into_its_conv(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    gamma, beta, mean = (rng.standard_normal(3).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, 3).astype(np.float32)
    nodes = [node("Conv", ["x", "w"], ["c"]),
             node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-3)]
    inits = {"w": w, "g": gamma, "b": beta, "m": mean, "v": var}
    g = load(model(nodes, [("x", F, [1, 2, 4, 4])], ["y"], inits), tmp_path)
    (n,) = g.nodes                                      # no norm op: folded as deployed
    inv = gamma / np.sqrt(var + np.float32(1e-3))
    np.testing.assert_array_equal(n.weight.values,
                                  quantize(w * inv.reshape(-1, 1, 1, 1), "int8")[0])
    np.testing.assert_array_equal(n.bias.values, quantize_bias((0 - mean) * inv + beta))
    assert (n.outputs, n.meta["folded"]) == (("y",), ["BatchNormalization_1"])
    # a BN whose input is read twice stays a norm op
    two = load(model([*nodes, node("Add", ["c", "y"], ["z"])], [("x", F, [1, 2, 4, 4])], ["z"],
                     inits), tmp_path)
    assert [n.kind for n in two.nodes] == ["conv", "norm", "eltwise"]


def test_pools_and_convtranspose(tmp_path):
    w = np.ones((4, 2, 3, 3), np.float32)                  # (C_in, K / groups, R, S)
    nodes = [node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
             node("ConvTranspose", ["p", "w"], ["t"], strides=[2, 2], pads=[1, 1, 1, 1]),
             node("ReduceMean", ["t"], ["r"], axes=[2, 3], keepdims=0),
             node("Softmax", ["r"], ["y"])]
    m = model(nodes, [("x", F, [1, 4, 10, 10])], ["y"], {"w": w})
    g = load(m, tmp_path)
    pool, deconv, mean, soft = g.nodes
    # MaxPool: ceil((10 - 3) / 2) + 1 = 5 (4.5 rounded up)
    assert g.tensors["p"].shape == (1, 4, 5, 5)
    # ConvTranspose: 2 * (5 - 1) + 3 - 2 = 9; every input pixel meets K=2 x R*S=9 outputs
    # for each of C=4 input channels: 2 x 4 x 9 x 5 x 5
    assert g.tensors["t"].shape == (1, 2, 9, 9)
    assert (deconv.kind, deconv.macs) == ("conv", 2 * 4 * 9 * 25)
    assert deconv.weight.values.shape == (2, 4, 3, 3)
    assert [(n.kind, g.tensors[n.outputs[0]].shape) for n in (pool, mean, soft)] == [
        ("pool", (1, 4, 5, 5)), ("pool", (1, 2)), ("act", (1, 2))]
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True).graph.value_info
    assert {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)
            for v in inferred} == {"p": (1, 4, 5, 5), "t": (1, 2, 9, 9), "r": (1, 2)}


def test_input_shape_fills_symbolic_dims(tmp_path):
    m = model([node("Relu", ["x"], ["y"])], [("x", F, ["n", 3, "h", "w"])], ["y"])
    with pytest.raises(ModelError, match=r"symbolic or unknown dims \(n, 3, h, w\); give them "
                                         "with --input-shape"):
        load(m, tmp_path)
    g = load(m, tmp_path, input_shape=(3, 32, 24))
    assert g.tensors["y"].shape == (1, 3, 32, 24)
    assert g.input_shape == (3, 32, 24)


# -- hostile files: one ModelError line each, naming the file ---------------------------------

def one_line(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_garbage_and_truncated_bytes(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\xfe not a protobuf \x00" * 10)
    with pytest.raises(ModelError, match="not an ONNX model") as exc:
        eonnx.load(garbage)
    one_line(exc, garbage)
    data = conv_model(np.ones((4, 3, 3, 3), np.float32), 8).SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="not an ONNX model") as exc:
        eonnx.load(cut)
    one_line(exc, cut)


def test_oversized_and_not_regular(tmp_path, monkeypatch):
    path = save(conv_model(np.ones((4, 3, 3, 3), np.float32), 8), tmp_path)
    monkeypatch.setattr(eonnx, "LIMIT_BYTES", 100)
    with pytest.raises(ModelError, match="larger than the 100 bytes") as exc:
        eonnx.load(path)
    one_line(exc, path)
    with pytest.raises(ModelError, match="cannot read") as exc:
        eonnx.load(tmp_path)
    one_line(exc, tmp_path)


def test_a_4gb_tensor_claim_is_refused_before_allocating(tmp_path):
    big = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 30, 1, 1, 1],
                      raw_data=b"\0" * 16)                     # claims 4 GiB, carries 16 bytes
    m = conv_model(np.ones((4, 3, 3, 3), np.float32), 8)
    m.graph.initializer[0].CopyFrom(big)
    with pytest.raises(ModelError, match=r"claims \(1073741824, 1, 1, 1\) = 1073741824 values "
                                         "of 4 bytes but carries 16 bytes") as exc:
        load(m, tmp_path)
    assert "node 0 (Conv)" in one_line(exc, tmp_path / "m.onnx")


def test_external_data_is_refused(tmp_path):
    m = conv_model(np.ones((4, 3, 3, 3), np.float32), 8)
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="/etc/passwd")
    with pytest.raises(ModelError, match="keeps its data in an external file") as exc:
        load(m, tmp_path)
    one_line(exc, tmp_path / "m.onnx")


def test_cycle_and_missing_tensor(tmp_path):
    cyc = model([node("Relu", ["x", "b"], ["a"], name="r1"), node("Relu", ["a"], ["b"])],
                [("x", F, [1, 4])], ["b"])
    with pytest.raises(ModelError, match="cycle through node 0 'r1'") as exc:
        load(cyc, tmp_path)
    one_line(exc, tmp_path / "m.onnx")
    orphan = model([node("Add", ["x", "ghost"], ["y"], name="add")], [("x", F, [1, 4])], ["y"])
    with pytest.raises(ModelError, match="node 0 'add' \\(Add\\) reads 'ghost', which no node"):
        load(orphan, tmp_path)


def test_unknown_operator_names_it(tmp_path):
    m = model([node("Relu", ["x"], ["a"]), node("FancyOp", ["a"], ["y"], name="mystery")],
              [("x", F, [1, 4])], ["y"])
    with pytest.raises(ModelError, match=r"node 1 'mystery' \(FancyOp\): operator FancyOp is "
                                         "not supported") as exc:
        load(m, tmp_path)
    one_line(exc, tmp_path / "m.onnx")


def test_constant_growth_is_bounded(tmp_path):
    # each Concat doubles a constant: 40 of them would claim 2**40 elements
    nodes = [node("Concat", [f"c{i}", f"c{i}"], [f"c{i + 1}"], axis=0) for i in range(40)]
    nodes.append(node("Reshape", ["x", "c40"], ["y"]))
    m = model(nodes, [("x", F, [1, 4])], ["y"], {"c0": np.array([1], np.int64)})
    with pytest.raises(ModelError, match="constant arithmetic would make") as exc:
        load(m, tmp_path)
    one_line(exc, tmp_path / "m.onnx")


def test_an_impossible_shape_is_one_line(tmp_path):
    m = conv_model(np.ones((4, 3, 5, 5), np.float32), 3)          # a 5x5 window on 3x3
    with pytest.raises(ModelError, match="window of 5 larger than the padded input 3") as exc:
        load(m, tmp_path)
    one_line(exc, tmp_path / "m.onnx")


# -- the law: an ONNX file and the nn.Module it was written from give the same Workload --------

def test_same_network_as_onnx_and_traced_module(tmp_path):
    torch = pytest.importorskip("torch")
    from bn_nets import randomize_bn
    from torch import nn

    from edgesim.frontends.graph import IMPORT_ENCODINGS
    from edgesim.trace import record

    net = randomize_bn(nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU6(),
        nn.Conv2d(8, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))).eval()
    with torch.no_grad():
        net[3].weight[2:4] = 0.0                     # two all-zero depthwise channels
    p = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    bn = net[1]
    nodes = [node("Conv", ["x", "0.weight"], ["c0"], pads=[1, 1, 1, 1]),
             node("BatchNormalization", ["c0", "1.weight", "1.bias", "1.running_mean",
                                         "1.running_var"], ["b1"], epsilon=bn.eps),
             node("Relu", ["b1"], ["r2"]),
             node("Conv", ["r2", "3.weight", "3.bias"], ["c3"], group=8, strides=[2, 2],
                  pads=[1, 1, 1, 1]),
             node("Clip", ["c3", "zero", "six"], ["r4"]),
             node("Conv", ["r4", "5.weight", "5.bias"], ["c5"]),
             node("Relu", ["c5"], ["r6"]),
             node("GlobalAveragePool", ["r6"], ["p7"]),
             node("Flatten", ["p7"], ["f8"]),
             node("Gemm", ["f8", "9.weight", "9.bias"], ["y"], transB=1)]
    inits = {k: v for k, v in p.items() if "num_batches" not in k}
    inits.update(zero=np.float32(0), six=np.float32(6))
    g = load(model(nodes, [("x", F, ["n", 3, 12, 12])], ["y"], inits), tmp_path)
    imported = to_workload(g, encodings=IMPORT_ENCODINGS)

    blocks, ops = record(net, torch.randn(1, 3, 12, 12), encodings=IMPORT_ENCODINGS,
                         fold_bn=True)

    def weights(bs):
        return [(b.elements, b.nonzeros, b.bits, b.stored_bytes, dict(b.encoded), b.role)
                for b in bs]

    def layers(os_):
        return [(o.kind, o.macs, o.effective_macs, o.fused, o.in_bytes, o.out_bytes,
                 o.live_bytes, o.shape) for o in os_]

    assert weights(imported.blocks.values()) == weights(blocks)
    assert layers(imported.paths[0].ops) == layers(ops)
    # and the law has content: the zero channels are zeros in both, the BN is folded away
    assert weights(blocks)[2][:2] == (72, 72 - 18)
    assert "norm" not in [o.kind for o in ops]


def test_a_shared_initialiser_is_one_block(tmp_path):
    w = np.arange(16, dtype=np.float32).reshape(4, 4)
    nodes = [node("MatMul", ["x", "w"], ["a"]), node("MatMul", ["a", "w"], ["y"])]
    wl = to_workload(load(model(nodes, [("x", F, [1, 4])], ["y"], {"w": w}), tmp_path))
    a, b = wl.paths[0].ops
    # both ops read the one stored tensor: one 16-element block
    assert a.weights == b.weights
    assert [blk.elements for blk in wl.blocks.values()] == [16]
