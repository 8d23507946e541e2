"""The training side of the cost model's calibration job (:mod:`.calibration`).

A member trains on random slots of the run's blocks exactly as ``couple`` trains it (its
DDP group, float32, the run's replay buffer): the first iteration, then single
iterations until about ``MIN_TRAIN_S``, the exposed all-reduce, the replay buffer's
copy of a sample, and the provenance hash of one slot. Then whole training cycles as
``couple`` runs them (:func:`train_cycle`: each source's block put in its context,
``M`` iterations, the replay buffer offered the new samples), on fresh slots each
cycle, for the run's ``C`` cycles: a steady cycle is their median from cycle 2 on,
which is what a run's ``steady_cycle_s`` reads too.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

MIN_TRAIN_S = 0.5
MAX_CYCLES = 12  # cycles of a division (or of training) the calibration runs, at most
#: ... unless that many cycles take less than this: then the divisions' second round runs
#: the run's cycles up to this long (see :func:`calibration_cycles`)
TURN_BUDGET_S = 0.8
REPEATS = 3  # repeats of each short timing (here: the slot hash)


def sleep_barrier(comm: Any) -> None:
    """A barrier that sleeps instead of spinning (a waiting rank leaves the core free)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(5e-4)


def mpi_max() -> Any:
    """``MPI.MAX`` (mpi4py imported on first use)."""
    from tcoupled.runtime.mpienv import init_mpi

    return init_mpi().MAX


def _iteration_times(member_comm: Any, trainer: Any, groups: list) -> list[float]:
    """Seconds of single training iterations: at least 5, until ``MIN_TRAIN_S`` (60 at most).

    Every rank of the DDP group runs the same iterations (the stop is agreed each time).
    """
    times: list[float] = []
    more = True
    while more:
        member_comm.Barrier()
        start = time.perf_counter()
        trainer.train(groups, 1)
        times.append(time.perf_counter() - start)
        more = member_comm.allreduce(len(times) < 60 and (len(times) < 5 or sum(times)
                                                           < MIN_TRAIN_S), op=mpi_max())
    return times


def train_cycle(trainer: Any, member_comm: Any, blocks: list, workload: Any) -> None:
    """One cycle of a train rank: its sources' blocks in context, then ``M`` iterations."""
    from tcoupled.training.samples import member_windows

    samples = member_windows(member_comm, blocks, workload.wave.grid, trainer.module.radius)
    trainer.train(samples, workload.train_iters)


def fresh_memory(trainer: Any, workload: Any) -> None:
    """An empty replay buffer, and the memory of the last one handed back to the system.

    A run's trainer fills its buffer with memory the process never used: each new page
    faults in (12 cycles of a 129^2 workload: 14-16 ms a cycle while the buffer filled
    in a fresh process, 8 ms in one that had filled a buffer before, 12 ms after
    ``malloc_trim``). Without glibc the buffer is only emptied.
    """
    import ctypes
    import gc

    from tcoupled.training.replay import ReplayBuffer

    trainer.replay = ReplayBuffer(workload.replay)
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def fresh_slots(blocks: list[tuple[tuple, tuple]], steps: int, device: str) -> list[list]:
    """Two sets of ``(offset, frames)`` per source, random, to alternate cycle by cycle.

    A real trainer reads each cycle's slot fresh from the sim side's memory; two sets
    of slot-sized blocks keep the calibration's reads from a cache the slot outgrows.
    """
    import torch

    from tcoupled.training.samples import TRAINING_DTYPE

    return [[(tuple(offset), torch.randn((steps + 1, *local), dtype=TRAINING_DTYPE,
                                         device=device)) for offset, local in blocks]
            for _ in range(2)]


def calibration_cycles(workload: Any, cycle_s: float = 0.0) -> int:
    """The run's ``C`` cycles, at least 4 and at most ``MAX_CYCLES`` -- or more if short.

    A run's steady cycle is its median from cycle 2 on: for ``C`` up to
    ``MAX_CYCLES`` the calibration runs the same cycles. A longer run's median lies
    later, past a start that is slower: a 52-cycle 129^2 run (NumPy kernel, M=2, time
    division) took 11-16 ms a cycle for its first 5 to 15 cycles and 8.3-9.2 ms after,
    so 12 cycles put its median at 13 ms against 8.7-11.2 in four runs. Given a cycle of
    ``cycle_s`` (the first round's), the run's cycles are run up to ``TURN_BUDGET_S``.
    """
    longest = MAX_CYCLES
    if cycle_s > 0:
        longest = max(MAX_CYCLES, int(TURN_BUDGET_S / cycle_s))
    return min(max(workload.cycles, 4), longest)


