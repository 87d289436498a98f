"""The paper tables: active parameters of routed trees, weight sparsities, nested bytes per level.

Usage: ``python experiments/paper_tables.py RESULTS [--quick]``

From the registered models' traced Workloads (``edgesim.api.model_info``), writes under
``RESULTS/paper_tables/``:

* ``routed.csv``: per routed tree (family ``sigmab``): stored params, mean params per
  root-to-leaf path, params per inference over the routed input stream, the active-parameter
  reduction against the whole tree and against the dense model it was made from (set by the
  split points: the channel budget is solved so that the tree stores the dense parameters),
  the coverage of the dense channels and of the dense conv/linear weight entries (an entry
  (o, i) is stored only where some node keeps both channels; ``SigmaTree.coverage``), the
  entries no node stores, and the routing balance: inputs of the stream per path (a note on
  stderr names a path that receives no input or more than half of them);
* ``paths.csv``: per routed tree and root-to-leaf path: params, stored bytes, share of the tree;
* ``nodes.csv``: per routed tree, node, stage and channel group: dense channels, channels kept,
  shared with the sibling (and Jaccard), coverage of the dense channels at that depth;
* ``sparsity.csv``: per model: weight sparsity, stored bytes under the model's own encodings,
  dense bytes and the compression;
* ``nested.csv``: per nested model and level k: bytes of the one weight stream a level-k
  inference reads (a prefix), params and the share of the whole stream;
* ``tables.txt``: all of them as aligned text.

``--quick`` uses the cheapest models (no nested model: the only one is ImageNet-size).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The dense model each routed tree was built from.
DENSE_OF = {"sigmab_r50": "dense_r50", "sigmab_r50_c100": "dense_r50_c100",
            "sigmab_pn2": "dense_pn2"}


def _workload(name: str, inputs: int, formats=None):
    from edgesim import api
    from edgesim.errors import EdgesimError
    try:
        return api.workload(name, inputs=inputs, formats=formats)
    except EdgesimError as exc:
        print(f"note: model {name} skipped: {exc}", file=sys.stderr)
        return None


def _trees(names: Sequence[str], inputs: int):
    """``(name, Workload)`` of every routed tree among ``names`` that traces."""
    from edgesim.zoo.registry import REGISTRY
    for name in names:
        if REGISTRY[name].family == "sigmab":
            w = _workload(name, inputs)
            if w is not None:
                yield name, w


def routing_note(name: str, counts: Sequence[int]) -> str | None:
    """A line when a path of ``name`` receives no input or more than half of them, else None.

    >>> routing_note("t", [210, 0, 75, 75])
    't: routing is unbalanced: path 1 receives no input, path 0 receives 210 of 360 (> half)'
    """
    total = sum(counts)
    if not total:
        return None
    parts = [f"path {i} receives no input" for i, c in enumerate(counts) if c == 0]
    parts += [f"path {i} receives {c} of {total} (> half)" for i, c in enumerate(counts)
              if 2 * c > total]
    return f"{name}: routing is unbalanced: {', '.join(parts)}" if parts else None


def routed_table(names: Sequence[str], inputs: int):
    """One row per routed tree among ``names``."""
    import numpy as np
    import pandas as pd

    from edgesim.zoo.registry import REGISTRY
    rows = []
    for name, w in _trees(names, inputs):
        dense_name = DENSE_OF.get(name)
        dense = (_workload(dense_name, 1) if dense_name in REGISTRY else None)
        total = w.total_params
        row = {"model": name, "paths": len(w.paths), "tree_params": total,
               "mean_path_params": round(w.mean_path_params),
               "stream_params_per_inference": round(w.active_params),
               "active_reduction_vs_tree": round(1 - w.mean_path_params / total, 4),
               "dense_model": dense_name if dense is not None else "-",
               "dense_params": dense.total_params if dense is not None else None,
               "active_reduction_vs_dense": (round(1 - w.mean_path_params / dense.total_params,
                                                   4) if dense is not None else None)}
        cov = (w.meta.get("tree") or {}).get("coverage") or {}
        row["channel_coverage"] = cov.get("channel_coverage")
        row["weight_coverage"] = cov.get("weight_coverage")
        row["uncovered_weights"] = (cov["dense_weights"] - cov["covered_weights"]
                                    if "dense_weights" in cov else None)
        counts = np.bincount(w.sequence, minlength=len(w.paths)).tolist()
        row["path_inputs"] = "/".join(str(c) for c in counts)
        note = routing_note(name, counts)
        if note is not None:
            print(f"note: {note}", file=sys.stderr)
        rows.append(row)
    return pd.DataFrame(rows)


def paths_table(names: Sequence[str], inputs: int):
    """One row per routed tree and path: its params and stored bytes (paths differ in size:
    each node's width comes from its inputs' activations)."""
    import pandas as pd

    rows = []
    for name, w in _trees(names, inputs):
        for i, path in enumerate(w.paths):
            rows.append({"model": name, "path": path.name, "params": w.path_params(i),
                         "stored_bytes": w.path_stored_bytes(i),
                         "share_of_tree": round(w.path_params(i) / w.total_params, 4)})
    return pd.DataFrame(rows)


def nodes_table(names: Sequence[str]):
    """One row per routed tree, node, stage and channel group (``SigmaTree.node_report``): the
    channels of the dense group, kept by the node, shared with its sibling (and their
    Jaccard), and the coverage of the dense channels over the node's depth."""
    import pandas as pd

    from edgesim.build import built_model
    from edgesim.errors import EdgesimError
    from edgesim.zoo.registry import REGISTRY
    rows = []
    for name in names:
        spec = REGISTRY[name]
        if spec.family != "sigmab":
            continue
        try:
            tree = built_model(spec, None, 0)
        except EdgesimError as exc:
            print(f"note: model {name} skipped: {exc}", file=sys.stderr)
            continue
        rows += [{"model": name, **r} for r in tree.node_report()]
    return pd.DataFrame(rows)


