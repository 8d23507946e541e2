"""Run under mpiexec: rank 1 raises while the others wait in a collective.

The CLI's error handling must abort every rank (the test fails on a hang).
"""

from types import SimpleNamespace

from tcoupled.app.cli import _run
from tcoupled.runtime.mpienv import init_mpi

world = init_mpi().COMM_WORLD


def run(config, comm):
    if comm.Get_rank() == 1:
        raise RuntimeError("injected failure")
    comm.Barrier()  # the other ranks would wait here forever without an abort
    return 0


_run(SimpleNamespace(run=run), "test", None, world)
