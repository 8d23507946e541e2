"""Run under mpiexec -n 4: Layout splits COMM_WORLD into role, member and node comms."""

from tcoupled.placement.layout import Layout
from tcoupled.placement.plan import RoleCounts
from tcoupled.runtime.errors import LayoutError
from tcoupled.runtime.mpienv import init_mpi

MPI = init_mpi()
world = MPI.COMM_WORLD
assert world.size == 4

try:
    Layout.create(world, RoleCounts(2, 2, 1))
except LayoutError as exc:
    assert "= 5, but mpiexec started 4 ranks" in str(exc)
else:
    raise AssertionError("a misfit layout was accepted")

layout = Layout.create(world, RoleCounts(1, 2, 1), placement="colocated", ensemble=2)
expected = {0: ("sim", 1), 1: ("train", 2), 2: ("train", 2), 3: ("farm", 1)}
role, size = expected[world.rank]
assert (layout.role, layout.role_comm.Get_size()) == (role, size), (world.rank, layout.role)
if role == "train":
    assert layout.member_comm.Get_size() == 1  # two members of one rank each
    assert layout.info.sources == (0,)
    assert layout.same_node(0)
else:
    assert layout.member_comm is None
if role == "sim":
    assert layout.info.feeds == (1, 2)
assert layout.node_comm.Get_size() == 4  # one node here
members = world.allgather(layout.info.member)
assert members == [None, 0, 1, None], members
layout.free()
if world.rank == 0:
    print("layout ok")
