"""edgesim.trace: ops, MACs, weight blocks, liveness, fusion, routers and errors of one pass."""

from __future__ import annotations

import copy
import pickle
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bn_nets import SharedBN, SharedOutput, randomize_bn
from torch import nn

from edgesim import encodings as enc
from edgesim.errors import TraceError
from edgesim.trace import record, recorder, trace
from edgesim.trace.weights import quantize
from edgesim.zoo.deploy import prepare
from edgesim.zoo.resnet import Bottleneck, ResNet, resnet50


def _tiny() -> ResNet:
    torch.manual_seed(0)
    return ResNet(Bottleneck, [1, 1], num_classes=10, stem="cifar", width=4).eval()


def test_tiny_resnet_op_kinds() -> None:
    # Two bottlenecks, each with a projection shortcut (4 -> 16 channels, then stride 2):
    # convs 1 (stem) + 2 * (3 + 1) = 9, each followed by an unfolded BN (9 norms);
    # relus 1 + 2 * 3 = 7, all fused; adds 2; global avg pool 1 (no max pool in the CIFAR stem);
    # fc 1. torch.flatten is a view, not an op.
    _, ops = record(_tiny(), torch.randn(1, 3, 8, 8))
    kinds = Counter(op.kind for op in ops)
    assert kinds == {"conv": 9, "norm": 9, "act": 7, "eltwise": 2, "pool": 1, "linear": 1}
    assert all(op.fused for op in ops if op.kind == "act")
    assert [op.name for op in ops[:3]] == ["conv1", "bn1", "relu"]
    assert ops[-1].name == "fc"
    assert "layer1.0.add" in [op.name for op in ops]
    # Folding removes the 9 norms and gives every conv a bias block.
    blocks, folded = record(prepare(_tiny(), torch.randn(1, 3, 8, 8)), torch.randn(1, 3, 8, 8))
    assert Counter(op.kind for op in folded)["norm"] == 0
    assert len(folded) == len(ops) - 9
    assert sum(b.id.endswith(".bias") for b in blocks) == 10   # 9 convs + fc


def test_conv_shape_and_macs() -> None:
    # Stem of the tiny net: K=4, C=3, 3x3, 8x8 output: 4*3*9*64 = 6912 MACs.
    _, ops = record(_tiny(), torch.randn(1, 3, 8, 8))
    assert ops[0].dims == {"N": 1, "K": 4, "C": 3, "R": 3, "S": 3, "P": 8, "Q": 8}
    assert ops[0].macs == ops[0].effective_macs == 6912
    # fc: stage 2 has 8 planes x expansion 4 = 32 features; M=1, N=10, K=32 -> 320 MACs.
    assert ops[-1].dims == {"M": 1, "N": 10, "K": 32}
    assert ops[-1].macs == 320


def test_grouped_conv_counts_channels_per_group() -> None:
    # Depthwise 3x3 on 8 channels, 5x5 output: K=8, C/groups=1 -> 8*1*9*25 = 1800 MACs.
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    _, ops = record(conv, torch.randn(1, 8, 5, 5))
    assert ops[0].dims["C"] == 1
    assert ops[0].macs == 1800
    assert ops[0].meta["groups"] == 8


def test_resnet50_macs() -> None:
    # Dense conv+linear MACs of ResNet-50 v1.5 at 224x224: 4,089,184,256 (torchvision's
    # "GFLOPS 4.09" counts multiply-accumulates). Checked to 1 % and pinned exactly.
    w = trace(resnet50(), torch.randn(1, 3, 224, 224), name="dense_r50", family="dense")
    macs = sum(op.macs for op in w.paths[0].ops if op.kind in ("conv", "linear"))
    assert abs(macs - 4.09e9) / 4.09e9 < 0.01
    assert macs == 4_089_184_256
    assert w.total_params == w.meta["params"] == 25_557_032


