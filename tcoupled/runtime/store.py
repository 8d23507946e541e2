"""Run directories and results on disk: ``results.h5``, ``summary.json``, the log.

Every file is written atomically (to a temporary name in the same directory,
then renamed), so a killed run never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import TcoupledError

RESULTS_FILE = "results.h5"
SUMMARY_FILE = "summary.json"
LOG_FILE = "run.log"


def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and check that files can be written in it.

    Raises
    ------
    TcoupledError
        If the directory cannot be created or is not writable.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TcoupledError(f"--out {str(path)!r} is not writable: {reason}") from None
    return out


def write_failed(path: str | os.PathLike, exc: OSError) -> TcoupledError:
    """The one-line error for a file that could not be written (full disk, quota...)."""
    reason = os.strerror(exc.errno) if exc.errno else (str(exc).splitlines() or ["error"])[0]
    return TcoupledError(f"cannot write {os.fspath(path)}: {reason}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` on success.

    The temporary file is removed on every exit path. An ``OSError`` while
    writing (full disk, file size limit, permissions) becomes a
    :class:`TcoupledError` naming ``final``; the previous ``final``, if any, is kept.
    """
    final = Path(final)
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_failed(final, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates the file 0600; give it the mode any new file gets (umask),
        # never wider.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except OSError as exc:
        raise write_failed(final, exc) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    """The process umask (read without changing it for more than an instant)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def to_json(obj: Any, **kwargs: Any) -> str:
    """Serialise ``obj`` to JSON, converting NumPy scalars/arrays and paths."""
    return json.dumps(obj, default=_json_default, **kwargs)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(obj, indent=2, sort_keys=True) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text())


def write_summary(out_dir: str | os.PathLike, summary: dict) -> Path:
    """Write ``summary.json`` in ``out_dir``."""
    return write_json(Path(out_dir) / SUMMARY_FILE, summary)


@contextlib.contextmanager
def open_results(out_dir: str | os.PathLike, config: dict | None = None,
                 command: str = "") -> Iterator[Any]:
    """Open a new ``results.h5`` for writing; it appears only when complete.

    The file carries self-describing root attributes: the tcoupled version,
    the command and the resolved configuration as JSON.
    """
    import h5py

    from tcoupled import __version__

    with atomic_path(Path(out_dir) / RESULTS_FILE) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["tcoupled_version"] = __version__
            h5.attrs["command"] = command
            h5.attrs["config_json"] = to_json(config or {}, sort_keys=True)
            yield h5


def read_config(results_path: str | os.PathLike) -> dict:
    """Return the resolved configuration stored in a ``results.h5``."""
    import h5py

    with h5py.File(results_path, "r") as h5:
        return json.loads(h5.attrs["config_json"])
