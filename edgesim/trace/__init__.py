"""The tracer: one eager forward pass of a PyTorch model -> WeightBlocks and LayerOps.

Public names: ``record``, ``trace`` (``edgesim.trace.recorder``); the parts are ``recorder``
(the dispatch mode and module hooks), ``ops`` (op kinds and MAC analysis), ``weights`` (quantise
and encode) and ``liveness`` (buffers, fusion, live bytes).

Built on ``torch.overrides.TorchFunctionMode`` (every torch function call is seen, so functional
ops and residual adds are recorded) plus forward pre/post hooks on every module (the module each
call runs in). It runs the model once, in eval mode under ``no_grad``, on a real example. It
names no model family: what a family needs is said by hints and hooks on its modules.

* Ops: conv (``N K C R S P Q``, C per group), linear and matmul (``M N K``, K the reduction;
  activation x activation matmuls have no weights), embedding, pool, eltwise (add, mul, cat),
  norm (unless folded), act (relu, gelu, softmax, ...), group/sample (gather, topk), other.
  View and shape ops are not ops. An activation that directly consumes the previous op's output,
  and is its only reader, is fused into it: it stays in the list with ``fused=True``
  and 0 in/out bytes.
* Bytes: an activation tensor costs ``ceil(numel * act_bits / 8)`` (``act_bits`` 8 by default:
  a Workload is traced at 8 bits and ``edgesim.encodings.resolve`` scales it to the
  hardware's); ``in_bytes`` sums the distinct activation inputs, ``out_bytes`` the outputs,
  ``live_bytes`` every activation buffer alive while the op runs (from its producer to its last
  reader, so a residual branch counts while the main branch runs), and never less than
  ``in_bytes + out_bytes``.
* Weights: one ``WeightBlock`` per parameter actually read (id = qualified parameter name; a
  tensor computed from parameters, e.g. ``weight * mask``, is named after its parameters),
  quantized once (``edgesim.trace.weights``) at the precision in force where it is first read;
  nonzeros are counted after quantization; biases are int32. Norm affine weights and
  parameters read by non-MAC ops are quantized per tensor (int8 when the precision is binary).
  Each block carries its stored bytes under every candidate encoding (``encodings``) that can
  hold it, in ``WeightBlock.encoded``; ``encoding`` / ``stored_bytes`` are the smallest.
* ``fold_bn=True``: the model as deployed, in the same pass and without changing or copying
  it: each conv/linear -> BatchNorm pair that ``edgesim.zoo.deploy`` would fold (each module
  called once, the conv's output read by its BN alone) has no BN op and the conv's weight and
  bias blocks hold the folded values (``fold.folded``), bit for bit those of tracing the
  model ``deploy.fold_batchnorm`` folded.
* ``edgesim_opaque = True`` on a module records its whole call as ONE op without weights, of
  kind ``edgesim_kind`` (e.g. ``sample`` for farthest-point sampling, ``group`` for ball query),
  with the activation bytes of its inputs and outputs; the torch calls inside are not recorded.
* Module hints: ``edgesim_precision`` (innermost wins) sets the precision of the module's ops and
  parameters; ``edgesim_kind = "router"`` makes every op inside the module a ``router`` op
  (``LayerOp.router`` = module name), and every weight op recorded after a router module ran gets
  ``LayerOp.gate`` = that router's module name (the last router seen). ``edgesim_region`` on the
  module holding a weight gives it one scale per region of that many consecutive elements
  (``weights.quantize_regions``; the regions of ``encodings.signed_binary_bytes``).
* Layout hook: a weight whose module, or a parametrization of it, has
  ``edgesim_weight_blocks(block_id, stored, precision) -> (blocks, ids_read, nonzeros)`` is
  stored as the hook says (``stored`` is the parameter as it lies in ``named_parameters()``):
  the op reads blocks ``ids_read`` (in the list ``blocks``, made by the hook) and its
  effective MACs skip all but ``nonzeros`` of the tensor's elements. Nested sparsity
  (``edgesim.zoo.nested.LevelMask``) stores a weight as one stream, a block per level.

>>> import torch
>>> from torch import nn
>>> from edgesim.trace import record
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
>>> blocks, ops = record(net, torch.randn(1, 3, 4, 4))
>>> [(op.name, op.kind, op.macs) for op in ops]     # conv: 4*3*3*3*4*4, linear: 2*64
[('0', 'conv', 1728), ('1', 'act', 0), ('3', 'linear', 128)]
>>> [(b.id, b.bits, b.elements) for b in blocks]
[('0.weight', 8, 108), ('0.bias', 32, 4), ('3.weight', 8, 128), ('3.bias', 32, 2)]
"""

from typing import Any

__all__ = ["record", "trace"]


def __getattr__(name: str) -> Any:
    """``record`` and ``trace`` are imported on first use: the recorder needs torch, while
    ``weights`` and ``liveness`` (used by the file importers, ``edgesim.frontends``) do not."""
    if name in __all__:
        from edgesim.trace import recorder
        return getattr(recorder, name)
    raise AttributeError(f"module 'edgesim.trace' has no attribute {name!r}")
