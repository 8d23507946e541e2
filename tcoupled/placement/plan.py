"""Roles and rank placement as arithmetic: no MPI, no GPU.

:func:`plan_ranks` needs no MPI, so ``tcoupled plan`` can print
the layout of a 560-node machine instantly and tests can check it serially.
:class:`tcoupled.placement.layout.Layout` applies a plan to a live communicator.

Rank order
----------
``clustered``: sim ranks first, then train ranks, then farm ranks, each role in
one contiguous block (roles on separate nodes/GPUs when blocks align to nodes).
``colocated``: each train rank follows the first sim rank that feeds it
(``sim0 train0 sim1 train1 ...``), so a pair lands on the same node and, with
the block GPU binding below, on the same GPU. Farm ranks always come last.

Nodes, GPUs and cores
---------------------
Ranks fill nodes in blocks of ``ppn`` (as ``mpiexec --ppn`` does). Farm ranks
run xTB on CPU cores and get no GPU. The GPU ranks (sim and train) of a node
come first in its local order; the ``k``-th of ``n`` GPU ranks on a node is in GPU
slot ``s = k * G // n`` (``G`` GPUs per node) -- contiguous local ranks share a GPU --
and slot ``s`` is GPU ``G - 1 - s``. The numbering is reversed because that is how the
GPUs sit next to the cores: on Polaris GPU 0 is nearest cores 24-31 and GPU 3 nearest
cores 0-7 (ALCF, "Using GPUs on Polaris"; ``set_affinity_gpu_polaris.sh`` gives local
rank ``r`` GPU ``3 - r mod 4``), so the ranks of slot ``s`` are bound to cores of the
``s``-th quarter of the node, the one nearest their GPU. Each rank gets
``cores // ppn`` cores: GPU ranks from their slot's quarter, in order; farm ranks the
cores left over, in order. On a node of GPU ranks only (or farm ranks only) this is
exactly ``mpiexec --depth --cpu-bind depth``; a node holding both needs the explicit
list (:func:`~tcoupled.placement.affinity.cpu_bind_option`), which ``mpiexec`` applies
on every node, so a node of farm ranks only is bound like the first node.
``run/polaris/gpu_affinity.sh`` and :meth:`tcoupled.placement.layout.Layout.bind_gpu`
apply the same GPU rule.

Pairing
-------
The train ranks are split into ``ensemble`` member groups of equal size ``G``.
Within each group, train rank ``g`` receives from sim ranks
``{i : i * G // S == g}`` when ``S >= G``; when ``S < G``, it receives from sim
``g * S // G`` (a sim rank then feeds several train ranks of one member).
Every sim rank therefore feeds exactly one train rank per member.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tcoupled.placement.affinity import gpu_of, node_cores, span
from tcoupled.runtime.errors import LayoutError

ROLES = ("sim", "train", "farm")
PLACEMENTS = ("colocated", "clustered")


@dataclass(frozen=True)
class RoleCounts:
    """How many ranks play each role."""

    sim: int = 1
    train: int = 0
    farm: int = 0

    def __post_init__(self) -> None:
        for role in ROLES:
            value = getattr(self, role)
            if not isinstance(value, int) or value < 0:
                raise LayoutError(f"--{role}-ranks must be a non-negative integer, got {value!r}")

    @property
    def total(self) -> int:
        """Total number of ranks the roles need."""
        return self.sim + self.train + self.farm

    def check_world(self, world_size: int) -> None:
        """Refuse a layout that does not fit ``world_size``, showing the arithmetic."""
        if self.total != world_size:
            raise LayoutError(
                f"layout does not fit the world: --sim-ranks {self.sim} + --train-ranks "
                f"{self.train} + --farm-ranks {self.farm} = {self.total}, but mpiexec "
                f"started {world_size} rank{'s' if world_size != 1 else ''}")


@dataclass(frozen=True)
class RankInfo:
    """Where one rank runs and what it does."""

    rank: int
    role: str
    role_index: int
    node: int
    local_rank: int
    gpu: int | None
    member: int | None = None
    feeds: tuple[int, ...] = ()      # world ranks this sim rank sends to
    sources: tuple[int, ...] = ()    # world ranks this train rank receives from
    cores: tuple[int, ...] = ()      # cores this rank is bound to (empty: not planned)


@dataclass(frozen=True)
class RankPlan:
    """The full placement: one :class:`RankInfo` per world rank."""

    counts: RoleCounts
    ranks: tuple[RankInfo, ...]
    ppn: int
    gpus_per_node: int
    placement: str
    ensemble: int
    nodes: int = field(default=0)
    cores_per_node: int = 0

    def of_role(self, role: str) -> list[RankInfo]:
        """The ranks playing ``role``, in role-index order."""
        return sorted((r for r in self.ranks if r.role == role), key=lambda r: r.role_index)


def _check_ensemble(counts: RoleCounts, ensemble: int) -> int:
    if ensemble < 1:
        raise LayoutError(f"--ensemble must be at least 1, got {ensemble}")
    if counts.train == 0:
        return 0
    if ensemble > counts.train:
        raise LayoutError(f"--ensemble {ensemble} is larger than --train-ranks {counts.train}: "
                          "each member needs at least one train rank")
    if counts.train % ensemble:
        raise LayoutError(f"--train-ranks {counts.train} is not divisible by --ensemble "
                          f"{ensemble}: members need equal groups")
    if counts.sim == 0:
        raise LayoutError("--train-ranks > 0 needs at least one sim rank to feed it")
    return counts.train // ensemble


def sim_sources(group_size: int, sims: int, g: int) -> list[int]:
    """Sim indices feeding train rank ``g`` of a member group of ``group_size`` ranks."""
    if sims >= group_size:
        return [i for i in range(sims) if i * group_size // sims == g]
    return [g * sims // group_size]


def _pairing(counts: RoleCounts, ensemble: int) -> list[tuple[int, list[int]]]:
    """For each train index: (member, sim indices feeding it)."""
    group = _check_ensemble(counts, ensemble)
    pairs = []
    for t in range(counts.train):
        member, g = divmod(t, group)
        pairs.append((member, sim_sources(group, counts.sim, g)))
    return pairs


def _order(counts: RoleCounts, pairs: list[tuple[int, list[int]]], placement: str
           ) -> list[tuple[str, int]]:
    """World-rank order as (role, role_index)."""
    if placement == "clustered":
        order = [("sim", i) for i in range(counts.sim)]
        order += [("train", t) for t in range(counts.train)]
    else:
        followers: dict[int, list[int]] = {i: [] for i in range(counts.sim)}
        for t, (_, sims) in enumerate(pairs):
            followers[sims[0]].append(t)
        order = []
        for i in range(counts.sim):
            order.append(("sim", i))
            order += [("train", t) for t in followers[i]]
    return order + [("farm", f) for f in range(counts.farm)]


def plan_ranks(counts: RoleCounts, ppn: int | None = None, gpus_per_node: int = 0,
               placement: str = "colocated", ensemble: int = 1,
               cores_per_node: int = 0) -> RankPlan:
    """Place every rank on a node and GPU and pair sim ranks with train ranks.

    Parameters
    ----------
    counts : RoleCounts
        Ranks per role; their sum is the world size.
    ppn : int, optional
        Ranks per node (default: all ranks on one node).
    gpus_per_node : int
        GPUs on each node (0: CPU only).
    placement : {"colocated", "clustered"}
        Rank order; see the module docstring.
    ensemble : int
        Number of CNN ensemble members (train-rank groups).
    cores_per_node : int
        Cores of each node (Polaris: 32); 0 plans no core binding.
    """
    if placement not in PLACEMENTS:
        raise LayoutError(f"--placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    world = counts.total
    if world == 0:
        raise LayoutError("no ranks: --sim-ranks + --train-ranks + --farm-ranks = 0")
    ppn = world if ppn is None else ppn
    if ppn < 1:
        raise LayoutError(f"--ppn must be at least 1, got {ppn}")
    if gpus_per_node < 0:
        raise LayoutError(f"--gpus-per-node must be non-negative, got {gpus_per_node}")
    pairs = _pairing(counts, ensemble)
    order = _order(counts, pairs, placement)
    world_of = {key: rank for rank, key in enumerate(order)}
    feeds: dict[int, list[int]] = {i: [] for i in range(counts.sim)}
    for t, (_, sims) in enumerate(pairs):
        for i in sims:
            feeds[i].append(world_of[("train", t)])
    nodes = -(-world // ppn)
    gpu_ranks = counts.sim + counts.train  # farm ranks come last in every order
    infos = []
    for rank, (role, index) in enumerate(order):
        node, local = divmod(rank, ppn)
        gpu_on_node = max(0, min(ppn, gpu_ranks - node * ppn))
        gpu = None
        if gpus_per_node and role != "farm":
            gpu = gpu_of(local, gpu_on_node, gpus_per_node)
        cores: tuple[int, ...] = ()
        if cores_per_node:  # a farm-only node is bound like node 0 (one list for all)
            mix = gpu_on_node or min(ppn, gpu_ranks)
            cores = node_cores(mix, ppn, gpus_per_node, cores_per_node)[local]
        member, sources, targets = None, (), ()
        if role == "train":
            member = pairs[index][0]
            sources = tuple(world_of[("sim", i)] for i in pairs[index][1])
        elif role == "sim":
            targets = tuple(feeds[index])
        infos.append(RankInfo(rank, role, index, node, local, gpu, member, targets, sources,
                              cores))
    return RankPlan(counts, tuple(infos), ppn, gpus_per_node, placement,
                    ensemble if counts.train else 0, nodes, cores_per_node)


def format_plan(plan: RankPlan, rows: int = 32) -> list[str]:
    """Human-readable plan: a header, then one line per rank (head and tail if long)."""
    c = plan.counts
    lines = [f"{plan.nodes} node(s) x {plan.ppn} ranks/node = {c.total} ranks: "
             f"{c.sim} sim, {c.train} train, {c.farm} farm; {plan.gpus_per_node} GPU(s)/node; "
             f"placement {plan.placement}; ensemble {plan.ensemble}",
             f"{'rank':>6} {'role':<5} {'index':>5} {'node':>5} {'local':>5} {'gpu':>4} "
             f"{'member':>6} {'cores' if plan.cores_per_node else '':>5}  pairing"]
    shown = list(plan.ranks)
    if rows and len(shown) > rows:
        half = rows // 2
        shown = shown[:half] + [None] + shown[-half:]
    for r in shown:
        if r is None:
            lines.append(f"{'...':>6} ({c.total - 2 * (rows // 2)} more ranks; --rows 0 shows all)")
            continue
        gpu = "-" if r.gpu is None else str(r.gpu)
        member = "-" if r.member is None else str(r.member)
        pairing = (f"feeds {_ranks(r.feeds)}" if r.role == "sim" and r.feeds else
                   f"from {_ranks(r.sources)}" if r.role == "train" else "")
        cores = span(r.cores) if r.cores else ""
        lines.append(f"{r.rank:>6} {r.role:<5} {r.role_index:>5} {r.node:>5} "
                     f"{r.local_rank:>5} {gpu:>4} {member:>6} {cores:>5}  {pairing}")
    return lines


def _ranks(ranks: tuple[int, ...]) -> str:
    if len(ranks) > 4:
        return f"ranks {ranks[0]}..{ranks[-1]} ({len(ranks)})"
    return "rank" + ("s " if len(ranks) > 1 else " ") + ",".join(map(str, ranks))
