"""Where tcoupled finds programs and data files that are not part of its Python environment.

One function for the whole package and its tests: :func:`find_program`. Everything
tcoupled needs is installed by pip into its environment; system programs (the ``xtb``
executable, ``shellcheck``, ``redis-server``, ``ss``) and system data files (xtb's
``param_ipea-xtb.txt``) only enable optional cross-checks and benchmarks. Setting
``TCOUPLED_NO_SYSTEM_PROGRAMS=1`` hides everything outside the Python environment
(``sys.prefix``), so a machine with them installed behaves like a fresh one: CI runs the
suite once that way and once with them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

#: the switch: "1" hides every program and file outside the Python environment.
HIDE_VARIABLE = "TCOUPLED_NO_SYSTEM_PROGRAMS"


def hidden() -> bool:
    """Whether system programs and files are hidden (``TCOUPLED_NO_SYSTEM_PROGRAMS=1``)."""
    return os.environ.get(HIDE_VARIABLE, "") not in ("", "0")


def _inside_environment(path: Path) -> bool:
    """Whether ``path`` lies in the Python environment (symbolic links not followed).

    The environment's ``python`` usually links to the system's, and is still its own.
    """
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(sys.prefix))


def find_program(name: str) -> str | None:
    """Full path of the program ``name`` on ``PATH``, or ``None`` (also when hidden).

    With the switch set, only programs inside the Python environment are found.
    """
    found = shutil.which(name)
    if found is None or (hidden() and not _inside_environment(Path(found))):
        return None
    return found


def find_file(name: str, folders: Iterable[Path]) -> Path | None:
    """The first ``folder / name`` that exists, honouring the switch like :func:`find_program`."""
    for folder in folders:
        candidate = Path(folder) / name
        if candidate.is_file() and not (hidden() and not _inside_environment(candidate)):
            return candidate
    return None


def missing_reason(name: str, package: str | None = None) -> str:
    """One line saying why ``name`` is unavailable (for a skip reason)."""
    where = f" (Debian package {package or name})"
    if hidden() and shutil.which(name) is not None:
        return f"{name} is hidden by {HIDE_VARIABLE}=1"
    return f"{name} is not installed{where}"