def sparsity_table(names: Sequence[str]):
    """One row per model: sparsity and bytes under its own preferred encodings."""
    import pandas as pd

    from edgesim import api
    rows = []
    for name in names:
        w = _workload(name, 1)
        if w is None:
            continue
        info = api.model_info(w)
        rows.append({"model": name, "family": info["family"],
                     "total_params": info["total_params"],
                     "weight_sparsity": info["weight_sparsity"],
                     "stored_weight_bytes": info["stored_weight_bytes"],
                     "dense_weight_bytes": info["dense_weight_bytes"],
                     "compression": round(info["dense_weight_bytes"]
                                          / max(1, info["stored_weight_bytes"]), 3),
                     "encodings": ",".join(w.meta.get("encodings", []))})
    return pd.DataFrame(rows)


def nested_table(names: Sequence[str]):
    """One row per nested model and level: bytes of the prefix that level reads."""
    import pandas as pd

    from edgesim.zoo.registry import REGISTRY
    rows = []
    for name in names:
        spec = REGISTRY[name]
        if spec.family != "nested":
            continue
        levels = int(spec.kwargs.get("levels", 3))
        for k in range(1, levels + 1):
            w = _workload(f"{name}@{k}", 1)
            if w is None:
                break
            read = w.path_stored_bytes(0)
            rows.append({"model": name, "level": k, "bytes_read": read,
                         "stream_bytes": w.stored_bytes,
                         "share_of_stream": round(read / w.stored_bytes, 4),
                         "params_read": w.path_params(0)})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    from edgesim.report import render_table
    from experiments import arguments, registered
    a = arguments(__doc__.splitlines()[0], argv)
    out = Path(a.results) / "paper_tables"
    out.mkdir(parents=True, exist_ok=True)
    names = registered(quick=a.quick)
    tables = {"routed": routed_table(names, a.inputs), "paths": paths_table(names, a.inputs),
              "nodes": nodes_table(names), "sparsity": sparsity_table(names),
              "nested": nested_table(names)}
    text = []
    for key, df in tables.items():
        df.to_csv(out / f"{key}.csv", index=False)
        body = render_table(df) if not df.empty else "(no registered model of this kind)"
        text.append(f"# {key}\n{body}\n")
    (out / "tables.txt").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
