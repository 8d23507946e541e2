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
    farm_ranks: int = 0
    farm: Any = None  # ScreenConfig of the farm ranks, None without them
    checkpoint_every: int = 0
    resume_cycle: int = 0  # cycles done by the run being resumed
    dry_run: bool = False
    report: bool = True
    check_every: int = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``couple``: the solver's, then the coupling's."""
    add_wave_arguments(parser)
    g = parser.add_argument_group("coupling")
    g.add_argument("--sim-ranks", type=int, default=None,
                   help="sim ranks (default: the ranks left by --train-ranks)")
    g.add_argument("--train-ranks", type=int, default=0,
                   help="train ranks (0: the sim ranks train themselves, inproc)")
    g.add_argument("--division", default="time",
                   help=f"one of {', '.join(DIVISIONS)}, auto (the cost model's choice)")
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
    g.add_argument("--check-every", type=int, default=50, metavar="N",
                   help="stop the run if NaN/Inf appears, checked every N steps (0: never)")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the farm role's flags and checkpoint/resume/report flags."""
    g = parser.add_argument_group("farm (xTB screen beside the coupled run)")
    g.add_argument("--farm-ranks", type=int, default=0,
                   help="farm ranks: rank 0 of them learns, the others run xTB (0: no farm)")
    g.add_argument("--farm-space", default="qm9", help="'qm9' or a file of SMILES")
    g.add_argument("--farm-budget", type=int, default=8, help="molecules to simulate")
    g.add_argument("--farm-initial", type=int, default=4,
                   help="random molecules before the model steers")
    g.add_argument("--farm-policy", default="greedy", help="greedy, ucb or random")
    g.add_argument("--farm-method", default="gfn2", choices=("gfn2", "ipea"), help="IE method")
    g.add_argument("--farm-task", default="ie", choices=("ie", "noop"),
                   help="'noop' replaces xTB by a no-op")
    g = parser.add_argument_group("run")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="save solver, model and optimizer state every N cycles (0: never)")
    g.add_argument("--resume", default="", metavar="DIR",
                   help="continue the killed run in DIR from its last checkpoint")
    g.add_argument("--dry-run", action="store_true",
                   help="validate, print the configuration and layout, and stop")
    g.add_argument("--no-report", action="store_true",
                   help="do not write the report (plots, report.md) at the end")


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


def _auto_division(args: argparse.Namespace, sim: int) -> str:
    """``--division auto``: the division the cost model predicts faster; prints why."""
    from tcoupled.costmodel import Workload, choose_division
    from tcoupled.training.ensemble import member_params

    workload = Workload(wave_config_from_args(args), sim, args.train_ranks,
                        member_params(args.ensemble, args.kernel_sizes, args.lr,
                                      args.cnn_width),
                        args.sim_steps, args.train_iters, args.cycles, args.batch_size,
                        args.placement)
    division, why = choose_division(workload, args.channel)
    if not args.quiet:
        print(f"couple: --division auto -> {division}: {why}", flush=True)
    return division


