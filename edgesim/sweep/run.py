"""The sweep verb: many hardware points x models x policies, resumable, on any executor.

Public names: ``sweep``, ``failed_points``, ``simulate_point``, ``PointTask``, ``PointResult``,
``workload_options``.

``sweep`` is a list of steps: check the arguments and the grid (``edgesim.sweep.grid``: the
config file is read once and each axis value applied to it once; bad ranges fail before any
work), open the store, get each model's Workload once per ``workload_options`` of the grid
(``api.workload``: traced once per precision, disk-cached; found from one point per combination
of the axes that can change them), then plan and run in one stream: point by point, in grid
order, the point's config is built from the parsed file, each (point, model, policy) not already
in the store becomes a ``PointTask``; a pool or cluster gets a point's tasks as one message
(``simulate_points``, its config pickled once), at most ``WINDOW`` points per worker in flight,
and a point's rows (``SweepRow``, ``edgesim.sweep.rows``) are committed to the store
(``edgesim.sweep.store``) in one transaction the moment they come back. Planning before the
first task is thus proportional to the axes, not the points; memory holds the tasks in flight
and a store key per task. The table is read back from the store in grid order, then model
order, then policy order, so it is the same for every executor and for a killed-and-rerun sweep;
``df.attrs["workers"]`` lists, per process that ran tasks, its peak RSS and whether torch or the
zoo was loaded there.

A model is a name or a ``ModelRequest`` (``edgesim.model_request``: its seed, weights, input
shape, ``data`` and ``evaluate``) or a Workload. A routed model routes its request's ``data``; an
evaluated sweep (every request ``evaluate``, its ``data`` labelled) evaluates each model once
here (``api.evaluate``, cached: top-1 does not depend on the hardware), its inputs are the
model's stream, and every row carries the model's ``top1``. The prefetch mode is the config's
``prefetch.mode`` (per point: it may be swept), the memo switch the environment's
``EDGESIM_NO_MEMO``, read here and sent with every task.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from edgesim.errors import ConfigError, EdgesimError
from edgesim.progress import Progress
from edgesim.request import ModelRequest, model_request
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
    from edgesim.sweep.grid import Axis, Base
    from edgesim.workload import Workload

__all__ = ["WINDOW", "PointResult", "PointTask", "failed_points", "simulate_point",
           "simulate_points", "sweep", "workload_options"]

#: Points (each its models x policies tasks) in flight per worker of a pool or cluster: enough
#: to keep every worker busy, few enough that memory does not grow with the grid.
WINDOW = 4


# --------------------------------------------------------------------------- the per-point task

@dataclass(frozen=True)
class PointTask:
    """What a worker needs for one (point, model, policy), besides the Workload reference."""

    hw: HardwareConfig      # its prefetch_mode is the point's prefetch mode
    policy: str
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
    res = simulate(task.hw, workload_of(wref), policy=task.policy, memo=task.memo,
                   keep_rows=task.detail)
    rows = [list(r) for r in res.rows] if task.detail else None
    return PointResult(res.summary, rows, worker_stats())


def simulate_points(tasks: Sequence[tuple[PointTask, Any]]) -> list[PointResult | str]:
    """Run the tasks of one grid point (its models and policies) where the executor put them:
    one message each way per point instead of per task, the point's config pickled once. Per
    task its ``PointResult``, or the one-line error (``_describe``) of a task that raised:
    the others still run, as when each is its own task."""
    out: list[PointResult | str] = []
    for task, wref in tasks:
        try:
            out.append(simulate_point(task, wref))
        except Exception as exc:  # recorded as this task's failure
            out.append(_describe(exc))
    return out


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True, slots=True)
class _Task:
    """One (point, model, policy) as the table needs it after the run: its store key, its
    point, and model, policy and workload by index / id (kept for every task of the grid)."""

    key: str
    point: int
    model: int
    policy: int
    wid: str
    #: the point's ``prefetch.mode`` (one of a few interned names)
    prefetch: str


class _Item(NamedTuple):
    """A task with its point's config and ``--set`` values (alive only while it is planned
    and in flight)."""

    task: _Task
    hw: HardwareConfig
    params: Mapping[str, str]


@dataclass(frozen=True)
class _Plan:
    """Everything the tasks of one sweep share, built once by ``sweep``."""

    labels: Sequence[str]
    policies: Sequence[str]
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

    def row(self, it: _Item, summary: Mapping[str, Any]) -> SweepRow:
        t = it.task
        return SweepRow.build(t.point, it.params, it.hw, self.infos[t.wid],
                              self.labels[t.model], self.policies[t.policy], t.prefetch,
                              self.workloads[t.wid].inputs, summary, self._acc(t))

    def failed_row(self, it: _Item, error: str) -> SweepRow:
        t = it.task
        return SweepRow.failed(t.point, it.params, it.hw, self.infos[t.wid],
                               self.labels[t.model], self.policies[t.policy], t.prefetch,
                               self.workloads[t.wid].inputs, error, self._acc(t))

    def expect(self, t: _Task) -> dict[str, Any]:
        """Columns the stored row of ``t`` must hold: what its key was made of."""
        out = {"model": self.labels[t.model], "policy": self.policies[t.policy],
               "prefetch": t.prefetch, "inputs": self.workloads[t.wid].inputs}
        acc = self._acc(t)
        if acc is not None:
            out["top1"] = float(acc["top1"])
        return out

    def task(self, it: _Item) -> PointTask:
        return PointTask(it.hw, self.policies[it.task.policy], self.memo, self.detail)


def _check(policies: Sequence[str], inputs: int, models: Sequence[Any]) -> None:
    from edgesim.sim import POLICIES
    if not models:
        raise EdgesimError("sweep needs at least one model")
    for p in policies:
        if p not in POLICIES:
            raise EdgesimError(f"policy {p!r}: expected one of {', '.join(POLICIES)}")
    if len(set(policies)) != len(policies) or not policies:
        raise EdgesimError(f"policies {list(policies)}: give each policy once, at least one")
    if inputs < 1:
        raise EdgesimError(f"inputs must be >= 1, got {inputs}")


def _point_config(base: Base, point: int, params: Mapping[str, str]) -> HardwareConfig:
    """The config of one grid point, built from the parsed file (no file read).

    Each value was checked alone with the grid; a combination the config rejects (a reserve
    above the SRAM size, say) is one ``ConfigError`` line naming the point."""
    overrides = [f"{k}={v}" for k, v in params.items()]
    try:
        return base.build(overrides)
    except ConfigError as exc:
        if not params:
            raise
        raise ConfigError(f"grid point {point} ({', '.join(overrides)}): {exc}") from None


#: The config keys ``workload_options`` reads (``compute.precision``, ``compute.activation_bits``,
#: ``formats``): only an axis on one of them, or on a section holding one, changes a Workload.
_WORKLOAD_KEYS = (("compute", "precision"), ("compute", "activation_bits"), ("formats",))


def _changes_workload(axis: Axis) -> bool:
    path = tuple(axis.key.split("."))
    return any(key[:len(path)] == path for key in _WORKLOAD_KEYS)


def _workload_points(axes: Sequence[Axis]) -> Iterator[tuple[int, dict[str, str]]]:
    """One grid point (index, values) per combination of the values of the axes that can
    change ``workload_options``: the first such point in grid order (every other axis at its
    first value). Their workloads are every workload of the grid."""
    moving = [i for i, a in enumerate(axes) if _changes_workload(a)]
    sizes = [len(a.values) for a in axes]
    for combo in itertools.product(*(range(sizes[i]) for i in moving)):
        index = [0] * len(axes)
        for i, k in zip(moving, combo, strict=True):
            index[i] = k
        point = 0
        for i, k in enumerate(index):
            point = point * sizes[i] + k
        yield point, {a.key: a.values[k] for a, k in zip(axes, index, strict=True)}


def _digit(axes: Sequence[Axis], point: int, i: int) -> int:
    """The index into ``axes[i].values`` of grid point ``point`` (first axis slowest)."""
    for a in axes[i + 1:]:
        point //= len(a.values)
    return point % len(axes[i].values)


def _options_key(hw: HardwareConfig) -> str:
    return json.dumps(workload_options(hw), sort_keys=True)


def workload_options(hw: HardwareConfig) -> dict[str, Any]:
    """What ``api.workload`` takes of a config: the Workload as this hardware stores it.

    Points with equal options share one Workload. The trace under it depends on the precision
    alone (``api.workload`` caches it by model, precision, weights, seed and level, and decides
    encodings and activation bytes from ``formats`` and ``act_bits`` afterwards), so a sweep
    over formats or activation bits traces each model once.
    """
    return {"precision": hw.precision, "act_bits": hw.act_bits, "formats": tuple(hw.formats)}


def _models(models: Sequence[Any]) -> list[Any]:
    """Each model as a Workload or a checked ``ModelRequest`` (a name, ``name@K``, a file or
    an ``nn.Module`` object becomes ``model_request(m)``: seed 0, no data)."""
    from edgesim.workload import Workload
    return [m if isinstance(m, (Workload, ModelRequest)) else model_request(m) for m in models]


def _label(m: Any) -> str:
    """A model's name in the table: a Workload's name, a request's name (``@K`` its level)."""
    if isinstance(m, ModelRequest):
        return m.name if m.level is None else f"{m.name}@{m.level}"
    return m.name