@pytest.mark.parametrize("encodings", [("dense",), ("dense", "csr", "bitmap")])
def test_stored_bytes_equal_the_encoded_tensors(encodings: tuple[str, ...]) -> None:
    net = prepare(_tiny(), torch.randn(1, 3, 8, 8))
    with torch.no_grad():   # prune: zero the smaller half of every conv weight
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight[m.weight.abs() < m.weight.abs().median()] = 0.0
    w = trace(net, torch.randn(1, 3, 8, 8), name="tiny", family="sparse", encodings=encodings)
    expected = 0
    for name, p in net.named_parameters():
        v = p.detach().numpy()
        if name.endswith("bias"):
            expected += 4 * v.size                       # int32, dense, no scales
            continue
        q, scales = quantize(v, "int8")
        expected += enc.best_encoding(q, 8, encodings, scales=scales.size)[1]
        block = w.blocks[name]
        assert block.nonzeros == np.count_nonzero(q)
        assert block.dense_bytes == enc.stored_bytes(q, "dense", 8, scales.size)
    assert w.stored_bytes == expected
    assert set(w.blocks) == {n for n, _ in net.named_parameters()}


def test_effective_macs_skip_zeros() -> None:
    # Half of the output channels are zero: effective MACs are exactly half.
    conv = nn.Conv2d(2, 4, 1, bias=False)
    with torch.no_grad():
        conv.weight[:2] = 0.0
    _, ops = record(conv, torch.randn(1, 2, 3, 3))
    assert ops[0].macs == 4 * 2 * 9
    assert ops[0].effective_macs == ops[0].macs // 2


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 2, 1, bias=False)
        self.conv2 = nn.Conv2d(2, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x)) + x


def test_live_bytes_hold_the_residual_branch() -> None:
    # Every tensor is 1x2x4x4 = 32 values = 32 bytes at 8 bits.
    # conv1: x (kept for the add) + y1            = 64
    # conv2: x + y1 (its input) + y2              = 96
    # add:   x + y2 + out                         = 96, in_bytes 64, out_bytes 32
    _, ops = record(_Residual(), torch.randn(1, 2, 4, 4))
    assert [(op.in_bytes, op.out_bytes, op.live_bytes) for op in ops] == [
        (32, 32, 64), (32, 32, 96), (64, 32, 96)]
    # 4-bit activations halve every number.
    _, ops4 = record(_Residual(), torch.randn(1, 2, 4, 4), act_bits=4)
    assert [op.live_bytes for op in ops4] == [32, 48, 48]


def test_live_bytes_at_least_in_plus_out() -> None:
    _, ops = record(_tiny(), torch.randn(1, 3, 8, 8))
    assert all(op.live_bytes >= op.in_bytes + op.out_bytes for op in ops)
    # The shortcut output of layer1.0 is alive while its main branch runs.
    by_name = {op.name: op for op in ops}
    main = by_name["layer1.0.conv2"]
    shortcut = by_name["layer1.0.downsample.1"].out_bytes
    assert main.live_bytes >= main.in_bytes + main.out_bytes + shortcut


def test_activation_is_fused_only_when_sole_reader() -> None:
    class TwoReaders(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return F.relu(y) + y

    _, ops = record(TwoReaders(), torch.randn(1, 2, 2, 2))
    relu = next(op for op in ops if op.kind == "act")
    assert not relu.fused
    assert (relu.in_bytes, relu.out_bytes) == (8, 8)
    _, seq = record(nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU()), torch.randn(1, 2, 2, 2))
    assert seq[1].fused is True
    assert (seq[1].in_bytes, seq[1].out_bytes) == (0, 0)


