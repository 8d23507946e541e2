"""Stopping a coupled run cleanly on SIGTERM (a batch system's "time is up").

The signal handler only sets a flag. Sim and train ranks agree on it at cycle
boundaries with a non-blocking allreduce posted one cycle ahead
(:class:`StopVote`), so the agreement costs no extra wait in space division and
every rank stops after the same cycle: each writes its checkpoint for that
cycle and raises :class:`StopRequested`. Farm ranks stop handing out molecules,
collect the ones running (their results go to the journal) and stop too.
"""

from __future__ import annotations

import signal
from typing import Any

import numpy as np

from tcoupled.runtime.errors import TcoupledError
from tcoupled.runtime.waiting import wait_polling

#: exit status of a run stopped by SIGTERM (128 + 15, as a shell reports it)
STOP_EXIT = 143

_requested = False


class StopRequested(TcoupledError):
    """Raised on every sim/train rank at the cycle where the ranks agreed to stop."""

    exit_code = STOP_EXIT

    def __init__(self, cycle: int) -> None:
        super().__init__(f"stopped by SIGTERM after cycle {cycle}")
        self.cycle = cycle


def _on_sigterm(signum: int, frame: Any) -> None:
    """Signal handler: remember the request, nothing else."""
    global _requested
    _requested = True


def install() -> None:
    """Handle SIGTERM by setting the flag (call from the main thread)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    """Whether this process has received SIGTERM."""
    return _requested


class StopVote:
    """Agree at each cycle boundary whether any rank of ``comm`` was asked to stop.

    The vote posted after cycle ``k`` is completed after cycle ``k + 1``, so a
    rank never waits for a slower rank's current cycle, only for its previous one.
    Every rank must call :meth:`__call__` for the same sequence of cycles.
    """

    def __init__(self, comm: Any) -> None:
        from tcoupled.runtime.mpienv import init_mpi

        self._mpi = init_mpi()
        self.comm = comm.Dup()
        self.request: Any = None
        self.mine = np.zeros(1, dtype=np.int32)
        self.agreed = np.zeros(1, dtype=np.int32)

    def __call__(self, done: int, last: bool) -> bool:
        """After cycle ``done``: whether every rank stops now (never after the last cycle)."""
        stop = False
        if self.request is not None:
            wait_polling([self.request])  # a partner's previous cycle: no spinning
            self.request = None
            stop = bool(self.agreed[0]) and not last
        if not stop and not last:
            self.mine[0] = int(requested())
            self.request = self.comm.Iallreduce(self.mine, self.agreed, op=self._mpi.MAX)
        return stop

    def close(self) -> None:
        """Free the vote's communicator (after the last cycle)."""
        if self.request is not None:
            wait_polling([self.request])  # a partner's previous cycle: no spinning
            self.request = None
        self.comm.Free()
