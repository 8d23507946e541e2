"""Waiting for a message without spinning a core.

MPICH's blocking receives busy-poll: a rank waiting for its partner would burn the core
the working ranks need. :func:`wait_for_message` probes with a short spin, then sleeps
with a growing backoff.
"""

from __future__ import annotations

import os
import time
from typing import Any

POLL_S = 5e-4  # longest sleep between probes: blocking MPI calls would spin a core
SPIN_S = 2e-4  # probe while yielding the core this long before sleeping
FIRST_SLEEP_S = 2e-5  # then the first sleep; it grows by BACKOFF up to POLL_S
BACKOFF = 1.5


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
