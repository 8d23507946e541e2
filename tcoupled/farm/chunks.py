"""Chunks of farm tasks: one message and one pipe round trip, isolation still per task.

A chunk travels as bytes: the manager pickles its payloads once, the worker forwards
them to its helper unopened, and the outcomes come back as bytes the worker forwards
unopened again; only the manager and the helper pickle.

The helper writes each task's outcome ``(status, value, error, seconds)``, as soon as
the task returns, as one pickle (a *record*) into a shared-memory *board* (a ``memfd`` that worker
and helper both hold), then the board's header: how many tasks of the chunk are done
and where their records end. So the header also names the task now running, and what
finished before a crash or a hang survives it: the worker takes the records up to the
header's end, records the crash or the timeout for the task the header names, and runs
the rest of the chunk in a fresh helper (see
:meth:`~tcoupled.farm.isolation.IsolatedRunner.run_chunk`).

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

#: board header: tasks of the chunk done (= index of the one running), end of the records
HEADER = struct.Struct("qq")
SPAN = struct.Struct("qq")  # a request's first task still to run, and its chunk's size
CHUNK = b"C"  # first byte of a chunk request (a single task's request is a pickle: 0x80)
DONE = b"d"  # the helper's answer when the chunk is done; the outcomes are on the board
BOARD_BYTES = 1 << 20  # initial board size; the helper grows it for large outcomes
#: records are pickles at protocol 3, whose memo opcodes name their slots (BINPUT n,
#: BINGET n; protocol 4 numbers them implicitly): so, each without its STOP, they
#: concatenate into the items of one list, decoded in one ``pickle.loads``
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


def request(start: int, count: int, data: bytes) -> bytes:
    """The helper's request: run tasks ``start`` to ``count`` of the chunk pickled in ``data``."""
    return CHUNK + SPAN.pack(start, count) + data


def reset(fd: int, start: int) -> None:
    """Set the board to "``start`` tasks done, no records" before the helper begins."""
    os.pwrite(fd, HEADER.pack(start, HEADER.size), 0)


def progress(fd: int) -> tuple[int, int]:
    """``(tasks done, end of their records)`` as the board says now."""
    return HEADER.unpack(os.pread(fd, HEADER.size, 0))


def records(fd: int, end: int) -> bytes:
    """The records written since the last :func:`reset`, up to ``end``."""
    return os.pread(fd, end - HEADER.size, HEADER.size)


def run_chunk(func: Callable[[Any], Any], message: bytes, fd: int) -> None:
    """Helper side: run the tasks of a chunk request, each outcome onto the board."""
    start, count = SPAN.unpack_from(message, len(CHUNK))
    try:
        payloads = pickle.loads(memoryview(message)[len(CHUNK) + SPAN.size:])
        broken = ""
    except BaseException as exc:  # noqa: BLE001 - every failure is a result
        payloads, broken = None, f"payloads could not be read: {type(exc).__name__}: {exc}"
    board = mmap.mmap(fd, os.fstat(fd).st_size)
    board.seek(HEADER.size)
    clock, dumps, pack = time.perf_counter, pickle.dumps, HEADER.pack_into
    began = clock()
    for index in range(start, count):
        if payloads is None:
            status, value, error = "failed", None, broken
        else:
            try:
                status, value, error = "ok", func(payloads[index]), ""
            except BaseException as exc:  # noqa: BLE001 - every failure is a result
                status, value, error = "failed", None, f"{type(exc).__name__}: {exc}"
        ended = clock()
        try:
            record = dumps((status, value, error, ended - began), RECORD_PROTOCOL)
        except BaseException:  # noqa: BLE001 - see _fallback
            record = _fallback((status, value, error, ended - began))
        try:
            board.write(record)
        except ValueError:  # the board is full: grow it (the worker reads with pread)
            board = _grown(board, fd, len(record))
            board.write(record)
        board.seek(-1, 1)  # drop the STOP: the records run on as the items of one list
        pack(board, 0, index + 1, board.tell())
        began = ended
    board.close()


class _Pickled:
    """An outcome pickled at the highest protocol, carried in a protocol-3 record."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple:
        return pickle.loads, (self.data,)


def _fallback(outcome: Outcome) -> bytes:
    """The record of an outcome protocol 3 cannot pickle: the highest protocol, else failed."""
    try:
        return pickle.dumps(_Pickled(pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)),
                            RECORD_PROTOCOL)
    except BaseException as exc:  # noqa: BLE001 - an unpicklable value fails its task
        return pickle.dumps(("failed", None, f"result could not be pickled: {exc}",
                             outcome[3]), RECORD_PROTOCOL)


def _grown(board: mmap.mmap, fd: int, extra: int) -> mmap.mmap:
    """``board`` remapped at least ``extra`` bytes larger, at the same write position."""
    position = board.tell()
    board.close()
    os.ftruncate(fd, max(2 * os.fstat(fd).st_size, position + extra))
    board = mmap.mmap(fd, os.fstat(fd).st_size)
    board.seek(position)
    return board


def decode(segments: list[tuple]) -> list[Outcome]:
    """The outcomes of a chunk, in order, from its segments (see the module docstring)."""
    outcomes: list[Outcome] = []
    for segment in segments:
        kind = segment[0]
        if kind == "records":  # pickles without their STOP: the items of one list
            found = pickle.loads(b"(" + segment[2] + b"l.")
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
