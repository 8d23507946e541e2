"""The flags of a run, stored in its directory, and ``--resume DIR`` that reads them back.

A run stores the flags it was started with (``DIR/args.json``, plain JSON). A
resumed run takes them from there; a flag given again with ``--resume`` may
only repeat the stored value, except for the few in ``changeable`` that do not
touch the results (``--quiet``, ``--checkpoint-every``, ...); those not given
again keep their stored values.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

from tcoupled.runtime.errors import ConfigError

ARGS_FILE = "args.json"


VERSION_KEY = "_tcoupled_version"


def store_args(out: str | Path, args: argparse.Namespace) -> Path:
    """Write the parsed flags of a run and the tcoupled version to ``out/args.json``."""
    from tcoupled import __version__
    from tcoupled.runtime.store import write_json

    return write_json(Path(out) / ARGS_FILE, {**vars(args), VERSION_KEY: __version__})


def _check_version(directory: str, stored: dict) -> None:
    """Refuse a run directory written by another (major.minor) version of tcoupled."""
    from tcoupled import __version__

    written = stored.get(VERSION_KEY)
    if not isinstance(written, str):
        raise ConfigError(f"--resume {directory!r}: {ARGS_FILE} names no tcoupled version "
                          "(not written by tcoupled)")
    if written.split(".")[:2] != __version__.split(".")[:2]:
        raise ConfigError(f"--resume {directory!r}: written by tcoupled {written}, this is "
                          f"{__version__}; checkpoints of another version are not trusted")


def _stored(directory: str) -> dict:
    from tcoupled.runtime.inputs import read_json_input

    path = Path(directory) / ARGS_FILE
    if not Path(directory).is_dir():
        raise ConfigError(f"--resume {directory!r}: no such directory")
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"--resume {directory!r}: no {ARGS_FILE} (not a run of this command)")
    stored = read_json_input(path, "--resume:", root=directory)
    _check_version(directory, stored)
    return stored


def _same(given: object, stored: object) -> bool:
    """Compare a flag's value with its JSON round trip (tuples come back as lists)."""
    def plain(value: object) -> object:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(given) == plain(stored)


def resumed_args(args: argparse.Namespace, add_arguments: Callable, directory: str,
                 changeable: Iterable[str]) -> argparse.Namespace:
    """Return the stored flags of the run in ``directory``, refusing changed ones.

    Parameters
    ----------
    args : argparse.Namespace
        The flags of this invocation (with ``--resume``).
    add_arguments : callable
        The command's ``add_arguments``, to tell given flags from defaults.
    directory : str
        The run directory to continue.
    changeable : iterable of str
        Flags (attribute names) that may differ from the stored run.
    """
    stored = _stored(directory)
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    given = {name for name, value in vars(args).items()
             if name in defaults and not _same(value, defaults[name])}
    keep = (set(changeable) & given) | {"resume", "out", "config", "command"}
    missing = sorted(name for name in defaults
                     if name not in stored and name not in set(changeable) | keep)
    if missing:  # today's default for a flag the run never had could change the run
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigError(f"--resume {directory!r}: the run was started before {flags} "
                          "existed; a resumed run keeps its configuration, start a new one")
    for name, value in vars(args).items():
        if name in keep or name not in stored or name not in given:
            continue
        if not _same(value, stored[name]):
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {value} differs from the run in {directory!r} "
                              f"({stored[name]}); a resumed run keeps its configuration")
    merged = dict(vars(args))
    merged.update({k: v for k, v in stored.items() if k not in keep and k != VERSION_KEY})
    merged.update(out=directory, resume=directory)
    return argparse.Namespace(**merged)
