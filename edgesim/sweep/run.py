"""The sweep verb: many hardware points x models x policies, resumable, on any executor.

Public names: ``sweep``, ``failed_points``, ``simulate_point``, ``PointTask``, ``PointResult``,
``workload_options``.

``sweep`` is a list of steps: check the arguments and the grid (``edgesim.sweep.grid``; bad
ranges fail before any work), load one config per point, get each model's Workload once per
``workload_options`` of the grid (``api.workload``: traced once per precision, disk-cached), run
every (point, model, policy) not already in the store as a ``PointTask`` on the executor
(``edgesim.sweep.executors``) and commit each ``SweepRow`` (``edgesim.sweep.rows``) to the store
(``edgesim.sweep.store``) the moment it comes back. The table is read back from the store in
grid order, then model order, then policy order, so it is the same for every executor and for a
killed-and-rerun sweep; ``df.attrs["workers"]`` lists, per process that ran tasks, its peak RSS
and whether torch or the zoo was loaded there.

With ``data`` routed models route those inputs; with ``evaluate`` the data is labelled, each model
is evaluated once here (``api.evaluate``, cached: top-1 does not depend on the hardware), its
inputs are every model's stream, and every row carries the model's ``top1``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edgesim.errors import ConfigError, EdgesimError
from edgesim.sweep.executors import (
    ExecutorSpec,
    WorkerStats,
    open_executor,
    worker_stats,
    workload_of,
)
from edgesim.sweep.rows import DetailHead, SweepRow
from edgesim.sweep.store import (
    CSV_FILE,
    DETAIL_FILE,
    RESULTS_FILE,
    Store,
    detail_frame,
    point_key,
    write_csv,
)

if TYPE_CHECKING:
    import pandas as pd

    from edgesim.config import HardwareConfig
    from edgesim.workload import Workload

__all__ = ["PointResult", "PointTask", "failed_points", "simulate_point", "sweep",
           "workload_options"]


# --------------------------------------------------------------------------- the per-point task

@dataclass(frozen=True)
class PointTask:
    """What a worker needs for one (point, model, policy), besides the Workload reference."""

    hw: HardwareConfig
    policy: str
    prefetch: str
    memo: bool
    detail: bool


class PointResult(NamedTuple):
    """A task's answer: the ``simulate`` summary, per-inference rows on request, its process."""

    summary: dict[str, Any]
    rows: list[list[Any]] | None
    worker: WorkerStats


def simulate_point(task: PointTask, wref: Any) -> PointResult:
    """Run one task where the executor put it (``wref``: see ``executors.workload_of``)."""
    from edgesim.sim import simulate
    res = simulate(task.hw, workload_of(wref), policy=task.policy, prefetch=task.prefetch,
                   memo=task.memo)
    rows = [list(r) for r in res.rows] if task.detail else None
    return PointResult(res.summary, rows, worker_stats())


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class _Task:
    key: str
    point: int
    model: int
    policy: int
    wid: str


@dataclass(frozen=True)
class _Plan:
    """Everything the tasks of one sweep share, built once by ``sweep``."""

    hws: Sequence[HardwareConfig]
    points: Sequence[Mapping[str, str]]
    labels: Sequence[str]
    policies: Sequence[str]
    prefetch: str
    inputs: int
    workloads: Mapping[str, Workload]
    infos: Mapping[str, Mapping[str, Any]]
    memo: bool
    detail: bool
    #: per model label, ``api.evaluate``'s answer (evaluated sweeps), else empty
    accuracy: Mapping[str, Mapping[str, Any]]
    #: per model label, what its top-1 came from (a part of the store key), else empty
    evaluations: Mapping[str, Any]

    def _acc(self, t: _Task) -> Mapping[str, Any] | None:
        return self.accuracy.get(self.labels[t.model])

    def row(self, t: _Task, summary: Mapping[str, Any]) -> SweepRow:
        return SweepRow.build(t.point, self.points[t.point], self.hws[t.point], self.infos[t.wid],
                              self.labels[t.model], self.policies[t.policy], self.prefetch,
                              self.workloads[t.wid].inputs, summary, self._acc(t))

    def failed_row(self, t: _Task, error: str) -> SweepRow:
        return SweepRow.failed(t.point, self.points[t.point], self.hws[t.point],
                               self.infos[t.wid], self.labels[t.model], self.policies[t.policy],
                               self.prefetch, self.workloads[t.wid].inputs, error, self._acc(t))

    def expect(self, t: _Task) -> dict[str, Any]:
        """Columns the stored row of ``t`` must hold: what its key was made of."""
        out = {"model": self.labels[t.model], "policy": self.policies[t.policy],
               "prefetch": self.prefetch, "inputs": self.workloads[t.wid].inputs}
        acc = self._acc(t)
        if acc is not None:
            out["top1"] = float(acc["top1"])
        return out

    def task(self, t: _Task) -> PointTask:
        return PointTask(self.hws[t.point], self.policies[t.policy], self.prefetch, self.memo,
                         self.detail)


