"""Calibration job of the cost model: a coupled run's unit costs at its own rank counts.

Launched by :func:`tcoupled.coupling.costmodel.calibrate` as ``mpiexec -n S+T python -m
mpi4py -m tcoupled.coupling.calibration SPEC OUT`` (``SPEC`` a JSON
:class:`~tcoupled.coupling.costmodel.Workload`), it runs on the run's ``S`` sim and
``T`` train ranks, one phase at a time, the ranks outside a phase waiting asleep:

``sim``
    the sim ranks step the run's grid, decomposed as the run does (halo included), ``K``
    steps into a slot of ``K + 1`` frames; then sim rank 0's block alone (no halo);
``divisions``
    (with train ranks; first, so the trainer is as fresh as a run's) ``C`` cycles of each
    division (at most 12) through ``couple``'s own loops, on the run's channel or each
    division's default, twice (:mod:`.calibration_turns`): each cycle measured whole;
``train``
    each member's train ranks form its DDP group, as ``couple``, and train on random
    slots of the run's blocks with the run's replay buffer (its first fill timed per
    sample): the first iteration, iterations for about half a second, then ``C`` whole
    training cycles (blocks in context, ``M`` iterations, replay);
``together``
    (with train ranks) both sides at once for about a second, as space division runs
    them: solver and training cycles under each other's load (cores, memory
    bandwidth, comm threads);
``handoff``
    sim rank 0 hands the first train rank a slot-sized buffer the way each channel
    moves bytes (``mpi``: a message; ``file``: written, then read; ``shm``/``inproc``:
    a signal only) and the tiny-message latency, waiting as the roles wait.

Sim rank 0 writes the JSON result to ``OUT``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import numpy as np

from tcoupled.coupling.calibration_train import REPEATS, mpi_max, sleep_barrier

TOGETHER_S = 1.0
MIN_SIM_S = 0.3


def new_slot(solver: Any, steps: int) -> Any:
    """A slot of ``steps + 1`` padded frames as ``couple`` makes it, in the solver's memory.

    A CuPy field cannot be written into a NumPy slot (CuPy refuses implicit conversion), so
    the slot comes from the solver's own backend.
    """
    return solver.backend.zeros((steps + 1, *solver.block.padded_shape), solver.config.dtype)


def _synchronize(solver: Any) -> None:
    """Wait for the solver's device kernels (no-op on the CPU)."""
    stream = getattr(getattr(getattr(solver, "xp", None), "cuda", None), "get_current_stream", None)
    if stream is not None:
        stream().synchronize()


def _cycle(solver: Any, slot: Any, steps: int) -> None:
    """One cycle of the sim side: ``steps`` steps into the frames of ``slot``."""
    from tcoupled.coupling.schedule import fill_slot
    from tcoupled.runtime.telemetry import PhaseTimer

    fill_slot(solver, slot, steps, PhaseTimer())
    _synchronize(solver)


def time_sim(wave: Any, comm: Any, steps: int) -> float:
    """Median of the slowest rank's seconds for one cycle on ``comm``.

    At least ``REPEATS`` cycles after a warm-up one, and for about ``MIN_SIM_S``: three
    50 ms cycles once came out 52 ms where every other measure of the same job said 45.
    """
    from tcoupled.sim.solver import WaveSolver

    times: list[float] = []
    with WaveSolver(wave, comm) as solver:
        slot = new_slot(solver, steps)  # one slot, as time division reuses it
        _cycle(solver, slot, steps)     # warms up
        while len(times) < REPEATS or (sum(times) < MIN_SIM_S and len(times) < 40):
            comm.Barrier()
            start = time.perf_counter()
            _cycle(solver, slot, steps)
            times.append(comm.allreduce(time.perf_counter() - start, op=mpi_max()))
    return statistics.median(times)


def sim_phase(world: Any, sim_comm: Any, workload: Any, is_sim: bool) -> dict:
    """Decomposed cycle on the sim ranks, then sim rank 0's block alone."""
    from dataclasses import replace

    from tcoupled.runtime.mpienv import init_mpi

    found: dict = {}
    block = None
    if is_sim:
        found["sim_s"] = time_sim(workload.wave, sim_comm, workload.sim_steps)
        from tcoupled.sim.solver import WaveSolver

        with WaveSolver(workload.wave, sim_comm) as solver:
            local = tuple(solver.local_shape)
            found["local_shape"] = list(local)
            block = (tuple(solver.offset), local)
    sleep_barrier(world)   # before any blocking collective: it would spin a core
    found["blocks"] = world.allgather(block)[:workload.sim_ranks]  # (offset, shape) by rank
    if world.Get_rank() == 0:
        alone = replace(workload.wave, grid=local)
        found["sim_serial_s"] = time_sim(alone, init_mpi().COMM_SELF, workload.sim_steps)
    sleep_barrier(world)
    return found


