"""Sweeps: many hardware points x models x policies, resumable, on local processes or Dask.

Public names: ``sweep``, ``load_results``, ``load_detail``, ``point_key``, ``EXECUTORS``,
``register``, ``cmd_sweep``.

``sweep(config, models, ["sram.size=32KiB..32MiB:x2"], out_dir="out")`` expands the grid
(``edgesim.grid``; bad ranges fail before any work), traces each model once per distinct
(precision, activation bits, formats) of the grid (``edgesim.api.workload``, disk-cached), then
simulates every (point, model, policy) in a process pool (``executor="process"``, all cores), on
a Dask distributed cluster through its ``concurrent.futures`` interface (``executor="dask"``,
``scheduler`` = the scheduler address, or a LocalCluster when None) or in this process
(``executor="serial"``). Workloads reach each worker once: the process pool gets them pickled in
its initializer, Dask gets them scattered to every worker.

Results that survive: each finished task is committed to ``out_dir/results.sqlite`` (one row per
key; ``point_key`` = hash of the resolved config, the model name and workload digest, inputs,
policy, prefetch and the edgesim version) the moment it finishes. A rerun skips the keys already
there, so a sweep killed at any moment and rerun ends with the same table as an uninterrupted
one. The returned table (also written to ``out_dir/sweep.csv``) is read back from the store and
sorted by grid order, then model order, then policy order; it is the same for every executor.

Columns: ``point``, one column per swept key (the value as configured), ``config``,
``sram_bytes``, ``weight_sram_bytes``, ``offchip_bytes_per_s``, ``clock_hz``, the model fields of
``api.model_info`` (``model``, ``family``, ``total_params``, ``active_params``, ...), ``policy``,
``prefetch``, ``inputs`` and, for each metric of ``engine.SUMMARY_METRICS``, ``<metric>_cold``
and ``<metric>_steady`` (mean over inferences 2..N), plus ``_p50``/``_p99`` for latency and
energy. Units are in the names (bytes, ``_s``, ``_j``, ``_cycles``).

>>> import tempfile
>>> from edgesim.testing import TINY_CONFIG, tiny_workload
>>> df = sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
...            out_dir=tempfile.mkdtemp(), executor="serial")
>>> df[["sram.size", "weight_dram_bytes_cold", "weight_dram_bytes_steady"]].values.tolist()
[['2KiB', 3000, 2000.0], ['4KiB', 3000, 0.0]]
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgesim.errors import ConfigError, EdgesimError

if TYPE_CHECKING:
    import pandas as pd


__all__ = ["EXECUTORS", "cmd_sweep", "load_detail", "load_results", "point_key", "register",
           "sweep"]

EXECUTORS = ("process", "dask", "serial")
POLICIES = ("lru", "pinned", "belady")
RESULTS_FILE = "results.sqlite"
CSV_FILE = "sweep.csv"
DETAIL_FILE = "detail.csv"
#: Metrics that also get p50 and p99 columns.
_PERCENTILE_METRICS = ("latency_s", "energy_j")
#: Hardware fields that every row carries (numbers, for plotting), in this order.
_HW_COLUMNS = ("sram_bytes", "weight_sram_bytes", "offchip_bytes_per_s", "clock_hz")
#: Config fields left out of the key: they name or document the config, they do not change it.
_KEY_IGNORES = ("file", "sources", "description", "resolved")


# --------------------------------------------------------------------------- keys and the store

def _hw_identity(hw) -> dict[str, Any]:
    return {k: v for k, v in hw.to_dict().items() if k not in _KEY_IGNORES}


def point_key(hw, model: str, digest: str, inputs: int, policy: str, prefetch: str) -> str:
    """The store key of one task: a hash of everything its result depends on.

    The hardware enters as its resolved numbers (so ``2MiB`` and ``2048KiB`` are one point),
    the model as its name and ``Workload.digest()`` (which covers precision, formats, seed and the
    input stream), plus the stream length, policy, prefetch mode and the edgesim version.
    """
    from edgesim import __version__
    text = json.dumps([_hw_identity(hw), model, digest, inputs, policy, prefetch, __version__],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class _Store:
    """The SQLite file of finished tasks; every ``put`` is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, "
                        "row TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS detail (key TEXT PRIMARY KEY, "
                        "rows TEXT NOT NULL)")
        self.db.commit()

    def finished(self, *, detail: bool) -> set[str]:
        keys = {k for (k,) in self.db.execute("SELECT key FROM results")}
        if detail:
            keys &= {k for (k,) in self.db.execute("SELECT key FROM detail")}
        return keys

    def put(self, key: str, row: Mapping[str, Any], detail_rows: str | None) -> None:
        with self.db:  # one transaction: the row and its detail, or neither
            self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?)",
                            (key, json.dumps(row, sort_keys=False)))
            if detail_rows is not None:
                self.db.execute("INSERT OR REPLACE INTO detail VALUES (?, ?)",
                                (key, detail_rows))

    def rows(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        got = dict(self.db.execute("SELECT key, row FROM results"))
        return [json.loads(got[k]) for k in keys]

    def detail(self, keys: Sequence[str]) -> list[str]:
        got = dict(self.db.execute("SELECT key, rows FROM detail"))
        return [got[k] for k in keys if k in got]

    def close(self) -> None:
        self.db.close()


# --------------------------------------------------------------------------- workers

_WORKLOADS: dict[str, Any] = {}


def _init_worker(blobs: Mapping[str, bytes]) -> None:
    """Process-pool initializer: unpickle every workload once per worker."""
    for wid, blob in blobs.items():
        _WORKLOADS[wid] = pickle.loads(blob)


def _simulate_task(hw, wref: Any, policy: str, prefetch: str, memo: bool,
                   detail: bool) -> tuple[dict[str, Any], list[list[Any]] | None]:
    """One (point, model, policy): the summary and, on request, the per-inference rows."""
    from edgesim.engine import simulate
    w = _WORKLOADS[wref] if isinstance(wref, str) else wref
    res = simulate(hw, w, policy=policy, prefetch=prefetch, memo=memo)
    rows = res.inferences.to_numpy(dtype=object).tolist() if detail else None
    return res.summary, rows


# --------------------------------------------------------------------------- the sweep

@dataclass(frozen=True)
class _Task:
    key: str
    point: int
    model: int
    policy: int
    wid: str


def _load(config: Any, overrides: Sequence[str]):
    from edgesim.config import HardwareConfig, config_from_dict, load_config
    if isinstance(config, HardwareConfig):
        raise ConfigError("sweep needs a config file path (or its YAML mapping), not a "
                          "HardwareConfig, so that --set can change it")
    if isinstance(config, Mapping):
        return config_from_dict(dict(config), overrides=overrides)
    return load_config(config, overrides)


def _row(point: int, params: Mapping[str, str], hw, info: Mapping[str, Any], label: str,
         policy: str, prefetch: str, inputs: int, summary: Mapping[str, Any]) -> dict[str, Any]:
    from edgesim.engine import SUMMARY_METRICS
    row: dict[str, Any] = {"point": point, **params, "config": hw.name}
    for c in _HW_COLUMNS:
        row[c] = getattr(hw, c)
    row["model"] = label
    row.update({k: v for k, v in info.items() if k != "name"})
    row.update({"policy": policy, "prefetch": prefetch, "inputs": inputs})
    for m in SUMMARY_METRICS:
        s = summary[m]
        row[f"{m}_cold"] = s["cold"]
        row[f"{m}_steady"] = s["steady_mean"]
        if m in _PERCENTILE_METRICS:
            row[f"{m}_p50"] = s["p50"]
            row[f"{m}_p99"] = s["p99"]
    return row


def _workloads(models: Sequence[Any], hws: Sequence[Any], inputs: int, seed: int,
               say: Callable[[str], None] | None) -> tuple[list[list[str]], dict[str, Any],
                                                         list[str]]:
    """Trace each model once per (precision, act bits, formats) group of the grid.

    Returns, per point, the workload id of each model; the workloads by id; the model labels.
    """
    from edgesim import api
    from edgesim.workload import Workload
    labels = [m.name if isinstance(m, Workload) else str(m) for m in models]
    if len(set(labels)) != len(labels):
        raise EdgesimError(f"models {labels}: each model may appear once")
    by_group: dict[tuple[Any, ...], list[str]] = {}
    table: dict[str, Any] = {}
    ids: list[list[str]] = []
    for hw in hws:
        group = (hw.precision, hw.act_bits, tuple(hw.formats))
        if group not in by_group:
            row = []
            for m in models:
                if isinstance(m, Workload):
                    w = m.with_inputs(inputs) if len(m.paths) == 1 else m
                else:
                    w = api.workload(m, precision=hw.precision, act_bits=hw.act_bits,
                                     formats=hw.formats, inputs=inputs, seed=seed, progress=say)
                wid = w.digest()
                table.setdefault(wid, w)
                row.append(wid)
            by_group[group] = row
        ids.append(by_group[group])
    return ids, table, labels


def _executor(kind: str, scheduler: str | None, workers: int | None,
              table: Mapping[str, Any], stack: ExitStack) -> tuple[Executor, Callable[[str], Any]]:
    """The executor and how a task names its workload there (an id, or a scattered future)."""
    if kind == "process":
        from concurrent.futures import ProcessPoolExecutor
        blobs = {wid: pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL)
                 for wid, w in table.items()}
        n = workers or os.cpu_count() or 1
        ex = stack.enter_context(ProcessPoolExecutor(max_workers=n, initializer=_init_worker,
                                                     initargs=(blobs,)))
        return ex, lambda wid: wid
    if kind == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise EdgesimError("--executor dask needs the optional extra: "
                               "pip install 'edgesim[dask]'") from None
        if scheduler is None:
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                dashboard_address=None))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=30))
            except OSError as exc:
                raise EdgesimError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        scattered = {wid: client.scatter(w, broadcast=True, hash=False)
                     for wid, w in table.items()}
        ex = client.get_executor(pure=False)
        return ex, lambda wid: scattered[wid]
    raise EdgesimError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")


