"""Which GPU and which cores each rank of a node gets: arithmetic only, no MPI.

The rule (see :mod:`tcoupled.placement.plan`): the ``k``-th of ``n`` GPU ranks on a node is
in GPU slot ``k * G // n`` and uses GPU ``G - 1 - slot``; it is bound to cores of the
slot's share of the node, the share nearest its GPU by ALCF's Polaris table (GPU 0 by
cores 24-31, GPU 3 by cores 0-7). Farm ranks get the cores left over.
"""

from __future__ import annotations

from typing import Any

from tcoupled.runtime.errors import LayoutError


def gpu_of(k: int, n: int, gpus: int) -> int:
    """GPU of the ``k``-th of ``n`` GPU ranks on a node with ``gpus`` GPUs (reversed blocks)."""
    return gpus - 1 - k * gpus // n


def nearest_gpu(core: int, gpus: int, cores: int) -> int:
    """The GPU nearest ``core`` (ALCF's Polaris table: GPU 3 by cores 0-7, GPU 0 by 24-31)."""
    return gpus - 1 - core * gpus // cores


def node_cores(gpu_ranks: int, ppn: int, gpus: int, cores: int) -> list[tuple[int, ...]]:
    """Cores of each local rank of a node whose first ``gpu_ranks`` ranks use GPUs.

    Each rank gets ``cores // ppn`` cores: a GPU rank from the quarter (``cores //
    gpus`` cores) of its GPU slot, farm ranks what is left, in order.
    """
    depth = cores // ppn
    if depth < 1:
        raise LayoutError(f"--ppn {ppn} is more than the {cores} cores of a node")
    free = list(range(cores))
    taken: list[tuple[int, ...]] = []
    for k in range(gpu_ranks):
        slot = k * gpus // gpu_ranks if gpus else 0
        span = cores // gpus if gpus else cores
        near = [c for c in free if slot * span <= c < (slot + 1) * span][:depth]
        mine = near + [c for c in free if c not in near][:depth - len(near)]
        free = [c for c in free if c not in mine]
        taken.append(tuple(sorted(mine)))
    for _ in range(gpu_ranks, ppn):
        taken.append(tuple(free[:depth]))
        free = free[depth:]
    return taken


def cpu_bind_option(plan: Any) -> str:
    """The ``mpiexec --cpu-bind`` value that binds every rank of ``plan`` to its cores.

    ``depth`` when every node's cores are what ``--depth cores/ppn --cpu-bind depth``
    gives, else ``list:a-b:c-d:...`` (one entry per local rank; ``mpiexec`` applies the
    same list on every node).

    Raises
    ------
    LayoutError
        If nodes need different lists: one ``--cpu-bind`` cannot bind them all.
    """
    if not plan.cores_per_node:
        raise LayoutError("--cpu-bind needs --cores-per-node")
    per_node: dict[int, list[tuple[int, ...]]] = {}
    for info in plan.ranks:
        per_node.setdefault(info.node, []).append(info.cores)
    depth = plan.cores_per_node // plan.ppn
    by_depth = [tuple(range(r * depth, (r + 1) * depth)) for r in range(plan.ppn)]
    lists = list(per_node.values())
    if all(cores == by_depth[:len(cores)] for cores in lists):
        return "depth"
    longest = max(lists, key=len)
    if not all(cores == longest[:len(cores)] for cores in lists):
        raise LayoutError("nodes hold different mixes of GPU and farm ranks, so one "
                          "--cpu-bind list cannot bind them all; give every node the same mix")
    return "list:" + ":".join(span(cores) for cores in longest)


def span(cores: tuple[int, ...]) -> str:
    """``0-3`` for a contiguous run, else ``0,2,5``."""
    if len(cores) > 1 and list(cores) == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def gpu_split_pairs(plan: Any) -> list[tuple[int, int, Any, Any]]:
    """(sim rank, train rank, sim GPU, train GPU) of each pair on one node but two GPUs."""
    split = []
    for info in plan.of_role("train"):
        for source in info.sources:
            sim = plan.ranks[source]
            if sim.node == info.node and sim.gpu != info.gpu:
                split.append((sim.rank, info.rank, sim.gpu, info.gpu))
    return split