def run_for(comm: Any, window_s: float, work: Any) -> list[float]:
    """Call ``work()`` on every rank of ``comm`` until ``window_s`` passed (all agree)."""
    times: list[float] = []
    start = time.perf_counter()
    more = True
    while more:
        begin = time.perf_counter()
        work()
        times.append(time.perf_counter() - begin)
        more = comm.allreduce(time.perf_counter() - start < window_s or len(times) < 3,
                              op=mpi_max())
    return times


def sim_together(workload: Any, sim_comm: Any, window_s: float) -> dict:
    """Sim ranks: cycles for ``window_s`` while the train ranks train (space division)."""
    from tcoupled.sim.solver import WaveSolver

    with WaveSolver(workload.wave, sim_comm) as solver:
        slots = [new_slot(solver, workload.sim_steps) for _ in range(2)]  # double buffering
        count = [0]

        def cycle() -> None:
            _cycle(solver, slots[count[0] % 2], workload.sim_steps)
            count[0] += 1

        times = run_for(sim_comm, window_s, cycle)
    return {"sim_together_s": statistics.median(times)}


def train_phase(world: Any, workload: Any, train_rank: int | None, trainers: int,
                blocks: list, scratch: str, together: tuple[Any, float] | None = None) -> dict:
    """Train each member on its DDP group; this rank's first, median and allreduce times.

    ``train_rank`` is this rank's index among the ``trainers`` training ranks (``None``
    if it does not train); consecutive groups of them train one member each, on the
    ``(offset, shape)`` ``blocks`` of their sources (keyed by sim rank). With
    ``together = (sim_comm, window_s)`` the sides first take turns
    (:mod:`.calibration_turns`), and after the timings train for ``window_s`` while the
    sim ranks (``sim_comm`` not null) step cycles (:func:`sim_together`).
    """
    from tcoupled.coupling.calibration_train import build_member, time_member, train_cycle
    from tcoupled.training.ensemble import close_member_group

    group_size = max(1, trainers // max(len(workload.members), 1))
    color = train_rank // group_size if train_rank is not None else len(workload.members)
    member_comm = world.Split(color, world.Get_rank())
    found: dict = {}
    trainer = work = None
    if train_rank is not None:
        member = workload.members[color % len(workload.members)]
        trainer, slots = build_member(member_comm, workload, member, list(blocks.values()),
                                      scratch)
        count = [0]

        def work() -> None:
            train_cycle(trainer, member_comm, slots[count[0] % 2], workload)
            count[0] += 1
    # the other ranks wait here sleeping: in the allreduce below MPICH would spin a core
    # the trainers need (measured: a DDP pair's iterations took twice as long)
    sleep_barrier(world)
    if together is not None:   # first, as a run starts: in memory the trainer never used
        from tcoupled.coupling.calibration_turns import divisions

        found.update(divisions(world, workload, together[0], scratch, trainer,
                               member_comm, blocks))
        sleep_barrier(world)
    if train_rank is not None:
        found.update(time_member(member_comm, workload, trainer, slots))
    sleep_barrier(world)
    if together is not None:
        # long enough for three of the slower side's cycles, so the two overlap
        window = world.allreduce(max(together[1], 3 * found.get("train_cycle_s", 0.0)),
                                 op=mpi_max())
        sleep_barrier(world)
        if work is not None:
            found["train_together_s"] = statistics.median(run_for(member_comm, window, work))
        else:
            found.update(sim_together(workload, together[0], window))
    if train_rank is not None:
        del trainer, work
        close_member_group(member_comm)
    member_comm.Free()
    sleep_barrier(world)
    return found


def handoff_phase(world: Any, first_train: int, nbytes: int, scratch: str) -> dict:
    """Seconds to move ``nbytes`` from world rank 0 to ``first_train``, per mechanism."""
    from pathlib import Path

    rank = world.Get_rank()
    if rank not in (0, first_train):
        sleep_barrier(world)
        return {}
    peer = first_train if rank == 0 else 0
    payload = np.ones(max(nbytes // 4, 1), dtype=np.float32)
    tiny = np.zeros(1, dtype=np.float32)
    path = Path(scratch, "handoff.bin")

    def recv(buffer: Any, tag: int) -> None:
        """Receive as a waiting role does: probing with backoff, then the receive."""
        try:
            from tcoupled.runtime.mpienv import init_mpi
            from tcoupled.runtime.waiting import wait_for_message
        except ImportError:  # renamed: a plain blocking receive
            world.Recv(buffer, source=peer, tag=tag)
            return
        wait_for_message(world, peer, tag, init_mpi().Status())
        world.Recv(buffer, source=peer, tag=tag)

    def round_trip(kind: str) -> float:
        start = time.perf_counter()
        if rank == 0:
            if kind == "mpi":
                world.Send(payload, dest=peer, tag=71)
            elif kind == "file":
                payload.tofile(path)
                world.Send(tiny, dest=peer, tag=71)
            else:
                world.Send(tiny, dest=peer, tag=71)
            recv(tiny, 72)
        else:
            if kind == "mpi":
                recv(payload, 71)
            else:
                recv(tiny, 71)
                if kind == "file":
                    payload[...] = np.fromfile(path, dtype=np.float32)
            world.Send(tiny, dest=peer, tag=72)
        return time.perf_counter() - start

    found = {}
    for kind in ("signal", "mpi", "file"):
        found[kind] = statistics.median(round_trip(kind) for _ in range(REPEATS + 2))
    sleep_barrier(world)
    latency = found["signal"] / 2
    per_byte = {k: max(found[k] - found["signal"], 0.0) / max(nbytes, 1)
                for k in ("mpi", "file")}
    return {"handoff": {"inproc": [latency, 0.0], "shm": [latency, 0.0],
                        "mpi": [latency, per_byte["mpi"]], "file": [latency, per_byte["file"]]}}


def main(argv: list[str] | None = None) -> None:
    """Run the three phases; sim rank 0 writes the JSON result."""
    import tempfile

    from tcoupled.coupling.costmodel import fan_out, slot_bytes, workload_from_json
    from tcoupled.runtime.cores import node_load
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.runtime.waiting import adapt_to

    spec_path, out_path = (argv or sys.argv[1:])[:2]
    with open(spec_path) as spec:
        workload = workload_from_json(spec.read())
    world = init_mpi().COMM_WORLD
    adapt_to(node_load(world), naps=True)  # waits as time division's (its turns)
    rank, sim = world.Get_rank(), workload.sim_ranks
    scratch = world.bcast(tempfile.mkdtemp(prefix="tcoupled-calibration-") if rank == 0
                          else None)
    sim_comm = world.Split(0 if rank < sim else 1, rank)
    found = sim_phase(world, sim_comm, workload, rank < sim)
    local, sim_s = world.bcast((found.get("local_shape"), found.get("sim_s")), root=0)
    blocks = found.pop("blocks")
    feeds, sources, _ = fan_out(workload)
    # with --train-ranks 0 the sim ranks train, in process (no handoff to measure)
    first, trainers = (sim, workload.train_ranks) if workload.train_ranks else (0, sim)
    mine = rank - first if first <= rank < first + trainers else None
    together = (sim_comm, max(TOGETHER_S, 3 * sim_s)) if workload.train_ranks else None
    if workload.train_ranks:
        from tcoupled.coupling.calibration_turns import routes

        mine_from = routes(workload)[1].get(rank, ())
    else:
        mine_from = (rank,)   # a sim rank trains on its own slot
    train = train_phase(world, workload, mine, trainers, {s: blocks[s] for s in mine_from},
                        scratch, together)
    sim_comm.Free()
    if rank == 0:
        for part in world.gather(train, root=0):
            for key, value in part.items():   # the slowest rank's figure
                found[key] = max(found.get(key, value), value)
    else:
        world.gather(train, root=0)
    if workload.train_ranks:
        found.update(handoff_phase(world, sim, slot_bytes(workload, local), scratch))
    else:
        found["handoff"] = {"inproc": [0.0, 0.0]}  # the trainer reads the solver's slot
    if rank == 0:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
        found.update(feeds=feeds, sources=sources)
        with open(out_path, "w") as out:
            json.dump(found, out)


if __name__ == "__main__":
    main()
