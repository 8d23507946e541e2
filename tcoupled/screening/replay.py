"""Replay a screen against a table of known results, with asynchronous workers modelled.

The replay drives a policy exactly as :class:`~tcoupled.screening.loop.ScreenLoop` does
(:func:`~tcoupled.screening.policies.take` for free workers, a refit after the
submissions while every worker is busy), on a simulated clock: each molecule runs for
the seconds its calculation took when the table was built, on one of ``workers``
workers, and the model's own time is not charged (it is off the workers' path). With
``refit_first`` the policy is refitted *before* the free worker is served, as the
screen did before its ranked queue (the worker waits for the model).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from tcoupled.screening.policies import Policy, take


@dataclass
class Replay:
    """The molecules a replayed screen finished, in completion order."""

    order: np.ndarray  # indices into the table
    end: np.ndarray  # simulated completion time (s)
    predicted: np.ndarray  # the prediction when each was chosen (nan: random)


def replay(policy: Policy, values: np.ndarray, seconds: np.ndarray, workers: int,
           budget: int, refit_first: bool = False) -> Replay:
    """Run ``policy`` against ``values`` (nan: a failed calculation) for ``budget`` results."""
    running: list[tuple[float, int, int, float]] = []  # (end, tie, index, predicted)
    clock, started, tie = 0.0, 0, 0
    order, end, predicted = [], [], []
    while len(order) < budget:
        if refit_first and policy.stale:
            policy.update()
        slots = min(workers - len(running), budget - started)
        for index, guess in take(policy, max(slots, 0)):
            heapq.heappush(running, (clock + float(seconds[index]), tie, index, guess))
            started, tie = started + 1, tie + 1
        if not refit_first and policy.stale:
            policy.update()
        if not running:
            break
        clock, _, index, guess = heapq.heappop(running)
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
