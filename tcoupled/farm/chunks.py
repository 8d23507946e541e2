"""Chunks of farm tasks: one message and one pipe round trip, isolation still per task.

A chunk travels as bytes: the manager pickles its payloads once, the worker forwards
them to its helper unopened, and the outcomes come back as bytes the worker forwards
unopened again; only the manager and the helper pickle.

The helper keeps each task's outcome ``(status, value, error, seconds)`` and writes the
outcomes kept so far, as one pickled list (a *record*), into a shared-memory *board* (a
``memfd`` that worker and helper both hold) once ``FLUSH_S`` has passed since the last
record, and at the end of the chunk; then the board's header: how many tasks have their
outcome on the board and where the records end. Before each task the header's third
field names the task now running. So what was recorded before a crash or a hang
survives it: the worker takes the records, records the crash or the timeout for the task
the header names, and runs the rest of the chunk in a fresh helper -- first the tasks that
had finished since the last record (less than ``FLUSH_S`` of work; a task that takes
longer is recorded as soon as it returns), which run again (see
:meth:`~tcoupled.farm.isolation.IsolatedRunner.run_chunk`). Pickling the outcomes a list
at a time, not one by one, took the helper's cost per no-op task from 1.57 to about 1 us
(the ``bench farm`` chunked farm: 360k to 480k tasks/s on 2 workers).

Outcomes reach the manager as *segments*: ``("records", count, bytes)`` (board
records), ``("list", outcomes)`` (tasks run in-process, no board) or ``("same", count,
status, error)`` (one failure, or a chunk cancelled unrun).
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import time
from collections.abc import Callable
from typing import Any

#: board header: tasks of the chunk with their outcome recorded, end of the records, and
#: the task running now (its index, which the helper sets before each task)
HEADER = struct.Struct("qqq")
RUNNING = 2  # the running task's field of the header
FLUSH_S = 1e-3  # longest a finished task's outcome waits in the helper before recording
SPAN = struct.Struct("qq")  # a request's first task to run, and the one after its last
CHUNK = b"C"  # first byte of a chunk request (a single task's request is a pickle: 0x80)
DONE = b"d"  # the helper's answer when the chunk is done; the outcomes are on the board
BOARD_BYTES = 1 << 20  # initial board size; the helper grows it for large outcomes
#: records are pickles at protocol 3, whose memo opcodes name their slots (BINPUT n,
#: BINGET n; protocol 4 numbers them implicitly): so, each without its STOP, they
#: concatenate into the items of one list (of lists), decoded in one ``pickle.loads``
RECORD_PROTOCOL = 3

Outcome = tuple[str, Any, str, float]  # status, value, error, seconds in the helper


def new_board() -> int:
    """A file descriptor of an anonymous shared-memory file (the board), inheritable."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tcoupled-farm-board", 0)
    else:  # no memfd (not Linux): an unlinked temporary file does the same
        import tempfile

        fd = os.dup(tempfile.TemporaryFile().fileno())
    os.ftruncate(fd, BOARD_BYTES)
    return fd


def request(start: int, stop: int, data: bytes) -> bytes:
    """The helper's request: run tasks ``start`` to ``stop - 1`` of the chunk in ``data``."""
    return CHUNK + SPAN.pack(start, stop) + data


def reset(fd: int, start: int) -> None:
    """Set the board to "``start`` tasks recorded, no records" before the helper begins."""
    os.pwrite(fd, HEADER.pack(start, HEADER.size, start), 0)


def progress(fd: int) -> tuple[int, int, int]:
    """``(tasks recorded, end of their records, task running)`` as the board says now."""
    return HEADER.unpack(os.pread(fd, HEADER.size, 0))


def records(fd: int, end: int) -> bytes:
    """The records written since the last :func:`reset`, up to ``end``."""
    return os.pread(fd, end - HEADER.size, HEADER.size)


