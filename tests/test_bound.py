"""The bound of an op and of an inference (``edgesim.sim.bound``): what decided the op's end."""

from __future__ import annotations

import pytest

from edgesim.sim import simulate
from edgesim.sim.bound import BOUNDS, dominant, op_bounds, stall_bounds
from edgesim.testing import tiny_config, tiny_workload


def _bounds(r, i):
    return [row.bound for row in r.layer_rows if row.input == i]


def test_cold_ops_wait_for_their_weights_and_steady_state_computes():
    # tiny: 1 GHz, 1 GB/s (1 ns per byte), prefetch depth 2, the arena off-chip (a reads the
    # 100 B input, b writes its 10 B output). Cold, one port in op order: a's 1000 B weights
    # and 100 B input arrive at 1100 ns, after its 1022 cycles: it waited, mostly for weights.
    # relu: 13 cycles on the vector unit, nothing to wait for. b's 2000 B weights and 10 B
    # output end at 3110 ns, its 736 cycles at 1849: weights. Inference 0: 1100 + 13 + 1997 ns
    # -> weights. Inference 1 (1 MiB keeps the weights): a's input arrives at 100 ns, b's
    # output leaves in 10 ns: no op waits -> compute (1758 of 1771 ns).
    r = simulate(tiny_config(), tiny_workload(inputs=2), per_layer=True)
    assert _bounds(r, 0) == ["weights", "vector", "weights"]
    assert _bounds(r, 1) == ["compute", "vector", "compute"]
    assert [row.bound for row in r.rows] == ["weights", "compute"]


def test_a_narrow_sram_port_bounds_every_op():
    # 1 B/cycle: a reads and writes 100 + 100 + 1000 B (1200 > 1022 cycles), relu 200 (> 13),
    # b 100 + 10 + 2000 (2110 > 736): each op's cycles are its port cycles
    r = simulate(tiny_config(overrides=["sram.port_width=1B"]), tiny_workload(inputs=2),
                 per_layer=True)
    steady = [row for row in r.layer_rows if row.input == 1]
    assert [row.bound for row in steady] == ["sram_port"] * 3
    assert [row.compute_cycles for row in steady] == [1200, 200, 2110]


def test_a_spilled_activation_read_back_bounds_the_op_that_reads_it():
    # no activation reserve: a's 100 B output is written out (after its 100 B input read) and
    # read back by relu (100 ns each on the one port): relu's 13 cycles wait for it
    hw = tiny_config(overrides=["sram.activation_reserve=0B"])
    r = simulate(hw, tiny_workload(inputs=2), per_layer=True)
    steady = {row.name: row for row in r.layer_rows if row.input == 1}
    assert steady["relu"].bound == "activations"
    assert steady["relu"].stall_s > 0


@pytest.mark.parametrize("overrides", [[], ["sram.port_width=1B"], ["sram.activation_reserve=0B"],
                                       ["offchip.bandwidth=100MB/s"]])
@pytest.mark.parametrize("sram", [1500, "1 MiB"])
def test_transfer_bound_ops_stalled_and_the_inference_bound_is_where_time_went(overrides, sram):
    r = simulate(tiny_config(sram=sram, overrides=overrides), tiny_workload(inputs=3),
                 per_layer=True)
    for row in r.layer_rows:
        assert row.bound in BOUNDS
        # a transfer bounds an op exactly when the op waited for bytes
        assert (row.bound in ("weights", "activations")) == (row.stall_s > 0)
    for inf in r.rows:
        ops = [row for row in r.layer_rows if row.input == inf.input]
        spent = {b: sum(o.compute_end_s - o.compute_start_s for o in ops if o.bound == b)
                 for b in BOUNDS if b != "none"}
        assert spent[inf.bound] == max(spent.values())


def test_dominant_breaks_ties_in_bounds_order_and_no_time_is_none():
    assert dominant(["weights", "compute"], [5, 5]) == "compute"
    assert dominant(["none", "none"], [0, 0]) == "none"


def test_stall_bounds_looking_at_the_ops_that_moved_bytes_is_op_bounds():
    # An op that moves nothing ends its compute time after the one before; so looking only at
    # the ops that moved bytes (``stall_bounds``, what the engine's memo run does) must give
    # every op's bound and the inference's as ``op_bounds`` does over all ops: on random
    # timelines whose other ops end right after their compute, stalls of 1 ps included.
    import numpy as np
    rng = np.random.default_rng(4)
    for _ in range(300):
        n = int(rng.integers(1, 12))
        units = [str(u) for u in rng.choice(["compute", "vector", "sram_port", "none"], n)]
        compute = [0 if u == "none" else int(rng.integers(0, 50)) for u in units]
        ops = sorted(rng.choice(n, int(rng.integers(0, n + 1)), replace=False).tolist())
        kept = [int(rng.integers(0, 40)) if j in ops else 0 for j in range(n)]
        streamed = [int(rng.integers(0, 40)) if j in ops else 0 for j in range(n)]
        acts = [int(rng.integers(0, 60)) for _ in range(n)]
        ended, prev = [], 0
        for j in range(n):
            wait = int(rng.choice([0, 1, int(rng.integers(0, 90))])) if j in ops else 0
            prev += compute[j] + wait
            ended.append(prev)
        unit_time = {}
        for u, c in zip(units, compute, strict=True):
            unit_time[u] = unit_time.get(u, 0) + c
        moved = [k + s for k, s in zip(kept, streamed, strict=True)]
        assert (stall_bounds(units, unit_time, compute, ended, kept, streamed, acts, ops)
                == op_bounds(units, compute, ended, moved, acts))
