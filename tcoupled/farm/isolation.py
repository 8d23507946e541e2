"""Process isolation of farm tasks: each worker runs its tasks in one helper process.

The helper is a fresh ``python -c`` child talking over an OS pipe (not a fork of the MPI
process, so no MPI state is duplicated). It imports the task function once and then
serves tasks, so a task costs a pipe round trip. A crash (segfault, ``os._exit``), a hang
past the timeout or an exception is returned as a failure with its reason; a dead helper
is replaced before the next task. The helper runs with one OpenMP thread.

:meth:`IsolatedRunner.run_chunk` hands the helper a whole chunk of tasks in one round
trip, still isolating each task: the helper reports its progress on a shared-memory
board (:mod:`tcoupled.farm.chunks`), which names the task a crash or a hang hit.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any


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


def _child_main(read_fd: int, write_fd: int, task: str, board_fd: int = -1) -> None:
    """Serve tasks (and chunks of tasks, onto the board ``board_fd``) until the pipe closes."""
    import pickle
    from multiprocessing.connection import Connection

    from tcoupled.farm import chunks

    # Stopped by its parent only: a SIGTERM (SIGINT) sent to the whole job must not turn the
    # running calculation into a recorded failure while the farm winds down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    func = _load(task)
    while True:
        try:
            message = inbox.recv_bytes()
        except EOFError:
            return
        if message[:1] == chunks.CHUNK:
            chunks.run_chunk(func, message, board_fd)
            outbox.send_bytes(chunks.DONE)
            continue
        try:
            outbox.send(("ok", func(pickle.loads(message)), ""))
        except BaseException as exc:  # noqa: BLE001 - every failure is a result
            outbox.send(("failed", None, f"{type(exc).__name__}: {exc}"))


class IsolatedRunner:
    """Run tasks in a helper process with a timeout; see the module docstring."""

    def __init__(self, task: str, timeout: float) -> None:
        self.task, self.timeout = task, timeout
        self._proc: subprocess.Popen | None = None
        self._inbox = self._outbox = None
        self._board = -1  # the chunks' shared-memory board (see :mod:`tcoupled.farm.chunks`)

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        from tcoupled.farm.chunks import new_board

        if self._board < 0:
            self._board = new_board()
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
        code = (f"from tcoupled.farm.isolation import _child_main; "
                f"_child_main({to_child_r}, {from_child_w}, {self.task!r}, {self._board})")
        self._proc = subprocess.Popen([sys.executable, "-c", code], env=env,
                                      pass_fds=(to_child_r, from_child_w, self._board))
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
                self._stop()
                return "failed", None, f"timeout: task exceeded --task-timeout {self.timeout:g} s"
            return self._inbox.recv()
        except (EOFError, OSError):
            return "failed", None, self._crashed()

    def run_chunk(self, data: bytes, count: int) -> list[tuple]:
        """Run the ``count`` tasks pickled (as one list) in ``data``; return their segments.

        One pipe round trip for the chunk; a crash, a hang or an exception is still the
        failure of the one task it happened in (the rest run, in a fresh helper after a
        crash or a hang). Segments as in :mod:`tcoupled.farm.chunks`; never raises for
        a task's fault.
        """
        segments: list[tuple] = []
        self._run_span(data, 0, count, segments)
        return segments

    def _run_span(self, data: bytes, start: int, stop: int, segments: list[tuple]) -> None:
        """Run tasks ``start`` to ``stop - 1`` of the chunk, appending their segments in order.

        When the helper stops at a task (a crash or a hang), the tasks it had finished
        since its last record run again in a fresh helper (see :mod:`tcoupled.farm.chunks`),
        then the task is recorded as failed and the rest run.
        """
        from tcoupled.farm import chunks

        while start < stop:
            self.start()
            chunks.reset(self._board, start)
            try:
                self._outbox.send_bytes(chunks.request(start, stop, data))
                error = self._await_chunk(start)
            except (EOFError, OSError):
                error = self._crashed()
            recorded, end, running = chunks.progress(self._board)
            if recorded > start:
                segments.append(("records", recorded - start, chunks.records(self._board, end)))
            if recorded >= stop:
                return
            self._stop()  # whatever stopped the chunk, the next task gets a fresh helper
            failed = max(running, recorded)  # the task the helper was running
            self._run_span(data, recorded, failed, segments)  # finished, not yet recorded
            segments.append(("same", 1, "failed", error or "crash: task process died"))
            start = failed + 1

    def _await_chunk(self, start: int) -> str:
        """Wait for the helper's answer; ``""`` when done, the reason a task hung otherwise.

        Each task may run ``timeout`` seconds: the board is read every tenth of it, and
        the helper is killed once its running task has not changed for ``timeout``.
        """
        import time

        from tcoupled.farm import chunks

        running, since = start, time.monotonic()
        while not self._inbox.poll(max(self.timeout / 10, 1e-3)):
            _, _, now_running = chunks.progress(self._board)
            now = time.monotonic()
            if now_running != running:
                running, since = now_running, now
            elif now - since >= self.timeout:
                self._stop()  # killed and reaped: the board names the task it was running
                return f"timeout: task exceeded --task-timeout {self.timeout:g} s"
        self._inbox.recv_bytes()  # chunks.DONE, or EOFError: the helper died
        return ""

    def _crashed(self) -> str:
        """Reap the dead helper; the reason its task failed."""
        code = self._proc.wait()
        self._stop()
        return f"crash: task process died ({_describe_exit(code)})"

    def close(self) -> None:
        """Stop the helper (kill it if it is still running) and free the board."""
        self._stop()
        if self._board >= 0:
            os.close(self._board)
            self._board = -1

    def _stop(self) -> None:
        """Stop the helper (kill it if it is still running); the board stays."""
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


class InProcessRunner:
    """:class:`IsolatedRunner`'s interface without the helper: tasks run in this process.

    No crash or timeout isolation (a crashing task takes the worker down, a hanging one
    hangs it); used only by ``bench farm`` to measure what the isolation costs.
    """

    def __init__(self, task: str, timeout: float) -> None:
        self.task, self.timeout = task, timeout
        self._func: Callable[[Any], Any] | None = None

    def start(self) -> None:
        """Import the task function (and run its module's ``warmup``)."""
        if self._func is None:
            self._func = _load(self.task)

    def run(self, payload: Any) -> tuple[str, Any, str]:
        """Return ``(status, value, error)``; an exception is a failure, as in the helper."""
        self.start()
        try:
            return "ok", self._func(payload), ""
        except Exception as exc:  # noqa: BLE001 - every failure is a result
            return "failed", None, f"{type(exc).__name__}: {exc}"

    def run_chunk(self, data: bytes, count: int) -> list[tuple]:
        """:meth:`IsolatedRunner.run_chunk` in this process: one ``("list", outcomes)``."""
        import pickle
        import time

        payloads = pickle.loads(data)
        outcomes = []
        began = time.perf_counter()
        for payload in payloads[:count]:
            status, value, error = self.run(payload)
            ended = time.perf_counter()
            outcomes.append((status, value, error, ended - began))
            began = ended
        return [("list", outcomes)]

    def close(self) -> None:
        """Nothing to stop."""