def _check(policies: Sequence[str], prefetch: str, inputs: int, models: Sequence[Any]) -> None:
    from edgesim.sim import POLICIES, PREFETCH_MODES
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


def _load(config: Any, overrides: Sequence[str]) -> HardwareConfig:
    from edgesim.config import HardwareConfig, config_from_dict, load_config
    if isinstance(config, HardwareConfig):
        raise ConfigError("sweep needs a config file path (or its YAML mapping), not a "
                          "HardwareConfig, so that --set can change it")
    if isinstance(config, Mapping):
        return config_from_dict(dict(config), overrides=overrides)
    return load_config(config, overrides)


def workload_options(hw: HardwareConfig) -> dict[str, Any]:
    """What ``api.workload`` takes of a config: the Workload as this hardware stores it.

    Points with equal options share one Workload. The trace under it depends on the precision
    alone (``api.workload`` caches it by model, precision, weights, seed and level, and decides
    encodings and activation bytes from ``formats`` and ``act_bits`` afterwards), so a sweep
    over formats or activation bits traces each model once.
    """
    return {"precision": hw.precision, "act_bits": hw.act_bits, "formats": tuple(hw.formats)}


def _labels(models: Sequence[Any]) -> list[str]:
    from edgesim.workload import Workload
    labels = [m.name if isinstance(m, Workload) else str(m) for m in models]
    if len(set(labels)) != len(labels):
        raise EdgesimError(f"models {labels}: each model may appear once")
    return labels


def _accuracy(models: Sequence[Any], data: str | None, inputs: int | None, seed: int,
              say: Callable[[str], None] | None) -> dict[str, dict[str, Any]]:
    """Each named model's ``api.evaluate`` on ``data`` (its first ``inputs``), by label; a bar
    of inputs on stderr for an evaluation of at least 256 inputs when ``say`` is on."""
    from edgesim import api
    from edgesim.workload import Workload
    for m in models:
        if isinstance(m, Workload):
            raise EdgesimError(f"--eval: model {m.name!r} is given as a traced Workload, whose "
                               "accuracy cannot be measured; give it by name")
    out = {}
    for m in models:
        bar: list[Any] = []

        def update(done: int, total: int, bar: list[Any] = bar) -> None:
            if total < 256:
                return
            if not bar:
                from tqdm import tqdm
                bar.append(tqdm(total=total, unit="input", file=sys.stderr, leave=False))
            bar[0].update(done - bar[0].n)
        try:
            out[str(m)] = api.evaluate(str(m), data=data, seed=seed, inputs=inputs,
                                       progress=say, eval_progress=update if say else None)
        finally:
            for b in bar:
                b.close()
    counts = {a["inputs"] for a in out.values()}
    if len(counts) > 1:   # one data file: every model reads the same inputs
        raise EdgesimError(f"--data {data}: the models read different numbers of inputs "
                           f"({sorted(counts)})")
    return out


def _workloads(models: Sequence[Any], hws: Sequence[HardwareConfig], inputs: int, seed: int,
               say: Callable[[str], None] | None, data: str | None = None,
               evaluate: bool = False
               ) -> tuple[list[list[str]], dict[str, Workload], list[str]]:
    """Each model's Workload once per ``workload_options`` of the grid.

    Returns, per point, the workload id of each model; the workloads by id; the model labels.
    """
    from edgesim import api
    from edgesim.workload import Workload
    labels = _labels(models)
    by_key: dict[str, list[str]] = {}
    table: dict[str, Workload] = {}
    ids: list[list[str]] = []
    for hw in hws:
        opts = workload_options(hw)
        key = json.dumps(opts, sort_keys=True)
        if key not in by_key:
            row = []
            for m in models:
                if isinstance(m, Workload):
                    w = m.with_inputs(inputs) if len(m.paths) == 1 else m
                else:
                    w = api.workload(m, **opts, inputs=inputs, seed=seed, progress=say,
                                     data=data, evaluate=evaluate)
                wid = w.digest()
                table.setdefault(wid, w)
                row.append(wid)
            by_key[key] = row
        ids.append(by_key[key])
    return ids, table, labels