class _Serial(Executor):
    """Runs each task when submitted, in this process (for debugging and doctests)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _bar(enabled: bool | None, total: int, initial: int):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="pt", file=sys.stderr, leave=False)


def sweep(config: Any, models: Sequence[Any], grid_sets: Sequence[str] = (), *,
          policies: Sequence[str] = ("lru",), prefetch: str = "next", inputs: int = 1000,
          out_dir: str | os.PathLike, executor: str = "process", scheduler: str | None = None,
          workers: int | None = None, seed: int = 0, detail: bool = False, memo: bool = True,
          progress: bool | None = None) -> pd.DataFrame:
    """Simulate every (grid point, model, policy); the tidy table, sorted by grid order.

    ``config``: a YAML path, a shipped config name or the YAML's mapping. ``models``: registry
    names (``nested_r50@2`` included) or Workloads. ``grid_sets``: ``--set`` specs
    (``edgesim.grid``). ``progress``: a tqdm bar on stderr (None: only when it is a terminal).
    Tracing messages go to stderr only when the bar is on.
    """
    import pandas as pd

    from edgesim.engine import PREFETCH_MODES
    from edgesim.grid import grid_points, parse_grid
    if not models:
        raise EdgesimError("sweep needs at least one model")
    for p in policies:
        if p not in POLICIES:
            raise EdgesimError(f"policy {p!r}: expected one of {', '.join(POLICIES)}")
    if len(set(policies)) != len(policies) or not policies:
        raise EdgesimError(f"policies {list(policies)}: give each policy once, at least one")
    if prefetch not in PREFETCH_MODES:
        raise EdgesimError(f"prefetch {prefetch!r}: expected one of {', '.join(PREFETCH_MODES)}")
    if inputs < 1:
        raise EdgesimError(f"inputs must be >= 1, got {inputs}")
    if executor not in EXECUTORS:
        raise EdgesimError(f"unknown executor {executor!r}; expected one of "
                           f"{', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise EdgesimError(f"workers must be >= 1, got {workers}")

    axes = parse_grid(config, grid_sets)       # bad grids fail here, before any work
    points = grid_points(axes)
    hws = [_load(config, [f"{k}={v}" for k, v in pt.items()]) for pt in points]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesimError(f"--out {out}: cannot create ({exc.strerror})") from None

    tty = sys.stderr.isatty() if progress is None else progress
    say = (lambda msg: print(f"edgesim: {msg}", file=sys.stderr, flush=True)) if tty else None
    ids, table, labels = _workloads(models, hws, inputs, seed, say)
    from edgesim.api import model_info
    infos = {wid: model_info(w) for wid, w in table.items()}
    tasks = [
        _Task(point_key(hw, labels[m], ids[p][m], table[ids[p][m]].inputs, pol, prefetch),
              p, m, k, ids[p][m])
        for p, hw in enumerate(hws) for m in range(len(models)) for k, pol in enumerate(policies)
    ]
    store = _Store(out / RESULTS_FILE)
    try:
        done = store.finished(detail=detail)
        pending = list({t.key: t for t in tasks if t.key not in done}.values())
        bar = _bar(progress, len({t.key for t in tasks}), len({t.key for t in tasks} & done))
        try:
            if pending:
                _run(pending, hws, points, labels, policies, prefetch, infos, table, store,
                     executor=executor, scheduler=scheduler, workers=workers, memo=memo,
                     detail=detail, bar=bar)
        finally:
            if bar is not None:
                bar.close()
        keys = [t.key for t in tasks]
        df = pd.DataFrame(store.rows(keys))
        # a key shared by two tasks (the same point given twice) is one row per task
        df["point"] = [t.point for t in tasks]
        df = df.reset_index(drop=True)
        if detail:
            detail_df = _detail_frame(store.detail(list(dict.fromkeys(keys))))
            detail_df.to_csv(out / DETAIL_FILE, index=False, float_format="%.12g")
    finally:
        store.close()
    df.to_csv(out / CSV_FILE, index=False, float_format="%.12g", lineterminator="\n")
    return df


def _run(pending: Sequence[_Task], hws, points, labels, policies, prefetch, infos, table,
         store: _Store, *, executor: str, scheduler: str | None, workers: int | None,
         memo: bool, detail: bool, bar) -> None:
    used = {t.wid: table[t.wid] for t in pending}
    with ExitStack() as stack:
        if executor == "serial":
            ex: Executor = _Serial()
            _WORKLOADS.update(used)
            ref: Callable[[str], Any] = lambda wid: wid  # noqa: E731
        else:
            n = min(workers or os.cpu_count() or 1, len(pending))
            ex, ref = _executor(executor, scheduler, n, used, stack)
        futures = {ex.submit(_simulate_task, hws[t.point], ref(t.wid), policies[t.policy],
                             prefetch, memo, detail): t for t in pending}
        for fut in as_completed(futures):
            t = futures[fut]
            summary, rows = fut.result()
            row = _row(t.point, points[t.point], hws[t.point], infos[t.wid], labels[t.model],
                       policies[t.policy], prefetch, table[t.wid].inputs, summary)
            drows = None
            if rows is not None:
                head = {"key": t.key, "point": t.point, "model": labels[t.model],
                        "policy": policies[t.policy]}
                drows = json.dumps({"head": head, "rows": rows}, default=_json_default)
            store.put(t.key, row, drows)
            if bar is not None:
                bar.update(1)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)


def _detail_frame(blobs: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    from edgesim.engine import INFERENCE_COLUMNS
    frames = []
    for blob in blobs:
        obj = json.loads(blob)
        df = pd.DataFrame(obj["rows"], columns=list(INFERENCE_COLUMNS))
        for i, (k, v) in enumerate(obj["head"].items()):
            df.insert(i, k, v)
        frames.append(df)
    cols = ["key", "point", "model", "policy", *INFERENCE_COLUMNS]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def load_results(out_dir: str | os.PathLike) -> pd.DataFrame:
    """The sweep table written to ``out_dir`` (``sweep.csv``)."""
    import pandas as pd
    path = Path(out_dir) / CSV_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {CSV_FILE}; run `edgesim sweep ... --out {out_dir}`")
    return pd.read_csv(path)


def load_detail(out_dir: str | os.PathLike) -> pd.DataFrame:
    """Every per-inference row stored in ``out_dir/results.sqlite`` (``detail=True`` sweeps)."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.is_file():
        raise EdgesimError(f"{out_dir}: no {RESULTS_FILE}")
    db = sqlite3.connect(path)
    try:
        blobs = [b for (b,) in db.execute("SELECT rows FROM detail ORDER BY key")]
    finally:
        db.close()
    return _detail_frame(blobs)


