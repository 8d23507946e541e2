"""The worker's side of the farm, and the messages between manager and workers.

A worker receives single tasks (``TAG_TASK``: ``(task id, payload)``) and chunks
(``TAG_CHUNK``: ``(first task id, count, payloads pickled as one list)``) from rank 0
of ``farm_comm``, runs them in its helper process (:mod:`tcoupled.farm.isolation`) and
answers each with one ``TAG_RESULT`` message, in the order received: ``(task id,
status, value, error, seconds)`` for a task, ``(first task id, segments, seconds)``
for a chunk (segments as in :mod:`tcoupled.farm.chunks`, forwarded unopened).
"""

from __future__ import annotations

import time
from typing import Any

from tcoupled.farm.isolation import IsolatedRunner
from tcoupled.runtime.faults import armed, inject
from tcoupled.runtime.waiting import wait_for_message, wait_polling

TAG_TASK, TAG_RESULT, TAG_STOP, TAG_CANCEL, TAG_CHUNK = 11, 12, 13, 14, 15
CANCELLED = "cancelled"  # status of a queued task dropped by cancel_queued, never run
UNRUN = "cancelled before it started"


def serve_worker(farm_comm: Any, task: str, timeout: float,
                 runner_type: type = IsolatedRunner) -> None:
    """Worker loop: run tasks and chunks from rank 0 of ``farm_comm`` until told to stop.

    ``runner_type`` runs the tasks: the isolating helper, or (``bench farm`` only, to
    measure what isolation costs) :class:`~tcoupled.farm.isolation.InProcessRunner`.
    """
    from tcoupled.runtime.mpienv import init_mpi

    mpi = init_mpi()
    runner = runner_type(task, timeout)
    runner.start()
    status = mpi.Status()
    rank = farm_comm.Get_rank()
    received = 0
    cancelling = False  # a cancel is on its way: answer the tasks sent before it unrun
    # A chunk's answer goes out without waiting (a blocking send of a message past the
    # eager limit would wait, spinning, for the manager); completed before the next one.
    answering: list = []
    try:
        while True:
            wait_for_message(farm_comm, 0, mpi.ANY_TAG, status)
            tag = status.Get_tag()
            message = farm_comm.recv(source=0, tag=tag)
            if tag == TAG_STOP:
                wait_polling(answering)
                return
            if tag == TAG_CANCEL:  # messages from one sender arrive in order: all answered
                cancelling = False
                continue
            if cancelling or farm_comm.Iprobe(source=0, tag=TAG_CANCEL):
                cancelling = True
                farm_comm.send(_unrun(tag, message), dest=0, tag=TAG_RESULT)
                continue
            start = time.perf_counter()
            if tag == TAG_CHUNK:
                first_id, count, data = message
                if armed("farm"):
                    for index in range(received, received + count):
                        inject("farm", "task", index, rank)
                received += count
                segments = runner.run_chunk(data, count)
                wait_polling(answering)
                answering = [farm_comm.isend((first_id, segments, time.perf_counter() - start),
                                             dest=0, tag=TAG_RESULT)]
                continue
            task_id, payload = message
            inject("farm", "task", received, rank)
            received += 1
            farm_comm.send((task_id, *runner.run(payload), time.perf_counter() - start),
                           dest=0, tag=TAG_RESULT)
    finally:
        runner.close()


def _unrun(tag: int, message: tuple) -> tuple:
    """The answer to a task or chunk cancelled before it started."""
    if tag == TAG_CHUNK:
        first_id, count, _ = message
        return first_id, [("same", count, CANCELLED, UNRUN)], 0.0
    return message[0], CANCELLED, None, UNRUN, 0.0
