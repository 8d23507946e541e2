"""``tcoupled report DIR``: plots and ``report.md`` of a finished run (no MPI)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

HELP = "plots and report.md of a finished run directory"
USES_MPI = False


@dataclass(frozen=True)
class ReportRequest:
    """The run directory to report on."""

    directory: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the run directory argument."""
    parser.add_argument("directory", metavar="DIR", help="a finished run's --out directory")


def make_config(args: argparse.Namespace, world_size: int) -> ReportRequest:
    """Check that DIR holds a finished run."""
    from pathlib import Path

    from tcoupled.runtime.errors import ConfigError
    from tcoupled.runtime.store import RESULTS_FILE, SUMMARY_FILE

    folder = Path(args.directory)
    missing = [name for name in (RESULTS_FILE, SUMMARY_FILE) if not (folder / name).exists()]
    if missing:
        raise ConfigError(f"{args.directory!r} holds no finished run (missing "
                          f"{', '.join(missing)})")
    from tcoupled.report.couple import read_run
    from tcoupled.screening.outputs import read_records

    # a damaged or hostile file is one line here, before anything is written
    command, _, _ = read_run(folder)
    farm = folder / "farm" if command == "couple" else folder
    if (farm / RESULTS_FILE).exists() or (farm / RESULTS_FILE).is_symlink():
        read_records(farm)
    return ReportRequest(args.directory)


def run(config: ReportRequest, comm: object = None) -> int:
    """Write the report and print its path."""
    from tcoupled.report.couple import write_report

    print(f"report: {write_report(config.directory)}")
    return 0
