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

Chunks
------
For many short tasks known up front, :meth:`Manager.submit_chunk` (and
``map_tasks(..., chunksize=N)``) sends N tasks in one message: the worker hands the
whole chunk to its helper in one pipe round trip and returns the outcomes in one
message. A chunk takes one queue place. Isolation stays per task: an exception, a
crash or a hang fails only the task it happened in, and the rest of the chunk runs;
after a crash or a hang, the tasks that finished in the millisecond before it
(``chunks.FLUSH_S``) run again (see :mod:`tcoupled.farm.chunks`), so a chunk's tasks
should not mind running twice. The active learner submits single tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from tcoupled.farm.chunks import decode
from tcoupled.farm.isolation import IsolatedRunner
from tcoupled.farm.results import FarmStats, TaskResult
from tcoupled.farm.worker import (
    CANCELLED,
    TAG_CANCEL,
    TAG_CHUNK,
    TAG_RESULT,
    TAG_STOP,
    TAG_TASK,
    serve_worker,
)
from tcoupled.runtime.waiting import wait_for_message, wait_polling

QUEUE_DEPTH = 2  # tasks (or chunks) a worker holds: the one it runs and the next


class Manager:
    """The manager's side of the farm: submit tasks, collect results as they finish.

    ``depth`` is how many tasks (or chunks) each worker may hold, running and queued
    behind it. ``runner_type`` runs a one-rank farm's tasks (see :func:`run_farm`).
    """

    def __init__(self, farm_comm: Any, task: str, timeout: float,
                 depth: int = QUEUE_DEPTH, runner_type: type = IsolatedRunner) -> None:
        from collections import deque

        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.comm = farm_comm
        size = 1 if farm_comm is None else farm_comm.Get_size()
        self.workers = list(range(1, size)) if size > 1 else [0]
        self.depth = depth if size > 1 else 1  # a one-rank farm runs each task at once
        #: worker -> what it holds, in order: (task id, payload, dispatch time) for a task,
        #: (task ids, payloads pickled, dispatch time) for a chunk
        self.queues: dict[int, Any] = {w: deque() for w in self.workers}
        self.stats = FarmStats(len(self.workers))
        self._cancelled = False
        self._in_flight = 0  # tasks handed out, in chunks or alone, not yet returned
        self._ready: Any = deque()  # results of a finished chunk not yet returned one by one
        #: chunks on their way: sent without waiting, as a blocking send of a message past
        #: the eager limit would wait until the worker, busy with its running chunk, takes it
        self._sending: list = []
        self._local = runner_type(task, timeout) if size == 1 else None
        if self._local is not None:
            self._local.start()

    @property
    def n_free(self) -> int:
        """Number of tasks (or chunks) that can be submitted now."""
        return sum(self.depth - len(q) for q in self.queues.values())

    @property
    def n_idle(self) -> int:
        """Number of workers with no task at all."""
        return sum(not q for q in self.queues.values())

    @property
    def n_running(self) -> int:
        """Number of tasks handed out whose results have not been returned yet."""
        return self._in_flight + len(self._ready)

    def _place(self) -> int:
        worker = min(self.workers, key=lambda w: len(self.queues[w]))
        if len(self.queues[worker]) >= self.depth:
            raise RuntimeError("submit() with every worker full; call next_result() first")
        return worker

    def submit(self, task_id: int, payload: Any) -> int:
        """Give a task to the least loaded worker and return its rank; raises if all are full."""
        worker = self._place()
        self.queues[worker].append((task_id, payload, self.stats.elapsed()))
        self._in_flight += 1
        if self._local is None:
            self.comm.send((task_id, payload), dest=worker, tag=TAG_TASK)
        return worker

    def submit_chunk(self, task_ids: Sequence[int], payloads: Sequence[Any]) -> int:
        """Give a chunk of tasks, sent as one message, to the least loaded worker.

        The chunk takes one queue place; its results come back together (see
        :meth:`next_results`), each task with its own status. Returns the worker's rank.
        """
        import pickle

        if len(task_ids) != len(payloads) or not task_ids:
            raise ValueError(f"a chunk needs one task id per payload, got {len(task_ids)} "
                             f"ids and {len(payloads)} payloads")
        worker = self._place()
        data = pickle.dumps(list(payloads), pickle.HIGHEST_PROTOCOL)
        self.queues[worker].append((list(task_ids), data, self.stats.elapsed()))
        self._in_flight += len(task_ids)
        if self._local is None:
            self._sending = [r for r in self._sending if not r.Test()]
            self._sending.append(self.comm.isend((task_ids[0], len(task_ids), data),
                                                 dest=worker, tag=TAG_CHUNK))
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
        if not self._ready:
            self._ready.extend(self.next_results())
        return self._ready.popleft()

    def next_results(self) -> list[TaskResult]:
        """Wait for the next task or chunk to finish; return its results (a chunk's in order).

        Results of a chunk not yet returned by :meth:`next_result` come first.
        """
        if self._ready:
            ready, self._ready = list(self._ready), type(self._ready)()
            return ready
        if not self._in_flight:
            raise RuntimeError("next_result() with no task running")
        if self._local is None:
            worker, message = self._receive()
        else:
            worker, message = 0, self._run_locally()
        if isinstance(self.queues[worker][0][0], list):
            return self._finish_chunk(worker, message)
        return [self._finish(worker, message)]

    def _run_locally(self) -> tuple:
        key, payload, _ = self.queues[0][0]
        start = time.perf_counter()
        if isinstance(key, list):
            segments = self._local.run_chunk(payload, len(key))
            return key[0], segments, time.perf_counter() - start
        return (key, *self._local.run(payload), time.perf_counter() - start)

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
        self._in_flight -= 1
        end = self.stats.elapsed()
        result = TaskResult(task_id, status, value, error, worker, seconds,
                            max(dispatched, end - seconds), end)
        if status != CANCELLED:
            self.stats.add(result)
        return result

    def _finish_chunk(self, worker: int, message: tuple) -> list[TaskResult]:
        first_id, segments, seconds = message
        task_ids, _, dispatched = self.queues[worker].popleft()
        outcomes = decode(segments)
        if first_id != task_ids[0] or len(outcomes) != len(task_ids):
            raise RuntimeError(f"worker {worker} returned {len(outcomes)} results from task "
                               f"{first_id}, expected {len(task_ids)} from {task_ids[0]}")
        self._in_flight -= len(task_ids)
        # each task ends when the helper says; the chunk began when the worker took it
        clock = max(dispatched, self.stats.elapsed() - seconds)
        results, busy, counted = [], 0.0, 0
        for task_id, (status, value, error, took) in zip(task_ids, outcomes):
            results.append(TaskResult(task_id, status, value, error, worker, took, clock,
                                      clock + took))
            clock += took
            if status != CANCELLED:
                busy += took
                counted += 1
        self.stats.add_many(worker, busy, counted)
        return results

    def report(self) -> dict:
        """Return the farm's figures (see :meth:`FarmStats.as_dict`)."""
        return self.stats.as_dict(self.workers)

    def shutdown(self) -> None:
        """Tell every worker to stop (after collecting nothing further)."""
        if self._local is not None:
            self._local.close()
            return
        if not self.n_running:  # every chunk was answered, so every one was received
            wait_polling(self._sending)
        for worker in self.workers:
            self.comm.send(None, dest=worker, tag=TAG_STOP)