# --------------------------------------------------------------------------- command line

def register(subparsers) -> None:
    """Add the ``sweep`` subcommand to an argparse subparsers object."""
    s = subparsers.add_parser("sweep", help="simulate a grid of hardware points x models")
    s.add_argument("config", help="hardware config YAML or shipped name (see `edgesim configs`)")
    s.add_argument("--model", nargs="+", required=True, help="registry names (NAME@LEVEL too)")
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=SPEC",
                   help="a swept key: a value, a list a,b,c, start..stop:xFACTOR or "
                   "start..stop:+STEP (e.g. sram.size=32KiB..32MiB:x2)")
    s.add_argument("--policy", nargs="+", choices=POLICIES, default=["lru"])
    s.add_argument("--prefetch", choices=("next", "none", "speculative"), default="next")
    s.add_argument("--inputs", type=int, default=1000, help="inferences per stream (1000)")
    s.add_argument("--out", required=True, help="results folder (results.sqlite, sweep.csv)")
    s.add_argument("--executor", choices=EXECUTORS, default="process")
    s.add_argument("--scheduler", help="Dask scheduler address (with --executor dask)")
    s.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--detail", action="store_true",
                   help="also keep every inference's row (detail.csv)")


def cmd_sweep(a) -> int:
    """Handler of ``edgesim sweep``: runs the sweep, prints where the table went."""
    if a.scheduler and a.executor != "dask":
        raise EdgesimError("--scheduler needs --executor dask")
    df = sweep(a.config, a.model, a.sets, policies=a.policy, prefetch=a.prefetch,
               inputs=a.inputs, out_dir=a.out, executor=a.executor, scheduler=a.scheduler,
               workers=a.workers, seed=a.seed, detail=a.detail)
    print(f"edgesim: {len(df)} rows -> {Path(a.out) / CSV_FILE} "
          f"({Path(a.out) / RESULTS_FILE})")
    return 0
