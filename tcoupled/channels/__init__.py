"""Channels that carry solver fields to the trainers, keyed by name.

One interface (:mod:`tcoupled.channels.base`): a sender ``acquire()``s a
writable slot, the solver fills it, ``publish()`` hands it off; a receiver
``receive()``s it as a torch tensor and ``release()``s it. A new channel is one
new module and one line in :data:`CHANNELS`.
"""

from __future__ import annotations

import importlib
from typing import Any

from tcoupled.channels.base import Channel, ChannelContext, Receiver, Sender, SlotSpec
from tcoupled.errors import ConfigError

#: channel name -> "module:class"
CHANNELS = {
    "inproc": "tcoupled.channels.inproc:InprocChannel",
    "shm": "tcoupled.channels.shm:ShmChannel",
    "mpi": "tcoupled.channels.mpi:MpiChannel",
    "file": "tcoupled.channels.file:FileChannel",
}

#: channels that never copy the field (checked by the tests)
ZERO_COPY = ("inproc", "shm")


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
           "SlotSpec", "channel_class", "open_channel"]
