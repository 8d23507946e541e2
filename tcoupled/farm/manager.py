"""An MPI task farm: rank 0 of ``farm_comm`` manages, the other ranks work.

The manager keeps up to ``depth`` tasks at each worker (default 2: the one it runs
and the next, already in its MPI queue), so a worker that finishes a task starts the
next at once instead of waiting for the manager to see the result, choose, and send.
Results come back as they finish, in whatever order (``next_result``), and a driver
such as the active learner refills a slot the moment one frees up; it chooses one
task ahead, which its batch-aware acquisition accounts for (the queued molecule
counts as running).

Isolation
---------
Each worker rank runs its tasks in one long-lived helper process (a fresh
``python -c`` child talking over an OS pipe, not a fork of the MPI process,
so no MPI state is duplicated). The helper imports the task function once and
then serves tasks, which keeps the per-task cost to a pipe round trip instead
of a process start and the RDKit/tblite imports. If a task crashes the helper
(segfault, ``os._exit``), hangs past the timeout (the worker kills it), or
raises (SCF failure, bad molecule), the worker records the failure with its
reason and carries on; a dead helper is replaced before the next task. The
helper runs with one OpenMP thread.

With a one-rank communicator the manager runs the tasks itself, through the
same helper, so serial and MPI runs share one code path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcoupled.farm.isolation import IsolatedRunner
from tcoupled.runtime.faults import inject
from tcoupled.runtime.waiting import wait_for_message

TAG_TASK, TAG_RESULT, TAG_STOP, TAG_CANCEL = 11, 12, 13, 14
QUEUE_DEPTH = 2  # tasks a worker holds: the one it runs and the next
CANCELLED = "cancelled"  # status of a queued task dropped by cancel_queued, never run


@dataclass
class TaskResult:
    """What came back from one task."""

    task_id: int
    status: str  # "ok" or "failed"
    value: Any = None
    error: str = ""
    worker: int = 0
    seconds: float = 0.0  # time the worker spent on the task
    #: when the worker began it, seconds since the farm started (manager clock): the
    #: receive time less the worker's time, not before the dispatch
    start: float = 0.0
    end: float = 0.0  # receive time, seconds since the farm started


def serve_worker(farm_comm: Any, task: str, timeout: float) -> None:
    """Worker loop: run tasks from rank 0 of ``farm_comm`` until told to stop."""
    from tcoupled.runtime.mpienv import init_mpi

    mpi = init_mpi()
    runner = IsolatedRunner(task, timeout)
    runner.start()
    status = mpi.Status()
    received = 0
    cancelling = False  # a cancel is on its way: answer the tasks sent before it unrun
    try:
        while True:
            wait_for_message(farm_comm, 0, mpi.ANY_TAG, status)
            tag = status.Get_tag()
            message = farm_comm.recv(source=0, tag=tag)
            if tag == TAG_STOP:
                return
            if tag == TAG_CANCEL:  # messages from one sender arrive in order: all answered
                cancelling = False
                continue
            task_id, payload = message
            if cancelling or farm_comm.Iprobe(source=0, tag=TAG_CANCEL):
                cancelling = True
                farm_comm.send((task_id, CANCELLED, None, "cancelled before it started", 0.0),
                               dest=0, tag=TAG_RESULT)
                continue
            inject("farm", "task", received, farm_comm.Get_rank())
            received += 1
            start = time.perf_counter()
            outcome = runner.run(payload)
            farm_comm.send((task_id, *outcome, time.perf_counter() - start), dest=0,
                           tag=TAG_RESULT)
    finally:
        runner.close()


@dataclass
class FarmStats:
    """Per-worker busy time and counts, kept by the manager."""

    n_workers: int
    started: float = field(default_factory=time.perf_counter)
    busy_s: dict[int, float] = field(default_factory=dict)
    tasks: dict[int, int] = field(default_factory=dict)

    def add(self, result: TaskResult) -> None:
        """Account for one finished task."""
        self.busy_s[result.worker] = self.busy_s.get(result.worker, 0.0) + result.seconds
        self.tasks[result.worker] = self.tasks.get(result.worker, 0) + 1

    def restart_clock(self) -> None:
        """Count time from now (call when the first task is about to be submitted)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the farm started."""
        return time.perf_counter() - self.started

    def as_dict(self, workers: list[int]) -> dict:
        """Return tasks per second, per-worker busy time and utilisation."""
        wall = max(self.elapsed(), 1e-9)
        done = sum(self.tasks.values())
        busy = {str(w): self.busy_s.get(w, 0.0) for w in workers}
        util = {w: b / wall for w, b in busy.items()}
        return {"n_workers": len(workers), "tasks": done, "wall_s": wall,
                "tasks_per_s": done / wall, "worker_busy_s": busy,
                "worker_tasks": {str(w): self.tasks.get(w, 0) for w in workers},
                "worker_utilization": util,
                "mean_utilization": sum(util.values()) / max(len(util), 1)}


class Manager:
    """The manager's side of the farm: submit tasks, collect results as they finish.

    ``depth`` is how many tasks each worker may hold (running and queued behind it).
    """

    def __init__(self, farm_comm: Any, task: str, timeout: float,
                 depth: int = QUEUE_DEPTH) -> None:
        from collections import deque

        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.comm = farm_comm
        size = 1 if farm_comm is None else farm_comm.Get_size()
        self.workers = list(range(1, size)) if size > 1 else [0]
        self.depth = depth if size > 1 else 1  # a one-rank farm runs each task at once
        #: worker -> its tasks in order: (task id, payload, dispatch time)
        self.queues: dict[int, Any] = {w: deque() for w in self.workers}
        self.stats = FarmStats(len(self.workers))
        self._cancelled = False
        self._local = IsolatedRunner(task, timeout) if size == 1 else None
        if self._local is not None:
            self._local.start()

    @property
    def n_free(self) -> int:
        """Number of tasks that can be submitted now."""
        return sum(self.depth - len(q) for q in self.queues.values())

    @property
    def n_idle(self) -> int:
        """Number of workers with no task at all."""
        return sum(not q for q in self.queues.values())

    @property
    def n_running(self) -> int:
        """Number of tasks handed out and not yet returned."""
        return sum(len(q) for q in self.queues.values())

    def submit(self, task_id: int, payload: Any) -> int:
        """Give a task to the least loaded worker and return its rank; raises if all are full."""
        worker = min(self.workers, key=lambda w: len(self.queues[w]))
        if len(self.queues[worker]) >= self.depth:
            raise RuntimeError("submit() with every worker full; call next_result() first")
        self.queues[worker].append((task_id, payload, self.stats.elapsed()))
        if self._local is None:
            self.comm.send((task_id, payload), dest=worker, tag=TAG_TASK)
        return worker

    def cancel_queued(self) -> None:
        """Drop the tasks queued behind the running ones (on a stop signal).

        Each is answered by its worker with status :data:`CANCELLED` without running;
        the running tasks finish. Call it once, then collect every result as usual.
        """
        if self._local is not None or self._cancelled:
            return
        self._cancelled = True
        for worker, queue in self.queues.items():
            if len(queue) > 1:
                self.comm.send(None, dest=worker, tag=TAG_CANCEL)

    def next_result(self) -> TaskResult:
        """Wait for the next task to finish (any worker) and return its result."""
        if not self.n_running:
            raise RuntimeError("next_result() with no task running")
        if self._local is not None:
            task_id, payload, _ = self.queues[0][0]
            start = time.perf_counter()
            message = (task_id, *self._local.run(payload), time.perf_counter() - start)
            worker = 0
        else:
            worker, message = self._receive()
        return self._finish(worker, message)

    def _receive(self) -> tuple[int, tuple]:
        from tcoupled.runtime.mpienv import init_mpi

        mpi = init_mpi()
        status = mpi.Status()
        wait_for_message(self.comm, mpi.ANY_SOURCE, TAG_RESULT, status)
        worker = status.Get_source()
        return worker, self.comm.recv(source=worker, tag=TAG_RESULT)

    def _finish(self, worker: int, message: tuple) -> TaskResult:
        task_id, status, value, error, seconds = message
        queued_id, _, dispatched = self.queues[worker].popleft()  # a worker runs in order
        if queued_id != task_id:
            raise RuntimeError(f"worker {worker} returned task {task_id}, expected {queued_id}")
        end = self.stats.elapsed()
        result = TaskResult(task_id, status, value, error, worker, seconds,
                            max(dispatched, end - seconds), end)
        if status != CANCELLED:
            self.stats.add(result)
        return result

    def report(self) -> dict:
        """Return the farm's figures (see :meth:`FarmStats.as_dict`)."""
        return self.stats.as_dict(self.workers)

    def shutdown(self) -> None:
        """Tell every worker to stop (after collecting nothing further)."""
        if self._local is not None:
            self._local.close()
            return
        for worker in self.workers:
            self.comm.send(None, dest=worker, tag=TAG_STOP)


