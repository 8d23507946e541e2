"""``tcoupled wave``: run the domain-decomposed wave solver alone.

SIGTERM or SIGINT stops every rank at one step and writes a checkpoint;
``--resume DIR`` continues that run (same flags, same number of ranks).
"""

from __future__ import annotations

import argparse
from typing import Any

from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.config import add_wave_arguments, wave_config_from_args
from tcoupled.sim.run import WaveRun, run_wave

HELP = "run the 2D wave-equation solver over all ranks (accuracy and speed)"
USES_MPI = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``wave``."""
    add_wave_arguments(parser)
    parser.add_argument("--out", default="runs/wave", help="output directory")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--check-every", type=int, default=50,
                        help="stop the run if NaN/Inf appears, checked every N steps (0: never)")
    parser.add_argument("--resume", default="", metavar="DIR",
                        help="continue the run in DIR that SIGTERM or SIGINT stopped")


def make_config(args: argparse.Namespace, world_size: int) -> WaveRun:
    """Validate the flags (rank 0), including kernel availability and ``--out``."""
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.runtime.store import prepare_out_dir
    from tcoupled.sim import checkpoint
    from tcoupled.sim.backends import resolve_backend, resolve_device
    from tcoupled.sim.decomposition import Block, check_block_depth
    from tcoupled.sim.solver import check_grid_fits, rank_dims

    if args.resume:
        from tcoupled.coupling.resume import resumed_args

        args = resumed_args(args, add_arguments, args.resume, ("quiet", "check_every"))
        checkpoint.check(args.out, world_size)
    wave = wave_config_from_args(args)
    check_grid_fits(wave.grid, tuple(init_mpi().Compute_dims(world_size, 2)))
    dims = rank_dims(world_size, wave.grid)
    check_block_depth(Block(wave.grid, dims, (0, 0)), wave.time_block)
    device = resolve_device(wave.device, wave.kernel)
    backend = resolve_backend(wave.kernel, device)
    if args.check_every < 0:
        raise ConfigError(f"--check-every must be non-negative, got {args.check_every}")
    if not args.resume:
        import shutil
        from pathlib import Path

        from tcoupled.coupling.resume import store_args

        prepare_out_dir(args.out)
        shutil.rmtree(Path(args.out) / checkpoint.CHECKPOINT_DIR, ignore_errors=True)
        store_args(args.out, args)
    return WaveRun(wave=wave, out=args.out, quiet=args.quiet, kernel=backend.name,
                   check_every=args.check_every, resume=bool(args.resume))


def run(config: WaveRun, comm: Any) -> int:
    """Run the solver, write ``results.h5`` and ``summary.json``, print the key figures."""
    return run_wave(config, comm)
