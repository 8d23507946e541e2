"""Who waits for whom: time-division staggering and space-division concurrency.

Both divisions share one protocol (:mod:`tcoupled.coupling.channels.base`); they differ
in what the sim rank does after publishing a cycle:

* ``time``: it waits until every train rank it feeds has released the cycle,
  i.e. has finished its ``train_iters`` iterations -- sim and train take turns
  on the same resources (staggered steps);
* ``space``: it goes straight on stepping into the other slot (double
  buffering); only when both slots are still held does ``acquire`` block
  (backpressure), and that wait is timed as ``idle``.

With ``--train-ranks 0`` the sim rank is its own trainer and runs
:func:`run_inproc_cycles`. The functions here know nothing of torch: training
is a callback that takes the received slot tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tcoupled.runtime.telemetry import PhaseTimer

DIVISIONS = ("time", "space")

#: ``train(tensors)`` trains on the slots received this cycle (one per source)
TrainStep = Callable[[Sequence[Any]], None]


@dataclass(frozen=True)
class Schedule:
    """How many cycles, steps per cycle, and which division."""

    division: str
    cycles: int
    sim_steps: int
    first: int = 0  # cycles already done (a resumed run starts here)


#: ``on_cycle(done)`` runs after a rank has finished cycle ``done - 1`` (checkpoint, progress)
CycleHook = Callable[[int], None]


def _no_hook(done: int) -> None:
    """Default :data:`CycleHook`: nothing to do."""


def fill_slot(solver: Any, slot: Any, steps: int, timer: PhaseTimer) -> None:
    """Write the current field and the fields of the next ``steps`` steps into ``slot``.

    Pairs ``(slot[i], slot[i + 1])`` are the training samples. Writing the
    field into the slot is timed as ``record`` (the producer's copy, not the
    channel's); stepping is timed by the solver itself (``sim``, ``halo``).
    """
    with timer.phase("record"):
        slot[0][...] = solver.field
    for i in range(1, steps + 1):
        solver.step()
        with timer.phase("record"):
            slot[i][...] = solver.field


def run_sim_cycles(solver: Any, sender: Any, schedule: Schedule, timer: PhaseTimer,
                   on_cycle: CycleHook = _no_hook) -> None:
    """Run the sim rank's side: produce the slots, staggered or concurrent."""
    for cycle in range(schedule.first, schedule.cycles):
        slot = sender.acquire()
        fill_slot(solver, slot, schedule.sim_steps, timer)
        sender.publish()
        if schedule.division == "time":
            sender.wait_released()
        on_cycle(cycle + 1)
    sender.close()


class DigestLog:
    """Hashes of every slot a trainer received, keyed by (cycle, sim index)."""

    def __init__(self, timer: PhaseTimer) -> None:
        self.timer = timer
        self.entries: list[tuple[int, int, str]] = []

    def add(self, cycle: int, sim_index: int, tensor: Any) -> None:
        """Record the hash of ``tensor`` (shape, dtype and bytes)."""
        with self.timer.phase("digest"):
            array = tensor.detach().cpu().numpy()
            digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
            digest.update(array.tobytes())
            self.entries.append((cycle, sim_index, digest.hexdigest()))


def combine_digests(entries: Sequence[tuple[int, int, str]]) -> str:
    """One hash of all entries in canonical (cycle, sim index) order."""
    total = hashlib.sha256()
    for cycle, sim_index, digest in sorted(set(entries)):
        total.update(f"{cycle}:{sim_index}:{digest}\n".encode())
    return total.hexdigest()


def run_train_cycles(receivers: Sequence[Any], sim_indices: Sequence[int], cycles: int,
                     train: TrainStep, log: DigestLog, first: int = 0,
                     on_cycle: CycleHook = _no_hook) -> None:
    """Run the train rank's side: receive one slot per source each cycle, train, release."""
    for cycle in range(first, cycles):
        tensors = [receiver.receive() for receiver in receivers]
        for sim_index, tensor in zip(sim_indices, tensors, strict=True):
            log.add(cycle, sim_index, tensor)
        train(tensors)
        for receiver in receivers:
            receiver.release()
        on_cycle(cycle + 1)
    for receiver in receivers:
        receiver.close()


def run_inproc_cycles(solver: Any, sender: Any, receiver: Any, schedule: Schedule,
                      sim_index: int, train: TrainStep, log: DigestLog,
                      timer: PhaseTimer, on_cycle: CycleHook = _no_hook) -> None:
    """Sim and train in one process, taking turns (time division, ``inproc``)."""
    for cycle in range(schedule.first, schedule.cycles):
        slot = sender.acquire()
        fill_slot(solver, slot, schedule.sim_steps, timer)
        sender.publish()
        tensor = receiver.receive()
        log.add(cycle, sim_index, tensor)
        train([tensor])
        receiver.release()
        on_cycle(cycle + 1)
    receiver.close()
    sender.close()