def make_config(args: argparse.Namespace, world_size: int) -> CoupleRun:
    """Validate every flag (rank 0), before any rank starts work."""
    from tcoupled.backends import resolve_device
    from tcoupled.layout import RoleCounts, plan_ranks
    from tcoupled.mpienv import init_mpi
    from tcoupled.solver import check_grid_fits
    from tcoupled.training.ensemble import member_params

    if args.resume:
        from tcoupled.resume import resumed_args

        args = resumed_args(args, add_arguments, args.resume, RESUME_CHANGEABLE)
    _positive(args, "sim_steps", "train_iters", "cycles", "ensemble")
    if args.rollout < 0 or args.batch_size < 0:
        raise ConfigError(f"--rollout and --batch-size must be >= 0, got {args.rollout} and "
                          f"{args.batch_size}")
    if args.check_every < 0:
        raise ConfigError(f"--check-every must be non-negative, got {args.check_every}")
    if args.train_ranks < 0:
        raise ConfigError(f"--train-ranks must be non-negative, got {args.train_ranks}")
    sim = (world_size - args.train_ranks - args.farm_ranks if args.sim_ranks is None
           else args.sim_ranks)
    if args.division == "auto":
        args.division = _auto_division(args, sim)
    channel = _resolve_channel(args.division, args.channel, args.train_ranks)
    if args.train_ranks == 0 and args.ensemble > 1:
        raise ConfigError(f"--ensemble {args.ensemble} is larger than the train ranks: with "
                          "--train-ranks 0 the sim ranks train one member")
    counts = RoleCounts(sim=sim, train=args.train_ranks, farm=args.farm_ranks)
    counts.check_world(world_size)
    plan = plan_ranks(counts, args.ppn, 0, args.placement, args.ensemble)
    _check_nodes(plan, args.division, channel)
    steps = args.cycles * args.sim_steps + 1 + args.rollout
    wave = replace(wave_config_from_args(args), steps=steps)
    resolve_device(wave.device, wave.kernel)
    check_grid_fits(wave.grid, tuple(init_mpi().Compute_dims(sim, 2)))
    members = member_params(args.ensemble, args.kernel_sizes, args.lr, args.cnn_width)
    farm = _farm_config(args)
    resume_cycle = _prepare_run(args, sim + args.train_ranks)
    return CoupleRun(wave=wave, sim_ranks=sim, train_ranks=args.train_ranks,
                     division=args.division, channel=channel, sim_steps=args.sim_steps,
                     train_iters=args.train_iters, cycles=args.cycles, ensemble=args.ensemble,
                     members=members, batch_size=args.batch_size, rollout=args.rollout,
                     placement=args.placement, ppn=args.ppn, out=args.out, quiet=args.quiet,
                     farm_ranks=args.farm_ranks, farm=farm,
                     checkpoint_every=args.checkpoint_every, resume_cycle=resume_cycle,
                     dry_run=args.dry_run, report=not args.no_report,
                     check_every=args.check_every)


#: flags that may differ from the stored run with ``--resume``
RESUME_CHANGEABLE = ("quiet", "checkpoint_every", "dry_run", "no_report", "check_every")


def _farm_config(args: argparse.Namespace) -> Any:
    """Validate the farm's flags; return its ScreenConfig (``None`` without farm ranks)."""
    from pathlib import Path

    from tcoupled.active import POLICIES
    from tcoupled.farm_role import FARM_DIR
    from tcoupled.screening import ScreenConfig

    if args.farm_ranks < 0:
        raise ConfigError(f"--farm-ranks must be non-negative, got {args.farm_ranks}")
    if args.farm_ranks == 0:
        return None
    if args.farm_budget < 1 or args.farm_initial < 0:
        raise ConfigError(f"--farm-budget must be >= 1 and --farm-initial >= 0, got "
                          f"{args.farm_budget} and {args.farm_initial}")
    if args.farm_policy not in POLICIES:
        raise ConfigError(f"--farm-policy must be one of {', '.join(POLICIES)}, "
                          f"got {args.farm_policy!r}")
    _check_space(args.farm_space, args.farm_task)
    return ScreenConfig(out=str(Path(args.out) / FARM_DIR), space=args.farm_space,
                      budget=args.farm_budget, initial=min(args.farm_initial, args.farm_budget),
                      policy=args.farm_policy, method=args.farm_method, task=args.farm_task,
                      seed=args.seed, resume=bool(args.resume))


def _check_space(space: str, task: str) -> None:
    from tcoupled.commands.ie import check_engine
    from tcoupled.space import load_smiles_file, qm9_data_dir

    if space == "qm9":
        qm9_data_dir()
    else:
        load_smiles_file(space)
    if task == "ie":
        check_engine("tblite")


def _prepare_run(args: argparse.Namespace, coupled_ranks: int) -> int:
    """Create the run directory and store the flags; return the cycle to resume from."""
    from pathlib import Path

    from tcoupled.checkpoint import latest_complete
    from tcoupled.resume import store_args
    from tcoupled.store import prepare_out_dir

    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.resume:
        return latest_complete(args.resume, coupled_ranks)
    prepare_out_dir(args.out)
    if not args.dry_run:
        import shutil

        from tcoupled.checkpoint import CHECKPOINT_DIR

        shutil.rmtree(Path(args.out) / CHECKPOINT_DIR, ignore_errors=True)  # a new run
        store_args(args.out, args)
    return 0


