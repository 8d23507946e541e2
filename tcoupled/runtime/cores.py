"""Whether a node runs more busy ranks than it has cores (every timing says so if it does)."""

from __future__ import annotations

import os
from typing import Any


def node_load(comm: Any) -> dict:
    """Ranks and cores of this rank's node (collective over ``comm``).

    ``cores`` is the union of the CPU sets the node's ranks may run on
    (``os.sched_getaffinity``), so a launcher that binds each rank to one core
    does not look oversubscribed, and a job limited to 2 cores of a big node does.
    """
    from tcoupled.runtime.mpienv import init_mpi

    MPI = init_mpi()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    cpus = set().union(*node.allgather(sorted(os.sched_getaffinity(0))))
    ranks = node.Get_size()
    node.Free()
    return {"node_ranks": ranks, "cores": len(cpus), "oversubscribed": ranks > len(cpus)}
