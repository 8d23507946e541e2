"""Two-rank driver of ``bench channels``: shm, mpi, file end to end, the touches, ping-pong.

Run as ``mpiexec -n 2 python -m mpi4py -m tcoupled.bench.channels_driver --sizes 64 256
--staging DIR``. Rank 0 is the sim side, rank 1 the train side. One handoff is a
time-division cycle of the channel protocol with a one-field float32 slot (one slot
per link, as ``couple --division time`` opens it): rank 0
``acquire``s, writes the whole field and ``publish``es; rank 1 ``receive``s, reads all
of it (a checked sum) and ``release``s; the handoff ends when rank 0 has the release
back. Both sides wait with backoff, as in ``couple``. ``touch`` (the same write and
read with no channel) is timed on rank 0, the producer's process. At the largest size
the rows take ``--rounds`` turns (each a share of ``--min-time``), so that a ratio can
be taken within one round, under one state of a shared machine. The MPI library's own ping-pong
(``Send``/``Recv`` there and back, plain NumPy buffers) runs in the same job for
reference. Rank 0 prints ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from tcoupled.bench.launch import print_result

CHANNELS = ("shm", "mpi", "file")
DTYPE = "float32"
WARMUP = 2


def repeats_for(calibration: list[float], min_time: float, most: int = 20000) -> int:
    """Timed repeats lasting about ``min_time`` at the median of ``calibration`` (5 to ``most``)."""
    return int(min(most, max(5, min_time / max(statistics.median(calibration), 1e-9))))


def _handoff_loop(rank: int, endpoint: Any, cycles: int) -> list[float]:
    """Run ``cycles`` handoffs; rank 0 returns the seconds of each one."""
    from tcoupled.bench.channels import read, write

    times = []
    for i in range(cycles):
        if rank == 0:
            start = time.perf_counter()
            write(endpoint.acquire(), i)
            endpoint.publish()
            endpoint.wait_released()
            times.append(time.perf_counter() - start)
        else:
            read(endpoint.receive(), float(1 + i % 7))
            endpoint.release()
    return times


def _handoffs(world: Any, node_comm: Any, name: str, n: int, staging: str,
              total: int) -> tuple[list[float], float]:
    """Open channel ``name``, run ``total`` handoffs, close it; rank 0 gets (times, copied)."""
    from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel, slots_for

    rank = world.Get_rank()
    spec = SlotSpec(1, (n, n), DTYPE)
    ctx = ChannelContext(world=world, node_comm=node_comm, staging_dir=staging,
                         slots=slots_for("time"))
    channel = open_channel(name, ctx, spec if rank == 0 else None)
    endpoint = channel.sender((1,)) if rank == 0 else channel.receiver(0, spec, total)
    times = _handoff_loop(rank, endpoint, total)[WARMUP:]
    endpoint.close()
    copied = world.gather(endpoint.bytes_copied, root=0)
    world.Barrier()
    channel.close()
    return times, (sum(copied) / total if rank == 0 else 0.0)


def channel_handoff(world: Any, node_comm: Any, name: str, n: int, staging: str,
                    min_time: float) -> dict | None:
    """Row of channel ``name``: handoffs of an ``n x n`` field, median and spread.

    Five handoffs calibrate how many make ``min_time``; rank 0 tells rank 1 (the
    ``mpi`` receiver must know the count up front), then those are timed.
    """
    from tcoupled.bench.channels import row

    calibration, _ = _handoffs(world, node_comm, name, n, staging, WARMUP + 5)
    count = world.bcast(repeats_for(calibration, min_time) if world.Get_rank() == 0
                        else None, root=0)
    times, copied = _handoffs(world, node_comm, name, n, staging, WARMUP + count)
    return row(name, n, times, copied) if world.Get_rank() == 0 else None


def touch_on_rank0(world: Any, n: int, min_time: float) -> dict | None:
    """The ``touch`` row, timed in the producer's process; rank 1 waits with backoff."""
    from tcoupled.bench.channels import touch
    from tcoupled.runtime.waiting import bcast_polling

    result = touch(n, min_time) if world.Get_rank() == 0 else None
    bcast_polling(world, None, root=0)
    return result


