"""Stopping a run cleanly on SIGTERM (a batch system's "time is up") or SIGINT (Ctrl-C).

The signal handler only records the signal. Ranks agree on it at cycle (or chunk)
boundaries with a non-blocking allreduce posted one cycle ahead (:class:`StopVote`),
so the agreement costs no extra wait in space division and every rank stops after
the same cycle: each writes its checkpoint for that cycle and raises
:class:`StopRequested`. After the last cycle the vote is completed at once (a
signal during the last cycle stops the run too, before its final outputs). Farm ranks
stop handing out molecules, collect the ones running (their results go to the
journal) and stop too. A stopped run exits with 128 + the signal number (143 for
SIGTERM, 130 for SIGINT) and writes a ``summary.json`` whose ``stopped`` names the
signal.
"""

from __future__ import annotations

import signal
from typing import Any

import numpy as np

from tcoupled.runtime.errors import TcoupledError
from tcoupled.runtime.waiting import wait_polling

#: exit status of a run stopped by SIGTERM (128 + 15, as a shell reports it)
STOP_EXIT = 128 + signal.SIGTERM
#: the signals that stop a run cleanly
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received = 0  # the signal number received (0: none); SIGTERM wins over SIGINT


def signal_name(signum: int) -> str:
    """``"SIGTERM"`` for 15, ``"SIGINT"`` for 2."""
    return signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by ``signum``: 128 + its number, as a shell says."""
    return 128 + int(signum)


class StopRequested(TcoupledError):
    """Raised on every rank at the cycle where the ranks agreed to stop."""

    def __init__(self, cycle: int, signum: int = signal.SIGTERM) -> None:
        signum = int(signum or received() or signal.SIGTERM)
        super().__init__(f"stopped by {signal_name(signum)} after cycle {cycle}")
        self.cycle, self.signum = cycle, signum
        self.exit_code = exit_status(signum)


def _on_signal(signum: int, frame: Any) -> None:
    """Signal handler: remember the request, nothing else."""
    global _received
    _received = max(_received, int(signum))


def install() -> None:
    """Handle SIGTERM and SIGINT by recording them (call from the main thread)."""
    for signum in SIGNALS:
        signal.signal(signum, _on_signal)


def requested() -> bool:
    """Whether this process has received SIGTERM or SIGINT."""
    return _received != 0


def received() -> int:
    """The signal number received (SIGTERM if both came), 0 if none."""
    return _received


def reset() -> None:
    """Forget a received signal (tests that run several commands in one process)."""
    global _received
    _received = 0


class StopVote:
    """Agree at each cycle boundary whether any rank of ``comm`` was asked to stop.

    The vote posted after cycle ``k`` is completed after cycle ``k + 1``, so a
    rank never waits for a slower rank's current cycle, only for its previous one.
    After the last cycle the vote is taken at once (a blocking allreduce), so a
    signal during the last cycle stops the run too. Every rank must call
    :meth:`__call__` for the same sequence of cycles. :attr:`signum` is the agreed
    signal once a stop was decided.
    """

    def __init__(self, comm: Any) -> None:
        from tcoupled.runtime.mpienv import init_mpi

        self._mpi = init_mpi()
        self.comm = comm.Dup()
        self.request: Any = None
        self.mine = np.zeros(1, dtype=np.int32)
        self.agreed = np.zeros(1, dtype=np.int32)
        self.signum = 0

    def __call__(self, done: int, last: bool) -> bool:
        """After cycle ``done``: whether every rank stops now."""
        if self.request is not None:
            wait_polling([self.request])  # a partner's previous cycle: no spinning
            self.request = None
            if self.agreed[0]:
                self.signum = int(self.agreed[0])
                return True
        self.mine[0] = received()
        if last:
            self.comm.Allreduce(self.mine, self.agreed, op=self._mpi.MAX)
            self.signum = int(self.agreed[0])
            return bool(self.signum)
        self.request = self.comm.Iallreduce(self.mine, self.agreed, op=self._mpi.MAX)
        return False

    def close(self) -> None:
        """Free the vote's communicator (after the last cycle)."""
        if self.request is not None:
            wait_polling([self.request])  # a partner's previous cycle: no spinning
            self.request = None
        self.comm.Free()