def run_farm(farm_comm: Any, task: str, timeout: float,
             drive: Callable[[Manager], Any]) -> Any:
    """Run a farm: ``drive(manager)`` on rank 0, workers elsewhere; return drive's value.

    Parameters
    ----------
    farm_comm : mpi4py communicator or None
        The farm's ranks; ``None`` or one rank runs tasks on the manager.
    task : str
        ``"module:function"`` run on each payload in the helper process.
    timeout : float
        Seconds a task may run before it is killed and recorded as failed.
    drive : callable
        Called with the :class:`Manager` on rank 0; submits tasks and collects results.
    """
    rank = 0 if farm_comm is None else farm_comm.Get_rank()
    if rank != 0:
        serve_worker(farm_comm, task, timeout)
        return None
    manager = Manager(farm_comm, task, timeout)
    try:
        return drive(manager)
    finally:
        manager.shutdown()


def map_tasks(manager: Manager, payloads: list[Any],
              on_result: Callable[[TaskResult], None] | None = None) -> list[TaskResult]:
    """Run every payload on the farm (as workers free up); return results in input order."""
    results: list[TaskResult | None] = [None] * len(payloads)
    pending = list(enumerate(payloads))
    while pending or manager.n_running:
        while pending and manager.n_free:
            manager.submit(*pending.pop(0))
        result = manager.next_result()
        results[result.task_id] = result
        if on_result is not None:
            on_result(result)
    return results  # type: ignore[return-value]


def noop_task(payload: Any) -> float:
    """Do nothing and return a deterministic pseudo-energy (measures farm overhead)."""
    import zlib

    text = str(payload.get("smiles", payload)) if isinstance(payload, dict) else str(payload)
    return 8.0 + (zlib.crc32(text.encode()) % 4000) / 1000.0
