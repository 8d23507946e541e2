"""``tcoupled screen``: active-learning search for high ionization energies.

All ranks form the task farm (rank 0 manages and learns, the others run xTB).
``--resume DIR`` continues a killed run from its journal: finished
calculations are kept and never run again.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import ConfigError
from tcoupled.screening.loop import TASKS, ScreenConfig
from tcoupled.screening.run import CONFIG_FILE

HELP = "active-learning screen of a molecule space for high ionization energies"
USES_MPI = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``screen`` options."""
    from tcoupled.screening.policies import DEFAULT_POLICY, POLICIES

    add = parser.add_argument
    add("--space", default="qm9", help="'qm9' or a file of SMILES (one per line or a "
        "'smiles' column)")
    add("--budget", type=int, default=24, help="number of simulations")
    add("--initial", type=int, default=8, help="random molecules before the model steers")
    add("--policy", default=DEFAULT_POLICY, choices=POLICIES, help="acquisition policy "
        "(gp-*: Tanimoto GP on count fingerprints; greedy, ucb, seed-greedy: Jaccard kNN)")
    add("--k", type=int, default=4, help="neighbours of the kNN")
    add("--kappa", type=float, default=None, help="ucb, gp-ucb: weight of the spread "
        "(default: 6 for gp-ucb, tuned by bench al; 1 for ucb)")
    add("--noise", type=float, default=0.02, help="gp-*: noise variance / kernel amplitude")
    add("--count-radius", type=int, default=2, help="gp-*: Morgan count fingerprint radius")
    add("--ensemble", type=int, default=8, help="ucb: bootstrap kNN members")
    add("--fp-radius", type=int, default=4, help="Morgan fingerprint radius")
    add("--fp-bits", type=int, default=256, help="Morgan fingerprint length (multiple of 64)")
    add("--fp-cache", default="", help="fingerprint cache folder (default: user cache)")
    add("--method", default="gfn2", choices=("gfn2", "ipea"), help="IE method")
    add("--engine", default="tblite", choices=("tblite", "xtb-python"), help="xTB engine")
    add("--fmax", type=float, default=0.05, help="relaxation threshold (eV/Angstrom)")
    add("--seed", type=int, default=0, help="random seed of the screen (initial sample)")
    add("--embed-seed", type=int, default=0, help="ETKDG seed of every molecule's geometry "
        "(the same in every screen, so a molecule's IE does not depend on --seed)")
    add("--task", default="ie", choices=sorted(TASKS),
        help="'noop' replaces xTB by a no-op to measure the farm's own overhead")
    add("--task-timeout", type=float, default=300.0, help="seconds per molecule at most")
    add("--baseline", default="", help="a finished random-policy run to plot against")
    add("--out", default="runs/screen", help="output directory")
    add("--resume", default="", metavar="DIR", help="continue the killed run in DIR")


def _check_ranges(args: argparse.Namespace) -> None:
    for name in ("budget", "initial", "k", "ensemble", "fp_radius", "fp_bits", "count_radius"):
        if getattr(args, name) < (0 if name == "initial" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, "
                              f"got {getattr(args, name)}")
    if args.fp_bits % 64:
        raise ConfigError(f"--fp-bits must be a multiple of 64, got {args.fp_bits}")
    for name in ("fmax", "task_timeout", "noise"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.baseline:
        from tcoupled.screening.outputs import read_records

        if not (Path(args.baseline) / "results.h5").exists():
            raise ConfigError(f"--baseline {args.baseline!r} holds no results.h5")
        read_records(args.baseline)  # a damaged file is one line now, not a crash at the end


def _resumed(directory: str) -> ScreenConfig:
    from tcoupled.runtime.inputs import read_json_input
    from tcoupled.screening.loop import Journal

    path = Path(directory) / CONFIG_FILE
    if not Path(directory).is_dir():
        raise ConfigError(f"--resume {directory!r}: no such directory")
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"--resume {directory!r}: no {CONFIG_FILE} (not a screen run)")
    stored = read_json_input(path, "--resume:", root=directory)
    Journal(directory).check()
    try:
        known = {f.name for f in fields(ScreenConfig)}
        values = {k: v for k, v in stored.items() if k in known}
        values.update(out=directory, resume=True)
        return ScreenConfig(**values)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"--resume {directory!r}: unreadable {CONFIG_FILE} ({exc})") \
            from None


def make_config(args: argparse.Namespace, world_size: int) -> ScreenConfig:
    """Validate the options (rank 0); raise :class:`ConfigError` naming a bad value."""
    from tcoupled.chemistry.engines import get_engine
    from tcoupled.runtime.store import prepare_out_dir
    from tcoupled.screening.space import load_smiles_file, qm9_data_dir

    if args.resume:
        return _resumed(args.resume)
    _check_ranges(args)
    if args.space == "qm9":
        qm9_data_dir()
    else:
        load_smiles_file(args.space)
    if args.task == "ie":
        get_engine(args.engine)
    prepare_out_dir(args.out)
    values = {f.name: getattr(args, f.name) for f in fields(ScreenConfig)
              if f.name != "resume"}
    return ScreenConfig(**values, resume=False)


def run(config: ScreenConfig, comm: Any) -> int:
    """Run the screen: rank 0 learns and manages, the other ranks compute."""
    from tcoupled.workflow.screen import run_screen

    return run_screen(config, comm)
