"""``tcoupled couple``: the solver feeds a DDP-trained CNN ensemble in one launch.

Sim ranks step the wave solver and hand ``(u(t), u(t+dt))`` samples of their
own block to train ranks through a channel (``inproc``, ``shm``, ``mpi``,
``file``); each ensemble member trains with DDP over its group of train
ranks. ``--division time`` makes sim and train take turns, ``space`` runs them
concurrently with double buffering. torch is imported inside functions only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

from tcoupled.config import WaveConfig, add_wave_arguments, wave_config_from_args
from tcoupled.errors import ConfigError
from tcoupled.schedule import DIVISIONS

HELP = "couple the wave solver with a DDP-trained CNN ensemble (time or space division)"
USES_MPI = True
CHANNEL_NAMES = ("inproc", "shm", "mpi", "file")
SOLVING = ("sim", "halo")
TRAINING = ("train", "allreduce")


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``couple``: the solver's, then the coupling's."""
    add_wave_arguments(parser)
    g = parser.add_argument_group("coupling")
    g.add_argument("--sim-ranks", type=int, default=None,
                   help="sim ranks (default: the ranks left by --train-ranks)")
    g.add_argument("--train-ranks", type=int, default=0,
                   help="train ranks (0: the sim ranks train themselves, inproc)")
    g.add_argument("--division", default="time", help=f"one of {', '.join(DIVISIONS)}")
    g.add_argument("--channel", default=None,
                   help=f"one of {', '.join(CHANNEL_NAMES)} (default: inproc or shm for "
                        "time division, mpi for space division)")
    g.add_argument("--sim-steps", type=int, default=8, help="solver steps per cycle (K)")
    g.add_argument("--train-iters", type=int, default=10,
                   help="training iterations per cycle (M)")
    g.add_argument("--cycles", type=int, default=4, help="sim/train cycles (C)")
    g.add_argument("--ensemble", type=int, default=1, help="CNN ensemble members (E)")
    g.add_argument("--kernel-sizes", type=int, nargs="+", default=None,
                   help="CNN kernel size, one for all or one per member (default 3 5 7 ...)")
    g.add_argument("--lr", type=float, nargs="+", default=None,
                   help="Adam learning rate, one for all or one per member (default 2e-3)")
    g.add_argument("--cnn-width", type=int, nargs="+", default=None,
                   help="CNN channels of the first layer, one or one per member (default 8)")
    g.add_argument("--batch-size", type=int, default=0,
                   help="pairs per iteration from each source (0: all pairs of the cycle)")
    g.add_argument("--rollout", type=int, default=5,
                   help="autoregressive rollout steps compared with the solver")
    g.add_argument("--placement", default="colocated", help="colocated or clustered")
    g.add_argument("--ppn", type=int, default=None,
                   help="ranks per node of the machine, to refuse layouts that cannot "
                        "share memory before starting (default: detected at run time)")
    g.add_argument("--out", default="runs/couple", help="output directory")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _positive(args: argparse.Namespace, *flags: str) -> None:
    for flag in flags:
        value = getattr(args, flag)
        if value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")


def _resolve_channel(division: str, channel: str | None, train_ranks: int) -> str:
    """Check division and channel against the train ranks; fill in the default."""
    if division not in DIVISIONS:
        raise ConfigError(f"--division must be one of {', '.join(DIVISIONS)}, got {division!r}")
    if channel is None:
        channel = "mpi" if division == "space" else ("inproc" if train_ranks == 0 else "shm")
    if channel not in CHANNEL_NAMES:
        raise ConfigError(f"--channel must be one of {', '.join(CHANNEL_NAMES)}, "
                          f"got {channel!r}")
    if train_ranks == 0 and division == "space":
        raise ConfigError("--division space needs separate train ranks, got --train-ranks 0")
    if train_ranks == 0 and channel != "inproc":
        raise ConfigError(f"--channel {channel} needs train ranks: with --train-ranks 0 the "
                          "sim ranks train in process (use --channel inproc)")
    if train_ranks > 0 and channel == "inproc":
        raise ConfigError(f"--channel inproc needs sim and train in one process, but "
                          f"--train-ranks {train_ranks} puts them on separate ranks")
    return channel