def cycle_times(member_comm: Any, trainer: Any, slots: list[list], workload: Any) -> list[float]:
    """Seconds of :func:`calibration_cycles` training cycles, alternating ``slots``."""
    times = []
    for cycle in range(calibration_cycles(workload)):
        member_comm.Barrier()
        start = time.perf_counter()
        train_cycle(trainer, member_comm, slots[cycle % 2], workload)
        times.append(time.perf_counter() - start)
    return times


def build_member(member_comm: Any, workload: Any, member: Any, blocks: list,
                 scratch: str) -> tuple[Any, list]:
    """The trainer of ``member`` as ``couple`` builds it, and two sets of fresh slots.

    ``blocks`` holds ``(offset, local shape)`` of each sim rank this train rank
    receives from. Nothing is trained yet: a run's first cycles (its replay buffer
    filling memory the process never touched) are measured on this trainer first.
    """
    import torch

    from tcoupled.runtime.gpu import current_gpu_identity
    from tcoupled.runtime.telemetry import PhaseTimer
    from tcoupled.sim.backends import resolve_device
    from tcoupled.training.ensemble import init_member_group, member_backend
    from tcoupled.training.model import build_model
    from tcoupled.training.replay import ReplayBuffer
    from tcoupled.training.trainer import Trainer

    torch.set_num_threads(1)
    device = resolve_device(workload.wave.device, workload.wave.kernel)  # the run's own
    gpu = current_gpu_identity() if device == "cuda" else None
    group = init_member_group(member_comm, member_backend(member_comm, gpu)[0], scratch)
    trainer = Trainer(build_model(member, device=device), member.lr, device,  # float32
                      group=group, timer=PhaseTimer(), batch_size=workload.batch_size or None,
                      replay=ReplayBuffer(workload.replay))
    return trainer, fresh_slots(blocks, workload.sim_steps, device)


def time_member(member_comm: Any, workload: Any, trainer: Any, slots: list) -> dict:
    """Time ``trainer`` (from :func:`build_member`) on random slots, as the run trains."""
    import torch

    from tcoupled.training.replay import ReplayBuffer
    from tcoupled.training.samples import samples_from_frames

    frames = tuple(slots[0][0][1].shape)
    groups = [samples_from_frames(torch.randn_like(block)) for _, block in slots[0]]
    trainer.replay = ReplayBuffer(workload.replay)
    start = time.perf_counter()
    trainer.replay.offer(groups)  # as from cycle 2 on: each iteration also replays
    offered = sum(len(g) for g in groups)
    replay_s = (time.perf_counter() - start) / max(min(offered, workload.replay), 1)
    start = time.perf_counter()
    trainer.train(groups, 1)
    first = time.perf_counter() - start
    trainer.timer.totals.clear()
    times = _iteration_times(member_comm, trainer, groups)
    allreduce = trainer.timer.totals.get("allreduce", 0.0) / len(times)  # 0: one rank
    found = {"iter_s": statistics.median(times), "allreduce_s": allreduce,
             "first_iter_s": first, "digest_s": _digest_time(frames, workload.wave.dtype),
             "replay_sample_s": replay_s, "replay_samples": offered}
    # whole cycles from an empty buffer, in memory the process has used before
    trainer.replay = ReplayBuffer(workload.replay)
    found["train_cycle_s"] = statistics.median(cycle_times(member_comm, trainer, slots,
                                                           workload)[1:])
    trainer.replay = ReplayBuffer(workload.replay)
    return found


def _digest_time(frames: tuple, dtype: str) -> float:
    """Best seconds of the trainer's provenance hash of one slot (0 if there is none)."""
    try:
        import torch

        from tcoupled.coupling.schedule import DigestLog
        from tcoupled.runtime.telemetry import PhaseTimer
    except ImportError:
        return 0.0
    slot = torch.zeros(frames, dtype=getattr(torch, dtype))
    log, best = DigestLog(PhaseTimer()), float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        log.add(0, 0, slot)
        best = min(best, time.perf_counter() - start)
    return best
