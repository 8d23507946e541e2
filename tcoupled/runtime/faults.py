"""Fault injection for the failure-behaviour tests (``TCOUPLED_FAULT``).

A fault is ``ACTION:ROLE:POINT=N[:rank=R]``, several separated by ``;``:

``nan:sim:step=40``          write NaN into the field after step 40 (all sim ranks);
``raise:train:cycle=1:rank=0`` raise ``RuntimeError`` when train rank 0 reaches cycle 1;
``exit:farm:task=2``          ``os._exit(17)`` when a farm rank reaches its third task;
``sigterm:sim:step=30:rank=0`` send SIGTERM (``sigint``: SIGINT) to this process at step 30,
                             as a batch system or Ctrl-C would (tests of clean stops).

``rank`` is the rank within the role's communicator. Without ``TCOUPLED_FAULT``
every hook is a no-op costing one dictionary lookup. Used only by tests and by
users rehearsing failures; it never runs unless asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from tcoupled.runtime.errors import ConfigError
from tcoupled.runtime.mpienv import env

ACTIONS = ("nan", "raise", "exit", "sigterm", "sigint")


@dataclass(frozen=True)
class Fault:
    """One injected fault."""

    action: str
    role: str
    point: str
    index: int
    rank: int | None = None


def parse(text: str) -> tuple[Fault, ...]:
    """Parse a ``TCOUPLED_FAULT`` value."""
    faults = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        fields = item.split(":")
        try:
            action, role, where, *rest = fields
            point, index = where.split("=")
            rank = int(rest[0].split("=")[1]) if rest else None
            fault = Fault(action, role, point, int(index), rank)
        except (ValueError, IndexError):
            raise ConfigError(f"TCOUPLED_FAULT item {item!r} is not ACTION:ROLE:POINT=N"
                              "[:rank=R]") from None
        if action not in ACTIONS:
            raise ConfigError(f"TCOUPLED_FAULT action must be one of {', '.join(ACTIONS)}, "
                              f"got {action!r}")
        faults.append(fault)
    return tuple(faults)


@lru_cache(maxsize=1)
def _active() -> tuple[Fault, ...]:
    return parse(env("FAULT", "") or "")


def fault_at(role: str, point: str, index: int, rank: int) -> str | None:
    """The action to inject at this point, if any (``None`` almost always)."""
    for fault in _active():
        if (fault.role, fault.point, fault.index) == (role, point, index) and (
                fault.rank is None or fault.rank == rank):
            return fault.action
    return None


def armed(role: str) -> bool:
    """Whether any fault is set for ``role`` (lets a hot loop skip its per-item hooks)."""
    return any(fault.role == role for fault in _active())


def inject(role: str, point: str, index: int, rank: int) -> str | None:
    """Carry out ``raise`` and ``exit`` faults here; return ``nan`` for the caller to apply."""
    action = fault_at(role, point, index, rank)
    if action == "raise":
        raise RuntimeError(f"injected fault: {role} rank {rank} at {point} {index}")
    if action == "exit":
        os._exit(17)
    if action in ("sigterm", "sigint"):
        import signal

        os.kill(os.getpid(), signal.SIGTERM if action == "sigterm" else signal.SIGINT)
        return None
    return action
