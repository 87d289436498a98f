"""Bytes per weight block under every encoding, for any registered model.

Usage: ``python experiments/formats.py MODEL [--config CONFIG] [--out CSV] [--quick]``

Public names: ``QUICK_MODEL``, ``ENCODING_COLUMNS``, ``FILE_COLUMNS``, ``block_table``,
``file_table``, ``nested_table``, ``main``.

A ``.tflite`` or ``.onnx`` file is imported (``edgesim.frontends``) and its blocks listed with
the bytes the importer measured on the integers the file stores, one column per
``FILE_COLUMNS`` encoding.

The model is built (``edgesim.zoo.registry.build_model``), prepared as deployed
(``edgesim.zoo.deploy.prepare``: BatchNorm folded) and traced once (``edgesim.trace.record``), so
the blocks are exactly the tracer's. Each block's stored tensor is rebuilt the way the tracer builds
it (``edgesim.trace.weights`` at the block's precision and per-channel scales) and measured with
``edgesim.encodings.encoding_table``; the column of the encoding the tracer chose must equal the
tracer's ``stored_bytes`` (the script fails otherwise, since the two would disagree about the
model). One row per weight block:

* ``block``, ``shape``, ``elements``, ``nonzeros``, ``sparsity``, ``bits``;
* ``encoding``, ``stored_bytes`` and ``dense_bytes``: what the tracer chose (the smallest
  encoding the model and the config allow), its bytes, and the tracer's dense bytes;
* one column per encoding (``ENCODING_COLUMNS``), empty where it does not apply: biases are
  stored int32 dense only; ``signed_binary`` holds 1-bit tensors whose regions have one sign.
  A nested weight is one block per level (``<param>#Lk``): its columns are the bytes of that
  level's segment alone (the scales counted with level 1), ``nested`` is the segment of the one
  stream (``encodings.nested_bytes`` prefix k minus prefix k-1) and ``dense`` does not apply (the
  tracer gives the whole tensor's dense bytes to level 1 and 0 to the others);
* ``best``: the smallest of the row's encodings.

A last row ``total`` sums every column; an encoding column's total stores each block in that
encoding where it applies and at its ``dense_bytes`` elsewhere. For a nested model the script
also prints ``edgesim.zoo.nested.nested_storage_report``'s total: the one stream vs N separately
stored CSR sub-networks (all rows written to ``<CSV stem>_nested.csv`` with ``--out``).

``--config`` takes the precision, activation bits and decodable encodings from a hardware config
(default: int8 and the model's own preferred encodings, as ``edgesim models``). ``NAME@K``
selects nested level K. A routed tree (Sigma-Branch) lists every block of its path catalogue
(each path traced once, as ``edgesim.build`` does). ``--quick`` uses ``QUICK_MODEL`` when no
MODEL is given. A bad model or config is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["ENCODING_COLUMNS", "FILE_COLUMNS", "QUICK_MODEL", "block_table", "file_table",
           "main", "nested_table"]

#: The model ``--quick`` measures (CIFAR-size ResNet-50: seconds to build and trace).
QUICK_MODEL = "dense_r50_c100"

#: The encoding columns, in ``edgesim.encodings.ENCODINGS`` order.
ENCODING_COLUMNS = ("dense", "bitmap", "csr", "csc", "rle", "signed_binary", "nested")

_LATENT = ".parametrizations.weight.original"


class _ScriptError(Exception):
    """A mismatch between this script's bytes and the tracer's (a bug, not a user error)."""


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="registry name, NAME@LEVEL, package.module:factory "
                   "or a .tflite / .onnx file")
    p.add_argument("--config", help="hardware config: precision, activation bits, encodings")
    p.add_argument("--out", help="also write the table to this CSV file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help=f"MODEL defaults to {QUICK_MODEL}")
    a = p.parse_args(argv)
    if a.model is None:
        if not a.quick:
            p.error("give a MODEL (or --quick)")
        a.model = QUICK_MODEL
    return a


def _axis(shape: tuple[int, ...], scales: int) -> int | None:
    """The channel axis a tensor was quantized along, from its scale count (None: per tensor)."""
    if scales <= 1 or not shape:
        return None
    if shape[0] == scales:
        return 0
    if shape[-1] == scales:
        return len(shape) - 1
    raise _ScriptError(f"no axis of shape {shape} has {scales} channels")


def _stored_values(model, block, params: dict, modules: dict):
    """The float tensor the tracer quantized for ``block`` (a non-nested block)."""
    bid = block.id
    param = params.get(bid)
    if bid.endswith(_LATENT):
        owner = modules[bid[: -len(_LATENT)]]
        values = owner.weight            # the parametrized (masked / binarized) tensor
    elif param is not None:
        values = param
    else:
        raise _ScriptError(f"block {bid}: no parameter of that name in the prepared model")
    if tuple(values.shape) != tuple(block.meta["shape"]):
        values = param                    # gathered from a parameter: the parameter is stored
    return values.detach().float().cpu().numpy()


def _quantized(block, values):
    """(stored integers, bits, scales) of a block, as ``edgesim.trace`` computes them."""
    from edgesim.trace.weights import bits_of, quantize, quantize_bias
    if block.meta.get("role") == "bias":
        return quantize_bias(values), 32, 0
    prec = block.meta["precision"]
    if block.meta.get("role") == "aux" and prec == "binary":
        prec = "int8"
    nscales = int(block.meta.get("scales", 0))
    q, scales = quantize(values, prec, channel_axis=_axis(tuple(values.shape), nscales))
    if int(scales.size) != nscales:
        raise _ScriptError(f"block {block.id}: {scales.size} scales, the tracer stored {nscales}")
    return q, bits_of(prec), nscales


def _row(block, table: dict[str, int]) -> dict[str, Any]:
    shape = tuple(block.meta.get("shape", ()))
    return {"block": block.id, "shape": "x".join(str(d) for d in shape) or "scalar",
            "elements": block.elements, "nonzeros": block.nonzeros,
            "sparsity": round(block.sparsity, 4), "bits": block.bits,
            "encoding": block.encoding, "stored_bytes": block.stored_bytes,
            "dense_bytes": block.dense_bytes, **{e: table.get(e) for e in ENCODING_COLUMNS},
            "best": min(table.values())}


def _nested_rows(block_list, owner, precision: str) -> list[dict[str, Any]]:
    """Rows of one nested parameter's level blocks (see the module docstring)."""
    import numpy as np

    from edgesim import encodings
    from edgesim.trace.weights import bits_of, quantize
    levels = owner.edgesim_levels.detach().cpu().numpy().astype(np.int64)
    n_levels = int(block_list[0].meta["levels"])
    latent = owner.parametrizations.weight.original.detach().float().cpu().numpy()
    q, scales = quantize(latent * (levels >= 1), precision, channel_axis=0)
    bits, nscales = bits_of(precision), int(scales.size)
    levels = np.where(q != 0, levels, 0)
    prefix = [0, *encodings.nested_bytes(levels, bits, scales=nscales, n_levels=n_levels)]
    rows = []
    for b in block_list:
        k = int(b.meta["level"])
        segment = np.where(levels == k, q, 0)
        seg_scales = nscales if k == 1 else 0
        table = encodings.encoding_table(segment, bits, seg_scales,
                                       allowed=[e for e in ENCODING_COLUMNS
                                                if e not in ("dense", "signed_binary", "nested")])
        table["nested"] = prefix[k] - prefix[k - 1]
        rows.append(_row(b, table))
    return rows


