"""Communicators of a coupled run: the only module that splits ``COMM_WORLD``.

:class:`Layout` applies a :class:`~tcoupled.placement.plan.RankPlan` to a live
communicator: role, member and node-local communicators, and the GPU binding by the
same rule that ``plan`` prints.
"""

from __future__ import annotations

from typing import Any

from tcoupled.placement.affinity import gpu_of
from tcoupled.placement.plan import ROLES, RankPlan, RoleCounts, plan_ranks


class Layout:
    """A rank plan applied to a live communicator.

    Attributes
    ----------
    world : MPI communicator the layout was built from.
    info : RankInfo of this rank.
    role_comm : communicator of this rank's role (``sim_comm``, ``train_comm`` or
        ``farm_comm``).
    member_comm : for train ranks, the communicator of this rank's ensemble
        member (DDP runs over it); ``None`` otherwise.
    node_comm : ranks sharing this rank's node (MPI shared-memory domain).
    """

    def __init__(self, world: Any, plan: RankPlan) -> None:
        if world.Get_size() != plan.counts.total:
            plan.counts.check_world(world.Get_size())
        from tcoupled.runtime.mpienv import init_mpi, set_role

        MPI = init_mpi()
        self.world = world
        self.plan = plan
        self.info = plan.ranks[world.Get_rank()]
        self.role = self.info.role
        set_role(self.role)
        self.role_comm = world.Split(ROLES.index(self.role), self.info.role_index)
        member_color = self.info.member if self.info.member is not None else MPI.UNDEFINED
        self.member_comm = world.Split(member_color, self.info.role_index)
        if self.member_comm == MPI.COMM_NULL:
            self.member_comm = None
        self.node_comm = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.Get_rank())
        self.gpu: int | None = None
        self.gpu_identity: str | None = None

    @classmethod
    def create(cls, world: Any, counts: RoleCounts, placement: str = "colocated",
               ensemble: int = 1, gpus_per_node: int = 0) -> Layout:
        """Validate ``counts`` against ``world`` and build the communicators."""
        counts.check_world(world.Get_size())
        plan = plan_ranks(counts, None, gpus_per_node, placement, ensemble)
        return cls(world, plan)

    def same_node(self, world_rank: int) -> bool:
        """Whether ``world_rank`` shares this rank's node (from ``node_comm``)."""
        group = self.node_comm.Get_group()
        world_group = self.world.Get_group()
        translated = world_group.Translate_ranks([world_rank], group)[0]
        group.Free()
        world_group.Free()
        from tcoupled.runtime.mpienv import init_mpi

        return translated != init_mpi().UNDEFINED

    def bind_gpu(self) -> int | None:
        """Make this rank's GPU current (CuPy and torch) by the rule ``plan`` prints.

        The ``k``-th of the ``n`` sim/train ranks of this node (``node_comm``; farm ranks
        are not in it and never get a GPU) uses visible device ``gpu_of(k, n, count)``
        (:mod:`tcoupled.placement.affinity`). With every GPU visible, a plain ``mpiexec``
        places ranks as ``plan --gpus-per-node`` prints; behind
        ``run/polaris/gpu_affinity.sh`` each rank sees one device and uses it. Returns
        the device index (``None`` without CUDA); :attr:`gpu_identity` names the
        physical GPU.
        """
        from tcoupled.runtime.gpu import cuda_device_count, select_cuda_device

        self.gpu, self.gpu_identity = None, None
        count = cuda_device_count()
        if count == 0 or self.role == "farm":
            return None
        self.gpu = gpu_of(self.node_comm.Get_rank(), self.node_comm.Get_size(), count)
        self.gpu_identity = select_cuda_device(self.gpu)
        return self.gpu

    def free(self) -> None:
        """Free the communicators this layout created."""
        for comm in (self.role_comm, self.member_comm, self.node_comm):
            if comm is not None:
                comm.Free()


def split_coupled(world: Any, counts: RoleCounts) -> Any:
    """Split ``world`` into the coupled ranks (sim and train) and the farm ranks.

    Returns this rank's part: the sim+train communicator or the farm's. Farm
    ranks come last in every order, so a sim or train rank keeps its world rank
    in the coupled communicator and a :class:`Layout` built on it is unchanged.
    """
    from tcoupled.runtime.mpienv import set_role

    farm = world.Get_rank() >= counts.sim + counts.train
    if farm:
        set_role("farm")
    return world.Split(1 if farm else 0, world.Get_rank())


def bind_node_gpu(comm: Any) -> int | None:
    """Bind each rank of ``comm`` (all of them GPU ranks, e.g. ``wave``) to its node's GPU.

    The same rule as :meth:`Layout.bind_gpu`, with the node-local ranks of ``comm``.
    """
    from tcoupled.runtime.gpu import cuda_device_count, select_cuda_device
    from tcoupled.runtime.mpienv import init_mpi

    count = cuda_device_count()
    if count == 0:
        return None
    node_comm = comm.Split_type(init_mpi().COMM_TYPE_SHARED, key=comm.Get_rank())
    gpu = gpu_of(node_comm.Get_rank(), node_comm.Get_size(), count)
    node_comm.Free()
    select_cuda_device(gpu)
    return gpu

