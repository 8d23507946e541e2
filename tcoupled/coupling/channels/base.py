"""The one channel interface: slots, the release protocol and backpressure.

A *link* joins one sim rank (the sender) to the train ranks it feeds (its
receivers, one per ensemble member). The sender owns ``slots`` (2: double
buffering) sample buffers of shape ``(frames, nx_local, ny_local)``; the
solver writes consecutive fields into a slot and publishes it, so the pairs
``(slot[i], slot[i + 1])`` are the training samples of one cycle.

Protocol (the same for every channel; only *how the bytes move* differs):

1. ``acquire()`` on the sender returns the slot for the next cycle. Before
   reusing a slot it waits until every receiver has released the cycle that
   last used it -- backpressure; the wait is timed as ``idle``.
2. ``publish()`` makes the slot visible (channel specific) and sends each
   receiver a small READY message carrying the cycle number.
3. ``receive()`` on a receiver waits for READY (``idle``), then fetches the
   slot as a torch tensor (``handoff``; zero-copy channels return a view).
4. ``release()`` tells the sender the slot may be overwritten.

So no sample is dropped or duplicated: a slot is never overwritten before
every receiver released it, and each cycle is delivered exactly once, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tcoupled.runtime.errors import TcoupledError
from tcoupled.runtime.telemetry import PhaseTimer

READY_TAG = 7101
RELEASE_TAG = 7102
DATA_TAG = 7110  # + slot index


@dataclass(frozen=True)
class SlotSpec:
    """Shape and dtype of one slot: ``frames`` consecutive local fields."""

    frames: int
    local_shape: tuple[int, int]
    dtype: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape of a slot."""
        return (self.frames, *self.local_shape)

    @property
    def nbytes(self) -> int:
        """Bytes in one slot."""
        import numpy as np

        return self.frames * math.prod(self.local_shape) * np.dtype(self.dtype).itemsize


@dataclass
class ChannelContext:
    """What channels may need from the run: communicators, a folder, a timer.

    Attributes
    ----------
    world : communicator in which ``feeds``/``sources`` ranks are numbered.
    node_comm : ranks sharing this node (for ``shm``).
    staging_dir : folder for the ``file`` channel.
    timer : this rank's phase timer.
    xp : array module of the solver's fields (``numpy`` or ``cupy``).
    slots : buffers per link (2: double buffering).
    """

    world: Any = None
    node_comm: Any = None
    staging_dir: Any = None
    timer: PhaseTimer | None = None
    xp: Any = None
    slots: int = 2

    def __post_init__(self) -> None:
        if self.timer is None:
            self.timer = PhaseTimer()
        if self.xp is None:
            import numpy

            self.xp = numpy


