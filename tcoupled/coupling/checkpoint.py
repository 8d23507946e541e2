"""Checkpoints of a coupled run: one file per sim/train rank per checkpointed cycle.

Layout on disk::

    DIR/checkpoints/cycle-000004/rank-0000.pt   # state after 4 finished cycles

Each rank writes its own file atomically (temporary name, then rename) right
after it has finished the cycle: a sim rank once its slot is published (and,
in time division, released), a train rank once it has trained on the slot and
released it. The solver state a sim rank saves is the state at the cycle
boundary whatever the division, so a checkpoint is one consistent cut as soon
as *every* rank's file for that cycle exists; :func:`latest_complete` returns
the last such cycle, which is where ``--resume`` starts. A run killed while
writing leaves older complete cycles intact.

Files hold tensors and plain containers only (``torch.save`` of state dicts)
and are read with ``torch.load(..., weights_only=True)``: nothing loaded from
disk can run code. torch is imported inside functions.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import ConfigError

CHECKPOINT_DIR = "checkpoints"
_CYCLE = re.compile(r"^cycle-(\d+)$")


def cycle_dir(out: str | Path, cycle: int) -> Path:
    """Folder of the checkpoint taken after ``cycle`` finished cycles."""
    return Path(out) / CHECKPOINT_DIR / f"cycle-{cycle:06d}"


def rank_file(out: str | Path, cycle: int, rank: int) -> Path:
    """File of one rank in the checkpoint after ``cycle`` cycles."""
    return cycle_dir(out, cycle) / f"rank-{rank:04d}.pt"


def save_rank_state(out: str | Path, cycle: int, rank: int, state: dict) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically.

    The state is serialised in memory first, so a failed write (full disk) is an
    ``OSError`` that :func:`~tcoupled.runtime.store.atomic_path` reports naming the file.
    """
    import io

    import torch

    from tcoupled.runtime.store import atomic_path, write_failed

    path = rank_file(out, cycle, rank)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(path.parent, exc) from None
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return path


def load_rank_state(out: str | Path, cycle: int, rank: int) -> dict:
    """Read one rank's state with ``weights_only=True`` (no code is executed)."""
    import torch

    with warnings.catch_warnings():  # a foreign file's pickle-protocol warning is noise here
        warnings.simplefilter("ignore")
        return torch.load(rank_file(out, cycle, rank), map_location="cpu", weights_only=True)


def complete_cycles(out: str | Path, ranks: int) -> list[int]:
    """Cycles whose checkpoint holds a file for every one of ``ranks`` ranks, ascending."""
    root = Path(out) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    cycles = []
    for folder in root.iterdir():
        match = _CYCLE.match(folder.name)
        if match and all(rank_file(out, int(match[1]), r).exists() for r in range(ranks)):
            cycles.append(int(match[1]))
    return sorted(cycles)


def latest_complete(out: str | Path, ranks: int) -> int:
    """Last complete checkpoint (cycles done), checked readable; 0 when there is none.

    Raises
    ------
    ConfigError
        If the latest complete checkpoint cannot be read (a damaged file).
    """
    cycles = complete_cycles(out, ranks)
    if not cycles:
        return 0
    cycle = cycles[-1]
    from tcoupled.runtime.inputs import check_input_file

    for rank in range(ranks):
        check_input_file(rank_file(out, cycle, rank), "--resume: checkpoint", root=out)
        try:
            state = load_rank_state(out, cycle, rank)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same error
            raise ConfigError(f"--resume {str(out)!r}: checkpoint "
                              f"{rank_file(out, cycle, rank)} is unreadable or not a "
                              f"tcoupled checkpoint ({type(exc).__name__}; loaded as plain "
                              "data only, nothing in it was run)") from None
        if not isinstance(state, dict) or state.get("cycle") != cycle:
            raise ConfigError(f"--resume {str(out)!r}: checkpoint "
                              f"{rank_file(out, cycle, rank)} does not hold cycle {cycle}")
    return cycle


def solver_state(solver: Any) -> dict:
    """The solver's owned blocks of ``u`` and ``u_prev`` and its step count (host copies)."""
    import numpy as np
    import torch

    def host(array: Any) -> Any:
        data = array.get() if hasattr(array, "get") else array
        return torch.from_numpy(np.ascontiguousarray(data))

    owned = solver._owned
    return {"u": host(solver.u[owned]), "u_prev": host(solver.u_prev[owned]),
            "steps_done": int(solver.steps_done)}


def restore_solver(solver: Any, state: dict) -> None:
    """Put a state from :func:`solver_state` back (bitwise); halos refill on the next step."""
    owned = solver._owned
    for name in ("u", "u_prev"):
        block = state[name].numpy()
        if block.shape != tuple(solver.local_shape):
            raise ConfigError(f"checkpoint block {block.shape} does not fit this rank's "
                              f"block {tuple(solver.local_shape)}")
        getattr(solver, name)[owned] = solver.xp.asarray(block)
    solver.steps_done = int(state["steps_done"])


def trainer_state(trainer: Any, digests: list) -> dict:
    """Model and optimizer state dicts, the losses, the digests, the replay buffer, the RNG."""
    import torch

    return {"model": trainer.module.state_dict(), "optimizer": trainer.optimizer.state_dict(),
            "losses": [float(v) for v in trainer.losses],
            "replay": trainer.replay.state_dict(),
            "digests": [list(entry) for entry in digests],
            "torch_rng": torch.get_rng_state()}


def restore_trainer(trainer: Any, state: dict) -> list[tuple[int, int, str]]:
    """Load a state from :func:`trainer_state`; return the digest entries."""
    import torch

    trainer.module.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.losses[:] = list(state["losses"])
    trainer.replay.load_state_dict(state["replay"])
    torch.set_rng_state(state["torch_rng"])
    return [(int(c), int(s), str(d)) for c, s, d in state["digests"]]
