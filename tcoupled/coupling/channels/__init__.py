"""Channels that carry solver fields to the trainers, keyed by name.

One interface (:mod:`tcoupled.coupling.channels.base`): a sender ``acquire()``s a
writable slot, the solver fills it, ``publish()`` hands it off; a receiver
``receive()``s it as a torch tensor and ``release()``s it. A new channel is one
new module and one line in :data:`CHANNELS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from tcoupled.coupling.channels.base import (
    Channel,
    ChannelContext,
    Receiver,
    Sender,
    SlotSpec,
    slots_for,
)
from tcoupled.runtime.errors import ConfigError

#: channel name -> "module:class"
CHANNELS = {
    "inproc": "tcoupled.coupling.channels.inproc:InprocChannel",
    "shm": "tcoupled.coupling.channels.shm:ShmChannel",
    "mpi": "tcoupled.coupling.channels.mpi:MpiChannel",
    "file": "tcoupled.coupling.channels.file:FileChannel",
}

#: channels that never copy the field (checked by the tests)
ZERO_COPY = ("inproc", "shm")


def default_channel(division: str, train_ranks: int) -> str:
    """The channel ``couple`` uses when ``--channel`` is not given.

    Space division moves data between separate ranks (``mpi``); time division hands the
    field over in place: ``inproc`` when the sim ranks train themselves, else ``shm``.
    """
    if division == "space":
        return "mpi"
    return "inproc" if train_ranks == 0 else "shm"


def channel_class(name: str) -> type[Channel]:
    """Return the channel class registered as ``name``."""
    if name not in CHANNELS:
        raise ConfigError(f"--channel must be one of {', '.join(CHANNELS)}, got {name!r}")
    module_name, class_name = CHANNELS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def open_channel(name: str, ctx: ChannelContext, spec: SlotSpec | None) -> Any:
    """Build channel ``name`` (collective over the run for ``shm``).

    ``spec`` is this rank's slot spec when it sends (a sim rank), else ``None``.
    """
    return channel_class(name)(ctx, spec)


__all__ = ["CHANNELS", "ZERO_COPY", "Channel", "ChannelContext", "Receiver", "Sender",
           "SlotSpec", "channel_class", "default_channel", "open_channel", "slots_for"]
