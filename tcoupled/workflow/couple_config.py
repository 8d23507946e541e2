"""Flags of ``couple`` -> a validated :class:`~tcoupled.coupling.config.CoupleRun` (rank 0).

Every check runs before any rank starts work: rank counts, division and channel,
colocation under ``--ppn``, the grid against the process grid, the device, the farm's
search space and engine, and ``--resume`` against the stored run.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from tcoupled.coupling.config import (
    RESUME_CHANGEABLE,
    CoupleRun,
    check_nodes,
    check_positive,
    resolve_channel,
)
from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.config import wave_config_from_args
from tcoupled.workflow.couple_flags import add_arguments, members_from_args


def _auto_division(args: argparse.Namespace, sim: int) -> str:
    """``--division auto``: the division the cost model predicts faster; prints why."""
    from tcoupled.coupling.costmodel import Workload, choose_division

    workload = Workload(wave_config_from_args(args), sim, args.train_ranks,
                        members_from_args(args), args.sim_steps, args.train_iters,
                        args.cycles, args.batch_size, args.placement, args.replay,
                        args.verify, args.channel)
    division, why = choose_division(workload, args.channel)
    if not args.quiet:
        print(f"couple: --division auto -> {division}: {why}", flush=True)
    return division


def make_config(args: argparse.Namespace, world_size: int) -> CoupleRun:
    """Validate every flag (rank 0), before any rank starts work."""
    from tcoupled.placement.plan import RoleCounts, plan_ranks
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.sim.backends import resolve_device
    from tcoupled.sim.solver import check_grid_fits

    if args.resume:
        from tcoupled.coupling.resume import resumed_args

        args = resumed_args(args, add_arguments, args.resume, RESUME_CHANGEABLE)
    check_positive(sim_steps=args.sim_steps, train_iters=args.train_iters, cycles=args.cycles,
                   ensemble=args.ensemble)
    if args.rollout < 0 or args.batch_size < 0:
        raise ConfigError(f"--rollout and --batch-size must be >= 0, got {args.rollout} and "
                          f"{args.batch_size}")
    if args.replay < 0:
        raise ConfigError(f"--replay must be >= 0, got {args.replay}")
    if args.check_every < 0:
        raise ConfigError(f"--check-every must be non-negative, got {args.check_every}")
    if args.train_ranks < 0:
        raise ConfigError(f"--train-ranks must be non-negative, got {args.train_ranks}")
    sim = (world_size - args.train_ranks - args.farm_ranks if args.sim_ranks is None
           else args.sim_ranks)
    if args.division == "auto":
        args.division = _auto_division(args, sim)
    channel = resolve_channel(args.division, args.channel, args.train_ranks)
    if args.train_ranks == 0 and args.ensemble > 1:
        raise ConfigError(f"--ensemble {args.ensemble} is larger than the train ranks: with "
                          "--train-ranks 0 the sim ranks train one member")
    counts = RoleCounts(sim=sim, train=args.train_ranks, farm=args.farm_ranks)
    counts.check_world(world_size)
    plan = plan_ranks(counts, args.ppn, 0, args.placement, args.ensemble)
    check_nodes(plan, args.division, channel)
    steps = args.cycles * args.sim_steps + 1 + args.rollout
    wave = replace(wave_config_from_args(args), steps=steps)
    if wave.time_block > 1:  # see the README, "Temporal blocking in couple"
        raise ConfigError(f"--time-block {wave.time_block} is not available in couple yet: "
                          "the slot frames are filled one step at a time; use --time-block 1")
    resolve_device(wave.device, wave.kernel)
    check_grid_fits(wave.grid, tuple(init_mpi().Compute_dims(sim, 2)))
    members = members_from_args(args)
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
                     check_every=args.check_every, verify=args.verify,
                     replay=args.replay, lr_schedule=args.lr_schedule, warmup=args.warmup)


def _farm_config(args: argparse.Namespace) -> Any:
    """Validate the farm's flags; return its ScreenConfig (``None`` without farm ranks)."""
    from pathlib import Path

    from tcoupled.screening.loop import ScreenConfig
    from tcoupled.screening.policies import POLICIES
    from tcoupled.screening.role import FARM_DIR

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
    if args.resume:
        from tcoupled.screening.loop import Journal

        Journal(Path(args.out) / FARM_DIR).check()
    return ScreenConfig(out=str(Path(args.out) / FARM_DIR), space=args.farm_space,
                      budget=args.farm_budget, initial=min(args.farm_initial, args.farm_budget),
                      policy=args.farm_policy, method=args.farm_method, task=args.farm_task,
                      seed=args.seed, resume=bool(args.resume))


def _check_space(space: str, task: str) -> None:
    from tcoupled.chemistry.engines import get_engine
    from tcoupled.screening.space import load_smiles_file, qm9_data_dir

    if space == "qm9":
        qm9_data_dir()
    else:
        load_smiles_file(space)
    if task == "ie":
        get_engine("tblite")


def _prepare_run(args: argparse.Namespace, coupled_ranks: int) -> int:
    """Create the run directory and store the flags; return the cycle to resume from."""
    from pathlib import Path

    from tcoupled.coupling.checkpoint import latest_complete
    from tcoupled.coupling.resume import store_args
    from tcoupled.runtime.store import prepare_out_dir

    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.resume:
        return latest_complete(args.resume, coupled_ranks)
    prepare_out_dir(args.out)
    if not args.dry_run:
        import shutil

        from tcoupled.coupling.checkpoint import CHECKPOINT_DIR

        shutil.rmtree(Path(args.out) / CHECKPOINT_DIR, ignore_errors=True)  # a new run
        store_args(args.out, args)
    return 0
