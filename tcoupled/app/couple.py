"""``tcoupled couple``: the solver feeds a DDP-trained CNN ensemble in one launch.

Sim ranks step the wave solver and hand ``(u(t), u(t+dt))`` samples of their
own block to train ranks through a channel (``inproc``, ``shm``, ``mpi``,
``file``); each ensemble member trains with DDP over its group of train
ranks. ``--division time`` makes sim and train take turns, ``space`` runs them
concurrently with double buffering. The job itself is :mod:`tcoupled.workflow.couple`.
"""

from __future__ import annotations

from tcoupled.workflow.couple import run
from tcoupled.workflow.couple_config import make_config
from tcoupled.workflow.couple_flags import add_arguments

HELP = "couple the wave solver with a DDP-trained CNN ensemble (time or space division)"
USES_MPI = True

__all__ = ["HELP", "USES_MPI", "add_arguments", "make_config", "run"]
