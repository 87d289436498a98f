"""Where a sweep's tasks run: a pool of clean worker processes, a Dask cluster, or this process.

Public names: ``EXECUTORS``, ``ExecutorSpec``, ``open_executor``, ``Serial``, ``WorkerCache``,
``workload_of``, ``worker_stats``.

``open_executor(spec, workloads, stack)`` gives a ``concurrent.futures.Executor`` and, for each
workload id, the reference a task passes to ``workload_of`` to get the Workload back where it
runs:

* ``process``: a ``ProcessPoolExecutor`` whose workers are started by a fork server (else
  spawned), never forked from this process, so a worker holds only what it imports itself: the
  simulator and NumPy, not torch or the model zoo that tracing may have loaded here. Each worker
  gets the pickled Workloads once, in its initializer, as a ``WorkerCache`` that unpickles a
  Workload when a task first asks for it; a task names its Workload by id.
* ``dask``: a distributed cluster (``scheduler`` address, or a LocalCluster when None;
  ``ExecutorSpec.of("tcp://HOST:PORT")`` is Dask at that address); the
  Workloads are scattered to every worker and a task gets the future. A task that raises is
  the sweep's failed row (one line): its workers do not also log Dask's six-line "Compute
  Failed" report (``quiet_failures``).
* ``serial``: each task runs when submitted, here; a task gets the Workload itself.

``worker_stats()`` is what a task reports about the process it ran in: pid, peak RSS and
whether torch or the zoo is loaded there (``edgesim.sweep.run`` keeps it in ``df.attrs``).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import multiprocessing
import os
import pickle
import resource
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from edgesim.errors import EdgesimError

__all__ = ["EXECUTORS", "ExecutorSpec", "Serial", "WorkerCache", "open_executor",
           "quiet_failures", "worker_stats", "workload_of"]

EXECUTORS = ("process", "dask", "serial")
#: Modules a worker process preloads (the fork server imports them once for all workers).
_PRELOAD = ["edgesim.sweep.run", "edgesim.sim"]


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run tasks: ``kind`` of ``EXECUTORS``, Dask ``scheduler`` address, ``workers``.

    >>> ExecutorSpec.of("tcp://10.0.0.5:8786")
    ExecutorSpec(kind='dask', scheduler='tcp://10.0.0.5:8786', workers=None)
    """

    kind: str = "process"
    scheduler: str | None = None
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise EdgesimError(f"unknown executor {self.kind!r}; expected one of "
                               f"{', '.join(EXECUTORS)}")
        if self.workers is not None and (isinstance(self.workers, bool)
                                         or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise EdgesimError(f"workers must be a whole number >= 1, got {self.workers!r}")
        if self.scheduler is not None and self.kind != "dask":
            raise EdgesimError(f"scheduler {self.scheduler!r} needs the dask executor, not "
                               f"{self.kind!r}")

    @classmethod
    def of(cls, executor: str | ExecutorSpec) -> ExecutorSpec:
        """``executor`` as a spec: a name of ``EXECUTORS`` (all cores; Dask: a LocalCluster),
        a Dask scheduler address (``tcp://HOST:PORT``: Dask there), or a spec (workers)."""
        if isinstance(executor, ExecutorSpec):
            return executor
        if isinstance(executor, str) and "://" in executor:
            return cls("dask", executor)
        if not isinstance(executor, str) or executor not in EXECUTORS:
            raise EdgesimError(f"unknown executor {executor!r}; expected one of "
                               f"{', '.join(EXECUTORS)}, a Dask scheduler address "
                               "(tcp://HOST:PORT) or an ExecutorSpec")
        return cls(executor)


class WorkerStats(NamedTuple):
    """What one task saw of its process: pid, peak RSS (MiB), heavy modules loaded there, and
    the CPU time (user + system, s) the process has used so far."""

    pid: int
    max_rss_mib: float
    torch: bool
    zoo: bool
    cpu_s: float = 0.0


def worker_stats() -> WorkerStats:
    """This process's pid, peak resident memory, whether torch / ``edgesim.zoo`` is loaded,
    and its CPU time so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # a submodule of edgesim.zoo is never loaded without the package itself
    return WorkerStats(os.getpid(), round(ru.ru_maxrss / 1024, 1), "torch" in sys.modules,
                       "edgesim.zoo" in sys.modules, ru.ru_utime + ru.ru_stime)


class WorkerCache:
    """The pickled Workloads of one sweep inside one worker process, unpickled on first use.

    The pool's initializer is ``WorkerCache(blobs).install``: it makes this object the process's
    cache, which is the one piece of state a pool worker keeps between tasks (it lives only in
    worker processes; the serial and Dask executors hand tasks the Workload itself).
    """

    current: ClassVar[WorkerCache | None] = None

    def __init__(self, blobs: Mapping[str, bytes]) -> None:
        self._blobs = dict(blobs)
        self._loaded: dict[str, Any] = {}

    def install(self) -> None:
        WorkerCache.current = self

    def get(self, wid: str) -> Any:
        w = self._loaded.get(wid)
        if w is None:
            w = self._loaded[wid] = pickle.loads(self._blobs.pop(wid))
        return w


def workload_of(ref: Any) -> Any:
    """The Workload a task's reference names: an id in this worker's cache, or the Workload."""
    if isinstance(ref, str):
        cache = WorkerCache.current
        if cache is None:
            raise EdgesimError(f"workload {ref}: this process is not a sweep worker")
        return cache.get(ref)
    return ref


class Serial(Executor):
    """Runs each task when submitted, in this process (for debugging and doctests)."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


def _context() -> multiprocessing.context.BaseContext:
    """A fork server (workers start clean, quickly), or spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """While the pool lives, its workers do not re-run the caller's ``__main__``.

    A spawned or fork-server worker re-imports the parent's main script (as ``__mp_main__``)
    so that objects defined there unpickle; a script calling ``edgesim.sweep`` without an
    ``if __name__ == "__main__":`` guard then ran again in every worker. The tasks here
    carry only edgesim's own objects, so the main module is named ``__main__`` for the
    pool's lifetime, which multiprocessing's workers leave alone (``spawn.prepare``)."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    missing = object()
    saved = main.__dict__.get("__spec__", missing)
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        if saved is missing:
            del main.__spec__
        else:
            main.__spec__ = saved


def open_executor(spec: ExecutorSpec, workloads: Mapping[str, Any], stack: ExitStack,
                  tasks: int) -> tuple[Executor, Callable[[str], Any]]:
    """The executor (closed by ``stack``) and how a task names each workload id there.

    At most ``tasks`` workers are started (all cores when ``spec.workers`` is None).
    """
    if spec.kind == "serial":
        return Serial(), lambda wid: workloads[wid]
    n = min(spec.workers or os.cpu_count() or 1, max(1, tasks))
    if spec.kind == "process":
        from concurrent.futures import ProcessPoolExecutor
        blobs = {wid: pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL)
                 for wid, w in workloads.items()}
        stack.enter_context(_main_not_rerun())
        ex = stack.enter_context(ProcessPoolExecutor(
            max_workers=n, mp_context=_context(), initializer=WorkerCache(blobs).install))
        return ex, lambda wid: wid
    return _dask(spec, n, workloads, stack)


