"""``shm``: a sim rank and its train ranks share a node; the slot is read in place.

CPU: one MPI shared-memory window per node (``MPI_Win_allocate_shared`` over
the node communicator); each sim rank owns ``slots`` slots in it and its
train ranks view them through ``Shared_query`` -- a NumPy view of the same
physical memory, turned into a tensor through DLPack. GPU: the slots are
device arrays exported once through CUDA IPC (``ipcGetMemHandle``) and opened
by the receivers (``ipcOpenMemHandle``). Either way nothing is copied.

Host frames with a halo (the solver steps in them, ``couple``) are windows of a
:class:`~tcoupled.coupling.channels.ring.FrameRing` instead: a node-local file the
sim rank creates (mode 0600), every receiver maps, and the sim rank then unlinks, so
a cycle starts from the frames the previous one ended with, without a copy.

A CUDA IPC handle names a whole device *allocation*, and opening it maps that
allocation's *base*: an array from CuPy's memory pool is a sub-allocation of a larger
block, so its handle would open at the wrong offset (cupy issue #9436). Each IPC slot
is therefore an allocation of its own (:func:`ipc_slot`), and the handle travels with
the slot's offset from its allocation's base (0 by construction; sent so the receiver
never depends on it).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tcoupled.coupling.channels.base import Channel, ChannelContext, Receiver, Sender, SlotSpec
from tcoupled.coupling.channels.copies import address
from tcoupled.coupling.channels.device import (
    CudaArrayView,
    as_tensor,
    synchronize,
    wait_for_readers,
)
from tcoupled.coupling.channels.ring import RingSlots, open_shared_ring, shared_ring_file
from tcoupled.runtime.errors import TcoupledError
from tcoupled.runtime.waiting import recv_polling

IPC_TAG = 7103
RING_TAG = 7104


def uses_cuda_ipc(xp: Any) -> bool:
    """Whether fields of array module ``xp`` live on a GPU (CuPy-like)."""
    return hasattr(xp, "cuda") and hasattr(xp.cuda, "runtime")


def ipc_slot(xp: Any, shape: tuple[int, ...], dtype: str) -> tuple[Any, tuple[bytes, int]]:
    """A zeroed device array in an allocation of its own, and its ``(handle, offset)``.

    ``xp.cuda.Memory`` allocates outside the memory pool, so the handle names exactly
    this slot's allocation; ``offset`` is the array's distance from that base.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    memory = xp.cuda.Memory(nbytes)
    array = xp.ndarray(shape, dtype, memptr=xp.cuda.MemoryPointer(memory, 0))
    array[...] = 0
    handle = xp.cuda.runtime.ipcGetMemHandle(memory.ptr)
    return array, (handle, array.data.ptr - memory.ptr)


class ShmSender(Sender):
    """Slots in this rank's part of the node window (or device arrays + IPC)."""

    zero_copy = True

    def __init__(self, ctx: ChannelContext, feeds: tuple[int, ...], spec: SlotSpec,
                 channel: ShmChannel) -> None:
        super().__init__(ctx, feeds, spec)
        self.ring: RingSlots | None = None
        self.buffers: list[Any] = []
        if channel.ring:
            self.ring = self._share_ring(ctx, spec)
        elif channel.gpu:
            slots = [ipc_slot(ctx.xp, spec.padded_shape, spec.dtype) for _ in range(ctx.slots)]
            self.buffers = [array for array, _ in slots]
            handles = [handle for _, handle in slots]
            for feed in self.feeds:
                self._requests.append(ctx.world.isend(handles, dest=feed, tag=IPC_TAG))
        else:
            self.buffers = list(channel.local_slots())
        self.channel = channel

    def _share_ring(self, ctx: ChannelContext, spec: SlotSpec) -> RingSlots:
        """Create the ring in a node-local file, let every receiver map it, then unlink it."""
        path = shared_ring_file()
        ring = RingSlots(open_shared_ring(spec, RingSlots.count(spec, ctx.slots), path, True),
                         spec)
        try:
            for feed in self.feeds:
                self._requests.append(ctx.world.isend(path, dest=feed, tag=RING_TAG))
            for feed in self.feeds:
                recv_polling(ctx.world, feed, RING_TAG)  # mapped there
        finally:
            os.unlink(path)
        return ring

    def _publish(self, slot: int, cycle: int) -> None:
        synchronize(self.ctx.xp)
        self.channel.sync()

    def _free(self) -> None:
        if self.ring is not None:
            self.ring.close()