def touch_across(world: Any, node_comm: Any, n: int, min_time: float) -> dict | None:
    """``touch-2proc``: rank 0 writes, rank 1 reads, in one shared window; no channel.

    One empty message each way says "written" and "read" (waited for as the channels
    wait), so the row is what any handoff between two processes pays: the write, the
    read of memory last written on another core, and two message latencies.
    """
    import torch

    from tcoupled.bench.channels import read, row, write
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.runtime.waiting import recv_polling

    MPI = init_mpi()
    rank = world.Get_rank()
    window = MPI.Win.Allocate_shared(n * n * 4 if rank == 0 else 0, 4, comm=node_comm)
    field = np.ndarray((n, n), dtype=DTYPE, buffer=window.Shared_query(0)[0])
    tensor = torch.from_numpy(field)

    def handoffs(count: int) -> list[float]:
        times = []
        for i in range(count):
            start = time.perf_counter()
            if rank == 0:
                world.send(write(field, i), dest=1, tag=21)
                recv_polling(world, 1, 22)
                times.append(time.perf_counter() - start)
            else:
                read(tensor, recv_polling(world, 0, 21))
                world.send(None, dest=0, tag=22)
        return times[WARMUP:]

    calibration = handoffs(WARMUP + 5)
    count = world.bcast(repeats_for(calibration, min_time) if rank == 0 else None, root=0)
    times = handoffs(WARMUP + count)
    world.Barrier()
    window.Free()
    return row("touch-2proc", n, times, 0) if rank == 0 else None


def ping_pong(world: Any, n: int, min_time: float) -> dict | None:
    """Best one-way time and bandwidth of the MPI library's ping-pong on ``n x n`` float32."""
    rank = world.Get_rank()
    buffer = np.zeros((n, n), dtype=DTYPE)
    total = WARMUP + min(2000, max(5, int(min_time / (3e-5 + 2 * buffer.nbytes / 2e9))))
    times = []
    for _ in range(total):
        start = time.perf_counter()
        if rank == 0:
            world.Send(buffer, dest=1, tag=11)
            world.Recv(buffer, source=1, tag=12)
        else:
            world.Recv(buffer, source=0, tag=11)
            world.Send(buffer, dest=0, tag=12)
        times.append((time.perf_counter() - start) / 2)
    times = times[WARMUP:]
    if rank != 0:
        return None
    one_way = min(times)
    return {"n": n, "bytes": buffer.nbytes, "seconds": one_way,
            "median_seconds": statistics.median(times), "GBps": buffer.nbytes / one_way / 1e9}


def main(argv: list[str] | None = None) -> None:
    """Measure every channel and the ping-pong at every size; print the result."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--staging", required=True)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="at the largest size, run every row this many times in turn")
    args = parser.parse_args(argv)
    from tcoupled.runtime.mpienv import init_mpi

    MPI = init_mpi()
    world = MPI.COMM_WORLD
    if world.Get_size() != 2:
        raise SystemExit(f"channels_driver needs 2 ranks, got {world.Get_size()}")
    import torch

    from tcoupled.runtime.cores import node_load
    from tcoupled.runtime.waiting import adapt_to

    torch.set_num_threads(1)
    node = node_load(world)
    adapt_to(node)
    node_comm = world.Split_type(MPI.COMM_TYPE_SHARED, key=world.Get_rank())
    rows, pings = [], []
    for n in args.sizes:
        pings.append(ping_pong(world, n, args.min_time))
        rounds = args.rounds if n == args.sizes[-1] else 1
        for index in range(rounds):  # the rows take turns: a ratio compares one round's
            found = [touch_on_rank0(world, n, args.min_time / rounds),
                     touch_across(world, node_comm, n, args.min_time / rounds)]
            found += [channel_handoff(world, node_comm, name, n, args.staging,
                                      args.min_time / rounds) for name in CHANNELS]
            rows += [{**row, "round": index} for row in found if row is not None]
    node_comm.Free()
    if world.Get_rank() == 0:
        print_result({"rows": rows, "ping_pong": pings, "node": node,
                      "library": MPI.Get_library_version().splitlines()[0].strip()})


if __name__ == "__main__":
    main()