def _labels(models: Sequence[Any]) -> list[str]:
    labels = [_label(m) for m in models]
    if len(set(labels)) != len(labels):
        raise EdgesimError(f"models {labels}: each model may appear once")
    return labels


def _evaluated(models: Sequence[Any]) -> bool:
    """Whether the sweep is evaluated: every model a request with ``evaluate``, or none."""
    asked = [m for m in models if isinstance(m, ModelRequest) and m.evaluate]
    if not asked:
        return False
    for m in models:
        if not isinstance(m, ModelRequest):
            raise EdgesimError(f"--eval: model {m.name!r} is given as a traced Workload, whose "
                               "accuracy cannot be measured; give it by name")
        if not m.evaluate:
            raise EdgesimError(f"evaluate: model {_label(m)!r} is not evaluated but "
                               f"{_label(asked[0])!r} is; an evaluated sweep evaluates every "
                               "model (each row has its model's top1)")
    return True


def _accuracy(models: Sequence[ModelRequest], inputs: int | None,
              say: Callable[[str], None] | None, progress: Progress | None = None
              ) -> dict[str, dict[str, Any]]:
    """Each request's ``api.evaluate`` on its ``data`` (its first ``inputs``), by label; a bar
    of inputs on stderr for an evaluation of at least 256 inputs when ``say`` is on, or the
    caller's ``progress`` hears the inputs evaluated."""
    from edgesim import api
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
            shown = progress if progress is not None else Progress(
                say, (lambda step, done, total: update(done, total)) if say else None)
            out[_label(m)] = api.evaluate(m, inputs=inputs, progress=shown)
        finally:
            for b in bar:
                b.close()
    counts = {a["inputs"] for a in out.values()}
    if len(counts) > 1:   # one stream length for the sweep: every model reads as many inputs
        data = sorted({str(m.data) for m in models})
        raise EdgesimError(f"--data {', '.join(data)}: the models read different numbers of "
                           f"inputs ({sorted(counts)})")
    return out