def _bar(enabled: bool | None, total: int, initial: int):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="pt", file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- the verb

def sweep(config: Any, models: Sequence[Any], grid_sets: Sequence[str] = (), *,
          policies: Sequence[str] = ("lru",), prefetch: str = "next", inputs: int | None = None,
          out_dir: str | os.PathLike, executor: str = "process", scheduler: str | None = None,
          workers: int | None = None, seed: int = 0, detail: bool = False, memo: bool = True,
          progress: bool | None = None, data: str | None = None,
          evaluate: bool = False) -> pd.DataFrame:
    """Simulate every (grid point, model, policy); the tidy table, sorted by grid order.

    ``config``: a YAML path, a shipped config name or the YAML's mapping. ``models``: registry
    names (``nested_r50@2`` included) or Workloads. ``grid_sets``: ``--set`` specs
    (``edgesim.sweep.grid``). ``executor``: ``process`` (all cores, or ``workers``), ``dask``
    (``scheduler`` address, or a LocalCluster when None) or ``serial``. ``progress``: a tqdm
    bar on stderr (None: only when it is a terminal); tracing messages go to stderr only when
    the bar is on. The table is also written to ``out_dir/sweep.csv``; columns as in
    ``edgesim.sweep.rows``. ``inputs``: inferences per stream (None: 1000, or with ``evaluate``
    all of ``data``). ``data``: inputs routed models route (a file or image folder);
    ``evaluate``: ``data`` is labelled and every row gets its model's ``top1`` over those
    inputs (``api.evaluate``).

    A task that raises (a value the config accepts but the engine cannot compute with) does
    not stop the sweep: its row has ``status`` ``failed``, its ``error`` and empty metrics; it
    is kept in the store, and a rerun over the same folder retries it. ``failed_points(df)``
    says which. A store that is corrupt, read-only or altered is refused (``StoreError``).

    >>> import tempfile
    >>> from edgesim.testing import TINY_CONFIG, tiny_workload
    >>> df = sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
    ...            out_dir=tempfile.mkdtemp(), executor="serial")
    >>> df[["sram.size", "weight_dram_bytes_cold", "weight_dram_bytes_steady"]].values.tolist()
    [['2KiB', 3000, 2000.0], ['4KiB', 3000, 0.0]]
    """
    import pandas as pd

    from edgesim.sweep.grid import grid_points, parse_grid
    if evaluate and data is None:
        raise EdgesimError("--eval needs --data LABELLED (a .pt of {'x': inputs, 'y': labels}, "
                           "an .npz, x.npy with y.npy, or an image folder of class folders)")
    _check(policies, prefetch, 1000 if inputs is None else inputs, models)
    how = ExecutorSpec(executor, scheduler, workers)
    axes = parse_grid(config, grid_sets)       # bad grids fail here, before any work
    points = grid_points(axes)
    hws = [_load(config, [f"{k}={v}" for k, v in pt.items()]) for pt in points]
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesimError(f"--out {out}: cannot create ({exc.strerror})") from None

    # the store is checked before any work: a corrupt or read-only one is refused here
    with Store(out / RESULTS_FILE) as store:
        tty = sys.stderr.isatty() if progress is None else progress
        say = (lambda msg: print(f"edgesim: {msg}", file=sys.stderr, flush=True)) if tty else None
        accuracy, evaluations = {}, {}
        if evaluate:
            from edgesim import cache
            _labels(models)   # each model once, before evaluating any
            accuracy = _accuracy(models, data, inputs, seed, say)
            inputs = next(iter(accuracy.values()))["inputs"]
            fingerprint = cache.file_fingerprint(data)
            evaluations = {m: {"data": fingerprint, "seed": seed, "top1": a["top1"],
                               "correct": a["correct"]} for m, a in accuracy.items()}
        inputs = 1000 if inputs is None else inputs
        ids, table, labels = _workloads(models, hws, inputs, seed, say, data, evaluate)
        from edgesim.api import model_info
        plan = _Plan(hws, points, labels, tuple(policies), prefetch, inputs, table,
                     {wid: model_info(w) for wid, w in table.items()}, memo, detail, accuracy,
                     evaluations)
        tasks = _tasks(plan, ids)
        keys = [t.key for t in tasks]
        done = store.finished(detail=detail)
        pending = list({t.key: t for t in tasks if t.key not in done}.values())
        bar = _bar(progress, len(set(keys)), len(set(keys) & done))
        try:
            seen = _run(pending, plan, store, how, bar) if pending else {}
        finally:
            if bar is not None:
                bar.close()
        df = pd.DataFrame(store.rows(keys, [plan.expect(t) for t in tasks]))
        # a key shared by two tasks (the same point given twice) is one row per task
        df["point"] = [t.point for t in tasks]
        df = df.reset_index(drop=True)
        if detail:
            detail_df = detail_frame(store.detail(list(dict.fromkeys(keys))))
            write_csv(detail_df, out / DETAIL_FILE)
    write_csv(df, out / CSV_FILE)
    df.attrs["workers"] = {pid: s._asdict() for pid, s in sorted(seen.items())}
    return df


