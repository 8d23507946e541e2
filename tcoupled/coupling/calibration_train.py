"""The training side of the cost model's calibration job (:mod:`.calibration`).

A member trains on random slots of the run's block exactly as ``couple`` trains it (its
DDP group, float32, the run's replay buffer): the first iteration, then single
iterations until about ``MIN_TRAIN_S``, the exposed all-reduce, the replay buffer's
copy of a sample, and the provenance hash of one slot.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

MIN_TRAIN_S = 0.5
REPEATS = 3  # repeats of each short timing (here: the slot hash)


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


def time_member(member_comm: Any, workload: Any, member: Any, frames: tuple,
                sources: int, scratch: str) -> tuple[Any, list, dict]:
    """Train ``member`` on random slots as ``couple`` would; its trainer, samples, times."""
    import torch

    from tcoupled.runtime.telemetry import PhaseTimer
    from tcoupled.sim.backends import resolve_device
    from tcoupled.training.ensemble import init_member_group
    from tcoupled.training.model import build_model
    from tcoupled.training.replay import ReplayBuffer
    from tcoupled.training.samples import TRAINING_DTYPE, samples_from_frames
    from tcoupled.training.trainer import Trainer

    torch.set_num_threads(1)
    device = resolve_device(workload.wave.device, workload.wave.kernel)  # the run's own
    group = init_member_group(member_comm, "nccl" if device == "cuda" else "gloo", scratch)
    timer = PhaseTimer()
    trainer = Trainer(build_model(member, device=device), member.lr, device,  # float32
                      group=group, timer=timer, batch_size=workload.batch_size or None,
                      replay=ReplayBuffer(workload.replay))
    groups = [samples_from_frames(torch.randn(frames, dtype=TRAINING_DTYPE, device=device))
              for _ in range(sources)]
    start = time.perf_counter()
    trainer.replay.offer(groups)  # as from cycle 2 on: each iteration also replays
    offered = sum(len(g) for g in groups)
    replay_s = (time.perf_counter() - start) / max(min(offered, workload.replay), 1)
    start = time.perf_counter()
    trainer.train(groups, 1)
    first = time.perf_counter() - start
    timer.totals.clear()
    times = _iteration_times(member_comm, trainer, groups)
    allreduce = timer.totals.get("allreduce", 0.0) / len(times)  # 0 for a one-rank member
    return trainer, groups, {
        "iter_s": statistics.median(times), "allreduce_s": allreduce, "first_iter_s": first,
        "digest_s": _digest_time(frames, workload.wave.dtype),
        "replay_sample_s": replay_s, "replay_samples": offered}


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
