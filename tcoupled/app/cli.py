"""Command-line interface: ``python -m tcoupled COMMAND ...``.

Each command is a module in :mod:`tcoupled.app` exposing

``HELP``            one-line description (repeated in :data:`COMMANDS`);
``USES_MPI``        whether the command runs under MPI;
``add_arguments(parser)``;
``make_config(args, world_size)``  validate and return a frozen config
                    (runs on rank 0 only; raises :class:`ConfigError`);
``run(config, comm)``  do the work on every rank, return the exit status.

Validation happens on rank 0 and the outcome is broadcast, so a bad input
ends every rank with the same exit status and one line on stderr. An error
raised once work has started aborts the whole job instead of hanging.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from tcoupled import __version__
from tcoupled.runtime.errors import TcoupledError

#: command name -> (module, one-line help). A new command is one new module and one
#: line here. Only the chosen command's module is imported, so start-up stays fast
#: and ``--help`` works even where a command's optional dependencies are missing.
COMMANDS = {
    "wave": ("tcoupled.app.wave", "run the 2D wave-equation solver over all ranks"),
    "plan": ("tcoupled.app.plan", "print the rank/node/GPU layout without running"),
    "ie": ("tcoupled.app.ie", "vertical ionization energies of molecules with xTB"),
    "screen": ("tcoupled.app.screen", "active-learning screen for high ionization energy"),
    "bench": ("tcoupled.app.bench", "benchmarks against hardware limits and other tools"),
    "couple": ("tcoupled.app.couple", "solver + DDP-trained CNN ensemble in one launch"),
    "report": ("tcoupled.app.report", "plots and report.md of a finished run directory"),
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) with exit status 2.

    It also keeps every ``--flag`` it is given (``flag_actions``: name without dashes ->
    the :class:`argparse.Action` that ``add_argument`` returned, groups included), so
    ``--config`` files are checked against the real flags without argparse internals.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flag_actions: dict[str, argparse.Action] = {}  # before -h is added
        super().__init__(*args, **kwargs)

    def _keep(self, action: argparse.Action) -> argparse.Action:
        for option in action.option_strings:
            if option.startswith("--"):
                self.flag_actions[option[2:]] = action
        return action

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:  # noqa: D102
        return self._keep(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument

        def add_and_keep(*a: Any, **k: Any) -> argparse.Action:
            return self._keep(add(*a, **k))

        group.add_argument = add_and_keep  # type: ignore[method-assign]
        return group

    def error(self, message: str) -> None:  # noqa: D102
        from tcoupled.runtime.mpienv import launcher_rank

        self.exit(2, f"{self.prog}: error: {message}\n" if launcher_rank() == 0 else None)


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The first argument naming a known command (before any option value)."""
    for arg in argv:
        if arg in COMMANDS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """Return the top-level parser; only the command named in ``argv`` gets its flags."""
    parser = _Parser(
        prog="tcoupled",
        description="Couple an HPC simulation with AI in one MPI launch.",
        epilog="Run 'tcoupled COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"tcoupled {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = _chosen_command(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(cmd)
            cmd.add_argument("--config", metavar="FILE", default=None,
                             help="read flags from a YAML or TOML file; flags given here win")
            parser.chosen_parser = cmd  # type: ignore[attr-defined]
    return parser


def _parse(argv: list[str]) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse ``argv``; with ``--config FILE``, the file's values become defaults first."""
    from tcoupled.app.configfile import apply_file
    from tcoupled.runtime.mpienv import launcher_rank

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "config", None):
        try:
            apply_file(parser.chosen_parser, args.config)  # type: ignore[attr-defined]
        except TcoupledError as exc:
            _fail(args.command, str(exc), launcher_rank())
            raise SystemExit(exc.exit_code) from None
        args = parser.parse_args(argv)
    return parser, args


def _configure(module: Any, args: argparse.Namespace, comm: Any) -> tuple[Any, Any]:
    """Build the config on rank 0 and broadcast it with any error."""
    config, error = None, None
    if comm is None or comm.Get_rank() == 0:
        world_size = 1 if comm is None else comm.Get_size()
        try:
            config = module.make_config(args, world_size)
        except TcoupledError as exc:
            error = (str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - never leave the other ranks in bcast
            import traceback

            traceback.print_exc(file=sys.stderr)
            error = (f"internal error while validating: {type(exc).__name__}: {exc}", 1)
    if comm is not None and comm.Get_size() > 1:
        config, error = comm.bcast((config, error), root=0)
    return config, error


def _fail(command: str, message: str, rank: int = 0) -> None:
    if rank == 0:
        sys.stderr.write(f"tcoupled {command}: error: {message}\n")
        sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the process exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    comm = None
    if getattr(module, "USES_MPI", False):
        from tcoupled.runtime.mpienv import init_mpi

        comm = init_mpi().COMM_WORLD
    rank = 0 if comm is None else comm.Get_rank()
    config, error = _configure(module, args, comm)
    if error is not None:
        _fail(args.command, error[0], rank)
        return error[1]
    return _run(module, args.command, config, comm)


def _run(module: Any, command: str, config: Any, comm: Any) -> int:
    from tcoupled.runtime.mpienv import abort_with_message, print_traceback_and_abort

    parallel = comm is not None and comm.Get_size() > 1
    try:
        return int(module.run(config, comm) or 0)
    except TcoupledError as exc:
        # Raised on every rank at once (e.g. a collective NaN check): a clean exit.
        # Raised on some ranks only: the others may wait forever, so abort them.
        if parallel and getattr(exc, "ranks_raising", 0) != comm.Get_size():
            if not getattr(exc, "reporter", True):
                import time

                time.sleep(10)  # the reporting rank's abort ends this one: one line in all
            abort_with_message(comm, str(exc), exc.exit_code)
        _fail(command, str(exc), 0 if comm is None else comm.Get_rank())
        return exc.exit_code
    except Exception:
        if parallel:
            print_traceback_and_abort(comm)
        raise