def failed_points(df: pd.DataFrame, show: int = 5) -> str | None:
    """One line naming the failed rows of a sweep table (how many, the first ``show`` points,
    the first error), or None when every row is ok."""
    bad = df[df["status"] == "failed"]
    if bad.empty:
        return None
    points = ", ".join(str(p) for p in bad["point"].head(show))
    more = f" and {len(bad) - show} more" if len(bad) > show else ""
    r = next(bad.itertuples())
    return (f"{len(bad)} of {len(df)} sweep rows failed (points {points}{more}); first, "
            f"point {r.point} ({r.model}, {r.policy}): {r.error}")


def _tasks(plan: _Plan, ids: Sequence[Sequence[str]]) -> list[_Task]:
    """Every (point, model, policy) in table order, each with its store key."""
    return [
        _Task(point_key(hw, plan.labels[m], wid, plan.workloads[wid].inputs, pol, plan.prefetch,
                        plan.evaluations.get(plan.labels[m])),
              p, m, k, wid)
        for p, hw in enumerate(plan.hws) for m, wid in enumerate(ids[p])
        for k, pol in enumerate(plan.policies)
    ]


def _run(pending: Sequence[_Task], plan: _Plan, store: Store, how: ExecutorSpec,
         bar) -> dict[int, WorkerStats]:
    """Run the pending tasks, committing each row as it arrives; the last stats per process.

    A task that raises is committed as a failed row with its error (``SweepRow.failed``) and
    the others go on. The serial executor runs and commits one task at a time, so an
    interrupt keeps every task finished before it.
    """
    seen: dict[int, WorkerStats] = {}

    def commit(t: _Task, res: PointResult | None, exc: Exception | None) -> None:
        if res is None:
            store.fail(t.key, plan.failed_row(t, _describe(exc)).columns())
        else:
            drows = None
            if res.rows is not None:
                head = DetailHead(t.key, t.point, plan.labels[t.model], plan.policies[t.policy])
                drows = json.dumps({"head": head._asdict(), "rows": res.rows},
                                   default=_json_default)
            store.put(t.key, plan.row(t, res.summary).columns(), drows)
            seen[res.worker.pid] = res.worker
        if bar is not None:
            bar.update(1)

    used = {t.wid: plan.workloads[t.wid] for t in pending}
    with ExitStack() as stack:
        ex, ref = open_executor(how, used, stack, len(pending))
        if how.kind == "serial":
            for t in pending:
                try:
                    res = simulate_point(plan.task(t), ref(t.wid))
                except Exception as exc:  # recorded as this point's failure
                    commit(t, None, exc)
                else:
                    commit(t, res, None)
            return seen
        futures = {ex.submit(simulate_point, plan.task(t), ref(t.wid)): t for t in pending}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # recorded as this point's failure
                commit(futures[fut], None, exc)
            else:
                commit(futures[fut], res, None)
    return seen


def _describe(exc: BaseException | None, limit: int = 300) -> str:
    """An exception as one line: its type and message, cut to ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + "..."


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)
