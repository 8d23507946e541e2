"""Waiting for a message without spinning a core.

MPICH's blocking receives busy-poll: a rank waiting for its partner would burn the core
the working ranks need. :func:`wait_for_message` probes with a short spin, then sleeps
with a growing backoff; :func:`recv_polling` receives that way, :func:`wait_polling`
completes requests (``Test``) that way. Every wait for a partner uses one of them.
"""

from __future__ import annotations

import os
import time
from typing import Any

POLL_S = 5e-4  # longest sleep between probes: blocking MPI calls would spin a core
SPIN_S = 2e-4  # probe while yielding the core this long before sleeping
FIRST_SLEEP_S = 2e-5  # then the first sleep; it grows by BACKOFF up to POLL_S
BACKOFF = 1.5
SPIN_FREE_S = 1.0  # probe-and-yield this long when every rank of the node has a core
NAP_FRACTION = 0.75  # of the shortest recent wait for the same message: slept in one go
NAP_HISTORY = 3      # recent waits remembered per (communicator, source, tag)
#: a probing wait (:func:`wait_for_message`) whose recent waits were all this short is
#: spun through (yielding) up to this long before it sleeps
SHORT_WAIT_S = 2e-3

_spin = {"seconds": SPIN_S, "naps": False}
_waits: dict[tuple, list[float]] = {}


def adapt_to(load: dict, naps: bool = False) -> float:
    """Set how long a wait probes before it sleeps, from :func:`~tcoupled.runtime.cores.node_load`.

    On an oversubscribed node a waiting rank must leave its core to the working
    ranks, so it sleeps after ``SPIN_S``. When every rank has a core of its own,
    nobody else needs that core: the wait probes (yielding) for up to
    ``SPIN_FREE_S``, so it sees its partner within microseconds instead of up to
    ``POLL_S`` late on each side of a handoff (measured: 1.7 ms of a 4096^2 float32
    shm handoff went into the two sleeps). ``naps`` turns on :func:`_nap` (for
    time division, whose waits repeat cycle after cycle). Returns the spin now in force.
    """
    _spin["seconds"] = SPIN_S if load.get("oversubscribed", True) else SPIN_FREE_S
    _spin["naps"] = naps
    _waits.clear()
    return _spin["seconds"]


def _nap(key: tuple) -> None:
    """Sleep, in one go, most of the shortest of the last waits for this message.

    Only with naps on (:func:`adapt_to`: time division) and on an oversubscribed node
    (where a waiting rank sleeps). A time-division run's waits repeat every cycle (the
    other side's turn), and each wake-up of the backoff below takes a core from a
    working rank: with two sim ranks and one train rank on 2 cores, the trainer's
    wake-ups made the sim ranks' halo exchanges 3.4x slower (5.7 ms of a cycle against
    1.7 ms with the trainer sleeping 5 ms at a time); naps took the cycle from 25.4 to
    21.4 ms. A partner quicker than before costs at most ``1 - NAP_FRACTION`` of the
    shortest recent wait. (In space division on that node naps made the cycle slower,
    19.0-19.6 ms to 23.5-25.1 ms: its waits are not the steady turns they assume.)
    """
    recent = _waits.get(key)
    if recent and _spin["naps"] and _spin["seconds"] < SPIN_FREE_S:
        nap = NAP_FRACTION * min(recent)
        if nap > POLL_S:
            time.sleep(nap)


def _remember(key: tuple, seconds: float) -> None:
    _waits.setdefault(key, []).append(seconds)
    del _waits[key][:-NAP_HISTORY]


