"""Small TFLite files written for the tests: the ``flatbuffers`` builder and the ``tflite``
package's generated builder functions, no TensorFlow.

``T`` is a tensor (NHWC shape, element type, constant data or None, per-channel scales),
``Op`` an operator (builtin code, tensor indices, options as ``(union type, table name,
{field: value})``); ``write(path, tensors, ops, inputs, outputs)`` writes the model and returns
its path. ``buffer`` on a tensor shares (or breaks: out of range) a buffer index;
``external`` puts a buffer's data outside the flatbuffer at a given (offset, size).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

INT8, INT32, FLOAT32 = 9, 2, 0
CONV, DEPTHWISE, FC, ADD, AVG_POOL, RELU, RESHAPE, SOFTMAX, SVDF = 3, 4, 9, 0, 1, 19, 22, 25, 27


def conv_opts(padding: int = 0, stride: int = 1, act: int = 0) -> tuple:
    """Conv2DOptions: padding 0 SAME / 1 VALID, fused activation 0 none / 1 RELU / 3 RELU6."""
    return (1, "Conv2DOptions", {"Padding": padding, "StrideW": stride, "StrideH": stride,
                                 "FusedActivationFunction": act, "DilationWFactor": 1,
                                 "DilationHFactor": 1})


def dw_opts(multiplier: int, padding: int = 0, stride: int = 1, act: int = 0) -> tuple:
    return (2, "DepthwiseConv2DOptions", {
        "Padding": padding, "StrideW": stride, "StrideH": stride, "DepthMultiplier": multiplier,
        "FusedActivationFunction": act, "DilationWFactor": 1, "DilationHFactor": 1})


def fc_opts(act: int = 0) -> tuple:
    return (8, "FullyConnectedOptions", {"FusedActivationFunction": act})


def pool_opts(size: int, stride: int = 1, padding: int = 1) -> tuple:
    return (5, "Pool2DOptions", {"Padding": padding, "StrideW": stride, "StrideH": stride,
                                 "FilterWidth": size, "FilterHeight": size})


@dataclass
class T:
    shape: tuple[int, ...]
    type: int = INT8
    data: np.ndarray | None = None
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    axis: int = 0
    name: str = ""
    buffer: int | None = None            # None: its own buffer (or 0 without data)


@dataclass
class Op:
    code: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: tuple | None = None


def _vector(b: flatbuffers.Builder, start, offsets: list[int]) -> int:
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _table(b: flatbuffers.Builder, name: str, fields: dict) -> int:
    getattr(tflite, f"{name}Start")(b)
    for k, v in fields.items():
        getattr(tflite, f"{name}Add{k}")(b, v)
    return getattr(tflite, f"{name}End")(b)


def build(tensors: list[T], ops: list[Op], inputs: list[int], outputs: list[int],
          external: dict[int, tuple[int, int]] | None = None,
          description: str = "edgesim test") -> bytes:
    """The flatbuffer bytes of a one-subgraph model."""
    b = flatbuffers.Builder(1024)
    datas: list[np.ndarray | None] = [None]
    index: list[int] = []
    for t in tensors:
        if t.buffer is not None:
            index.append(t.buffer)
        elif t.data is None:
            index.append(0)
        else:
            index.append(len(datas))
            datas.append(t.data)
    external = external or {}
    while len(datas) <= max(external, default=0):
        datas.append(None)
    buffers = []
    for i, d in enumerate(datas):
        vec = (b.CreateNumpyVector(np.frombuffer(np.ascontiguousarray(d).tobytes(), np.uint8))
               if d is not None and i not in external else None)
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        if i in external:
            tflite.BufferAddOffset(b, external[i][0])
            tflite.BufferAddSize(b, external[i][1])
        buffers.append(tflite.BufferEnd(b))
    tens = []
    for t, buf in zip(tensors, index, strict=True):
        name = b.CreateString(t.name or f"tensor{len(tens)}")
        shape = b.CreateNumpyVector(np.asarray(t.shape, dtype=np.int32))
        quant = None
        if t.scales:
            sc = b.CreateNumpyVector(np.asarray(t.scales, dtype=np.float32))
            zp = b.CreateNumpyVector(np.asarray(t.zero_points or [0] * len(t.scales),
                                                dtype=np.int64))
            tflite.QuantizationParametersStart(b)
            tflite.QuantizationParametersAddScale(b, sc)
            tflite.QuantizationParametersAddZeroPoint(b, zp)
            tflite.QuantizationParametersAddQuantizedDimension(b, t.axis)
            quant = tflite.QuantizationParametersEnd(b)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, t.type)
        tflite.TensorAddBuffer(b, buf)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tens.append(tflite.TensorEnd(b))
    codes = sorted({op.code for op in ops})
    operators = []
    for op in ops:
        ins = b.CreateNumpyVector(np.asarray(op.inputs, dtype=np.int32))
        outs = b.CreateNumpyVector(np.asarray(op.outputs, dtype=np.int32))
        opts = _table(b, op.options[1], op.options[2]) if op.options else None
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, codes.index(op.code))
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, op.options[0])
            tflite.OperatorAddBuiltinOptions(b, opts)
        operators.append(tflite.OperatorEnd(b))
    sg_t = _vector(b, tflite.SubGraphStartTensorsVector, tens)
    sg_i = b.CreateNumpyVector(np.asarray(inputs, dtype=np.int32))
    sg_o = b.CreateNumpyVector(np.asarray(outputs, dtype=np.int32))
    sg_ops = _vector(b, tflite.SubGraphStartOperatorsVector, operators)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, sg_t)
    tflite.SubGraphAddInputs(b, sg_i)
    tflite.SubGraphAddOutputs(b, sg_o)
    tflite.SubGraphAddOperators(b, sg_ops)
    sg = tflite.SubGraphEnd(b)
    opcodes = [_table(b, "OperatorCode", {"DeprecatedBuiltinCode": min(c, 127),
                                          "BuiltinCode": c, "Version": 1}) for c in codes]
    desc = b.CreateString(description)
    m_codes = _vector(b, tflite.ModelStartOperatorCodesVector, opcodes)
    m_sgs = _vector(b, tflite.ModelStartSubgraphsVector, [sg])
    m_bufs = _vector(b, tflite.ModelStartBuffersVector, buffers)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, m_codes)
    tflite.ModelAddSubgraphs(b, m_sgs)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, m_bufs)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def write(path: Path, tensors: list[T], ops: list[Op], inputs: list[int], outputs: list[int],
          **kwargs) -> Path:
    """``build`` written to ``path``; returns ``path``."""
    path.write_bytes(build(tensors, ops, inputs, outputs, **kwargs))
    return path
