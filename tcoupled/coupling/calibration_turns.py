"""Each division's cycle, measured whole in the cost model's calibration job.

The sim ranks and the train ranks run ``C`` cycles (at most 12, or more where they are
short: :func:`divisions`) through ``couple``'s own
loops (:func:`~tcoupled.coupling.schedule.run_sim_cycles`,
:func:`~tcoupled.coupling.schedule.run_train_cycles`) on the run's channel (else each
division's default: ``shm`` for time division, ``mpi`` for space), with the run's routes,
slots, waits and training: a sim rank steps ``K`` steps into its slot and publishes it, a
train rank puts its sources' blocks in context, trains ``M`` iterations and releases
them. The solver starts as the run's does; nothing is written. :func:`divisions` runs
time then space division, twice.

Timed apart, each side's cycle is faster than in turns, for reasons measured here:

* the trainer's first cycles fill its replay buffer in memory the process never
  touched (12-cycle runs of a 129^2 workload: 16-18 ms a cycle while it filled,
  10-11 ms after; a trainer that had filled a buffer before: 8-9 ms from the start);
* the trainer reads the slot the sim rank has just written on another core;
* on an oversubscribed node each wake-up of a waiting rank takes a core from the
  working ones (two sim ranks and a train rank on 2 cores: the halo exchanges of a
  turn took 3.2-5.7 ms of a cycle against 0.9-1.4 ms when timed alone).

So each cycle is measured here, whole, as the median of cycles 2 to C (what a run's
``steady_cycle_s`` reads), each side's busy time per cycle (its cycle less its channel
waits; the stop vote's wait counts as busy, as a run counts it as "other") beside it.
With more busy ranks than cores, how the scheduler shares them is beyond the sum of
side-by-side speeds too (two sim ranks and a train rank on 2 cores: 14 ms a
space-division cycle measured, 9 ms from the sides' speeds running together).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def routes(workload: Any) -> tuple[dict[int, tuple[int, ...]], dict[int, tuple[int, ...]]]:
    """Calibration ranks each sim rank feeds and each train rank receives from.

    The calibration numbers the sim ranks ``0..S-1`` and the train ranks ``S..S+T-1``
    by their role index; the pairs are the run's own (its placement plan).
    """
    from tcoupled.placement.plan import RoleCounts, plan_ranks

    plan = plan_ranks(RoleCounts(sim=workload.sim_ranks, train=workload.train_ranks), None, 0,
                      workload.placement, len(workload.members))
    index = {info.rank: (info.role_index if info.role == "sim"
                         else workload.sim_ranks + info.role_index) for info in plan.ranks}
    feeds = {index[i.rank]: tuple(index[r] for r in i.feeds) for i in plan.of_role("sim")}
    sources = {index[i.rank]: tuple(index[r] for r in i.sources) for i in plan.of_role("train")}
    return feeds, sources


class _Clock:
    """The :data:`~tcoupled.coupling.schedule.CycleHook` of a turn: each cycle's end.

    It takes part in a stop vote each cycle, as ``couple``'s hook does
    (:class:`~tcoupled.runtime.stopping.StopVote`: a non-blocking allreduce over the run).
    """

    def __init__(self, timer: Any, vote: Any, cycles: int) -> None:
        self.timer, self.vote, self.cycles = timer, vote, cycles
        self.start = time.perf_counter()
        self.ends: list[tuple[float, float]] = []   # (seconds, seconds idle so far)

    def __call__(self, done: int) -> None:
        self.vote(done, last=done == self.cycles)
        self.ends.append((time.perf_counter() - self.start, self.timer.totals.get("idle", 0.0)))

    def result(self, side: str, kind: str) -> dict:
        """Median period and busy time of cycles 2 to C (the first one too, for warm-up).

        ``kind`` names them: ``{side}_{kind}_s``, ``{kind}_cycle_s``, ``first_{kind}_s``.
        """
        points = [(0.0, 0.0), *self.ends]
        periods = [b[0] - a[0] for a, b in zip(points, points[1:])]
        busy = [(b[0] - a[0]) - (b[1] - a[1]) for a, b in zip(points, points[1:])]
        found = {f"{side}_{kind}_s": statistics.median(busy[1:] or busy),
                 f"{kind}_cycle_s": statistics.median(periods[1:] or periods)}
        if side == "train":
            found[f"first_{kind}_s"] = busy[0]
        return found


#: the name of each division's figures (``turn_cycle_s``, ``pipe_cycle_s``, ...)
KINDS = {"time": "turn", "space": "pipe"}


def _open(world: Any, workload: Any, scratch: str, division: str, solver: Any) -> tuple:
    """The channel a run of ``division`` uses, opened as ``couple`` opens it (collective).

    Returns the channel, every rank's slot spec, the phase timer and the node
    communicator (to free).
    """
    from tcoupled.coupling.channels import (
        ChannelContext,
        SlotSpec,
        default_channel,
        open_channel,
        slots_for,
    )
    from tcoupled.coupling.channels.copies import CopyLedger
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.runtime.telemetry import PhaseTimer

    spec = None
    if solver is not None:
        spec = SlotSpec(workload.sim_steps + 1, tuple(solver.local_shape), workload.wave.dtype,
                        pad=1, carried=1)
    specs = world.allgather(spec)
    xp = __import__(world.bcast(solver.xp.__name__ if solver is not None else None, root=0))
    timer = PhaseTimer()
    node = world.Split_type(init_mpi().COMM_TYPE_SHARED, key=world.Get_rank())
    ctx = ChannelContext(world=world, node_comm=node, staging_dir=Path(scratch, division),
                         timer=timer, xp=xp, ledger=CopyLedger(), slots=slots_for(division))
    name = workload.channel or default_channel(division, workload.train_ranks)
    return open_channel(name, ctx, spec), specs, timer, node


def take_turns(world: Any, workload: Any, scratch: str, division: str = "time",
               solver: Any = None, train: Any = None, blocks: dict | None = None,
               cycles: int = 0) -> dict:
    """``cycles`` cycles of ``division`` on the run's channel (collective over ``world``).

    The channel is the run's ``--channel``, else the division's default (``shm`` for
    time, ``mpi`` for space), each side waiting as ``couple`` makes it wait. A sim rank
    passes its ``solver``; a train rank passes ``train(samples)`` (one cycle's
    iterations) and ``blocks``, the offset of each sim rank it receives from. ``cycles``
    0 is :func:`~tcoupled.coupling.calibration_train.calibration_cycles`.
    """
    from tcoupled.coupling.calibration_train import calibration_cycles
    from tcoupled.coupling.schedule import DigestLog, Schedule, run_sim_cycles, run_train_cycles
    from tcoupled.runtime.cores import node_load
    from tcoupled.runtime.stopping import StopVote
    from tcoupled.runtime.waiting import adapt_to

    adapt_to(node_load(world), naps=division == "time")  # as couple waits in this division
    feeds, sources = routes(workload)
    rank, cycles = world.Get_rank(), cycles or calibration_cycles(workload)
    channel, specs, timer, node = _open(world, workload, scratch, division, solver)
    vote = StopVote(world)
    clock = _Clock(timer, vote, cycles)
    try:
        if solver is not None:
            run_sim_cycles(solver, channel.sender(feeds[rank]),
                           Schedule(division, cycles, workload.sim_steps), timer, clock)
            return clock.result("sim", KINDS[division])
        receivers = [channel.receiver(s, specs[s], cycles) for s in sources[rank]]
        run_train_cycles(receivers, sources[rank], cycles,
                         lambda tensors: train([(blocks[s], t) for s, t in
                                                zip(sources[rank], tensors, strict=True)]),
                         DigestLog(timer, enabled=False), 0, clock)
        return clock.result("train", KINDS[division])
    finally:
        vote.close()
        channel.close()
        node.Free()


def divisions(world: Any, workload: Any, sim_comm: Any, scratch: str, trainer: Any = None,
              member_comm: Any = None, blocks: dict | None = None) -> dict:
    """Each division's cycle measured whole, in two rounds (collective).

    A sim rank passes ``sim_comm``; a train rank its ``trainer``, ``member_comm`` and the
    ``(offset, shape)`` ``blocks`` of its sources. Each round runs time then space
    division: one round's ratio of the two was 0.97 where the runs gave 1.26 (two sim
    ranks and a train rank on 2 cores). The first round runs ``MAX_CYCLES`` cycles at
    most; where the run's cycles are more and short, the second runs as many of them as
    fit in ``TURN_BUDGET_S`` (see
    :func:`~tcoupled.coupling.calibration_train.calibration_cycles`) and alone gives the
    figures, else the two rounds' means do. The first cycle (the warm-up) is the first
    round's.
    """
    from tcoupled.coupling.calibration_train import calibration_cycles, sleep_barrier

    def one_round(cycles: int) -> dict:
        found: dict[str, float] = {}
        for division in ("time", "space"):
            found.update(_division(world, workload, sim_comm, scratch, division, cycles,
                                   trainer, member_comm, blocks))
            sleep_barrier(world)
        return found

    cycles = calibration_cycles(workload)
    first = one_round(cycles)
    longest = world.allreduce(max(first[f"{k}_cycle_s"] for k in KINDS.values()), op=_max())
    more = calibration_cycles(workload, longest)
    rounds = [one_round(more)] if more > cycles else [first, one_round(cycles)]
    return {key: value if key.startswith("first_") else
            statistics.mean(r[key] for r in rounds) for key, value in first.items()}


def _max() -> Any:
    from tcoupled.runtime.mpienv import init_mpi

    return init_mpi().MAX


def _division(world: Any, workload: Any, sim_comm: Any, scratch: str, division: str,
              cycles: int, trainer: Any, member_comm: Any, blocks: dict | None) -> dict:
    """One division's ``cycles`` cycles: a fresh trainer's or a fresh solver's side."""
    from tcoupled.coupling.calibration_train import fresh_memory, train_cycle
    from tcoupled.sim.solver import WaveSolver
    from tcoupled.training.samples import as_training_dtype

    if trainer is None:
        with WaveSolver(workload.wave, sim_comm) as solver:
            return take_turns(world, workload, scratch, division, solver=solver,
                              cycles=cycles)

    def train(pairs: list) -> None:
        cast = [(offset, as_training_dtype(tensor)[0]) for offset, tensor in pairs]
        train_cycle(trainer, member_comm, cast, workload)

    fresh_memory(trainer, workload)   # its replay buffer fills from empty, as a run's
    offsets = {source: offset for source, (offset, _) in blocks.items()}
    return take_turns(world, workload, scratch, division, train=train, blocks=offsets,
                      cycles=cycles)
