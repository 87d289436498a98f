"""``edgesim trace MODEL``: a model's Workload (blocks and ops) dumped as JSON.

Public names: ``add_parser``, ``main``.
"""

from __future__ import annotations

import json

from edgesim.cli._common import UsageError, add_input_shape, progress_printer, write

__all__ = ["add_parser", "main"]


def add_parser(subparsers) -> None:
    """Add ``trace`` to an argparse subparsers object."""
    t = subparsers.add_parser("trace", help="dump a model's Workload (blocks and ops) as JSON")
    t.add_argument("model", help="registry name, NAME@LEVEL, package.module:factory, or a "
                   ".tflite / .onnx file")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--config", help="take precision and formats from this config")
    t.add_argument("--out")
    add_input_shape(t)


def main(a) -> int:
    """Handler of ``edgesim trace``: precision and formats from ``--config`` (default int8)."""
    from dataclasses import asdict

    from edgesim import api
    precision, act_bits, formats = "int8", 8, None
    hw_sets = [s for s in a.sets if not s.startswith("model.")]
    if hw_sets and not a.config:
        raise UsageError(f"trace: --set {hw_sets[0]} needs --config CONFIG (--set changes a "
                         "hardware config, whose precision and formats the trace takes)")
    if a.config:
        from edgesim.config import load_config
        hw = load_config(a.config, [s for s in a.sets if not s.startswith("model.")])
        precision, act_bits, formats = hw.precision, hw.act_bits, hw.formats
    level = api._model_level([s for s in a.sets if s.startswith("model.")])
    from edgesim.request import model_request
    model = model_request(a.model, level=level, input_shape=a.input_shape)
    w = api.workload(model, precision=precision, act_bits=act_bits, formats=formats,
                     progress=progress_printer())
    obj = {"model": api.model_info(w),
           "blocks": [asdict(b) for b in w.blocks.values()],
           "paths": [{"name": p.name, "ops": [asdict(op) for op in p.ops]} for p in w.paths]}
    write(json.dumps(obj, indent=1, default=str), a.out)
    return 0
