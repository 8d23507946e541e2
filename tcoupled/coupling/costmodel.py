"""Cost model: predicted time per cycle of time and space division, and the choice.

One cycle of ``couple`` is ``K`` solver steps that fill a slot of ``K + 1`` fields, the
slot's handoff, and ``M`` training iterations. With per-unit costs

* ``sim`` -- the sim rank's ``K`` steps plus the ``K + 1`` copies into the slot;
* ``h`` -- one slot through the channel, ``latency + bytes * s_per_byte``
  (zero-copy channels have ``s_per_byte = 0``);
* ``iter`` -- one optimizer step on a train rank's batch, plus ``allreduce`` (DDP, only
  for members over several train ranks);
* ``warmup`` -- the extra time of the first iteration, paid once per run;
* ``digest`` -- the trainer's hash of each received slot (``M * iter`` below includes
  ``s * digest``),

and ``f`` receivers per sim rank (one per member), ``s`` sources per train rank:

* time division (turns): ``cycle = sim + h * max(f, s) + M * iter + warmup / C``;
* space division (concurrent, double buffered): ``produce = sim + f * h``,
  ``consume = s * h + M * iter``; the pipeline runs at the slower side and pays one
  cycle of the faster side to fill: ``wall = C * max + min``, so
  ``cycle = max(produce, consume) + (min(produce, consume) + warmup) / C``.

The model assumes one core (or GPU) per rank; on an oversubscribed machine both
divisions are slower than predicted. ``sim`` and ``iter`` are measured by short
calibration runs on the workload's own block and batch shapes (:func:`calibrate`);
handoff costs come from a ``bench channels`` result or the defaults below (measured on
a 2-core AMD EPYC). Pure arithmetic lives in :func:`predict`; only :func:`calibrate`
runs the solver and torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

from tcoupled.coupling.channels import default_channel as _default_channel
from tcoupled.runtime.errors import ConfigError


@dataclass(frozen=True)
class HandoffCost:
    """Seconds to hand one slot of ``nbytes`` over: ``latency_s + nbytes * s_per_byte``."""

    latency_s: float
    s_per_byte: float = 0.0

    def seconds(self, nbytes: float) -> float:
        """Predicted seconds for ``nbytes``."""
        return self.latency_s + nbytes * self.s_per_byte


#: defaults fitted to ``bench channels`` on a 2-core AMD EPYC (float32 fields)
DEFAULT_HANDOFF = {
    "inproc": HandoffCost(1e-5),
    "shm": HandoffCost(1e-5),
    "mpi": HandoffCost(2e-5, 1 / 5e9),
    "file": HandoffCost(2e-3, 1 / 0.5e9),
}
#: seconds per iteration of a gradient allreduce of the small CNN over 2 ranks (gloo)
DEFAULT_ALLREDUCE_S = 5e-4
#: one-time extra seconds of a fresh process's first training iteration (first kernels,
#: DDP bucket set-up, first gloo collective); a constant, as a calibrating process that
#: already trained cannot see it
DEFAULT_FIRST_ITER_S = 0.015
#: seconds per step of a halo exchange between sim ranks on one node
DEFAULT_HALO_S = 5e-5


@dataclass(frozen=True)
class Workload:
    """Sizes and layout of one coupled run (what ``couple`` flags describe)."""

    wave: Any                  # WaveConfig of the global grid
    sim_ranks: int
    train_ranks: int
    members: tuple             # MemberParams, one per ensemble member
    sim_steps: int
    train_iters: int
    cycles: int
    batch_size: int = 0        # pairs per iteration and source (0: all K pairs)
    placement: str = "colocated"


@dataclass(frozen=True)
class UnitCosts:
    """Measured per-unit costs of a workload (see the module docstring)."""

    sim_s: float               # K steps + K + 1 slot copies on the largest sim block
    iter_s: float              # one optimizer step of the slowest train rank
    allreduce_s: float         # per iteration (0 when every member has one rank)
    slot_bytes: int
    feeds: int                 # receivers per sim rank
    sources: int               # slots per train rank per cycle
    warmup_s: float = 0.0      # extra time of the very first iteration (once per run)
    digest_s: float = 0.0      # the trainer's hash of one received slot (data provenance)


def handoff_costs_from_bench(channels: dict) -> dict[str, HandoffCost]:
    """Fit ``latency + bytes * s_per_byte`` per channel to ``bench channels`` rows."""
    fitted = dict(DEFAULT_HANDOFF)
    for name in DEFAULT_HANDOFF:
        pts = sorted((r["bytes"], r["seconds"]) for r in channels["rows"]
                     if r["method"] == name)
        if len(pts) < 2:
            continue
        (b0, t0), (b1, t1) = pts[0], pts[-1]
        slope = 0.0 if name in ("inproc", "shm") else max(0.0, (t1 - t0) / (b1 - b0))
        fitted[name] = HandoffCost(max(0.0, t0 - b0 * slope), slope)
    return fitted


def predict(costs: UnitCosts, handoff: HandoffCost, division: str, train_iters: int,
            cycles: int) -> dict:
    """Predicted seconds per cycle of ``division`` and its parts (pure arithmetic)."""
    h = handoff.seconds(costs.slot_bytes)
    train = train_iters * (costs.iter_s + costs.allreduce_s) + costs.sources * costs.digest_s
    warmup = costs.warmup_s / max(cycles, 1)
    if division == "time":
        handoffs = h * max(costs.feeds, costs.sources)
        return {"cycle_s": costs.sim_s + handoffs + train + warmup, "sim_s": costs.sim_s,
                "handoff_s": handoffs, "train_s": train}
    if division != "space":
        raise ConfigError(f"division must be time or space, got {division!r}")
    produce = costs.sim_s + costs.feeds * h
    consume = costs.sources * h + train
    cycle = max(produce, consume) + min(produce, consume) / max(cycles, 1) + warmup
    return {"cycle_s": cycle, "sim_s": costs.sim_s, "handoff_s": costs.sources * h,
            "train_s": train, "produce_s": produce, "consume_s": consume}


def largest_block(grid: tuple[int, int], sim_ranks: int) -> tuple[int, int]:
    """Owned shape of the largest sim block (the first one) of ``grid`` on ``sim_ranks``."""
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.sim.decomposition import block_sizes

    dims = init_mpi().Compute_dims(sim_ranks, 2)
    return block_sizes(grid[0], dims[0])[0], block_sizes(grid[1], dims[1])[0]


def fan_out(workload: Workload) -> tuple[int, int, int]:
    """Receivers per sim rank, sources per train rank, and ranks per member's DDP group."""
    if workload.train_ranks == 0:
        return 1, 1, workload.sim_ranks
    from tcoupled.placement.plan import RoleCounts, plan_ranks

    plan = plan_ranks(RoleCounts(sim=workload.sim_ranks, train=workload.train_ranks), None, 0,
                      workload.placement, len(workload.members))
    feeds = max(len(info.feeds) for info in plan.of_role("sim"))
    sources = max(len(info.sources) for info in plan.of_role("train"))
    return feeds, sources, workload.train_ranks // len(workload.members)


