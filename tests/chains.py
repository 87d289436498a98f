"""Small workloads for the simulator's property tests: 1x1 convs, and chains of them."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from edgesim.workload import LayerOp, Path, WeightBlock, Workload


def conv(name: str, weights: str | None, *, k: int, p: int, in_bytes: int, out_bytes: int,
          macs: int = 1000) -> LayerOp:
    """A 1x1 conv of K output channels over P output rows (1 row = Q pixels)."""
    shape = (("N", 1), ("K", k), ("C", 8), ("R", 1), ("S", 1), ("P", p), ("Q", 4))
    return LayerOp(name, "conv", (weights,) if weights else (), in_bytes, out_bytes,
                   in_bytes + out_bytes, macs, macs, "int8", shape)


@st.composite
def conv_chains(draw):
    """1-4 convs in a chain, each with its own weights (100 B..20 KB over 1-32 channels) and
    activations (100 B..20 KB over 1-16 rows), 1-3 inputs."""
    n = draw(st.integers(1, 4))
    acts = draw(st.lists(st.integers(100, 20_000), min_size=n + 1, max_size=n + 1))
    blocks, ops_ = [], []
    for j in range(n):
        size = draw(st.integers(100, 20_000))
        blocks.append(WeightBlock(f"w{j}", size, size, 8, "dense", size, size))
        ops_.append(conv(f"c{j}", f"w{j}", k=draw(st.integers(1, 32)),
                          p=draw(st.integers(1, 16)), in_bytes=acts[j], out_bytes=acts[j + 1],
                          macs=draw(st.integers(1, 100_000))))
    inputs = draw(st.integers(1, 3))
    return Workload("chain", "dense", {b.id: b for b in blocks}, (Path("p", tuple(ops_)),),
                    np.zeros(inputs, int), {"precision": "int8"})