def _dask(spec: ExecutorSpec, n: int, workloads: Mapping[str, Any],
          stack: ExitStack) -> tuple[Executor, Callable[[str], Any]]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise EdgesimError("--executor dask needs the optional extra: "
                           "pip install 'edgesim[dask]'") from None
    if spec.scheduler is None:
        cluster = stack.enter_context(LocalCluster(n_workers=n, threads_per_worker=1,
                                                   dashboard_address=None))
        client = stack.enter_context(Client(cluster))
    else:
        try:
            client = stack.enter_context(Client(spec.scheduler, timeout=30))
        except (OSError, ValueError, TypeError) as exc:  # unreachable, or not an address
            what = ("cannot connect" if isinstance(exc, OSError) else
                    "not a Dask scheduler address (expected tcp://HOST:PORT)")
            reason = " ".join(str(exc).split())[:200]
            raise EdgesimError(f"--scheduler {spec.scheduler}: {what} ({reason})") from None
    client.run(quiet_failures)
    scattered = {wid: client.scatter(w, broadcast=True, hash=False)
                 for wid, w in workloads.items()}
    return client.get_executor(pure=False), lambda wid: scattered[wid]


class _NoComputeFailed:
    """A logging filter: drops Dask's "Compute Failed" report of a task that raised."""

    def filter(self, record: Any) -> bool:
        return not str(record.msg).startswith("Compute Failed")


_QUIET = _NoComputeFailed()


def quiet_failures() -> None:
    """Run on each Dask worker (``client.run``): its "Compute Failed" log record (key, task,
    exception and traceback over six lines, once per failed task) is dropped; the sweep stores
    the failure as a row whose ``error`` is one line, and ``failed_points`` names it."""
    import logging
    log = logging.getLogger("distributed.worker")
    if _QUIET not in log.filters:
        log.addFilter(_QUIET)
