"""``mpi``: point-to-point messages from the sim rank to each of its train ranks.

The sender ``Isend``s the published slot to every receiver; each receiver
keeps ``slots`` receive buffers with an ``Irecv`` pre-posted for the next
cycles, so a transfer overlaps training on the previous slot (double
buffering). Device slots go straight to MPI when it is CUDA-aware and are
staged through host memory otherwise; every copy is counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcoupled.coupling.channels.base import (
    DATA_TAG,
    Channel,
    ChannelContext,
    Receiver,
    Sender,
    SlotSpec,
)
from tcoupled.coupling.channels.device import (
    as_tensor,
    is_device_array,
    synchronize,
    to_host,
)
from tcoupled.runtime.gpu import cuda_aware_mpi


class MpiSender(Sender):
    """Slots are the solver's own arrays; publish sends them."""

    def __init__(self, ctx: ChannelContext, feeds: tuple[int, ...], spec: SlotSpec) -> None:
        super().__init__(ctx, feeds, spec)
        self.buffers = [ctx.xp.zeros(spec.shape, dtype=spec.dtype) for _ in range(ctx.slots)]
        self.cuda_aware = cuda_aware_mpi()
        self._sends: list[list[Any]] = [[] for _ in range(ctx.slots)]
        self._staged: list[Any] = [None] * ctx.slots

    def _slot(self, slot: int) -> Any:
        return self.buffers[slot]

    def _publish(self, slot: int, cycle: int) -> None:
        synchronize(self.ctx.xp)
        message = self.buffers[slot]
        if is_device_array(message) and not self.cuda_aware:
            message = to_host(message)          # staged through the host
            self.bytes_copied += self.spec.nbytes
            self._staged[slot] = message        # alive until the sends complete
        for feed in self.feeds:
            self._sends[slot].append(self.ctx.world.Isend(message, dest=feed,
                                                          tag=DATA_TAG + slot))
            self.bytes_copied += self.spec.nbytes

    def _reuse(self, slot: int, old_cycle: int) -> None:
        self._complete(slot)

    def _complete(self, slot: int) -> None:
        for request in self._sends[slot]:
            request.Wait()
        self._sends[slot].clear()
        self._staged[slot] = None

    def _free(self) -> None:
        for slot in range(self.ctx.slots):
            self._complete(slot)


class MpiReceiver(Receiver):
    """Receive buffers with pre-posted ``Irecv``s for the next cycles."""

    def __init__(self, ctx: ChannelContext, source: int, spec: SlotSpec, cycles: int) -> None:
        super().__init__(ctx, source, spec, cycles)
        device = is_device_array(ctx.xp.zeros(1))
        self.upload = device and not cuda_aware_mpi()
        module = np if (self.upload or not device) else ctx.xp
        self.buffers = [module.empty(spec.shape, dtype=spec.dtype) for _ in range(ctx.slots)]
        self._recvs: list[Any] = [None] * ctx.slots
        for cycle in range(min(ctx.slots, cycles)):
            self._post(cycle)

    def _post(self, cycle: int) -> None:
        slot = cycle % self.ctx.slots
        self._recvs[slot] = self.ctx.world.Irecv(self.buffers[slot], source=self.source,
                                                 tag=DATA_TAG + slot)

    def _fetch(self, slot: int, cycle: int) -> Any:
        self._recvs[slot].Wait()
        self._recvs[slot] = None
        tensor = as_tensor(self.buffers[slot])
        if self.upload:
            self.bytes_copied += self.spec.nbytes
            tensor = tensor.to("cuda")
        return tensor

    def _release(self, slot: int, cycle: int) -> None:
        if cycle + self.ctx.slots < self.cycles:
            self._post(cycle + self.ctx.slots)

    def _free(self) -> None:
        for request in self._recvs:
            if request is not None:
                request.Cancel()
                request.Wait()


class MpiChannel(Channel):
    """Message-passing channel (the default for space division)."""

    name = "mpi"

    def sender(self, feeds: tuple[int, ...]) -> MpiSender:
        """Sender sending each published slot to ``feeds``."""
        return MpiSender(self.ctx, feeds, self.spec)

    def receiver(self, source: int, spec: SlotSpec, cycles: int) -> MpiReceiver:
        """Receiver of ``cycles`` slots from ``source``."""
        return MpiReceiver(self.ctx, source, spec, cycles)
