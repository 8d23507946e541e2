"""Reading files the user hands tcoupled, hostile ones included.

Every file tcoupled reads back (search spaces, ``--config`` files, a run directory's
``args.json``, ``config.json``, ``summary.json``, journal, checkpoints and
``results.h5``) goes through :func:`check_input_file` first. Whatever is wrong with it
-- missing, a directory, a device or pipe, empty, binary, not UTF-8, a line too long
to be real, a link that leads out of its run directory, invalid JSON, a damaged HDF5
file -- becomes one :class:`InputError` naming the file and the fault (exit 2), before
anything is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import ConfigError

#: longest line accepted in a text input (a SMILES line is far shorter)
MAX_LINE = 100_000
#: largest text input read whole (QM9 as SMILES is ~3 MB)
MAX_TEXT_BYTES = 512 * 2**20


class InputError(ConfigError):
    """A file tcoupled reads is missing, of the wrong kind or damaged (exit 2)."""


def _name(what: str, path: Path) -> str:
    return f"{what} {str(path)!r}" if what else repr(str(path))


def check_input_file(path: str | os.PathLike, what: str = "",
                     root: str | os.PathLike | None = None, allow_empty: bool = False) -> Path:
    """Return ``path`` if it is a non-empty regular file (inside ``root``, if given).

    Raises
    ------
    InputError
        Naming the file and what is wrong with it.
    """
    path = Path(path)
    name = _name(what, path)
    if root is not None and not path.resolve().is_relative_to(Path(root).resolve()):
        raise InputError(f"{name} is a link to {str(path.resolve())!r}, outside the run "
                         f"directory {str(root)!r}")
    if not path.exists():
        raise InputError(f"{name}: no such file" if not path.is_symlink()
                         else f"{name} is a broken link")
    if path.is_dir():
        raise InputError(f"{name} is a directory, expected a file")
    if not path.is_file():
        raise InputError(f"{name} is not a regular file")
    if not allow_empty and path.stat().st_size == 0:
        raise InputError(f"{name} is empty")
    return path


def read_text_input(path: str | os.PathLike, what: str = "",
                    root: str | os.PathLike | None = None, max_line: int = MAX_LINE,
                    allow_empty: bool = False) -> str:
    """Return the UTF-8 text of ``path``, refusing binary, other encodings and huge lines."""
    path = check_input_file(path, what, root, allow_empty)
    name = _name(what, path)
    if path.stat().st_size > MAX_TEXT_BYTES:
        raise InputError(f"{name} is {path.stat().st_size} bytes, more than the "
                         f"{MAX_TEXT_BYTES} a text input may have")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{name} cannot be read: {exc.strerror or exc}") from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(f"{name} is UTF-16 text; save it as UTF-8")
    nul = data.find(bytes(1))
    if nul >= 0:
        raise InputError(f"{name} holds binary data (a NUL byte at offset {nul}), not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8") from None
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > max_line:
            raise InputError(f"{name}: line {number} has {len(line)} characters, more "
                             f"than {max_line}")
    return text


def read_json_input(path: str | os.PathLike, what: str = "",
                    root: str | os.PathLike | None = None, expect: type = dict) -> Any:
    """Return the JSON value in ``path``, which must be an ``expect`` (a mapping by default)."""
    text = read_text_input(path, what, root, max_line=MAX_TEXT_BYTES)
    name = _name(what, Path(path))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name} is not valid JSON (line {exc.lineno}, column "
                         f"{exc.colno}: {exc.msg}): truncated or damaged") from None
    if not isinstance(value, expect):
        raise InputError(f"{name} holds a JSON {type(value).__name__}, expected "
                         f"{'a mapping' if expect is dict else expect.__name__}")
    return value


@contextmanager
def open_h5_input(path: str | os.PathLike, what: str = "",
                  root: str | os.PathLike | None = None) -> Iterator[Any]:
    """Open an HDF5 file for reading; a damaged file or missing dataset is one error."""
    import h5py

    path = check_input_file(path, what, root)
    name = _name(what, path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{name} is not a readable HDF5 file (truncated or damaged: "
                         f"{str(exc).splitlines()[0]})") from None
    try:
        with handle:
            yield handle
    except (KeyError, OSError, ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{name} lacks what a tcoupled run writes or is damaged "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                         ) from None