class _Attention(nn.Module):
    """Functional conv with a raw parameter, then single-head attention over its pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3, 1, 1))
        self.proj = nn.Parameter(torch.randn(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(x, self.w).flatten(2).transpose(1, 2)      # (1, 6, 4) tokens
        attn = torch.softmax(t @ t.transpose(1, 2), dim=-1)     # (1, 6, 6)
        return (attn @ t) @ self.proj                           # (1, 6, 5)


def test_functional_conv_and_attention_matmuls() -> None:
    _, ops = record(_Attention(), torch.randn(1, 3, 2, 3))
    assert [op.kind for op in ops] == ["conv", "matmul", "act", "matmul", "matmul"]
    conv, qk, _, av, proj = ops
    assert conv.weights == ("w",)
    assert conv.macs == 4 * 3 * 6                  # K*C*P*Q with a 1x1 kernel
    # q @ k^T: M=6 tokens, N=6, K=4 channels -> 144 MACs, activation x activation: no weights.
    assert (qk.weights, qk.dims, qk.macs, qk.effective_macs) == ((), {"M": 6, "N": 6, "K": 4},
                                                                 144, 144)
    assert av.macs == 6 * 4 * 6                    # attn (6x6) @ v (6x4)
    assert proj.weights == ("proj",)
    assert proj.macs == 6 * 5 * 4


def test_shared_parameter_is_one_block() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.fc(x))

    blocks, ops = record(Twice(), torch.randn(1, 3))
    assert [b.id for b in blocks] == ["fc.weight", "fc.bias"]
    assert [op.name for op in ops] == ["fc", "fc.1"]
    assert ops[0].weights == ops[1].weights


def test_masked_weight_is_named_after_its_parameter() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(2, 4))
            self.register_buffer("mask", torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 1]]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.weight * self.mask)

    blocks, ops = record(Masked(), torch.randn(1, 4))
    assert [(b.id, b.elements, b.nonzeros) for b in blocks] == [("weight", 8, 3)]
    assert [op.kind for op in ops] == ["linear"]
    assert ops[0].effective_macs == 8 * 3 // 8


class _Router(nn.Module):
    edgesim_kind = "router"

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(x), dim=-1)


class _Tree(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 4)
        self.router = _Router()
        self.leaves = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3)])

    def forward_path(self, x: torch.Tensor, leaf: int) -> torch.Tensor:
        h = self.stem(x)
        self.router(h)
        return self.leaves[leaf](h)


def test_router_ops_and_gates() -> None:
    tree = _Tree()
    blocks, ops = record(tree, torch.randn(1, 4), forward=lambda x: tree.forward_path(x, 1))
    by_name = {op.name: op for op in ops}
    assert by_name["router.fc"].kind == "router"
    assert by_name["router.fc"].router == "router"
    assert by_name["stem"].gate is None                # ran before any router
    assert by_name["router.fc"].gate is None           # a router does not gate itself
    assert by_name["leaves.1"].gate == "router"
    assert "leaves.0.weight" not in {b.id for b in blocks}   # the leaf not taken is not read


def test_binary_precision_hint() -> None:
    tree = _Tree()
    leaf = tree.leaves[0]
    leaf.edgesim_precision = "binary"
    with torch.no_grad():   # signed binary: row r is {0, +a} or {0, -a}
        leaf.weight.copy_(torch.tensor([[0.5, 0, 0.5, 0], [0, -0.3, 0, -0.3], [0, 0, 0, 0.1]]))
    blocks, ops = record(tree, torch.randn(1, 4), forward=lambda x: tree.forward_path(x, 0),
                         encodings=("dense", "signed_binary"))
    b = {blk.id: blk for blk in blocks}
    assert (b["leaves.0.weight"].bits, b["leaves.0.weight"].nonzeros) == (1, 5)
    # signed_binary: ceil(3/8) sign bytes + ceil(12/8) mask bytes + 3 fp32 scales = 1 + 2 + 12;
    # dense at 1 bit with the sign in the fp32 scale: ceil(12/8) + 3 * 4 = 14, the smaller.
    q = np.sign(leaf.weight.detach().numpy()).astype(np.int8)
    assert enc.stored_bytes(q, "signed_binary", 1, 3) == 15
    assert (b["leaves.0.weight"].encoding, b["leaves.0.weight"].stored_bytes) == ("dense", 14)
    # The int8 stem has both signs in a row: signed_binary cannot hold it, dense does.
    assert b["stem.weight"].encoding == "dense"
    assert b["leaves.0.bias"].bits == 32
    assert b["stem.weight"].bits == 8
    assert ops[-1].precision == "binary"
    assert ops[-1].effective_macs == ops[-1].macs * 5 // 12


def test_binary_hint_on_mixed_signs_names_the_parameter() -> None:
    tree = _Tree()
    tree.leaves[0].edgesim_precision = "binary"
    with pytest.raises(TraceError, match=r"leaves\.0\.weight"):
        record(tree, torch.randn(1, 4), forward=lambda x: tree.forward_path(x, 0))


def test_errors_name_the_module() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(4, 2))   # 3 features into a 4-input layer
    with pytest.raises(TraceError, match=r"module '1' \(Linear\)"):
        record(net, torch.randn(1, 4))
    assert not net[0]._forward_hooks   # hooks are removed after a failure
    with pytest.raises(TraceError, match="precision 'int2'"):
        record(net, torch.randn(1, 4), precision="int2")


def test_trace_workload_meta_and_training_flag() -> None:
    net = _tiny().train()
    w = trace(net, torch.randn(1, 3, 8, 8), name="tiny", family="dense", inputs=3,
              meta={"source": "test"})
    assert net.training                               # restored after the pass
    assert w.inputs == 3
    assert (w.meta["precision"], w.meta["input"], w.meta["source"]) == ("int8", (1, 3, 8, 8),
                                                                        "test")
    assert w.path_params(0) == w.total_params == sum(p.numel() for p in net.parameters())


def test_gathered_table_is_stored_as_the_parameter() -> None:
    # A relative-position-bias-like table of 5 values, gathered by a 3x3 index buffer into a
    # 9-value bias: what lies off-chip is the 5-value table, read by the add.
    class Biased(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Parameter(torch.arange(1.0, 6.0))
            self.register_buffer("index", torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 4]]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.table[self.index]

    blocks, ops = record(Biased(), torch.randn(1, 3, 3))
    assert [(b.id, b.elements) for b in blocks] == [("table", 5)]
    assert [(op.kind, op.weights) for op in ops] == [("eltwise", ("table",))]


def test_parametrized_weight_is_named_after_its_latent_parameter() -> None:
    # With torch.nn.utils.parametrize the parameter is "parametrizations.weight.original" (the
    # name in named_parameters() and in a state_dict); the block holds the tensor F.linear
    # reads, with the zeros the mask makes.
    class Mask(nn.Module):
        def forward(self, w: torch.Tensor) -> torch.Tensor:
            return w * (torch.arange(w.numel()).reshape(w.shape) % 2)

    fc = nn.Linear(4, 2, bias=False)
    torch.nn.utils.parametrize.register_parametrization(fc, "weight", Mask())
    blocks, ops = record(fc, torch.randn(1, 4))
    name = "parametrizations.weight.original"
    assert [(b.id, b.elements, b.nonzeros) for b in blocks] == [(name, 8, 4)]
    assert ops[0].weights == (name,)


def test_layout_hook_stores_a_weight_as_its_module_says() -> None:
    # A module's ``edgesim_weight_blocks`` hook replaces the tracer's own block: the op reads
    # the ids it returns and its effective MACs keep nonzeros / elements of the dense MACs.
    from edgesim.workload import WeightBlock

    fc = nn.Linear(4, 2, bias=False)
    calls = []

    def hook(bid, stored, precision):
        calls.append((bid, tuple(stored.shape), precision))
        parts = [WeightBlock(f"{bid}#a", 4, 2, 8, "csr", 5, 4),
                 WeightBlock(f"{bid}#b", 4, 4, 8, "csr", 7, 4)]
        return parts, [parts[0].id], 2

    fc.edgesim_weight_blocks = hook
    blocks, ops = record(fc, torch.randn(1, 4))
    assert calls == [("weight", (2, 4), "int8")]
    assert [b.id for b in blocks] == ["weight#a", "weight#b"]
    assert ops[0].weights == ("weight#a",)
    assert (ops[0].macs, ops[0].effective_macs) == (8, 8 * 2 // 8)


def test_op_kinds_come_from_one_table() -> None:
    from edgesim.trace import ops as opa
    from edgesim.workload import OP_KINDS

    assert set(opa.KINDS.values()) <= set(OP_KINDS)
    assert not set(opa.KINDS) & (opa.VIEWS | opa.FACTORIES)
    assert opa.kind_of("max", (torch.ones(1),)) == "pool"           # a reduction
    assert opa.kind_of("max", (torch.ones(1), torch.ones(1))) == "eltwise"
    assert opa.kind_of("addmm", ()) == "linear"


def test_the_tracer_names_no_family() -> None:
    import subprocess
    import sys
    code = ("import sys, edgesim.trace; "
            "print(sorted(m for m in sys.modules if m.startswith('edgesim.zoo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


class _TwoReaders(nn.Module):
    """conv -> relu -> (conv -> relu) + skip: the first relu's output has two readers."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = F.relu(self.a(x))
        return F.relu(self.b(y)) + y