def block_table(model, blocks, precision: str):
    """One row per traced block of the prepared ``model`` and a ``total`` row (a DataFrame)."""
    import pandas as pd

    from edgesim import encodings
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    rows: list[dict[str, Any]] = []
    nested: dict[str, list] = {}
    for b in blocks:
        if "level" in b.meta:
            nested.setdefault(b.meta["parameter"], []).append(b)
    for b in blocks:
        if "level" in b.meta:   # a nested weight: all its levels at its first block
            group = nested.pop(b.meta["parameter"], None)
            if group is not None:
                owner = modules[b.meta["parameter"][: -len(_LATENT)]]
                rows.extend(_nested_rows(sorted(group, key=lambda g: g.meta["level"]), owner,
                                         precision))
            continue
        q, bits, nscales = _quantized(b, _stored_values(model, b, params, modules))
        if b.meta.get("role") == "bias":
            table = {"dense": encodings.stored_bytes(q, "dense", bits, 0)}
        else:
            allowed = [e for e in ENCODING_COLUMNS if e != "signed_binary" or bits == 1]
            table = encodings.encoding_table(q, bits, nscales, allowed=allowed)
        rows.append(_row(b, table))
    for r in rows:
        if r[r["encoding"]] != r["stored_bytes"]:
            raise _ScriptError(f"block {r['block']}: {r['encoding']} bytes {r[r['encoding']]} "
                               f"here, {r['stored_bytes']} in the trace")
    df = pd.DataFrame(rows)
    total: dict[str, Any] = {"block": "total", "shape": "", "encoding": "mixed"}
    for col in ("elements", "nonzeros", "stored_bytes", "dense_bytes", "best"):
        total[col] = int(df[col].sum())
    total["sparsity"] = round(1 - total["nonzeros"] / total["elements"], 4) \
        if total["elements"] else 0.0
    total["bits"] = None
    for e in ENCODING_COLUMNS:
        total[e] = int(df[e].fillna(df["dense_bytes"]).sum())
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    for e in (*ENCODING_COLUMNS, "bits"):
        df[e] = df[e].astype("Int64")
    return df