def wait_for_message(comm: Any, source: int, tag: int, status: Any) -> None:
    """Return once a message from ``source`` with ``tag`` can be received (fills ``status``).

    A blocking receive would busy-poll a core that the tasks need, and a fixed
    sleep between probes adds up to that sleep to every task. So it probes and
    yields the core (``sched_yield``: a runnable task or helper goes first) for
    ``SPIN_S``, then sleeps from ``FIRST_SLEEP_S`` growing by ``BACKOFF`` up to
    ``POLL_S``: a quick reply (a cheap task, the next task after a result) is
    seen within microseconds, a late one within about a third of the time
    waited (both sides wait, so the delays add up), and a long wait costs one
    probe per ``POLL_S``. (``SPIN_S`` is the spin on an oversubscribed node; see
    :func:`adapt_to`.)

    Where the last ``NAP_HISTORY`` waits for this message were all shorter than
    ``SHORT_WAIT_S`` (the farm's chunks of cheap tasks), it probes and yields up to
    ``SHORT_WAIT_S``: a woken sleeper on a busy node waits for a core, and those
    wake-ups held the chunked no-op farm (2 workers, their helpers and the manager on
    2 cores) to about 560k tasks/s against 640k with the long spin. A wait for a task of
    seconds spins no longer than before.
    """
    key = ("probe", id(comm), source, tag)
    start = time.perf_counter()
    recent = _waits.get(key)
    spin = _spin["seconds"]
    if recent and len(recent) == NAP_HISTORY and max(recent) < SHORT_WAIT_S:
        spin = max(spin, SHORT_WAIT_S)
    try:
        _backoff(lambda: comm.Iprobe(source=source, tag=tag, status=status), spin=spin)
    finally:
        _remember(key, time.perf_counter() - start)


def _backoff(done: Any, sleep: bool = True, spin: float | None = None) -> None:
    """Call ``done()`` with yields, then growing sleeps, until it returns true.

    It yields for ``spin`` seconds (the spin in force by default: :func:`adapt_to`).
    ``sleep=False`` only yields: for a transfer already under way, whose progress
    needs this rank's MPI calls, the core goes to whoever else is runnable only.
    """
    spin = _spin["seconds"] if spin is None else spin
    spin_until = time.perf_counter() + (spin if sleep else float("inf"))
    while time.perf_counter() < spin_until:
        if done():
            return
        os.sched_yield()
    delay = FIRST_SLEEP_S
    while not done():
        time.sleep(delay)
        delay = min(BACKOFF * delay, POLL_S)


def recv_polling(comm: Any, source: int, tag: int) -> Any:
    """``comm.recv(source=source, tag=tag)`` without spinning a core while waiting.

    A message that is not there yet is waited for with :func:`_nap` first (the
    recent waits for it say how long it takes), then with the backoff.
    """
    if not comm.Iprobe(source=source, tag=tag):
        key, start = (id(comm), source, tag), time.perf_counter()
        _nap(key)
        _backoff(lambda: comm.Iprobe(source=source, tag=tag))
        _remember(key, time.perf_counter() - start)
    return comm.recv(source=source, tag=tag)


def wait_polling(requests: Any, sleep: bool = True) -> None:
    """Complete every request (``Test`` with backoff), leaving the core to others meanwhile.

    Works with the request objects of both mpi4py APIs (``Test``/``test``).
    ``sleep=False`` for data already announced (see :func:`_backoff`).
    """
    for request in requests:
        test = getattr(request, "Test", None) or request.test
        _backoff(lambda test=test: bool(_done(test())), sleep)


def _done(result: Any) -> bool:
    return result[0] if isinstance(result, tuple) else bool(result)


GATHER_TAG = 7190
BCAST_TAG = 7191


def gather_polling(comm: Any, obj: Any, root: int = 0) -> list | None:
    """``comm.gather(obj, root)`` in which a rank that arrives early does not spin a core."""
    if comm.Get_rank() != root:
        wait_polling([comm.isend(obj, dest=root, tag=GATHER_TAG)])
        return None
    return [obj if rank == root else recv_polling(comm, rank, GATHER_TAG)
            for rank in range(comm.Get_size())]


def bcast_polling(comm: Any, obj: Any, root: int = 0) -> Any:
    """``comm.bcast(obj, root)`` in which the ranks waiting for ``root`` do not spin a core."""
    if comm.Get_rank() != root:
        return recv_polling(comm, root, BCAST_TAG)
    wait_polling([comm.isend(obj, dest=rank, tag=BCAST_TAG)
                  for rank in range(comm.Get_size()) if rank != root])
    return obj
