"""Task functions that misbehave, for the farm tests (imported by the helper process)."""

from __future__ import annotations

import os
import time


def misbehave(payload: dict) -> float:
    """Return ``payload["value"]`` or crash, hang or raise as ``payload["kind"]`` says."""
    kind = payload["kind"]
    if kind == "crash":
        os.abort()  # SIGABRT, like a segfault in a Fortran library
    if kind == "exit":
        os._exit(7)
    if kind == "hang":
        time.sleep(600)
    if kind == "raise":
        raise RuntimeError("SCF did not converge")
    if kind == "scf":
        return _overlapping_atoms()
    if kind == "pid":
        return float(os.getpid())  # which helper process ran the task
    if kind == "slow pid":  # long enough to be recorded before the next task starts
        time.sleep(payload["seconds"])
        return float(os.getpid())
    if kind == "sleep":
        time.sleep(payload["seconds"])  # keeps its worker busy while others queue
    return float(payload["value"])


def _overlapping_atoms() -> float:
    """A real tblite call on an impossible geometry (two atoms at one point)."""
    import numpy as np

    from tcoupled.chemistry.engines import get_engine

    energy, _ = get_engine("tblite").compute("GFN2-xTB", np.array([6, 6]), np.zeros((2, 3)))
    return energy