def test_readers_are_recorded_through_fused_activations():
    # a's output goes through its fused relu to b and to the add; b's (through its relu) to
    # the add; the add's output is the network's, read by nothing
    w = trace(_TwoReaders(), torch.randn(1, 3, 8, 8), name="res", family="dense")
    ops = {op.name: op for op in w.paths[0].ops}
    unfused = [op for op in w.paths[0].ops if not op.fused]
    assert [op.kind for op in unfused] == ["conv", "conv", "eltwise"]
    a, b, add = unfused
    assert a.readers == (b.name, add.name)
    assert b.readers == (add.name,)
    assert add.readers == ()
    assert all(op.readers == () for op in ops.values() if op.fused)


# -- BatchNorm folded by the trace (record(..., fold_bn=True)) ---------------------------------


class _ConvBN(nn.Module):
    """conv (2 output channels, 1x1, no bias) -> BN -> ReLU, with numbers that fold exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2, eps=0.0)
        self.relu = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, -2.0]).reshape(2, 1, 1, 1))
            self.bn.weight.copy_(torch.tensor([2.0, 3.0]))        # gamma
            self.bn.bias.copy_(torch.tensor([0.5, -1.0]))         # beta
            self.bn.running_mean.copy_(torch.tensor([1.0, 2.0]))
            self.bn.running_var.copy_(torch.tensor([4.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def test_fold_bn_folds_in_one_pass_and_leaves_the_model_alone(monkeypatch) -> None:
    # g / sqrt(var + eps) = [2 / 2, 3 / 1] = [1, 3]:
    #   w' = w * [1, 3] = [1, -6];  b' = (0 - mean) * [1, 3] + beta = [-1 + 0.5, -6 - 1]
    net = _ConvBN().eval()
    before = {n: p.clone() for n, p in net.named_parameters()}
    stored: dict[str, np.ndarray] = {}

    def spy(bid, values, *args, **kwargs):
        stored[bid] = values
        return weight_block(bid, values, *args, **kwargs)

    weight_block = recorder.weight_block
    monkeypatch.setattr(recorder, "weight_block", spy)
    forwards = []
    net.register_forward_hook(lambda *_: forwards.append(1))
    blocks, ops = record(net, torch.randn(1, 1, 3, 3), fold_bn=True)
    assert forwards == [1]                                   # one pass of the model
    assert [(op.name, op.kind, op.fused) for op in ops] == [("conv", "conv", False),
                                                            ("relu", "act", True)]
    assert ops[0].weights == ("conv.weight", "conv.bias")
    assert [b.id for b in blocks] == ["conv.weight", "conv.bias"]
    assert stored["conv.weight"].flatten().tolist() == [1.0, -6.0]
    assert stored["conv.bias"].tolist() == [-0.5, -7.0]
    # the model is as it was: same parameters, bit for bit, its BN still there, no conv bias
    after = dict(net.named_parameters())
    assert after.keys() == before.keys()
    assert all(torch.equal(before[n], after[n]) for n in before)
    assert isinstance(net.bn, nn.BatchNorm2d)
    assert net.conv.bias is None


def _signed_binary() -> nn.Module:
    from edgesim.zoo.signed_binary import to_signed_binary
    return to_signed_binary(_tiny(), region=None)


def _nested() -> nn.Module:
    from edgesim.zoo.nested import NestedModel, nested_levels
    net = _tiny()
    return NestedModel(net, nested_levels(net, densities=(0.3, 0.6)), level=1)


def _with_stats(net: nn.Module) -> nn.Module:
    """BN statistics and affine parameters away from 1 and 0, so that folding shows."""
    return randomize_bn(net, seed=3).eval()


@pytest.mark.parametrize("make", [_tiny, SharedOutput, SharedBN, _signed_binary, _nested],
                         ids=["resnet", "shared-output", "shared-bn", "signed-binary", "nested"])
def test_fold_bn_traces_what_prepare_then_record_traces(make) -> None:
    # The law: folding in the trace gives, byte for byte, the blocks and ops of tracing the
    # model deploy.prepare folded (a copy, by a pass of its own) -- pairs it cannot fold stay.
    net = _with_stats(make())
    x = torch.randn(1, 3, 8, 8) if make in (_tiny, _signed_binary, _nested) else \
        torch.randn(1, 2, 3, 3)
    encodings = ("dense", "csr", "bitmap")
    expected = record(prepare(copy.deepcopy(net), x), x, encodings=encodings)
    got = record(net, x, encodings=encodings, fold_bn=True)
    assert pickle.dumps(got) == pickle.dumps(expected)
    norms = sum(op.kind == "norm" for op in got[1])
    assert norms == {SharedOutput: 1, SharedBN: 2}.get(make, 0)