def _evaluation(req: ModelRequest, acc: Mapping[str, Any]) -> dict[str, Any]:
    """What a model's top-1 came from (a part of its rows' store keys)."""
    from edgesim import cache
    out = {"data": cache.file_fingerprint(req.data), "seed": req.seed, "top1": acc["top1"],
           "correct": acc["correct"]}
    if req.weights is not None:
        out["weights"] = cache.file_fingerprint(req.weights)
    return out


def _workloads(models: Sequence[Any], hws: Sequence[HardwareConfig], inputs: int,
               say: Progress | Callable[[str], None] | None
               ) -> tuple[list[list[str]], dict[str, Workload], list[str]]:
    """Each model (a Workload or a ``ModelRequest``) once per ``workload_options`` of the grid.

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
        key = _options_key(hw)
        if key not in by_key:
            row = []
            for m in models:
                if isinstance(m, Workload):
                    w = m.with_inputs(inputs) if len(m.paths) == 1 else m
                else:
                    w = api.workload(m, **opts, inputs=inputs, progress=say)
                wid = w.digest()
                table.setdefault(wid, w)
                row.append(wid)
            by_key[key] = row
        ids.append(by_key[key])
    return ids, table, labels


def _memo() -> bool:
    """The engine's memo switch as this process's environment sets it (``EDGESIM_NO_MEMO`` set
    and not 0: off; ``edgesim.sim.engine.simulate``), sent with each task so that a worker on
    another machine runs as this process would."""
    return os.environ.get("EDGESIM_NO_MEMO", "0") in ("", "0")


class _Counted:
    """The sweep's tasks done, counted to a ``Progress`` as ``count("sweep", done, total)``
    (the bar's ``update``/``close``)."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def update(self, n: int = 1) -> None:
        self.done += n
        self.progress.count("sweep", self.done, self.total)

    def close(self) -> None:
        pass


def _bar(enabled: bool | None, total: int, initial: int):
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="pt", file=sys.stderr, leave=False)


