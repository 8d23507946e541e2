"""Shared fixtures: MPI in the test process runs as a singleton (COMM_SELF)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _mpi_mark_guard(request, monkeypatch):
    """A test not marked ``mpi`` may not launch ``mpiexec`` through :mod:`mpitools`."""
    from mpitools import GUARD

    if request.node.get_closest_marker("mpi") is None:
        monkeypatch.setenv(GUARD, request.node.nodeid)
    else:
        monkeypatch.delenv(GUARD, raising=False)


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