def _check_nodes(plan: Any, division: str, channel: str) -> None:
    """Refuse pairings that must share a node but do not under ``--ppn``."""
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


def make_config(args: argparse.Namespace, world_size: int) -> CoupleRun:
    """Validate every flag (rank 0), before any rank starts work."""
    from tcoupled.layout import RoleCounts, plan_ranks
    from tcoupled.mpienv import init_mpi
    from tcoupled.solver import check_grid_fits
    from tcoupled.store import prepare_out_dir
    from tcoupled.training.ensemble import member_params

    _positive(args, "sim_steps", "train_iters", "cycles", "ensemble")
    if args.rollout < 0 or args.batch_size < 0:
        raise ConfigError(f"--rollout and --batch-size must be >= 0, got {args.rollout} and "
                          f"{args.batch_size}")
    if args.train_ranks < 0:
        raise ConfigError(f"--train-ranks must be non-negative, got {args.train_ranks}")
    sim = world_size - args.train_ranks if args.sim_ranks is None else args.sim_ranks
    channel = _resolve_channel(args.division, args.channel, args.train_ranks)
    if args.train_ranks == 0 and args.ensemble > 1:
        raise ConfigError(f"--ensemble {args.ensemble} is larger than the train ranks: with "
                          "--train-ranks 0 the sim ranks train one member")
    counts = RoleCounts(sim=sim, train=args.train_ranks)
    counts.check_world(world_size)
    plan = plan_ranks(counts, args.ppn, 0, args.placement, args.ensemble)
    _check_nodes(plan, args.division, channel)
    steps = args.cycles * args.sim_steps + 1 + args.rollout
    wave = replace(wave_config_from_args(args), steps=steps)
    check_grid_fits(wave.grid, tuple(init_mpi().Compute_dims(sim, 2)))
    members = member_params(args.ensemble, args.kernel_sizes, args.lr, args.cnn_width)
    prepare_out_dir(args.out)
    return CoupleRun(wave=wave, sim_ranks=sim, train_ranks=args.train_ranks,
                     division=args.division, channel=channel, sim_steps=args.sim_steps,
                     train_iters=args.train_iters, cycles=args.cycles, ensemble=args.ensemble,
                     members=members, batch_size=args.batch_size, rollout=args.rollout,
                     placement=args.placement, ppn=args.ppn, out=args.out, quiet=args.quiet)


def run(config: CoupleRun, comm: Any) -> int:
    """Lay out the ranks, couple solver and trainers, report on rank 0."""
    from tcoupled.layout import Layout, RoleCounts
    from tcoupled.telemetry import setup_logging

    layout = Layout.create(comm, RoleCounts(config.sim_ranks, config.train_ranks),
                           config.placement, max(config.ensemble, 1))
    reason = _colocation_problem(config, layout)
    if reason is not None:
        if comm.Get_rank() == 0:
            import sys

            sys.stderr.write(f"tcoupled couple: error: {reason}\n")
        layout.free()
        return 2
    log = setup_logging(config.out, comm.Get_rank(), config.quiet)
    from tcoupled.coupling import CoupledRank

    record = CoupledRank(config, layout, log).run()
    records = comm.gather(record, root=0)
    if comm.Get_rank() == 0:
        from tcoupled.coupling import write_outputs

        write_outputs(config, records, log)
    comm.Barrier()
    layout.free()
    return 0


def _colocation_problem(config: CoupleRun, layout: Any) -> str | None:
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
    problems = [p for p in layout.world.allgather(problem) if p]
    return problems[0] if problems else None
