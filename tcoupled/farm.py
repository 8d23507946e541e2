"""An MPI task farm: rank 0 of ``farm_comm`` manages, the other ranks work.

The manager hands one task at a time to each free worker and receives results
as they finish, in whatever order (``next_result``), so a driver such as the
active learner can submit a new task the moment a worker frees up.

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

import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tcoupled.faults import inject

TAG_TASK, TAG_RESULT, TAG_STOP = 11, 12, 13
POLL_S = 5e-4  # longest sleep between probes: blocking MPI calls would spin a core
SPIN_S = 2e-4  # probe while yielding the core this long before sleeping
FIRST_SLEEP_S = 2e-5  # then the first sleep; it grows by BACKOFF up to POLL_S
BACKOFF = 1.5


@dataclass
class TaskResult:
    """What came back from one task."""

    task_id: int
    status: str  # "ok" or "failed"
    value: Any = None
    error: str = ""
    worker: int = 0
    seconds: float = 0.0  # time the worker spent on the task
    start: float = 0.0  # dispatch time, seconds since the farm started (manager clock)
    end: float = 0.0  # receive time, seconds since the farm started


def _load(task: str) -> Callable[[Any], Any]:
    """Return the function named ``"package.module:function"``.

    If its module defines ``warmup()``, it is called once (heavy imports), so
    the first task does not pay for them.
    """
    module_name, _, func_name = task.partition(":")
    module = importlib.import_module(module_name)
    if hasattr(module, "warmup"):
        module.warmup()
    return getattr(module, func_name)


def _child_main(read_fd: int, write_fd: int, task: str) -> None:
    """Serve tasks in the helper process until the pipe closes."""
    from multiprocessing.connection import Connection

    # Stopped by its parent only: a SIGTERM sent to the whole job must not turn the
    # running calculation into a recorded failure while the farm winds down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    func = _load(task)
    while True:
        try:
            payload = inbox.recv()
        except EOFError:
            return
        try:
            outbox.send(("ok", func(payload), ""))
        except BaseException as exc:  # noqa: BLE001 - every failure is a result
            outbox.send(("failed", None, f"{type(exc).__name__}: {exc}"))


class IsolatedRunner:
    """Run tasks in a helper process with a timeout; see the module docstring."""

    def __init__(self, task: str, timeout: float) -> None:
        self.task, self.timeout = task, timeout
        self._proc: subprocess.Popen | None = None
        self._inbox = self._outbox = None

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
        code = (f"from tcoupled.farm import _child_main; "
                f"_child_main({to_child_r}, {from_child_w}, {self.task!r})")
        self._proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                                      pass_fds=(to_child_r, from_child_w))
        os.close(to_child_r)
        os.close(from_child_w)
        self._outbox = Connection(to_child_w, readable=False)
        self._inbox = Connection(from_child_r, writable=False)

    def start(self) -> None:
        """Start the helper now (it warms up while the manager prepares)."""
        if self._proc is None:
            self._start()

    def run(self, payload: Any) -> tuple[str, Any, str]:
        """Return ``(status, value, error)`` for one task; never raises for a task's fault."""
        self.start()
        try:
            self._outbox.send(payload)
            if not self._inbox.poll(self.timeout):
                self.close()
                return "failed", None, f"timeout: task exceeded --task-timeout {self.timeout:g} s"
            return self._inbox.recv()
        except (EOFError, OSError):
            code = self._proc.wait()
            self.close()
            return "failed", None, f"crash: task process died ({_describe_exit(code)})"

    def close(self) -> None:
        """Stop the helper (kill it if it is still running)."""
        if self._proc is None:
            return
        for conn in (self._outbox, self._inbox):
            conn.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit status {code}"