def run_chunk(func: Callable[[Any], Any], message: bytes, fd: int) -> None:
    """Helper side: run tasks ``start`` to ``stop`` of a chunk request, outcomes onto the board."""
    start, stop = SPAN.unpack_from(message, len(CHUNK))
    try:
        payloads = pickle.loads(memoryview(message)[len(CHUNK) + SPAN.size:])
        broken = ""
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        payloads, broken = None, f"payloads could not be read: {type(exc).__name__}: {exc}"
    board = _Board(fd)
    header, clock = board.header, time.perf_counter
    kept: list[Outcome] = []
    began = recorded = clock()
    for index in range(start, stop):
        header[RUNNING] = index
        if payloads is None:
            status, value, error = "failed", None, broken
        else:
            try:
                status, value, error = "ok", func(payloads[index]), ""
            except BaseException as exc:  # noqa: BLE001 - every failure is a result
                status, value, error = "failed", None, f"{type(exc).__name__}: {exc}"
        ended = clock()
        kept.append((status, value, error, ended - began))
        began = ended
        if ended - recorded >= FLUSH_S:
            board.record(kept, index + 1)
            header, kept, recorded = board.header, [], ended
    if kept:
        board.record(kept, stop)
    board.close()


class _Board:
    """The helper's view of the board: the header as int64s, records appended at the end."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map = mmap.mmap(fd, os.fstat(fd).st_size)
        self.end = HEADER.unpack_from(self.map, 0)[1]
        self.header = memoryview(self.map)[:HEADER.size].cast("q")

    def record(self, outcomes: list[Outcome], recorded: int) -> None:
        """Append ``outcomes`` as one record; then say ``recorded`` tasks and the new end."""
        data = _record(outcomes)
        if self.end + len(data) > len(self.map):  # grow it (the worker reads with pread)
            self.header.release()
            self.map.close()
            os.ftruncate(self.fd, max(2 * os.fstat(self.fd).st_size, self.end + len(data)))
            self.map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)
            self.header = memoryview(self.map)[:HEADER.size].cast("q")
        self.map[self.end:self.end + len(data)] = data
        self.end += len(data)
        self.header[0], self.header[1] = recorded, self.end

    def close(self) -> None:
        self.header.release()
        self.map.close()


def _record(outcomes: list[Outcome]) -> bytes:
    """The record of ``outcomes``: their list pickled at protocol 3, without its STOP.

    An outcome that protocol 3 cannot pickle is carried pickled at the highest protocol
    (:class:`_Pickled`); one no protocol can pickle fails its task.
    """
    try:
        return pickle.dumps(outcomes, RECORD_PROTOCOL)[:-1]
    except BaseException:  # noqa: BLE001 - see _fallback
        return pickle.dumps([_fallback(outcome) for outcome in outcomes], RECORD_PROTOCOL)[:-1]


class _Pickled:
    """An outcome pickled at the highest protocol, carried in a protocol-3 record."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple:
        return pickle.loads, (self.data,)


def _fallback(outcome: Outcome) -> Any:
    """``outcome`` if protocol 3 pickles it; else wrapped at the highest protocol, else failed."""
    try:
        pickle.dumps(outcome, RECORD_PROTOCOL)
        return outcome
    except BaseException:  # noqa: BLE001 - try the highest protocol
        pass
    try:
        return _Pickled(pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL))
    except BaseException as exc:  # noqa: BLE001 - an unpicklable value fails its task
        return ("failed", None, f"result could not be pickled: {exc}", outcome[3])


def decode(segments: list[tuple]) -> list[Outcome]:
    """The outcomes of a chunk, in order, from its segments (see the module docstring)."""
    outcomes: list[Outcome] = []
    for segment in segments:
        kind = segment[0]
        if kind == "records":  # pickled lists without their STOP: the items of one list
            found = [outcome for record in pickle.loads(b"(" + segment[2] + b"l.")
                     for outcome in record]
            if len(found) != segment[1]:
                raise ValueError(f"{len(found)} records where {segment[1]} were written")
            outcomes.extend(found)
        elif kind == "list":
            outcomes.extend(segment[1])
        elif kind == "same":
            _, count, status, error = segment
            outcomes.extend([(status, None, error, 0.0)] * count)
        else:
            raise ValueError(f"unknown chunk segment {kind!r}")
    return outcomes