# --------------------------------------------------------------------------- the verb

def sweep(config: Any, models: Sequence[Any], grid_sets: Sequence[str] = (), *,
          out_dir: str | os.PathLike, policies: Sequence[str] = ("lru",),
          inputs: int | None = None, executor: str | ExecutorSpec = "process",
          detail: bool = False, progress: bool | Progress | None = None) -> pd.DataFrame:
    """Simulate every (grid point, model, policy); the tidy table, sorted by grid order.

    ``config``: a YAML path, a shipped config name or the YAML's mapping (or a
    ``grid.base_config``). ``models``: registry names (``nested_r50@2`` included), ``.tflite`` /
    ``.onnx`` files, ``ModelRequest``s (``edgesim.model_request``: seed, weights, input shape,
    ``data`` a routed model routes, ``evaluate``) or Workloads. ``grid_sets``: ``--set`` specs
    (``edgesim.sweep.grid``); the prefetch mode is the config key ``prefetch.mode``
    (``prefetch.mode=none,next`` sweeps it). ``executor``: ``process`` (all cores), ``serial``,
    ``dask`` (a LocalCluster), a Dask scheduler address (``tcp://HOST:PORT``), or an
    ``ExecutorSpec`` (``edgesim.sweep.executors``: kind, scheduler and ``workers``).
    ``progress``: a tqdm bar on stderr (None: only when it is a terminal); tracing messages go
    to stderr only when the bar is on; an ``edgesim.progress.Progress`` instead hears every
    stage line, the inputs routed and the tasks done (``count("sweep", done, total)``). The
    table is also written to ``out_dir/sweep.csv``; columns as in ``edgesim.sweep.rows``
    (``detail``: every inference's row too, ``out_dir/detail.csv``). ``inputs``: inferences
    per stream (None: 1000, or in an evaluated sweep all of the data). An evaluated sweep (each
    request ``evaluate``, its ``data`` labelled) gives every row its model's ``top1`` over
    those inputs (``api.evaluate``). ``EDGESIM_NO_MEMO=1`` in the environment simulates every
    inference (``edgesim.sim.engine.simulate``; the same table).

    A task that raises (a value the config accepts but the engine cannot compute with) does
    not stop the sweep: its row has ``status`` ``failed``, its ``error`` and empty metrics; it
    is kept in the store, and a rerun over the same folder retries it. ``failed_points(df)``
    says which. A store that is corrupt, read-only, altered or not edgesim's is refused
    (``StoreError``). Each ``--set`` value is checked against the config before any work; a
    point whose combination of values the config rejects is met when it is planned: the rows
    before it are stored, and its ``ConfigError`` names the point.

    >>> import tempfile
    >>> from edgesim.testing import TINY_CONFIG, tiny_workload
    >>> df = sweep(TINY_CONFIG, [tiny_workload()], ["sram.size=2KiB,4KiB"], inputs=3,
    ...            out_dir=tempfile.mkdtemp(), executor="serial")
    >>> df[["sram.size", "weight_dram_bytes_cold", "weight_dram_bytes_steady"]].values.tolist()
    [['2KiB', 3000, 2000.0], ['4KiB', 3000, 0.0]]
    """
    from edgesim.sweep.grid import base_config, grid_size, parse_grid
    models = _models(models)
    _check(policies, 1000 if inputs is None else inputs, models)
    _labels(models)   # each model once, before any work
    evaluate = _evaluated(models)
    how = ExecutorSpec.of(executor)
    if isinstance(progress, Progress):       # the caller's: stage lines and counts
        say, shown = progress.say, progress
    else:
        tty = sys.stderr.isatty() if progress is None else progress
        say = ((lambda msg: print(f"edgesim: {msg}", file=sys.stderr, flush=True)) if tty
               else None)
        shown = Progress(say=say)
    base = base_config(config)                 # the file is read and parsed once
    axes = parse_grid(base, grid_sets, say=say)   # bad grids fail here, before any work
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgesimError(f"--out {out}: cannot create ({exc.strerror})") from None

    # the store is checked before any work: a corrupt, read-only or foreign one is refused here
    with Store(out / RESULTS_FILE) as store:
        accuracy, evaluations = {}, {}
        if evaluate:
            labels = _labels(models)   # each model once, before evaluating any
            accuracy = _accuracy(models, inputs, say,
                                 shown if isinstance(progress, Progress) else None)
            inputs = next(iter(accuracy.values()))["inputs"]
            evaluations = {label: _evaluation(m, accuracy[label])
                           for label, m in zip(labels, models, strict=True)}
        inputs = 1000 if inputs is None else inputs
        reps = [_point_config(base, p, params) for p, params in _workload_points(axes)]
        ids, table, labels = _workloads(models, reps, inputs, shown)
        by_options = {_options_key(hw): row for hw, row in zip(reps, ids, strict=True)}
        from edgesim.api import model_info
        plan = _Plan(labels, tuple(policies), inputs, table,
                     {wid: model_info(w) for wid, w in table.items()}, _memo(), detail,
                     accuracy, evaluations)
        total = grid_size(axes) * len(labels) * len(plan.policies)
        if say is not None:
            say(f"{grid_size(axes):,} points x {_count(len(labels), 'model')} x "
                f"{_count(len(plan.policies), 'policy', 'policies')} = {total:,} tasks, "
                "planned and run point by point")
        done = store.finished(detail=detail)
        bar = (_Counted(progress, total) if isinstance(progress, Progress)
               else _bar(progress, total, 0))
        try:
            tasks, seen = _run(_items(base, axes, plan, by_options), plan, store, how, bar,
                               done, total)
        finally:
            if bar is not None:
                bar.close()
        del done    # 60,000 keys: not held while the table is built
        if say is not None:
            say(f"reading {len(tasks):,} rows back from {out / RESULTS_FILE}")
        keys = [t.key for t in tasks]
        shared: dict[tuple[int, int, str, str], dict[str, Any]] = {}
        expect = [shared.setdefault((t.model, t.policy, t.wid, t.prefetch), plan.expect(t))
                  for t in tasks]
        df = store.frame(keys, expect)
        del expect
        # a key shared by two tasks (equal points, e.g. 2KiB and 2048B) is one stored row and
        # one table row per task, each with its own point and swept values
        df["point"] = [t.point for t in tasks]
        for i, axis in enumerate(axes):
            values = [axis.values[_digit(axes, t.point, i)] for t in tasks]
            if axis.key in df.columns:
                df[axis.key] = values
            else:   # every row was stored by a sweep without this axis
                df.insert(1 + i, axis.key, values)
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


