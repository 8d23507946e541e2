"""``inproc``: sim and train are one process; the slot becomes a tensor through DLPack.

No message and no copy: the receiver views the sender's slot array directly.
Sender and receiver take turns in one process (time division), so a receive
with nothing published, or an acquire of a slot still held, is a schedule bug
and raises instead of deadlocking.
"""

from __future__ import annotations

from typing import Any

from tcoupled.coupling.channels.base import Channel, Receiver, Sender, SlotSpec
from tcoupled.coupling.channels.copies import address
from tcoupled.coupling.channels.device import as_tensor, synchronize
from tcoupled.coupling.channels.ring import RingSlots, anonymous_ring
from tcoupled.runtime.errors import TcoupledError


class InprocSender(Sender):
    """Slots are windows of a ring (host frames with a halo), else arrays allocated once."""

    zero_copy = True

    def __init__(self, ctx: Any, feeds: tuple[int, ...], spec: SlotSpec) -> None:
        super().__init__(ctx, (), spec)
        self.ring: RingSlots | None = None
        self.buffers: list[Any] = []
        if RingSlots.usable(spec, ctx.xp):
            self.ring = RingSlots(anonymous_ring(spec, RingSlots.count(spec, ctx.slots)), spec)
        else:
            self.buffers = [spec.zeros(ctx.xp) for _ in range(ctx.slots)]
        self.released_count = 0

    def _wait_released(self, count: int) -> None:
        if self.released_count < count:
            raise TcoupledError(f"inproc channel: cycle {self.released_count} is still "
                                "held by the trainer of this process")

    def _free(self) -> None:
        if self.ring is not None:
            self.ring.close()

    def _publish(self, slot: int, cycle: int) -> None:
        synchronize(self.ctx.xp)


class InprocReceiver(Receiver):
    """Views the sender's slot in place."""

    zero_copy = True

    def __init__(self, ctx: Any, sender: InprocSender, spec: SlotSpec, cycles: int) -> None:
        super().__init__(ctx, ctx.world.Get_rank() if ctx.world is not None else 0,
                         spec, cycles)
        self.sender = sender

    def _wait_ready(self, cycle: int) -> tuple[int, int]:
        if self.sender.published <= cycle:
            raise TcoupledError(f"inproc channel: cycle {cycle} was never published")
        return cycle, self.sender.offsets[cycle % self.ctx.slots]

    def _slot_address(self, slot: int, cycle: int) -> int:
        return address(self.sender._window(cycle))

    def _fetch(self, slot: int, cycle: int) -> Any:
        return self.spec.owned(as_tensor(self.sender._window(cycle)))

    def release(self) -> None:
        """Hand the slot back (no message: the sender is this process)."""
        self.sender.released_count += 1
        self._holding = False


class InprocChannel(Channel):
    """Same-process channel (``--train-ranks 0``)."""

    name = "inproc"
    zero_copy = True
    same_node = True
    same_process = True

    def __init__(self, ctx: Any, spec: SlotSpec | None) -> None:
        super().__init__(ctx, spec)
        self._sender: InprocSender | None = None

    def sender(self, feeds: tuple[int, ...]) -> InprocSender:
        """Build the sender; its receiver is built in the same process."""
        self._sender = InprocSender(self.ctx, feeds, self.spec)
        return self._sender

    def receiver(self, source: int, spec: SlotSpec, cycles: int) -> InprocReceiver:
        """Receiver viewing this process's sender."""
        if self._sender is None:
            raise TcoupledError("inproc channel: build the sender before the receiver")
        return InprocReceiver(self.ctx, self._sender, spec, cycles)
