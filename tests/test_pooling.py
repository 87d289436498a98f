"""Pools and a softmax's reductions on the MAC engine (``compute.pooling.unit: array``), in
closed form against Vela 5.2.0's rows (``calibration/vela/mlperf_tiny``), and the window a
TFLite pool records."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgesim.config import load_config
from edgesim.sim.mapping import Array, Pooling, Rates, op_cycles, pool_cycles
from edgesim.sim.plan import Machine
from edgesim.workload import LayerOp, Window

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf_tiny"


def _array(name: str) -> Array:
    return Machine.from_config(load_config(name)).array


def _pool(win: Window, func: str = "AVERAGE_POOL_2D") -> LayerOp:
    meta = {"func": func, "kernel": (win.r, win.s), "strides": (win.stride_h, win.stride_w),
            "input": (win.h, win.w, win.c), "output": (win.p, win.q)}
    return LayerOp("pool", "pool", (), win.h * win.w * win.c, win.p * win.q * win.c, 0, 0, 0,
                   "int8", (), meta)


#: KWS DS-CNN's average pool: 25 x 5 over 64 channels, one output pixel.
KWS = Window(25, 5, 25, 5, 25, 5, 64, 1, 1)


def test_kws_average_pool_on_u55_is_vela_s_row():
    # Ethos-U55-128: micro-block 1 x 2 pixels x 8 channels; the 1 x 1 x 64 OFM is one block of
    # 8 micro-blocks. Kernel pieces of at most 8 x 8: rows 8, 8, 8, 1 x 5 columns = 40 + 40 +
    # 40 + 5 = 125 steps, each 8 / 2 = 4 cycles per micro-block: MAC 125 x 8 x 4 = 4,000
    # (no delay: 8 micro-blocks). Output 0.5 x 64 = 32; issue bound (0 + 4,000 + 32) / 4 =
    # 1,008 is paid once after the MAC-bound block. First IFM block 8 rows x 5 x 64 = 2,560 B:
    # 32 + 2,560 / 8 = 352; last OFM block 64 B: 32 + 8 = 40.
    # 4,000 + 1,008 + 352 + 40 = 5,400: Vela's AvgPool row on u55-128_shared (5,400)
    u55 = _array("ethos_u55")
    assert pool_cycles(u55, KWS, 8, maximum=False) == 4000 + 1008 + 352 + 40 == 5400
    assert op_cycles(u55, _pool(KWS), 128, 0, 0, 8) == 5400


def test_kws_average_pool_on_u65():
    # Ethos-U65-512: 2 cores x 8 channels = 16 columns, micro-block 2 x 2: 4 micro-blocks,
    # MAC 125 x 4 x 4 = 2,000; output 0.125 x 64 = 8; issue (2,000 + 8) / 4 = 502; IFM
    # 32 + 2,560 / 16 = 192; OFM 32 + 64 / 16 = 36: 2,730 (Vela: 2,770, 0.99x)
    assert pool_cycles(_array("ethos_u65"), KWS, 8, maximum=False) == 2000 + 502 + 192 + 36


def test_resnet8_average_pool_on_u55_and_u65():
    # 8 x 8 over 8 x 8 x 64: one piece of 64 steps. U55: 64 x 8 x 4 = 2,048; output 32; issue
    # (2,048 + 32) / 4 = 520; IFM 32 + 4,096 / 8 = 544; OFM 40: 3,152 (Vela 3,152).
    # U65: 64 x 4 x 4 = 1,024; output 8; issue 258; IFM 32 + 256; OFM 36: 1,606 (Vela 1,606)
    win = Window(8, 8, 8, 8, 8, 8, 64, 1, 1)
    assert pool_cycles(_array("ethos_u55"), win, 8, maximum=False) == 2048 + 520 + 544 + 40
    assert pool_cycles(_array("ethos_u65"), win, 8, maximum=False) == 1024 + 258 + 288 + 36


def test_vww_pool_is_two_blocks_of_128_channels():
    # 3 x 3 over 3 x 3 x 256 on U55: blocks of 128 channels (compute.pooling.block), 2 of them.
    # Per block: MAC 9 x 16 micro-blocks x 4 = 576, output 64; IFM 32 + 1,152 / 8 = 176, OFM
    # 32 + 128 / 8 = 48; issue (|48 - 176| + 576 + 64) / 4 = 192. MAC-bound: 2 x 576 + 192 +
    # 48 + 176 = 1,568 (Vela 1,568)
    win = Window(3, 3, 3, 3, 3, 3, 256, 1, 1)
    assert pool_cycles(_array("ethos_u55"), win, 8, maximum=False) == 2 * 576 + 192 + 48 + 176


def test_a_max_pool_pays_the_max_pool_output_rate():
    # ResNet-50's 3 x 3 / 2 max pool, 112 x 112 x 64 -> 56 x 56 x 64, on U55 in 4 x 8 x 64
    # blocks (14 x 7 = 98). MAC per block 9 x (4 x 4) x 8 x 4 = 4,608 (x 98 = 451,584);
    # output 0.25 x 2,048 = 512; IFM 9 x 17 x 64 B: 32 + 1,224 = 1,256; OFM 2,048 B: 32 + 256
    # = 288; issue (968 + 4,608 + 512) / 4 = 1,522: 454,650 (Vela's MaxPool row 453,053)
    win = Window(3, 3, 2, 2, 112, 112, 64, 56, 56)
    u55 = _array("ethos_u55")
    assert pool_cycles(u55, win, 8, maximum=True) == 98 * 4608 + 1522 + 288 + 1256
    assert op_cycles(u55, _pool(win, "MAX_POOL_2D"), 128, 0, 0, 8) == 454650


def test_softmax_max_and_sum_run_on_the_mac_engine():
    # KWS's softmax over 12 logits on U55: 26 element-wise commands, 544 cycles (flash
    # constants, derived in test_op_classes' lowered-softmax test); the max is a 1 x 12 max
    # pool: pieces 8 + 4 = 12 steps x 4 = 48, + 2 x 2 delay (one micro-block) = 52, output 1,
    # issue 53 / 4 = 13.25, IFM 32 + 8 / 8, OFM 32: 130 (Vela 134); the sum: max(32, 4) + 2
    # = 34, output 1, issue 35 / 4 = 8.75, IFM 32 + 48 / 8, OFM 32: 112 (Vela 112)
    u55 = _array("ethos_u55")
    fc = LayerOp("fc", "linear", ("w",), 64, 12, 76, 768, 768, "int8", (("M", 1), ("N", 12),
                                                                         ("K", 64)))
    sm = LayerOp("sm", "act", (), 0, 0, 0, 0, 0, "int8", (), {"func": "SOFTMAX"}, fused=True)
    assert op_cycles(u55, sm, 128, 0, 0, 8, producer=fc) == 544 + 130 + 112 == 786


def test_u85_pools_with_a_16_deep_micro_block():
    # Ethos-U85-1024, pool micro-block 2 x 4 x 16 (compute.pooling.ublock), no division by
    # cores. VWW's 3 x 3 over 256 channels is one block: MAC 9 x 16 x 4 = 576; output 0.0625
    # x 256 = 16; issue (576 + 16) / 4 = 148; IFM 32 + 2,304 / 16 = 176; OFM 32 + 256 / 16 =
    # 48: 948 (Vela 948). KWS: 125 x 4 x 4 = 2,000 + 501 + 192 + 36 = 2,729 (Vela 2,749)
    u85 = _array("ethos_u85_edge")
    vww = Window(3, 3, 3, 3, 3, 3, 256, 1, 1)
    assert pool_cycles(u85, vww, 8, maximum=False) == 576 + 148 + 176 + 48 == 948
    assert pool_cycles(u85, KWS, 8, maximum=False) == 2000 + 501 + 192 + 36


def test_pools_stay_where_they_were_without_a_pooling_unit():
    rates = Rates(pool=1.0, command=16)
    vector = Array(2, 8, "output_stationary", 4, 8, kind="broadcast", ublock_width=2,
                   rates=rates)
    on_array = Array(2, 8, "output_stationary", 4, 8, kind="broadcast", ublock_width=2,
                     rates=rates, pooling=Pooling("array", latency=32, block=(4, 8, 128)))
    op = _pool(KWS)
    assert op_cycles(vector, op, 128, 0, 0, 8) == 8000         # 1 cycle per input element
    assert op_cycles(on_array, op, 128, 0, 0, 8) != 8000
    # a pool without a recorded window, or a MEAN, keeps its rate on either
    bare = LayerOp("p", "pool", (), 8000, 64, 0, 0, 0, "int8", (), {"func": "max_pool2d"})
    mean = _pool(KWS, "MEAN")
    for a in (vector, on_array):
        assert op_cycles(a, bare, 128, 0, 0, 8) == op_cycles(a, mean, 128, 0, 0, 8) == 8000


@pytest.mark.parametrize("name", ["npu_small", "nvdla_small", "edgetpu", "stm32h7", "stm32h7a3"])
def test_other_configs_keep_pools_off_the_array(name):
    assert load_config(name).pooling["unit"] == "vector"


def test_window_is_none_without_a_kernel():
    assert LayerOp("p", "pool", (), 1, 1, 0, 0, 0, "int8").window is None


@pytest.mark.skipif(not (MODELS / "kws_dscnn_int8.tflite").exists(), reason="no MLPerf Tiny")
def test_tflite_pool_records_its_window():
    from edgesim import api
    w = api.workload(str(MODELS / "kws_dscnn_int8.tflite"), use_cache=False)
    (pool,) = [op for op in w.paths[0].ops if op.kind == "pool"]
    assert pool.window == Window(25, 5, 25, 5, 25, 5, 64, 1, 1)
