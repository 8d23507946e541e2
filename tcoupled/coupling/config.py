"""The resolved configuration of a coupled run and the rules its flags must obey.

Rules live here once: which division/channel pairs work, the default channel (from the
channel registry), which ranks must share a node. Validation raises
:class:`~tcoupled.runtime.errors.ConfigError` naming the bad value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tcoupled.coupling.channels import CHANNELS, default_channel
from tcoupled.coupling.schedule import DIVISIONS
from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.config import WaveConfig

#: flags that may differ from the stored run with ``--resume``
RESUME_CHANGEABLE = ("quiet", "checkpoint_every", "dry_run", "no_report", "check_every")


@dataclass(frozen=True)
class CoupleRun:
    """Resolved configuration of a ``couple`` run."""

    wave: WaveConfig
    sim_ranks: int
    train_ranks: int
    division: str
    channel: str
    sim_steps: int
    train_iters: int
    cycles: int
    ensemble: int
    members: tuple  # of MemberParams
    batch_size: int
    rollout: int
    placement: str
    ppn: int | None
    out: str
    quiet: bool
    farm_ranks: int = 0
    farm: Any = None  # ScreenConfig of the farm ranks, None without them
    checkpoint_every: int = 0
    resume_cycle: int = 0  # cycles done by the run being resumed
    dry_run: bool = False
    report: bool = True
    check_every: int = 50
    verify: bool = False  # hash every received slot (data_digest)
    replay: int = 256  # samples each train rank keeps in its replay buffer (0: none)
    lr_schedule: str = "cosine"  # over cycles x train_iters steps (training.schedule)
    warmup: float = 0.25  # fraction of those steps in the schedule's warm-up


def check_positive(**values: int) -> None:
    """Refuse any value below 1, naming its flag (``sim_steps`` -> ``--sim-steps``)."""
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {value}")


def resolve_channel(division: str, channel: str | None, train_ranks: int) -> str:
    """Check division and channel against the train ranks; fill in the default."""
    if division not in DIVISIONS:
        raise ConfigError(f"--division must be one of {', '.join(DIVISIONS)}, got {division!r}")
    if channel is None:
        channel = default_channel(division, train_ranks)
    if channel not in CHANNELS:
        raise ConfigError(f"--channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if train_ranks == 0 and division == "space":
        raise ConfigError("--division space needs separate train ranks, got --train-ranks 0")
    if train_ranks == 0 and channel != "inproc":
        raise ConfigError(f"--channel {channel} needs train ranks: with --train-ranks 0 the "
                          "sim ranks train in process (use --channel inproc)")
    if train_ranks > 0 and channel == "inproc":
        raise ConfigError(f"--channel inproc needs sim and train in one process, but "
                          f"--train-ranks {train_ranks} puts them on separate ranks")
    return channel


def check_nodes(plan: Any, division: str, channel: str) -> None:
    """Refuse pairings that must share a node but do not in ``plan`` (from ``--ppn``)."""
    node = {info.rank: info.node for info in plan.ranks}
    for info in plan.of_role("train"):
        for source in info.sources:
            if node[source] == node[info.rank]:
                continue
            if channel == "shm":
                raise ConfigError(f"--channel shm needs each sim rank and its train ranks on "
                                  f"one node, but rank {source} (sim) is on node "
                                  f"{node[source]} and rank {info.rank} (train) on node "
                                  f"{node[info.rank]}")
            if division == "time":
                raise ConfigError(f"--division time needs colocated sim and train ranks, but "
                                  f"rank {source} (sim) is on node {node[source]} and rank "
                                  f"{info.rank} (train) on node {node[info.rank]}")


def colocation_problem(config: CoupleRun, layout: Any) -> str | None:
    """Check on the live layout that ranks which must share a node do (collective)."""
    problem = None
    must_share = config.channel == "shm" or (config.division == "time"
                                             and config.train_ranks > 0)
    if must_share and layout.role == "train":
        for source in layout.info.sources:
            if not layout.same_node(source):
                problem = (f"--division {config.division} --channel {config.channel} needs "
                           f"sim rank {source} and train rank {layout.info.rank} on one node, "
                           "but MPI placed them on different nodes")
    gpu_problem = _gpu_problem(config, layout)  # collective: every rank calls it
    problem = problem or gpu_problem
    problems = [p for p in layout.world.allgather(problem) if p]
    return problems[0] if problems else None


def _gpu_problem(config: CoupleRun, layout: Any) -> str | None:
    """A ``shm`` pair on two GPUs: CUDA IPC maps a slot only on the GPU that holds it.

    Collective over ``layout.world``; compares the physical GPUs the ranks were bound to
    (host and PCI bus id, whatever ``CUDA_VISIBLE_DEVICES`` shows each one).
    """
    identity = getattr(layout, "gpu_identity", None)
    identities = layout.world.allgather(identity)
    if config.channel != "shm" or layout.role != "train" or identity is None:
        return None
    for source in layout.info.sources:
        if identities[source] is not None and identities[source] != identity:
            return (f"--channel shm on GPUs needs sim rank {source} and train rank "
                    f"{layout.info.rank} on one GPU (CUDA IPC), but they use GPUs "
                    f"{identities[source]} and {identity}; choose counts whose pairs share "
                    "a GPU (tcoupled plan --gpus-per-node 4 shows them) or --channel mpi")
    return None


def config_dict(config: Any) -> dict:
    """Plain-data view of a ``couple`` configuration, for ``results.h5``."""
    from dataclasses import asdict

    data = asdict(config)
    data["members"] = [m.as_dict() for m in config.members]
    data["farm"] = asdict(config.farm) if config.farm is not None else None
    return data