def wait_for_message(comm: Any, source: int, tag: int, status: Any) -> None:
    """Return once a message from ``source`` with ``tag`` can be received (fills ``status``).

    A blocking receive would busy-poll a core that the tasks need, and a fixed
    sleep between probes adds up to that sleep to every task. So it probes and
    yields the core (``sched_yield``: a runnable task or helper goes first) for
    ``SPIN_S``, then sleeps from ``FIRST_SLEEP_S`` growing by ``BACKOFF`` up to
    ``POLL_S``: a quick reply (a cheap task, the next task after a result) is
    seen within microseconds, a late one within about a third of the time
    waited (both sides wait, so the delays add up), and a long wait costs one
    probe per ``POLL_S``.
    """
    spin_until = time.perf_counter() + SPIN_S
    while time.perf_counter() < spin_until:
        if comm.Iprobe(source=source, tag=tag, status=status):
            return
        os.sched_yield()
    delay = FIRST_SLEEP_S
    while not comm.Iprobe(source=source, tag=tag, status=status):
        time.sleep(delay)
        delay = min(BACKOFF * delay, POLL_S)


def serve_worker(farm_comm: Any, task: str, timeout: float) -> None:
    """Worker loop: run tasks from rank 0 of ``farm_comm`` until told to stop."""
    from tcoupled.mpienv import init_mpi

    mpi = init_mpi()
    runner = IsolatedRunner(task, timeout)
    runner.start()
    status = mpi.Status()
    received = 0
    try:
        while True:
            wait_for_message(farm_comm, 0, mpi.ANY_TAG, status)
            message = farm_comm.recv(source=0, tag=status.Get_tag())
            if status.Get_tag() == TAG_STOP:
                return
            inject("farm", "task", received, farm_comm.Get_rank())
            received += 1
            task_id, payload = message
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
    """The manager's side of the farm: submit tasks, collect results as they finish."""

    def __init__(self, farm_comm: Any, task: str, timeout: float) -> None:
        self.comm = farm_comm
        size = 1 if farm_comm is None else farm_comm.Get_size()
        self.workers = list(range(1, size)) if size > 1 else [0]
        self.idle = list(self.workers)
        self.running: dict[int, tuple[int, Any, float]] = {}  # worker -> (id, payload, t0)
        self.stats = FarmStats(len(self.workers))
        self._local = IsolatedRunner(task, timeout) if size == 1 else None
        if self._local is not None:
            self._local.start()

    @property
    def n_idle(self) -> int:
        """Number of workers without a task."""
        return len(self.idle)

    @property
    def n_running(self) -> int:
        """Number of tasks handed out and not yet returned."""
        return len(self.running)

    def submit(self, task_id: int, payload: Any) -> int:
        """Give a task to a free worker and return its rank; raises if none is free."""
        if not self.idle:
            raise RuntimeError("submit() with no idle worker; call next_result() first")
        worker = self.idle.pop(0)
        self.running[worker] = (task_id, payload, self.stats.elapsed())
        if self._local is None:
            self.comm.send((task_id, payload), dest=worker, tag=TAG_TASK)
        return worker

    def next_result(self) -> TaskResult:
        """Wait for the next task to finish (any worker) and return its result."""
        if not self.running:
            raise RuntimeError("next_result() with no task running")
        if self._local is not None:
            task_id, payload, _ = self.running[0]
            start = time.perf_counter()
            message = (task_id, *self._local.run(payload), time.perf_counter() - start)
            worker = 0
        else:
            worker, message = self._receive()
        return self._finish(worker, message)

    def _receive(self) -> tuple[int, tuple]:
        from tcoupled.mpienv import init_mpi

        mpi = init_mpi()
        status = mpi.Status()
        wait_for_message(self.comm, mpi.ANY_SOURCE, TAG_RESULT, status)
        worker = status.Get_source()
        return worker, self.comm.recv(source=worker, tag=TAG_RESULT)

    def _finish(self, worker: int, message: tuple) -> TaskResult:
        task_id, status, value, error, seconds = message
        _, _, start = self.running.pop(worker)
        self.idle.append(worker)
        result = TaskResult(task_id, status, value, error, worker, seconds, start,
                            self.stats.elapsed())
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
        while pending and manager.n_idle:
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