def nested_table(model, bits: int):
    """``edgesim.zoo.nested.nested_storage_report`` as a DataFrame (None without levels)."""
    import pandas as pd

    from edgesim.zoo.nested import NestedModel, nested_storage_report
    if not isinstance(model, NestedModel):
        return None
    rows = nested_storage_report(model, bits=bits)
    for r in rows:
        r["nnz"] = ",".join(str(n) for n in r["nnz"])
        r["nested_bytes"] = ",".join(str(n) for n in r["nested_bytes"])
        r["saving"] = round(r["saving"], 4)
    return pd.DataFrame(rows)


#: The encoding columns of an imported model file (its blocks carry their bytes under each).
FILE_COLUMNS = ("dense", "mlw", "bitmap", "csr", "csc", "rle")


def file_table(w) -> Any:
    """One row per weight block of a Workload imported from a ``.tflite`` / ``.onnx`` file,
    with its bytes under every encoding the importer measured on the stored integers
    (``WeightBlock.encoded``; biases are stored dense), the best of them and a ``total`` row
    (an encoding column's total keeps a block dense where that encoding does not apply)."""
    import pandas as pd
    rows = []
    for b in w.blocks.values():
        row = {"block": b.id, "shape": "x".join(map(str, b.meta.get("shape", ()))),
               "elements": b.elements, "nonzeros": b.nonzeros,
               "sparsity": round(b.sparsity, 4), "bits": b.bits, "encoding": b.encoding,
               "stored_bytes": b.stored_bytes, "dense_bytes": b.dense_bytes}
        for e in FILE_COLUMNS:
            row[e] = b.encoded.get(e, b.stored_bytes if e == "dense" and not b.encoded
                                   else None)
        generic = [v for e, v in b.encoded.items() if e != "mlw"] or [b.stored_bytes]
        row["best"] = min(generic)
        rows.append(row)
    df = pd.DataFrame(rows)
    total: dict[str, Any] = {"block": "total", "shape": "", "encoding": "mixed", "bits": None}
    for col in ("elements", "nonzeros", "stored_bytes", "dense_bytes", "best"):
        total[col] = int(df[col].sum())
    total["sparsity"] = round(1 - total["nonzeros"] / total["elements"], 4) \
        if total["elements"] else 0.0
    for e in FILE_COLUMNS:
        total[e] = int(df[e].fillna(df["dense_bytes"]).sum())
    return pd.concat([df, pd.DataFrame([total])], ignore_index=True)