def run(config: CoupleRun, comm: Any) -> int:
    """Lay out the ranks; run the coupled roles and the farm side by side; report on rank 0."""
    from tcoupled import stopping
    from tcoupled.layout import RoleCounts, split_coupled

    if config.dry_run:
        if comm.Get_rank() == 0:
            print("\n".join(describe(config)))
        return 0
    stopping.install()
    counts = RoleCounts(config.sim_ranks, config.train_ranks, config.farm_ranks)
    part = split_coupled(comm, counts)
    in_farm = comm.Get_rank() >= config.sim_ranks + config.train_ranks
    layout, problem = (None, None) if in_farm else _coupled_layout(config, part)
    problem = comm.bcast(problem, root=0)
    status = 2
    if problem is None:
        record = _run_role(config, comm, part, layout, in_farm)
        status = _conclude(config, comm, comm.gather(record, root=0))
    elif comm.Get_rank() == 0:
        import sys

        sys.stderr.write(f"tcoupled couple: error: {problem}\n")
    if layout is not None:
        layout.free()
    part.Free()
    return status


def _stop_message(config: CoupleRun, records: list[dict]) -> str:
    """The one line of a run stopped by SIGTERM: where it stopped, how to go on."""
    cycles = [r["stopped"] for r in records if r.get("stopped") is not None]
    where = (f"after cycle {min(cycles)}" if cycles
             else f"(farm only; sim and train finished all {config.cycles} cycles)")
    return f"stopped by SIGTERM {where}; resume with --resume {config.out}"


def _conclude(config: CoupleRun, comm: Any, records: list[dict] | None) -> int:
    """Rank 0 writes the outputs (or reports the stop); every rank gets the same status.

    An error while writing (e.g. a full disk) is raised on every rank at once, so
    the job ends with one line instead of an abort.
    """
    from tcoupled.errors import TcoupledError
    from tcoupled.stopping import STOP_EXIT

    outcome: tuple[int, str] = (0, "")
    if comm.Get_rank() == 0:
        if any("stopped" in r for r in records or ()):
            outcome = (STOP_EXIT, _stop_message(config, records or []))
        else:
            try:
                _finish(config, records or [])
            except TcoupledError as exc:
                outcome = (exc.exit_code, str(exc))
    status, message = comm.bcast(outcome, root=0)
    if status == STOP_EXIT:
        if comm.Get_rank() == 0:
            import sys

            sys.stderr.write(f"tcoupled couple: {message}\n")
            sys.stderr.flush()
        return status
    if status:
        error = TcoupledError(message)
        error.exit_code, error.ranks_raising = status, comm.Get_size()
        raise error
    return 0


def _coupled_layout(config: CoupleRun, comm: Any) -> tuple[Any, str | None]:
    """Build the sim/train layout on the coupled ranks and check colocation (collective)."""
    from tcoupled.layout import Layout, RoleCounts

    layout = Layout.create(comm, RoleCounts(config.sim_ranks, config.train_ranks),
                           config.placement, max(config.ensemble, 1))
    return layout, _colocation_problem(config, layout)


def _run_role(config: CoupleRun, world: Any, part: Any, layout: Any, in_farm: bool) -> dict:
    """Run this rank's role (farm, or sim/train) and return its record."""
    from tcoupled.telemetry import setup_logging

    if in_farm:
        from tcoupled.farm_role import run_farm_role

        log = setup_logging(config.out, world.Get_rank(), config.quiet,
                            leader=part.Get_rank() == 0)
        return run_farm_role(config.farm, part, log)
    from tcoupled.coupling import CoupledRank

    coupled = CoupledRank(config, layout, None)
    log = setup_logging(config.out, world.Get_rank(), config.quiet,
                        leader=coupled.leads or world.Get_rank() == 0)
    if world.Get_rank() == 0:
        for line in describe(config):
            log.info(line)
    coupled.log = log
    return coupled.run()


def _finish(config: CoupleRun, records: list[dict]) -> None:
    """Rank 0: write ``results.h5`` and ``summary.json``, then the report."""
    from tcoupled.coupling import write_outputs
    from tcoupled.telemetry import get_logger

    log = get_logger()
    write_outputs(config, records, log)
    if config.report:
        from tcoupled.report import write_report

        path = write_report(config.out)
        log.info(f"report: {path}")


def describe(config: CoupleRun) -> list[str]:
    """The resolved configuration and the rank layout, one line each (printed at start)."""
    from tcoupled.commands.plan import format_plan
    from tcoupled.coupling import config_dict
    from tcoupled.layout import RoleCounts, plan_ranks
    from tcoupled.store import to_json

    lines = ["couple: resolved configuration"]
    for key, value in sorted(config_dict(config).items()):
        lines.append(f"  {key}: {to_json(value)}")
    counts = RoleCounts(config.sim_ranks, config.train_ranks, config.farm_ranks)
    plan = plan_ranks(counts, config.ppn, 0, config.placement, config.ensemble)
    return lines + format_plan(plan, rows=16)


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
