"""``tcoupled screen``: active-learning search for high ionization energies.

All ranks form the task farm (rank 0 manages and learns, the others run xTB).
``--resume DIR`` continues a killed run from its journal: finished
calculations are kept and never run again.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from tcoupled.errors import ConfigError
from tcoupled.screening import TASKS, ScreenConfig

HELP = "active-learning screen of a molecule space for high ionization energies"
USES_MPI = True
CONFIG_FILE = "config.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``screen`` options."""
    from tcoupled.active import POLICIES

    add = parser.add_argument
    add("--space", default="qm9", help="'qm9' or a file of SMILES (one per line or a "
        "'smiles' column)")
    add("--budget", type=int, default=24, help="number of simulations")
    add("--initial", type=int, default=8, help="random molecules before the model steers")
    add("--policy", default="greedy", choices=POLICIES, help="acquisition policy")
    add("--k", type=int, default=4, help="neighbours of the kNN")
    add("--kappa", type=float, default=1.0, help="ucb: weight of the ensemble spread")
    add("--ensemble", type=int, default=8, help="ucb: bootstrap kNN members")
    add("--fp-radius", type=int, default=4, help="Morgan fingerprint radius")
    add("--fp-bits", type=int, default=256, help="Morgan fingerprint length (multiple of 64)")
    add("--fp-cache", default="", help="fingerprint cache folder (default: user cache)")
    add("--method", default="gfn2", choices=("gfn2", "ipea"), help="IE method")
    add("--engine", default="tblite", choices=("tblite", "xtb-python"), help="xTB engine")
    add("--fmax", type=float, default=0.05, help="relaxation threshold (eV/Angstrom)")
    add("--seed", type=int, default=0, help="random seed (initial sample, ETKDG)")
    add("--task", default="ie", choices=sorted(TASKS),
        help="'noop' replaces xTB by a no-op to measure the farm's own overhead")
    add("--task-timeout", type=float, default=300.0, help="seconds per molecule at most")
    add("--baseline", default="", help="a finished random-policy run to plot against")
    add("--out", default="runs/screen", help="output directory")
    add("--resume", default="", metavar="DIR", help="continue the killed run in DIR")


def _check_ranges(args: argparse.Namespace) -> None:
    for name in ("budget", "initial", "k", "ensemble", "fp_radius", "fp_bits"):
        if getattr(args, name) < (0 if name == "initial" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, "
                              f"got {getattr(args, name)}")
    if args.fp_bits % 64:
        raise ConfigError(f"--fp-bits must be a multiple of 64, got {args.fp_bits}")
    for name in ("fmax", "task_timeout"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.baseline and not (Path(args.baseline) / "results.h5").exists():
        raise ConfigError(f"--baseline {args.baseline!r} holds no results.h5")


def _resumed(directory: str) -> ScreenConfig:
    from tcoupled.store import read_json

    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"--resume {directory!r}: no {CONFIG_FILE} (not a screen run)")
    try:
        stored = read_json(path)
        known = {f.name for f in fields(ScreenConfig)}
        values = {k: v for k, v in stored.items() if k in known}
        values.update(out=directory, resume=True)
        return ScreenConfig(**values)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--resume {directory!r}: unreadable {CONFIG_FILE} ({exc})") \
            from None


def make_config(args: argparse.Namespace, world_size: int) -> ScreenConfig:
    """Validate the options (rank 0); raise :class:`ConfigError` naming a bad value."""
    from tcoupled.commands.ie import check_engine
    from tcoupled.space import load_smiles_file, qm9_data_dir
    from tcoupled.store import prepare_out_dir

    if args.resume:
        return _resumed(args.resume)
    _check_ranges(args)
    if args.space == "qm9":
        qm9_data_dir()
    else:
        load_smiles_file(args.space)
    if args.task == "ie":
        check_engine(args.engine)
    prepare_out_dir(args.out)
    values = {f.name: getattr(args, f.name) for f in fields(ScreenConfig)
              if f.name != "resume"}
    return ScreenConfig(**values, resume=False)


def run(config: ScreenConfig, comm: Any) -> int:
    """Run the screen: rank 0 learns and manages, the other ranks compute."""
    from tcoupled.farm import run_farm

    rank = 0 if comm is None else comm.Get_rank()
    if rank == 0:
        from tcoupled.telemetry import setup_logging

        setup_logging(config.out, rank)
    run_farm(comm, TASKS[config.task], config.task_timeout,
             lambda manager: _drive(config, manager))
    return 0


def _prepare(config: ScreenConfig) -> tuple[Any, Any, float]:
    """Load the space and its fingerprints (cached); return them and the seconds."""
    import time

    from tcoupled.active import cached_fingerprints, default_cache_dir
    from tcoupled.space import load_space
    from tcoupled.telemetry import get_logger

    space = load_space(config.space)
    start = time.perf_counter()
    cache = config.fp_cache or default_cache_dir()
    fingerprints, cached = cached_fingerprints(space.smiles, config.fp_radius,
                                               config.fp_bits, cache)
    seconds = time.perf_counter() - start
    if config.task == "ie" and space.source is not None:
        space.fallback_geometry(0)  # read QM9's geometries now, not on the first submit
    invalid = int((~fingerprints.any(axis=1)).sum())
    get_logger().info("space %s: %d molecules (%d unparsable), fingerprints %s in %.2f s",
                      space.name, len(space), invalid,
                      "read from cache" if cached else "computed", seconds)
    return space, fingerprints, seconds


def _drive(config: ScreenConfig, manager: Any) -> None:
    from tcoupled.report_screen import plot_progress, read_records, summarize, write_results
    from tcoupled.screening import Journal, ScreenLoop
    from tcoupled.store import write_json, write_summary

    journal = Journal(config.out)
    done = journal.load() if config.resume else []
    if not config.resume:
        journal.path.unlink(missing_ok=True)
        write_json(Path(config.out) / CONFIG_FILE, asdict(config))
    space, fingerprints, fp_seconds = _prepare(config)
    manager.stats.restart_clock()
    loop = ScreenLoop(config, space, fingerprints, manager, journal, done)
    loop.run()
    farm = manager.report()
    write_results(config.out, asdict(config), loop.records, loop.snapshots, farm)
    baseline = read_records(config.baseline) if config.baseline else None
    plot = plot_progress(config.out, loop.records, config.policy, baseline)
    extra = {"policy": config.policy, "budget": config.budget, "resumed_records": len(done),
             "fingerprint_s": fp_seconds, "plot": plot.name, "farm": farm}
    summary = summarize(loop, farm, extra)
    write_summary(config.out, summary)
    print(f"screen: {summary['simulated']} simulated, {summary['failed']} failed, best "
          f"{summary['best_ie_ev']} eV ({summary['best_smiles']}), "
          f"{summary['tasks_per_s']:.2f} tasks/s -> {config.out}")
