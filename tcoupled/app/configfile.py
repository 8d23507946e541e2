"""Flags from a YAML or TOML file (``--config run.yaml``); flags on the command line win.

Keys are flag names without the leading dashes (``sim-ranks`` or ``sim_ranks``).
An unknown key or a value of the wrong type is an error naming the key and the
file. Files are parsed as plain data (``yaml.safe_load``, ``tomllib``): nothing in
them can run code.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import ConfigError

#: Flags whose value is a place tcoupled writes to. From a configuration file they
#: must be relative paths that stay below the working directory: a shared or
#: downloaded file cannot make a run write elsewhere (flags typed on the command
#: line are the user's own choice and are not restricted).
WRITE_PATH_FLAGS = ("out", "fp-cache", "resume")


def load_file(path: str | Path) -> dict:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) mapping."""
    from tcoupled.runtime.inputs import read_text_input

    path = Path(path)
    text = read_text_input(path, "--config")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--config {str(path)!r} is not valid: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {str(path)!r} must hold a mapping of flag: value")
    return data


def _coerce(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Convert a file value with the flag's own ``type`` (element-wise for lists)."""
    convert = action.type
    if action.nargs == 0:  # a switch (store_true/store_false): the file says true or false
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false in {source}, got {value!r}")
        return value
    if action.nargs not in (None, "?") and not isinstance(value, list):
        value = [value] if action.nargs in ("*", "+") or action.nargs is None else value
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list of {action.nargs} values in {source}, "
                              f"got {value!r}")
    if isinstance(action.nargs, int) and len(value) != action.nargs:
        raise ConfigError(f"{key}: expected {action.nargs} values in {source}, got {value!r}")
    if convert is None:
        return value
    try:
        if isinstance(value, list):
            return [convert(str(v)) if isinstance(v, str) else convert(v) for v in value]
        return convert(value) if not isinstance(value, str) or convert is not str else value
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"{key}: bad value {value!r} in {source} ({exc})") from None


def apply_file(parser: argparse.ArgumentParser, path: str | Path) -> None:
    """Make the values in ``path`` the defaults of ``parser`` (so flags override them).

    ``parser`` is the command's parser from :mod:`tcoupled.app.cli`, which keeps its flags
    in ``flag_actions``.
    """
    actions = parser.flag_actions
    defaults = {}
    for raw_key, value in load_file(path).items():
        key = str(raw_key).replace("_", "-")
        if key not in actions or key in ("config", "help"):
            raise ConfigError(f"unknown key {raw_key!r} in --config {str(path)!r}")
        action = actions[key]
        value = _coerce(action, key, value, str(path))
        if key in WRITE_PATH_FLAGS and value:
            _check_contained(key, str(value), str(path))
        defaults[action.dest] = value
    parser.set_defaults(**defaults)


def _check_contained(key: str, value: str, source: str) -> None:
    """Refuse an absolute path or one that climbs out with ``..``."""
    parts = Path(value).parts
    if Path(value).is_absolute() or ".." in parts or value.startswith("~"):
        raise ConfigError(f"{key}: {value!r} in {source} points outside the run's directory; "
                          "a configuration file may only name relative paths below it "
                          f"(give --{key} on the command line instead)")
