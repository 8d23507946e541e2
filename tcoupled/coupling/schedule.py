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

from tcoupled.coupling.channels.copies import CopyLedger, address
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


def fill_slot(solver: Any, slot: Any, steps: int, timer: PhaseTimer,
              ledger: CopyLedger | None = None,
              same_memory: Callable[[Any, Any], bool] | None = None) -> list[int]:
    """Step the solver through the padded frames of ``slot``; return the frames' addresses.

    The first ``carried = len(slot) - steps`` frames (1: ``u^n``; 2: ``u^{n-1}, u^n``)
    hold the levels the cycle starts from. Where a slot is a window of a ring
    (:mod:`..channels.ring`) they are the previous window's last frames already
    (``same_memory`` says so) and nothing moves; before the first step the solver
    generates ``u^0`` in them. Otherwise (separate slots, or a resumed run's restored
    levels) their owned blocks are copied from where the solver holds them, counted in
    ``ledger`` as ``carry``. Either way this is timed as ``carry``. Then the leapfrog
    writes ``u^{n+1}`` straight into frame ``i + 1`` from frames ``i`` and ``i - 1``:
    pairs of consecutive frames are the training samples, and not one of the stepped
    frames is copied. The addresses returned are where the solver's current level was
    after each frame was written; :meth:`Sender.publish` checks them against the slot.
    """
    ledger = ledger if ledger is not None else CopyLedger()
    same_memory = same_memory or (lambda a, b: address(a) == address(b))
    carried = len(slot) - steps
    if carried not in (1, 2):
        raise ValueError(f"fill_slot: a slot of {len(slot)} frames for {steps} steps "
                         f"carries 1 or 2 levels, not {carried}")
    with timer.phase("carry"):
        levels = [solver.previous_level, solver.u][2 - carried:]
        for frame, level in zip(slot[:carried], levels, strict=True):
            if same_memory(frame, level):
                continue
            if solver.steps_done == 0:
                solver.start_in(frame)
            else:
                ledger.copy(solver.owned(frame), solver.owned(level), "carry")
        solver.rebind(slot[carried - 1], slot[0] if carried == 2 else None)
    written = [address(frame) for frame in slot[:carried - 1]] + [address(solver.u)]
    for i in range(carried, carried + steps):
        solver.step_into(slot[i])
        written.append(address(solver.u))
    return written


def run_sim_cycles(solver: Any, sender: Any, schedule: Schedule, timer: PhaseTimer,
                   on_cycle: CycleHook = _no_hook) -> None:
    """Run the sim rank's side: produce the slots, staggered or concurrent."""
    for cycle in range(schedule.first, schedule.cycles):
        slot = sender.acquire()
        written = fill_slot(solver, slot, schedule.sim_steps, timer, sender.ledger,
                            sender.same_memory)
        sender.publish(written)
        if schedule.division == "time":
            sender.wait_released()
        on_cycle(cycle + 1)
    solver.take_levels_home()
    sender.close()


class DigestLog:
    """Hashes of every slot a trainer received, keyed by (cycle, sim index) (``--verify``).

    Off (``enabled=False``) it reads nothing. On, a host tensor is hashed where it
    lies, row by row (the same hash as of its C-order bytes, and no copy); a device
    tensor is copied to the host first, and that copy is counted in ``ledger``.
    """

    def __init__(self, timer: PhaseTimer, ledger: CopyLedger | None = None,
                 enabled: bool = True) -> None:
        self.timer, self.enabled = timer, enabled
        self.ledger = ledger if ledger is not None else CopyLedger()
        self.entries: list[tuple[int, int, str]] = []

    def add(self, cycle: int, sim_index: int, tensor: Any) -> None:
        """Record the hash of ``tensor`` (shape, dtype and bytes)."""
        if not self.enabled:
            return
        with self.timer.phase("digest"):
            tensor = tensor.detach()
            if tensor.device.type != "cpu":
                tensor = tensor.cpu()
                self.ledger.count(tensor.numel() * tensor.element_size(), "digest")
            array = tensor.numpy()
            digest = hashlib.sha256(f"{array.shape}{array.dtype}".encode())
            for row in _rows(array):
                digest.update(row)
            self.entries.append((cycle, sim_index, digest.hexdigest()))


def _rows(array: Any) -> Any:
    """The contiguous runs of ``array`` in C order (the array itself when contiguous)."""
    if array.flags.c_contiguous:
        yield array
    else:
        for sub in array:
            yield from _rows(sub)


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
        written = fill_slot(solver, slot, schedule.sim_steps, timer, sender.ledger,
                            sender.same_memory)
        sender.publish(written)
        tensor = receiver.receive()
        log.add(cycle, sim_index, tensor)
        train([tensor])
        receiver.release()
        on_cycle(cycle + 1)
    solver.take_levels_home()
    receiver.close()
    sender.close()