class ShmReceiver(Receiver):
    """Views the sender's slots in place; the views are built once."""

    zero_copy = True

    def __init__(self, ctx: ChannelContext, source: int, spec: SlotSpec, cycles: int,
                 channel: ShmChannel) -> None:
        super().__init__(ctx, source, spec, cycles)
        self.channel = channel
        self.ring: RingSlots | None = None
        self.arrays, self.tensors = [], []
        if RingSlots.usable(spec, ctx.xp):
            path = recv_polling(ctx.world, source, RING_TAG)
            self.ring = RingSlots(open_shared_ring(spec, RingSlots.count(spec, ctx.slots),
                                                   path, False), spec)
            self._requests.append(ctx.world.isend(True, dest=source, tag=RING_TAG))
            return
        if channel.gpu:
            runtime = ctx.xp.cuda.runtime
            handles = ctx.world.recv(source=source, tag=IPC_TAG)
            self._pointers = [runtime.ipcOpenMemHandle(handle) for handle, _ in handles]
            self.arrays = [CudaArrayView(base + offset, spec.padded_shape, spec.dtype)
                           for base, (_, offset) in zip(self._pointers, handles, strict=True)]
            self._addresses = [base + offset
                               for base, (_, offset) in zip(self._pointers, handles, strict=True)]
        else:
            self.arrays = list(channel.remote_slots(source, spec))
            base = channel.remote_base(source)
            self._addresses = [base + i * spec.padded_nbytes for i in range(ctx.slots)]
        self.tensors = [spec.owned(as_tensor(array)) for array in self.arrays]

    def _slot_address(self, slot: int, cycle: int) -> int:
        if self.ring is not None:
            return address(self.ring.window(cycle))
        return int(self._addresses[slot])

    def _fetch(self, slot: int, cycle: int) -> Any:
        self.channel.sync()
        if self.ring is not None:
            return self.spec.owned(as_tensor(self.ring.window(cycle)))
        return self.tensors[slot]

    def _release(self, slot: int, cycle: int) -> None:
        if self.tensors:  # device slots: kernels reading the slot must be done
            wait_for_readers(self.tensors[slot])

    def _free(self) -> None:
        if self.ring is not None:
            self.ring.close()
        elif self.channel.gpu:
            runtime = self.ctx.xp.cuda.runtime
            for pointer in self._pointers:
                runtime.ipcCloseMemHandle(pointer)
        self.tensors, self.arrays = [], []


class ShmChannel(Channel):
    """Node-local zero-copy channel; construction is collective over ``node_comm``."""

    name = "shm"
    zero_copy = True
    same_node = True

    def __init__(self, ctx: ChannelContext, spec: SlotSpec | None) -> None:
        super().__init__(ctx, spec)
        if ctx.node_comm is None:
            raise TcoupledError("shm channel needs the node communicator")
        self.gpu = uses_cuda_ipc(ctx.xp)
        self.ring = spec is not None and RingSlots.usable(spec, ctx.xp)  # this rank sends
        from tcoupled.runtime.mpienv import init_mpi

        MPI = init_mpi()
        size = 0 if (spec is None or self.gpu or self.ring) else spec.padded_nbytes * ctx.slots
        itemsize = np.dtype(spec.dtype).itemsize if spec is not None else 1
        self.win = MPI.Win.Allocate_shared(size, itemsize, comm=ctx.node_comm)
        self.win.Lock_all(MPI.MODE_NOCHECK)

    def sync(self) -> None:
        """Memory barrier on the window (unified model: makes stores visible)."""
        self.win.Sync()

    def local_slots(self) -> list[np.ndarray]:
        """NumPy views of this rank's slots in the window."""
        return self._views(self.ctx.node_comm.Get_rank(), self.spec)

    def remote_base(self, source: int) -> int:
        """Address, in this process, of the window part of world rank ``source``."""
        buffer, _ = self.win.Shared_query(self._node_rank(source))
        return address(np.frombuffer(buffer, dtype=np.uint8, count=1))

    def remote_slots(self, source: int, spec: SlotSpec) -> list[np.ndarray]:
        """NumPy views of the (padded) slots of world rank ``source`` (on this node)."""
        return self._views(self._node_rank(source), spec)

    def _node_rank(self, source: int) -> int:
        world_group = self.ctx.world.Get_group()
        node_group = self.ctx.node_comm.Get_group()
        node_rank = world_group.Translate_ranks([source], node_group)[0]
        world_group.Free()
        node_group.Free()
        if node_rank < 0:
            raise TcoupledError(f"shm channel: sim rank {source} is not on this node")
        return node_rank

    def _views(self, node_rank: int, spec: SlotSpec) -> list[np.ndarray]:
        buffer, _ = self.win.Shared_query(node_rank)
        flat = np.frombuffer(buffer, dtype=spec.dtype,
                             count=spec.padded_nbytes * self.ctx.slots // spec.itemsize)
        return list(flat.reshape(self.ctx.slots, *spec.padded_shape))

    def sender(self, feeds: tuple[int, ...]) -> ShmSender:
        """Sender writing into this rank's window slots."""
        return ShmSender(self.ctx, feeds, self.spec, self)

    def receiver(self, source: int, spec: SlotSpec, cycles: int) -> ShmReceiver:
        """Receiver viewing the window slots of ``source``."""
        return ShmReceiver(self.ctx, source, spec, cycles, self)

    def close(self) -> None:
        """Free the window (collective over the node); drop every view first."""
        self.win.Unlock_all()
        self.win.Free()
