"""``tcoupled bench``: benchmarks against physical limits and competing tools."""

from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import dataclass

from tcoupled.runtime.errors import ConfigError

HELP = "benchmarks: stencil, ... against their limits and competing tools"
USES_MPI = False


@dataclass(frozen=True)
class BenchRun:
    """Which benchmarks to run and where to write."""

    names: tuple[str, ...]
    out: str
    quick: bool
    devito: bool
    build_table: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``bench``."""
    from tcoupled.bench import BENCHMARKS

    parser.add_argument("which", nargs="?", default="all",
                        help=f"one of {', '.join(BENCHMARKS)}, all")
    parser.add_argument("--out", default="runs/bench", help="output directory")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, a few seconds each (used by the tests)")
    parser.add_argument("--no-devito", action="store_true", help="skip the Devito comparison")
    parser.add_argument("--build-table", type=int, default=0, metavar="N",
                        help="al: replay on the first N molecules of the cached table of "
                        "QM9 IEs, computing the missing ones first (default 4000; --quick 40)")


def make_config(args: argparse.Namespace, world_size: int) -> BenchRun:
    """Check the benchmark name and the output directory."""
    from tcoupled.bench import BENCHMARKS
    from tcoupled.runtime.store import prepare_out_dir

    if args.which != "all" and args.which not in BENCHMARKS:
        raise ConfigError(f"bench must be one of {', '.join(BENCHMARKS)}, all; "
                          f"got {args.which!r}")
    names = tuple(BENCHMARKS) if args.which == "all" else (args.which,)
    if args.build_table < 0:
        raise ConfigError(f"--build-table must be >= 0, got {args.build_table}")
    prepare_out_dir(args.out)
    return BenchRun(names, args.out, args.quick, not args.no_devito, args.build_table)


def run(config: BenchRun, comm: object = None) -> int:
    """Run each benchmark, print its table, write ``bench.json`` and one PNG each."""
    from pathlib import Path

    from tcoupled.bench import BENCHMARKS
    from tcoupled.runtime.store import read_json, write_json

    out = Path(config.out)
    path = out / "bench.json"
    everything = read_json(path) if path.exists() else {}
    for name in config.names:
        module = importlib.import_module(BENCHMARKS[name])
        print(f"bench {name}: running{' (quick)' if config.quick else ''} ...", flush=True)
        start = time.perf_counter()
        results = module.run({"quick": config.quick, "devito": config.devito,
                              "out": config.out, "build_table": config.build_table})
        results["seconds"] = time.perf_counter() - start
        results["quick"] = config.quick
        print("\n".join(module.table(results)), flush=True)
        module.plot(results, out / f"bench_{name}.png")
        everything[name] = results
        write_json(path, everything)
    print(f"bench: results in {path}")
    return 0
