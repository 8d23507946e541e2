"""MPI start-up in one place.

The CLI calls :func:`init_mpi` once, before any command touches MPI; library
modules never import ``mpi4py.MPI`` at module level, they take a ``comm``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

_MPI: Any = None
#: this process's role in the run (``sim``, ``train``, ``farm``; "" before the layout
#: exists); set by :func:`set_role` and named in abort messages
current_role = ""


def set_role(role: str) -> None:
    """Record this process's role, so that an abort message can name it."""
    global current_role
    current_role = role


def init_mpi() -> Any:
    """Configure ``mpi4py.rc`` and initialise MPI; return the ``MPI`` module."""
    global _MPI
    if _MPI is None:
        import mpi4py

        mpi4py.rc.thread_level = "funneled"
        from mpi4py import MPI

        _MPI = MPI
    return _MPI


def abort_with_message(comm: Any, message: str, code: int = 1, role: str = "") -> None:
    """Print ``message`` naming the rank (and role) and abort every rank of ``comm``.

    Used for errors raised on one rank while others may be waiting in a
    collective: aborting is the only way to guarantee no rank is left hanging.
    ``role`` defaults to the role recorded by :func:`set_role`.
    """
    role = role or current_role
    where = f"rank {comm.Get_rank()}" + (f" ({role})" if role else "")
    sys.stderr.write(f"tcoupled: error on {where}: {message}\n")
    sys.stderr.flush()
    time.sleep(0.2)  # let the launcher forward the line before the abort tears it down
    comm.Abort(code)
    os._exit(code)  # MPI_Abort may return before the launcher kills this process


def print_traceback_and_abort(comm: Any, role: str = "") -> None:
    """Report the exception being handled with its traceback, then abort all ranks."""
    exc_type, exc, _ = sys.exc_info()
    traceback.print_exc(file=sys.stderr)
    name = exc_type.__name__ if exc_type else "error"
    abort_with_message(comm, f"{name}: {exc}", code=1, role=role)


def env(name: str, default: str | None = None) -> str | None:
    """Read a ``TCOUPLED_``-prefixed environment variable (the only way we read env)."""
    return os.environ.get(f"TCOUPLED_{name}", default)


def launcher_rank() -> int:
    """Rank of this process as told by the launcher, before MPI is initialised.

    Used only to print a command-line error once instead of once per rank.
    Reads the variables MPICH/Hydra (``PMI_RANK``), PALS (``PALS_RANKID``),
    PMIx and Open MPI set; 0 when started without a launcher.
    """
    for name in ("PMI_RANK", "PALS_RANKID", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    return 0
