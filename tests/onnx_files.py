"""Small ONNX files for the importer's tests, built with ``onnx.helper`` (no torch, no runtime).

``model(nodes, inputs, outputs, inits)`` makes a ModelProto; ``save`` writes it; ``resnet``
makes a ResNet-18-shaped float network with seeded random weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[tuple[str, int, Sequence]],
          outputs: Sequence[str], inits: Mapping[str, np.ndarray] | None = None, *,
          opset: int = 17, ms: bool = False) -> onnx.ModelProto:
    """A model of ``nodes``; ``inputs`` as (name, element type, shape), outputs untyped."""
    graph = helper.make_graph(
        list(nodes), "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(o, F, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()])
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("com.microsoft", 1)]
                                                  if ms else [])
    return helper.make_model(graph, opset_imports=opsets)


def save(m: onnx.ModelProto, folder: Path, name: str = "m.onnx") -> Path:
    path = folder / name
    path.write_bytes(m.SerializeToString())
    return path


def conv_bn(prefix: str, x: str, cin: int, cout: int, k: int, stride: int,
            rng: np.random.Generator, inits: dict[str, np.ndarray], relu: bool = True
            ) -> tuple[list[onnx.NodeProto], str]:
    """Conv (no bias) -> BatchNormalization (-> Relu), weights and statistics seeded."""
    inits[f"{prefix}.w"] = (rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32)
    inits[f"{prefix}.g"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    inits[f"{prefix}.b"] = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    inits[f"{prefix}.m"] = rng.uniform(-0.1, 0.1, cout).astype(np.float32)
    inits[f"{prefix}.v"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    nodes = [helper.make_node("Conv", [x, f"{prefix}.w"], [f"{prefix}.c"], strides=[stride] * 2,
                              pads=[k // 2] * 4, name=f"{prefix}.conv"),
             helper.make_node("BatchNormalization", [f"{prefix}.c", f"{prefix}.g", f"{prefix}.b",
                                                     f"{prefix}.m", f"{prefix}.v"],
                              [f"{prefix}.bn"], name=f"{prefix}.bn")]
    if relu:
        nodes.append(helper.make_node("Relu", [f"{prefix}.bn"], [f"{prefix}.r"]))
    return nodes, nodes[-1].output[0]


def resnet(blocks: Sequence[int] = (2, 2, 2, 2), classes: int = 1000,
           seed: int = 0) -> onnx.ModelProto:
    """A ResNet (basic blocks, ``blocks`` per stage) as a float ONNX graph with unfolded BNs."""
    rng = np.random.default_rng(seed)
    inits: dict[str, np.ndarray] = {}
    nodes, x = conv_bn("stem", "x", 3, 64, 7, 2, rng, inits)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], kernel_shape=[3, 3], strides=[2, 2],
                                  pads=[1, 1, 1, 1]))
    x, cin = "pool", 64
    for s, n in enumerate(blocks):
        cout = 64 * 2**s
        for b in range(n):
            p = f"s{s}b{b}"
            stride = 2 if b == 0 and s > 0 else 1
            a, ya = conv_bn(f"{p}.a", x, cin, cout, 3, stride, rng, inits)
            c, yc = conv_bn(f"{p}.b", ya, cout, cout, 3, 1, rng, inits, relu=False)
            nodes += a + c
            short = x
            if stride != 1 or cin != cout:
                d, short = conv_bn(f"{p}.d", x, cin, cout, 1, stride, rng, inits, relu=False)
                nodes += d
            nodes += [helper.make_node("Add", [yc, short], [f"{p}.add"]),
                      helper.make_node("Relu", [f"{p}.add"], [f"{p}.out"])]
            x, cin = f"{p}.out", cout
    inits["fc.w"] = (rng.standard_normal((classes, cin)) * 0.05).astype(np.float32)
    inits["fc.b"] = rng.uniform(-0.1, 0.1, classes).astype(np.float32)
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1)]
    return model(nodes, [("x", F, ["batch", 3, 224, 224])], ["logits"], inits)
