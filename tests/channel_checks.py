"""Checks of the shm and mpi channels across two real MPI processes.

Run by ``tests/test_channels.py`` under ``mpiexec -n 2 python -m mpi4py`` (an
uncaught error aborts both ranks). Rank 0 is the sim side, rank 1 the train side.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
from mpi4py import MPI

from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel
from tcoupled.coupling.channels.copies import address
from tcoupled.coupling.channels.device import is_device_array

world = MPI.COMM_WORLD
rank = world.Get_rank()
node_comm = world.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
SPEC = SlotSpec(3, (4, 5), "float64")
CYCLES = 5


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"rank {rank}: {what}")


def shm_zero_copy(xp: object = np) -> None:
    """The receiver's tensor is the sender's slot: pointers and writes agree.

    With ``xp`` CuPy (``tests/test_gpu.py``, both ranks on one GPU) the slot is a device
    allocation opened through CUDA IPC; the mapping's address differs between the two
    processes, so the writes, each seen on the other side, are what shows one memory.
    """
    ctx = ChannelContext(world=world, node_comm=node_comm, xp=xp)
    channel = open_channel("shm", ctx, SPEC if rank == 0 else None)
    if rank == 0:
        sender = channel.sender((1,))
        slot = sender.acquire()
        slot[...] = 7.0
        sender.publish()
        sender.wait_released()                      # train rank wrote into the slot
        check(bool(slot[1, 2, 3] == -1.0), "train-side write not seen by the sim rank")
        world.send(address(slot), dest=1)
        check(sender.bytes_copied == 0, "shm sender copied bytes")
        sender.close()
    else:
        receiver = channel.receiver(0, SPEC, 1)
        tensor = receiver.receive()
        check(bool((tensor == 7.0).all()), "sim-side write not seen by the train rank")
        if xp is np:
            view = channel.remote_slots(0, SPEC)[0]
            check(tensor.data_ptr() == address(view),
                  "tensor does not point into the shared window")
        check(tensor.is_cuda == (xp is not np), f"tensor on {tensor.device}")
        check(receiver.verified, "run-time address check failed on a zero-copy slot")
        tensor[1, 2, 3] = -1.0
        receiver.release()                          # after the reading stream finished
        world.recv(source=0)
        check(receiver.bytes_copied == 0, "shm receiver copied bytes")
        receiver.close()
    world.Barrier()
    channel.close()


def stream(name: str, xp: object = np, division: str = "space") -> int:
    """Send CYCLES slots with distinct contents; check order, contents and backpressure."""
    staging = world.bcast(tempfile.mkdtemp() if rank == 0 else None)
    ctx = ChannelContext(world=world, node_comm=node_comm, staging_dir=staging, xp=xp)
    channel = open_channel(name, ctx, SPEC if rank == 0 else None)
    if rank == 0:
        sender = channel.sender((1,))
        for cycle in range(CYCLES):
            slot = sender.acquire()
            check(cycle < 2 or sender._released[1] >= cycle - 1, "slot reused before release")
            slot[...] = xp.full(SPEC.shape, float(cycle))
            sender.publish()
            if division == "time":
                sender.wait_released()
        sender.close()
        copied = sender.bytes_copied
        check(ctx.timer.totals["idle"] > 0.02, f"{name}: backpressure wait not counted")
    else:
        receiver = channel.receiver(0, SPEC, CYCLES)
        for cycle in range(CYCLES):
            tensor = receiver.receive()
            check(bool((tensor == float(cycle)).all()), f"{name}: wrong data in cycle {cycle}")
            time.sleep(0.02)                        # a slow trainer: the sender must wait
            receiver.release()
        receiver.close()
        copied = receiver.bytes_copied
    world.Barrier()
    channel.close()
    totals = world.allgather(copied)
    return sum(totals)


class FakeDevice:
    """Host memory posing as a device array: CUDA array interface and ``get()``."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.array.shape, "typestr": self.array.dtype.str,
                "data": (self.array.ctypes.data, False), "strides": None, "version": 3}

    def __setitem__(self, key: object, value: object) -> None:
        self.array[key] = value.array if isinstance(value, FakeDevice) else value

    def get(self) -> np.ndarray:
        return self.array.copy()


class FakeCupy:
    """Just enough of an array module for the staged mpi path."""

    __name__ = "fakecupy"

    @staticmethod
    def zeros(shape: object, dtype: str = "float64") -> FakeDevice:
        return FakeDevice(np.zeros(shape, dtype))

    @staticmethod
    def full(shape: object, value: float) -> FakeDevice:
        return FakeDevice(np.full(shape, value))


def staged_sender() -> None:
    """A device slot sent through non-CUDA-aware MPI is staged and the copy counted."""
    import os

    os.environ["TCOUPLED_CUDA_AWARE_MPI"] = "0"
    ctx = ChannelContext(world=world, node_comm=node_comm, xp=FakeCupy if rank == 0 else np)
    channel = open_channel("mpi", ctx, SPEC if rank == 0 else None)
    if rank == 0:
        sender = channel.sender((1,))
        slot = sender.acquire()
        check(is_device_array(slot), "fake device slot not seen as a device array")
        slot[...] = 3.0
        sender.publish()
        sender.close()
        check(sender.bytes_copied == 2 * SPEC.nbytes, "staging copy + send not both counted")
    else:
        receiver = channel.receiver(0, SPEC, 1)
        check(bool((receiver.receive() == 3.0).all()), "staged data wrong")
        receiver.release()
        receiver.close()
    world.Barrier()


def polling_collectives() -> None:
    """gather/bcast that wait with backoff deliver what the blocking ones would."""
    from tcoupled.runtime.cores import node_load
    from tcoupled.runtime.waiting import bcast_polling, gather_polling

    if rank == 1:
        time.sleep(0.05)                            # rank 0 waits, polling
    gathered = gather_polling(world, {"rank": rank}, root=0)
    check(gathered == ([{"rank": 0}, {"rank": 1}] if rank == 0 else None), "gather_polling")
    check(bcast_polling(world, "go" if rank == 0 else None, root=0) == "go", "bcast_polling")
    load = node_load(world)
    check(load["node_ranks"] == 2 and load["cores"] >= 1, f"node_load {load}")
    check(load["oversubscribed"] == (load["cores"] < 2), f"node_load {load}")


if __name__ == "__main__" and sys.argv[1:] == ["cupy"]:
    import cupy

    shm_zero_copy(cupy)
    if rank == 0:
        print("shm cupy checks passed")
elif __name__ == "__main__":
    polling_collectives()
    shm_zero_copy()
    nbytes = SPEC.nbytes * CYCLES
    for name, expected in (("shm", 0), ("mpi", nbytes), ("file", 2 * nbytes)):
        for division in ("space", "time"):
            copied = stream(name, division=division)
            check(copied == expected, f"{name}: {copied} bytes copied, expected {expected}")
    staged_sender()
    if rank == 0:
        print("channel checks passed")
    sys.stdout.flush()