def time_sim_cycle(wave: Any, local_shape: tuple[int, int], steps: int,
                   repeats: int = 3) -> float:
    """Best seconds of ``steps`` solver steps plus the slot copies on one block."""
    import numpy as np

    from tcoupled.coupling.schedule import fill_slot
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.runtime.telemetry import PhaseTimer
    from tcoupled.sim.solver import WaveSolver

    block = replace(wave, grid=tuple(local_shape))
    slot = np.empty((steps + 1, *local_shape), dtype=wave.dtype)
    best = math.inf
    with WaveSolver(block, init_mpi().COMM_SELF) as solver:
        for _ in range(repeats + 1):            # the first one warms up
            start = time.perf_counter()
            fill_slot(solver, slot, steps, PhaseTimer())
            best = min(best, time.perf_counter() - start)
    return best


def time_train_iter(member: Any, dtype: str, frames: tuple[int, int, int], sources: int,
                    batch_size: int, min_time: float = 0.5) -> float:
    """Median seconds of one optimizer step as ``couple`` takes it.

    The trainer gets ``sources`` slots of ``frames`` fields, as pairs of consecutive
    frames (views), ``batch_size`` pairs per slot and step (0: all). Steps are timed
    for about ``min_time`` (5 to 60 of them) after one warm-up step; the median, as the
    run's time is a sum of steps and a shared machine adds bursts of noise.
    """
    import statistics

    import torch

    from tcoupled.training.model import build_model
    from tcoupled.training.samples import samples_from_frames
    from tcoupled.training.trainer import Trainer

    torch.set_num_threads(1)
    trainer = Trainer(build_model(member), member.lr, batch_size=batch_size or None)
    groups = [samples_from_frames(torch.randn(frames, dtype=torch.float32))  # float32 learning
              for _ in range(sources)]
    trainer.train(groups, 1)                    # warm-up
    times: list[float] = []
    while len(times) < 60 and (len(times) < 5 or sum(times) < min_time):
        start = time.perf_counter()
        trainer.train(groups, 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_digest(shape: tuple[int, ...], dtype: str, repeats: int = 3) -> float:
    """Best seconds of the trainer's provenance hash of one received slot."""
    import torch

    from tcoupled.coupling.schedule import DigestLog
    from tcoupled.runtime.telemetry import PhaseTimer

    slot = torch.zeros(shape, dtype=getattr(torch, dtype))
    log, best = DigestLog(PhaseTimer()), math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        log.add(0, 0, slot)
        best = min(best, time.perf_counter() - start)
    return best


def calibrate(workload: Workload, allreduce_s: float = DEFAULT_ALLREDUCE_S,
              halo_s: float = DEFAULT_HALO_S) -> UnitCosts:
    """Measure the per-unit costs of ``workload`` on this machine (a second or so)."""
    import numpy as np

    local = largest_block(workload.wave.grid, workload.sim_ranks)
    steps = workload.sim_steps
    sim = time_sim_cycle(workload.wave, local, steps)
    if workload.sim_ranks > 1:
        sim += steps * halo_s
    feeds, sources, group = fan_out(workload)
    iter_s = max(time_train_iter(m, workload.wave.dtype, (steps + 1, *local),
                                 sources, workload.batch_size)
                 for m in workload.members)
    digest_s = time_digest((steps + 1, *local), workload.wave.dtype)
    slot_bytes = (steps + 1) * math.prod(local) * np.dtype(workload.wave.dtype).itemsize
    # a one-rank member trains without DDP: no allreduce
    return UnitCosts(sim_s=sim, iter_s=iter_s, allreduce_s=allreduce_s * (group - 1),
                     slot_bytes=slot_bytes, feeds=feeds, sources=sources,
                     warmup_s=DEFAULT_FIRST_ITER_S, digest_s=digest_s)


def choose_division(workload: Workload, channel: str | None = None,
                    handoff: dict[str, HandoffCost] | None = None,
                    costs: UnitCosts | None = None) -> tuple[str, str]:
    """Pick the division with the smaller predicted cycle; return it and a one-line why."""
    if workload.train_ranks == 0:
        return "time", "space division needs separate train ranks (--train-ranks 0)"
    handoff = handoff or DEFAULT_HANDOFF
    costs = costs or calibrate(workload)
    cycle, channels = {}, {}
    for division in ("time", "space"):
        channels[division] = channel or _default_channel(division, workload.train_ranks)
        cycle[division] = predict(costs, handoff[channels[division]], division,
                                  workload.train_iters, workload.cycles)["cycle_s"]
    best = min(cycle, key=cycle.get)
    train = workload.train_iters * (costs.iter_s + costs.allreduce_s)
    why = (f"predicted {cycle['time']:.4f} s/cycle for time ({channels['time']}) vs "
           f"{cycle['space']:.4f} s/cycle for space ({channels['space']}); per cycle sim "
           f"{costs.sim_s:.4f} s, train {train:.4f} s, slot {costs.slot_bytes / 1e6:.2f} MB")
    return best, why