def run_farm(farm_comm: Any, task: str, timeout: float, drive: Callable[[Manager], Any],
             runner_type: type = IsolatedRunner) -> Any:
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
    runner_type : type
        What runs the tasks: :class:`IsolatedRunner`, or (``bench farm`` only, to measure
        what isolation costs) :class:`~tcoupled.farm.isolation.InProcessRunner`.
    """
    rank = 0 if farm_comm is None else farm_comm.Get_rank()
    if rank != 0:
        serve_worker(farm_comm, task, timeout, runner_type)
        return None
    manager = Manager(farm_comm, task, timeout, runner_type=runner_type)
    try:
        return drive(manager)
    finally:
        manager.shutdown()


def map_tasks(manager: Manager, payloads: list[Any],
              on_result: Callable[[TaskResult], None] | None = None,
              chunksize: int = 1) -> list[TaskResult]:
    """Run every payload on the farm (as workers free up); return results in input order.

    ``chunksize > 1`` sends the payloads in chunks of that many tasks, one message each
    (see :meth:`Manager.submit_chunk`); every task still has its own result.
    """
    if chunksize < 1:
        raise ValueError(f"chunksize must be at least 1, got {chunksize}")
    results: list[TaskResult | None] = [None] * len(payloads)
    if chunksize == 1:
        pending = list(enumerate(payloads))
        while pending or manager.n_running:
            while pending and manager.n_free:
                manager.submit(*pending.pop(0))
            result = manager.next_result()
            results[result.task_id] = result
            if on_result is not None:
                on_result(result)
        return results  # type: ignore[return-value]
    starts = list(range(0, len(payloads), chunksize))[::-1]  # popped from the end
    while starts or manager.n_running:
        while starts and manager.n_free:
            first = starts.pop()
            ids = range(first, min(first + chunksize, len(payloads)))
            manager.submit_chunk(ids, payloads[first:ids.stop])
        for result in manager.next_results():
            results[result.task_id] = result
            if on_result is not None:
                on_result(result)
    return results  # type: ignore[return-value]


def noop_task(payload: Any) -> float:
    """Do nothing and return a deterministic pseudo-energy (measures farm overhead)."""
    import zlib

    text = str(payload.get("smiles", payload)) if isinstance(payload, dict) else str(payload)
    return 8.0 + (zlib.crc32(text.encode()) % 4000) / 1000.0
