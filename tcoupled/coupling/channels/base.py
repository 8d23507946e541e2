"""The one channel interface: slots, the release protocol and backpressure.

A *link* joins one sim rank (the sender) to the train ranks it feeds (its
receivers, one per ensemble member). The sender owns ``slots`` (2: double
buffering) sample buffers of shape ``(frames, nx_local + 2 pad, ny_local + 2 pad)``; the
solver steps straight into the frames of a slot (``pad`` is its halo) and
publishes it, so the pairs ``(slot[i], slot[i + 1])`` of the owned blocks are
the training samples of one cycle. Receivers see the owned blocks only.

Protocol (the same for every channel; only *how the bytes move* differs):

1. ``acquire()`` on the sender returns the slot for the next cycle. Before
   reusing a slot it waits until every receiver has released the cycle that
   last used it -- backpressure; the wait is timed as ``idle``.
2. ``publish()`` makes the slot visible (channel specific) and sends each
   receiver a small READY message carrying the cycle number and where the
   solver wrote the frames (zero-copy channels check it, see below).
3. ``receive()`` on a receiver waits for READY (``idle``), then fetches the
   slot as a torch tensor (``handoff``; zero-copy channels return a view).
4. ``release()`` tells the sender the slot may be overwritten.

Copies of field data are made or declared through the endpoint's
:class:`~tcoupled.coupling.channels.copies.CopyLedger` (``bytes_copied``).
Zero-copy channels check at run time that the receiver's tensor starts at
the bytes the solver wrote (``verified``).

So no sample is dropped or duplicated: a slot is never overwritten before
every receiver released it, and each cycle is delivered exactly once, in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tcoupled.coupling.channels.copies import CopyLedger, address
from tcoupled.runtime.errors import TcoupledError
from tcoupled.runtime.telemetry import PhaseTimer
from tcoupled.runtime.waiting import recv_polling, wait_polling

READY_TAG = 7101
RELEASE_TAG = 7102
DATA_TAG = 7110  # + slot index


@dataclass(frozen=True)
class SlotSpec:
    """Shape and dtype of one slot: ``frames`` consecutive local fields.

    ``pad`` is the halo width around each frame in memory: the solver steps in the
    padded frames, receivers get the owned blocks (:attr:`shape`). ``carried`` is how
    many frames a slot shares with the previous one (the levels a cycle starts from).
    """

    frames: int
    local_shape: tuple[int, int]
    dtype: str
    pad: int = 0
    carried: int = 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape a receiver's tensor has (the owned blocks of the frames)."""
        return (self.frames, *self.local_shape)

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        """Shape of a slot in memory (frames with their halo)."""
        return (self.frames, *(n + 2 * self.pad for n in self.local_shape))

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        import numpy as np

        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of field data in one slot (owned blocks)."""
        return self.frames * math.prod(self.local_shape) * self.itemsize

    @property
    def padded_nbytes(self) -> int:
        """Bytes of one slot in memory."""
        return math.prod(self.padded_shape) * self.itemsize

    @property
    def interior_offset(self) -> int:
        """Bytes from a slot's first element to its first owned point."""
        return (self.pad * self.padded_shape[2] + self.pad) * self.itemsize

    def owned(self, slot: Any) -> Any:
        """View of the owned blocks of a padded slot (array or tensor)."""
        p = self.pad
        return slot if p == 0 else slot[:, p:-p, p:-p]

    def zeros(self, xp: Any) -> Any:
        """A zeroed slot (padded) of array module ``xp``."""
        return xp.zeros(self.padded_shape, dtype=self.dtype)


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
    slots : buffers per link (:func:`slots_for`: 1 in time, 2 in space division).
    ledger : this rank's copy ledger (every endpoint counts into it).
    """

    world: Any = None
    node_comm: Any = None
    staging_dir: Any = None
    timer: PhaseTimer | None = None
    xp: Any = None
    slots: int = 2
    ledger: CopyLedger | None = None

    def __post_init__(self) -> None:
        if self.ledger is None:
            self.ledger = CopyLedger()
        if self.timer is None:
            self.timer = PhaseTimer()
        if self.xp is None:
            import numpy

            self.xp = numpy


def slots_for(division: str) -> int:
    """Slots per link: 2 (double buffering) for ``space``, 1 for ``time``.

    In time division the sim waits for each release before it acquires the next slot:
    a second slot would double the link's memory and make each handoff stream through
    memory the caches hold less of (4096^2 float32 written and read on one core: two
    alternating 64 MiB buffers took 1.22-1.33x the time of one, on the development VM).
    """
    return 1 if division == "time" else 2


class Sender:
    """Sender side of a link; subclasses implement ``_slot``, ``_publish``, ``_reuse``."""

    zero_copy = False

    def __init__(self, ctx: ChannelContext, feeds: tuple[int, ...], spec: SlotSpec) -> None:
        self.ctx, self.feeds, self.spec = ctx, tuple(feeds), spec
        self.ledger = ctx.ledger.child()
        self.published = 0
        self.in_place = True   # every published slot was written by the solver in place
        self.offsets = [0] * ctx.slots  # where in each slot the solver's frames start
        self._released = {feed: 0 for feed in self.feeds}
        self._requests: list[Any] = []

    # -- the interface -------------------------------------------------
    def acquire(self) -> Any:
        """Return the writable slot for the next cycle, waiting for it to be free."""
        cycle = self.published
        with self.ctx.timer.phase("idle"):
            self._wait_released(cycle - self.ctx.slots + 1)
        with self.ctx.timer.phase("handoff"):
            if cycle >= self.ctx.slots:
                self._reuse(cycle % self.ctx.slots, cycle - self.ctx.slots)
            return self._window(cycle)

    @property
    def bytes_copied(self) -> int:
        """Bytes of field data this endpoint copied (its ledger)."""
        return self.ledger.bytes

    def publish(self, written: list[int] | None = None) -> None:
        """Make the acquired slot visible to every receiver.

        ``written`` holds the addresses of the frames the solver wrote this cycle
        (``None``: the caller wrote the slot itself); they are checked against the
        slot's frames, and the first one's offset in the slot goes out with READY.
        """
        cycle = self.published
        slot = cycle % self.ctx.slots
        with self.ctx.timer.phase("handoff"):
            frames = self._window(cycle)
            start = address(frames)
            if written is not None:
                step = frames.strides[0]
                self.in_place &= written == [start + i * step for i in range(len(written))]
            offset = self.offsets[slot] = (written[0] if written else start) - start
            self._publish(slot, cycle)
            for feed in self.feeds:
                self._requests.append(self.ctx.world.isend((cycle, offset), dest=feed,
                                                           tag=READY_TAG))
        self.published += 1

    def wait_released(self) -> None:
        """Block until every receiver released everything published (time division)."""
        with self.ctx.timer.phase("handoff"):
            self._drive()  # the receivers are taking the slot now: move the data
        with self.ctx.timer.phase("idle"):
            self._wait_released(self.published)

    def close(self) -> None:
        """Wait for outstanding releases and messages, then free resources."""
        self.wait_released()
        wait_polling(self._requests)
        self._requests.clear()
        self._free()

    # -- helpers -------------------------------------------------------
    def _wait_released(self, count: int) -> None:
        for feed in self.feeds:
            while self._released[feed] < count:
                cycle = recv_polling(self.ctx.world, feed, RELEASE_TAG)
                if cycle != self._released[feed]:
                    raise TcoupledError(f"channel protocol: rank {feed} released cycle "
                                        f"{cycle}, expected {self._released[feed]}")
                self._released[feed] += 1

    def _drive(self) -> None:
        """Finish moving the published data while the receivers take it (default: nothing)."""

    #: a ring of frames whose windows are the slots (inproc/shm on the CPU), else None
    ring: Any = None
    #: the slot buffers (padded frames) when there is no ring
    buffers: list[Any]

    def _slot(self, slot: int) -> Any:
        return self.buffers[slot]

    def _window(self, cycle: int) -> Any:
        """The (padded) frames of ``cycle``: its window of the ring, or its slot."""
        return self.ring.window(cycle) if self.ring else self._slot(cycle % self.ctx.slots)

    def same_memory(self, a: Any, b: Any) -> bool:
        """Whether arrays ``a`` and ``b`` start at the same bytes (a ring maps them twice)."""
        return self.ring.same(a, b) if self.ring else address(a) == address(b)

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
        self.ledger = ctx.ledger.child()
        self.received = 0
        self.verified = self.zero_copy  # every tensor started at the bytes the solver wrote
        self._holding = False
        self._requests: list[Any] = []

    def receive(self) -> Any:
        """Wait for the next cycle's slot and return it as a torch tensor."""
        if self._holding:
            raise TcoupledError("channel protocol: receive() before release() of cycle "
                                f"{self.received - 1}")
        cycle = self.received
        with self.ctx.timer.phase("idle"):
            announced, offset = self._wait_ready(cycle)
        if announced != cycle:
            raise TcoupledError(f"channel protocol: got cycle {announced}, expected {cycle}")
        with self.ctx.timer.phase("handoff"):
            slot = cycle % self.ctx.slots
            tensor = self._fetch(slot, cycle)
            if self.zero_copy:
                expected = self._slot_address(slot, cycle) + offset + self.spec.interior_offset
                self.verified &= tensor.data_ptr() == expected
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
        wait_polling(self._requests)
        self._requests.clear()
        self._free()

    @property
    def bytes_copied(self) -> int:
        """Bytes of field data this endpoint copied (its ledger)."""
        return self.ledger.bytes

    def _wait_ready(self, cycle: int) -> tuple[int, int]:
        return recv_polling(self.ctx.world, self.source, READY_TAG)

    def _slot_address(self, slot: int, cycle: int) -> int:
        """Address, in this process, of the sender's frames of ``cycle`` (zero-copy channels)."""
        raise NotImplementedError

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