def _measure(name: str, config: str | None, seed: int):
    """(block table, nested table or None, title) of one model."""
    from edgesim.request import model_request
    if model_request(name).is_file:
        from edgesim import api
        w = api.workload(name)
        title = (f"# {name}: {len(w.blocks)} weight blocks as stored in the file (int8 as "
                 f"deployed); best = the smallest encoding but the hardware stream codec mlw")
        return file_table(w), None, title
    import torch

    from edgesim import api
    from edgesim.build import example_input
    from edgesim.errors import ModelError
    from edgesim.trace import record
    from edgesim.trace.weights import bits_of
    from edgesim.zoo.deploy import fold_batchnorm, prepare
    from edgesim.zoo.registry import build_model, get_spec

    base, level = api.parse_model_name(name)
    spec = get_spec(base)
    precision, act_bits, allowed = "int8", 8, None
    if config is not None:
        from edgesim.config import load_config
        hw = load_config(config)
        precision, act_bits, allowed = hw.precision, hw.act_bits, hw.formats
    encodings = api.spec_encodings(spec, allowed)
    torch.set_num_threads(1)
    model = build_model(spec, seed=seed)
    if level is not None:
        if not hasattr(model, "set_level"):
            raise ModelError(f"model {base} has no nesting levels; @{level} applies to nested "
                             "models only")
        if level > model.num_levels:
            raise ModelError(f"model {base}: level {level} out of range 1..{model.num_levels}")
        model.set_level(level)
    x = example_input(spec, seed)
    if spec.dynamic:   # a routed tree: every block of the path catalogue, as edgesim.build does
        deployed = fold_batchnorm(model)
        catalogue: dict[str, Any] = {}
        for i in range(deployed.num_paths):
            path_blocks, _ops = record(deployed, x, precision=precision, act_bits=act_bits,
                                       encodings=encodings,
                                       forward=lambda inp, i=i: deployed.forward_path(inp, i))
            for blk in path_blocks:
                catalogue.setdefault(blk.id, blk)
        blocks = list(catalogue.values())
    else:
        deployed = prepare(model, x)
        blocks, _ops = record(deployed, x, precision=precision, act_bits=act_bits,
                              encodings=encodings)
    df = block_table(deployed, blocks, precision)
    title = (f"# {name}: {len(blocks)} weight blocks, precision {precision}, encodings the "
             f"tracer may pick: {', '.join(encodings)}")
    return df, nested_table(model, bits_of(precision)), title


def main(argv: Sequence[str] | None = None) -> int:
    from edgesim.errors import EdgesimError
    a = _arguments(argv)
    try:
        df, nested, title = _measure(a.model, a.config, a.seed)
    except EdgesimError as exc:
        print(f"formats.py: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    import pandas as pd
    with pd.option_context("display.max_rows", None, "display.max_columns", None,
                           "display.width", 250):
        print(title)
        print(df.to_string(index=False))
        if nested is not None:
            tot = nested.iloc[-1]
            print(f"\n# nested stream vs {len(str(tot['nnz']).split(','))} separate CSR "
                  f"sub-networks (edgesim.zoo.nested.nested_storage_report)")
            print(nested[nested["layer"] == "total"].to_string(index=False))
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(out, index=False)
        if nested is not None:
            nested.to_csv(out.with_name(f"{out.stem}_nested.csv"), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
