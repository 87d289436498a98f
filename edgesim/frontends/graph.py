"""A deployed network as a file states it, framework-neutral: the seam between the file
importers (``tflite``, ``onnx``) and the Workload IR.

Public names: ``Tensor``, ``Weights``, ``Node``, ``Graph``, ``to_workload``.

An importer reads its file format and returns a ``Graph``: activation tensors with their shapes,
and nodes in execution order, each with its loop nest, MACs and the weights exactly as the file
stores them (integers, with per-channel scales and zero points). ``to_workload`` turns a Graph
into a one-path ``Workload`` the same way the PyTorch tracer does (fusion of activations into
their producer, activation bytes at 8 bits, tensor liveness, one ``WeightBlock`` per stored
tensor with its bytes under every candidate encoding, measured on the stored integers).

Layouts are the tracer's, whatever the file's: a conv weight is ``(K, C / groups, R, S)``, a
depthwise weight ``(K, 1, R, S)`` with ``groups = C``, a fully connected weight ``(N, K)``;
activation shapes are ``(N, C, H, W)`` or ``(N, features)``. Importers transpose from the file's
layout (TFLite: OHWI, depthwise 1HW(C*M), NHWC activations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgesim.workload import Workload

__all__ = ["Graph", "Node", "Tensor", "Weights", "to_workload"]


@dataclass(frozen=True, slots=True)
class Tensor:
    """An activation tensor: its shape (batch first, channels second) and bits per element."""

    name: str
    shape: tuple[int, ...]
    bits: int = 8

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True, slots=True, eq=False)
class Weights:
    """A constant tensor as stored in the file.

    ``values`` are the stored integers in the tracer's layout (int8 for TFLite, int8 or uint8
    for ONNX); ``scales`` and ``zero_points`` one per output channel, or one for the tensor.
    A value equal to its channel's zero point is a real zero of the stored tensor. ``bits``:
    8 for weights, 32 for biases.
    """

    values: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    bits: int = 8


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One operator of the file, in execution order.

    ``kind`` is a ``edgesim.workload.OP_KINDS`` kind; ``op`` the file's own operator name
    (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``QLinearConv``, ...), kept for reports. ``inputs`` and
    ``outputs`` name activation tensors of ``Graph.tensors`` (constants are not inputs).
    ``shape`` is the loop nest as the tracer writes it (``N K C R S P Q`` with C per group for a
    conv, ``M N K`` for a fully connected op); ``macs`` its multiply-accumulates for a batch of
    one. ``weight`` / ``bias`` are the constants it reads; ``groups`` its conv groups;
    ``activation`` a fused activation the file states on the op (``RELU``, ``RELU6``, ...), or
    None. ``meta`` is provenance for reports (strides, padding, the file's op index).
    """

    name: str
    kind: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shape: tuple[tuple[str, int], ...] = ()
    macs: int = 0
    weight: Weights | None = None
    bias: Weights | None = None
    groups: int = 1
    activation: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """A network as a file states it: tensors, nodes in execution order, graph inputs/outputs.

    ``aliases`` maps the output of a view (reshape, squeeze, flatten) to the tensor it views:
    a view is not an op and shares its input's buffer. ``source`` names the format
    (``tflite`` / ``onnx``) and ``file`` the path it was read from.
    """

    name: str
    tensors: Mapping[str, Tensor]
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    file: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of the first graph input without its batch dimension."""
        return tuple(self.tensors[self.inputs[0]].shape[1:])


def to_workload(graph: Graph, *, encodings: Sequence[str]) -> Workload:
    """The one-path Workload of ``graph``: ops as the tracer makes them, weights measured on
    the stored integers under every candidate in ``encodings``."""
    raise NotImplementedError("edgesim.frontends.graph.to_workload is being written")
