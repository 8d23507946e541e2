"""Replay a screen against a table of known results, with asynchronous workers modelled.

The replay drives a policy exactly as :class:`~tcoupled.screening.loop.ScreenLoop` does
(:func:`~tcoupled.screening.policies.take` for free workers, a refit after the
submissions while every worker is busy), on a simulated clock: each molecule runs for
the seconds its calculation took when the table was built, on one of ``workers``
workers, each of which holds ``depth`` molecules (running and queued, as the farm's
manager keeps them), and the model's own time is not charged (it is off the workers'
path). With
``refit_first`` the policy is refitted *before* the free worker is served, as the
screen did before its ranked queue (the worker waits for the model).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from tcoupled.farm.manager import QUEUE_DEPTH
from tcoupled.screening.policies import Policy, take


@dataclass
class Replay:
    """The molecules a replayed screen finished, in completion order."""

    order: np.ndarray  # indices into the table
    end: np.ndarray  # simulated completion time (s)
    predicted: np.ndarray  # the prediction when each was chosen (nan: random)


def replay(policy: Policy, values: np.ndarray, seconds: np.ndarray, workers: int,
           budget: int, refit_first: bool = False, depth: int = QUEUE_DEPTH) -> Replay:
    """Run ``policy`` against ``values`` (nan: a failed calculation) for ``budget`` results."""
    running: list[tuple[float, int, int, float, int]] = []  # (end, tie, index, guess, worker)
    held, free_at = [0] * workers, [0.0] * workers  # tasks at each worker; when it is free
    clock, started, tie = 0.0, 0, 0
    order, end, predicted = [], [], []
    while len(order) < budget:
        if refit_first and policy.stale:
            policy.update()
        slots = max(min(workers * depth - len(running), budget - started), 0)
        for index, guess in take(policy, slots, max(slots - held.count(0), 0)):
            worker = min(range(workers), key=held.__getitem__)  # least loaded, as the farm
            done = max(clock, free_at[worker]) + float(seconds[index])  # after its queue
            free_at[worker], held[worker] = done, held[worker] + 1
            heapq.heappush(running, (done, tie, index, guess, worker))
            started, tie = started + 1, tie + 1
        if not refit_first and policy.stale:
            policy.update()
        if not running:
            break
        clock, _, index, guess, worker = heapq.heappop(running)
        held[worker] -= 1
        policy.observe(index, float(values[index]))
        order.append(index)
        end.append(clock)
        predicted.append(guess)
    return Replay(np.array(order, dtype=int), np.array(end), np.array(predicted))


def top_set(values: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Return the indices of the best ``fraction`` of the finite values (at least one)."""
    finite = np.flatnonzero(np.isfinite(values))
    count = max(1, int(round(fraction * len(finite))))
    return finite[np.argsort(-values[finite], kind="stable")[:count]]


def found_curve(order: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Number of ``top`` molecules found after each result."""
    return np.cumsum(np.isin(order, top))


def best_in_top(order: np.ndarray, values: np.ndarray, top: np.ndarray) -> bool:
    """Whether the best molecule found is one of ``top``."""
    found = values[order]
    if not np.isfinite(found).any():
        return False
    return int(order[np.nanargmax(found)]) in set(top.tolist())