def _items(base: Base, axes: Sequence[Axis], plan: _Plan,
           by_options: Mapping[str, Sequence[str]]) -> Iterator[_Item]:
    """Every (point, model, policy) in table order, each with its store key, planned lazily:
    a point's config is built when its first task is asked for."""
    from edgesim.sweep.grid import iter_points
    for p, params in enumerate(iter_points(axes)):
        hw = _point_config(base, p, params)
        wids = by_options.get(_options_key(hw))
        if wids is None:   # _WORKLOAD_KEYS misses a key workload_options reads
            raise EdgesimError(f"grid point {p}: its workload options "
                               f"{workload_options(hw)} were not traced before the run")
        for m, wid in enumerate(wids):
            label = plan.labels[m]
            for k, pol in enumerate(plan.policies):
                key = point_key(hw, label, wid, plan.workloads[wid].inputs, pol,
                                plan.evaluations.get(label))
                yield _Item(_Task(key, p, m, k, wid, hw.prefetch_mode), hw, params)


def _run(items: Iterator[_Item], plan: _Plan, store: Store, how: ExecutorSpec, bar,
         done: set[str], total: int) -> tuple[list[_Task], dict[int, WorkerStats]]:
    """Plan and run: every task of ``items`` (kept, for the table), those whose key is not in
    ``done`` run, each key once, committing each row as it arrives; the tasks and the last
    stats per process.

    At most ``WINDOW`` points per worker are in flight, each one message (``simulate_points``)
    whose rows are committed in one transaction: the next point is planned as a point
    finishes, so the first rows are stored while later points are not yet planned. A task that
    raises is committed as a failed row with its error (``SweepRow.failed``) and the others go
    on. A point whose config cannot be built stops the planning: the tasks in flight are
    committed, then its ``ConfigError`` is raised. The serial executor runs and commits one
    task at a time, so an interrupt keeps every task finished before it. ``done`` gains the
    keys run.
    """
    tasks: list[_Task] = []
    seen: dict[int, WorkerStats] = {}

    def pending() -> Iterator[_Item]:
        for it in items:
            tasks.append(it.task)
            if it.task.key in done:   # stored before, or run for an equal point of this grid
                if bar is not None:
                    bar.update(1)
                continue
            done.add(it.task.key)
            yield it

    def entry(it: _Item, res: PointResult) -> tuple[str, dict[str, Any], str | None]:
        t = it.task
        drows = None
        if res.rows is not None:
            head = DetailHead(t.key, t.point, plan.labels[t.model], plan.policies[t.policy])
            drows = json.dumps({"head": head._asdict(), "rows": res.rows},
                               default=_json_default)
        seen[res.worker.pid] = res.worker
        return t.key, plan.row(it, res.summary).columns(), drows

    def commit(it: _Item, res: PointResult | None, exc: Exception | None) -> None:
        if res is None:
            store.fail(it.task.key, plan.failed_row(it, _describe(exc)).columns())
        else:
            store.put(*entry(it, res))
        if bar is not None:
            bar.update(1)

    def commit_point(group: Sequence[_Item], results: Sequence[PointResult | str]) -> None:
        """A point's rows in one transaction; its failed tasks each as a failed row."""
        store.put_many([entry(it, r) for it, r in zip(group, results, strict=True)
                        if not isinstance(r, str)])
        for it, r in zip(group, results, strict=True):
            if isinstance(r, str):
                store.fail(it.task.key, plan.failed_row(it, r).columns())
        if bar is not None:
            bar.update(len(group))

    todo = pending()
    first = next(todo, None)   # a resumed grid plans its finished points before any executor
    if first is None:
        return tasks, seen
    with ExitStack() as stack:
        ex, ref = open_executor(how, plan.workloads, stack, total)
        if how.kind == "serial":
            for it in itertools.chain([first], todo):
                try:
                    res = simulate_point(plan.task(it), ref(it.task.wid))
                except Exception as exc:  # recorded as this point's failure
                    commit(it, None, exc)
                else:
                    commit(it, res, None)
            return tasks, seen
        limit = WINDOW * (how.workers or os.cpu_count() or 1)
        groups = _by_point(itertools.chain([first], todo))

        def submit(group: list[_Item]) -> Any:
            return ex.submit(simulate_points,
                             tuple((plan.task(it), ref(it.task.wid)) for it in group))

        flight: dict[Any, list[_Item]] = {}
        stopped: EdgesimError | None = None
        more = True
        while True:
            while more and len(flight) < limit:   # plan the next points as points finish
                try:
                    group = next(groups, None)
                except EdgesimError as exc:   # a point that cannot be built: finish the rest
                    stopped, group = exc, None
                if group is None:
                    more = False
                else:
                    flight[submit(group)] = group
            if not flight:
                break
            finished, _ = wait(flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                group = flight.pop(fut)
                try:
                    results = fut.result()
                except Exception as exc:  # the worker died: each task of the point failed
                    results = [_describe(exc)] * len(group)
                commit_point(group, results)
        if stopped is not None:
            raise stopped
    return tasks, seen


def _by_point(items: Iterator[_Item]) -> Iterator[list[_Item]]:
    """``items`` in runs of one grid point each (a point's models and policies: one message to
    a worker). A point that cannot be built ends the runs: the run before it comes first."""
    group: list[_Item] = []
    try:
        for it in items:
            if group and it.task.point != group[0].task.point:
                yield group
                group = []
            group.append(it)
    except EdgesimError:
        if group:
            yield group
        raise
    if group:
        yield group


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _describe(exc: BaseException | None, limit: int = 300) -> str:
    """An exception as one line: its type and message, cut to ``limit`` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit] + "..."


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
    return str(v)