class Sender:
    """Sender side of a link; subclasses implement ``_slot``, ``_publish``, ``_reuse``."""

    zero_copy = False

    def __init__(self, ctx: ChannelContext, feeds: tuple[int, ...], spec: SlotSpec) -> None:
        self.ctx, self.feeds, self.spec = ctx, tuple(feeds), spec
        self.bytes_copied = 0
        self.published = 0
        self._released = {feed: 0 for feed in self.feeds}
        self._requests: list[Any] = []

    # -- the interface -------------------------------------------------
    def acquire(self) -> Any:
        """Return the writable slot for the next cycle, waiting for it to be free."""
        cycle = self.published
        with self.ctx.timer.phase("idle"):
            self._wait_released(cycle - self.ctx.slots + 1)
        if cycle >= self.ctx.slots:
            self._reuse(cycle % self.ctx.slots, cycle - self.ctx.slots)
        return self._slot(cycle % self.ctx.slots)

    def publish(self) -> None:
        """Make the acquired slot visible to every receiver."""
        cycle = self.published
        with self.ctx.timer.phase("handoff"):
            self._publish(cycle % self.ctx.slots, cycle)
            for feed in self.feeds:
                self._requests.append(self.ctx.world.isend(cycle, dest=feed, tag=READY_TAG))
        self.published += 1

    def wait_released(self) -> None:
        """Block until every receiver released everything published (time division)."""
        with self.ctx.timer.phase("idle"):
            self._wait_released(self.published)

    def close(self) -> None:
        """Wait for outstanding releases and messages, then free resources."""
        self.wait_released()
        for request in self._requests:
            request.wait()
        self._requests.clear()
        self._free()

    # -- helpers -------------------------------------------------------
    def _wait_released(self, count: int) -> None:
        for feed in self.feeds:
            while self._released[feed] < count:
                cycle = self.ctx.world.recv(source=feed, tag=RELEASE_TAG)
                if cycle != self._released[feed]:
                    raise TcoupledError(f"channel protocol: rank {feed} released cycle "
                                        f"{cycle}, expected {self._released[feed]}")
                self._released[feed] += 1

    def _slot(self, slot: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _publish(self, slot: int, cycle: int) -> None:
        """Channel-specific part of ``publish`` (send bytes, write a file ...)."""

    def _reuse(self, slot: int, old_cycle: int) -> None:
        """Prepare ``slot`` (last used by ``old_cycle``) to be handed out again."""

    def _free(self) -> None:
        """Free channel resources."""


class Receiver:
    """Receiver side of a link; subclasses implement ``_fetch``."""

    zero_copy = False

    def __init__(self, ctx: ChannelContext, source: int, spec: SlotSpec,
                 cycles: int) -> None:
        self.ctx, self.source, self.spec, self.cycles = ctx, source, spec, cycles
        self.bytes_copied = 0
        self.received = 0
        self._holding = False
        self._requests: list[Any] = []

    def receive(self) -> Any:
        """Wait for the next cycle's slot and return it as a torch tensor."""
        if self._holding:
            raise TcoupledError("channel protocol: receive() before release() of cycle "
                                f"{self.received - 1}")
        cycle = self.received
        with self.ctx.timer.phase("idle"):
            announced = self._wait_ready(cycle)
        if announced != cycle:
            raise TcoupledError(f"channel protocol: got cycle {announced}, expected {cycle}")
        with self.ctx.timer.phase("handoff"):
            tensor = self._fetch(cycle % self.ctx.slots, cycle)
        self.received += 1
        self._holding = True
        return tensor

    def release(self) -> None:
        """Hand the last received slot back to the sender."""
        cycle = self.received - 1
        with self.ctx.timer.phase("handoff"):
            self._release(cycle % self.ctx.slots, cycle)
            self._requests.append(self.ctx.world.isend(cycle, dest=self.source,
                                                       tag=RELEASE_TAG))
        self._holding = False

    def close(self) -> None:
        """Wait for outstanding messages and free resources."""
        for request in self._requests:
            request.wait()
        self._requests.clear()
        self._free()

    def _wait_ready(self, cycle: int) -> int:
        return self.ctx.world.recv(source=self.source, tag=READY_TAG)

    def _fetch(self, slot: int, cycle: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self, slot: int, cycle: int) -> None:
        """Channel-specific part of ``release``."""

    def _free(self) -> None:
        """Free channel resources."""


class Channel:
    """A channel kind: builds the senders and receivers of one run.

    Construction may be collective over ``ctx.world`` (``shm`` allocates one
    shared window per node); every rank of the run builds the channel once.
    """

    name = ""
    zero_copy = False
    same_node = False      # sender and receivers must share a node
    same_process = False   # sender and receiver are one process

    def __init__(self, ctx: ChannelContext, spec: SlotSpec | None) -> None:
        self.ctx, self.spec = ctx, spec

    def sender(self, feeds: tuple[int, ...]) -> Sender:  # pragma: no cover - abstract
        """Sender for this rank's slot spec, feeding world ranks ``feeds``."""
        raise NotImplementedError

    def receiver(self, source: int, spec: SlotSpec, cycles: int
                 ) -> Receiver:  # pragma: no cover - abstract
        """Receiver of the slots of sim world rank ``source``."""
        raise NotImplementedError

    def close(self) -> None:
        """Free resources shared by the channel's endpoints."""
