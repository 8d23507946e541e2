"""The checkpoint of a stopped ``wave`` run: each rank's owned blocks and the step count.

Written only when a run is stopped by SIGTERM or SIGINT (``wave`` runs are short; a
killed run starts again). One ``.npz`` per rank in ``OUT/checkpoint/``, written to a
temporary name and renamed, read back with ``allow_pickle=False`` (nothing in it can
run code). ``wave --resume OUT`` continues from it and ends with the same field, bitwise,
as an uninterrupted run on the same ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.runtime.errors import ConfigError

CHECKPOINT_DIR = "checkpoint"


def rank_file(out: str | Path, rank: int) -> Path:
    """``OUT/checkpoint/rank-RRRR.npz``."""
    return Path(out) / CHECKPOINT_DIR / f"rank-{rank:04d}.npz"


def save(out: str | Path, rank: int, solver: Any, stats: dict) -> Path:
    """Write this rank's blocks of ``u`` and ``u_prev``, its step count and ``stats``."""
    from tcoupled.runtime.store import atomic_path, write_failed

    def host(array: Any) -> np.ndarray:
        return np.ascontiguousarray(array.get() if hasattr(array, "get") else array)

    path = rank_file(out, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    owned = solver._owned
    numbers = {k: np.float64(np.nan if v is None else v) for k, v in stats.items()
               if k in ("energy_first",)}
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, u=host(solver.u[owned]), u_prev=host(solver.u_prev[owned]),
                     steps_done=np.int64(solver.steps_done), **numbers)
    except OSError as exc:
        raise write_failed(path, exc) from None
    return path


def check(out: str | Path, ranks: int) -> int:
    """The step count of the complete checkpoint in ``out`` for ``ranks`` ranks.

    Raises
    ------
    ConfigError
        If a rank's file is missing, or any file is not a readable checkpoint.
    """
    steps = {load(out, rank)[0] for rank in range(ranks)}
    if len(steps) != 1:
        raise ConfigError(f"--resume {str(out)!r}: the ranks' checkpoints hold different "
                          f"steps {sorted(steps)}")
    extra = sorted(p.name for p in (Path(out) / CHECKPOINT_DIR).glob("rank-*.npz")
                   if int(p.stem.split("-")[1]) >= ranks)
    if extra:
        raise ConfigError(f"--resume {str(out)!r}: checkpoint written by more ranks "
                          f"({extra[-1]}); resume on as many ranks as the run had")
    return steps.pop()


def load(out: str | Path, rank: int) -> tuple[int, dict]:
    """Return (steps done, arrays and numbers) of one rank's checkpoint file."""
    from tcoupled.runtime.inputs import check_input_file

    path = check_input_file(rank_file(out, rank), "--resume: checkpoint", root=out)
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {key: data[key] for key in data.files}
        return int(state["steps_done"]), state
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error
        raise ConfigError(f"--resume {str(out)!r}: checkpoint {str(path)!r} is unreadable "
                          f"or not a wave checkpoint ({type(exc).__name__})") from None


def restore(out: str | Path, solver: Any) -> dict:
    """Put this rank's checkpoint back into ``solver`` (bitwise); return its numbers."""
    steps, state = load(out, solver.cart.Get_rank())
    owned = solver._owned
    for name in ("u", "u_prev"):
        if state[name].shape != tuple(solver.local_shape):
            raise ConfigError(f"checkpoint block {state[name].shape} does not fit this "
                              f"rank's block {tuple(solver.local_shape)}")
        getattr(solver, name)[owned] = solver.xp.asarray(state[name])
    solver.steps_done = steps
    return {k: float(state[k]) for k in ("energy_first",) if k in state}
