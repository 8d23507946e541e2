"""Shared fixtures: MPI in the test process runs as a singleton (COMM_SELF)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def MPI():  # noqa: N802 - the module's own name
    from tcoupled.runtime.mpienv import init_mpi

    return init_mpi()


@pytest.fixture(scope="session")
def comm_self(MPI):  # noqa: N803
    return MPI.COMM_SELF


def backends_here() -> list[str]:
    """CPU kernel backends that can run on this machine."""
    from tcoupled.sim.backends import available_backends

    return [b for b in available_backends() if b != "cupy"]
