"""What a timed window of ``bench farm`` keeps: counts, task time and a few values."""

from __future__ import annotations

import time
from collections.abc import Callable

MapBatch = Callable[[list], tuple[list[dict], int]]  # payloads -> (ok outcomes, n failed)


class Tally:
    """What a timed window keeps of its batches: counts, task time, the first values.

    Not the outcomes: a million of them alive made the garbage collector walk them all,
    which cost the process driving the runner (the farm's manager) 15% of its throughput.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep  # values kept: the first ones (the xTB energies, to check)
        self.ok, self.failed, self.task_s, self.values = 0, 0, 0.0, []

    def add(self, outcomes: list[dict], failed: int) -> None:
        """Count a batch's outcomes (:func:`~tcoupled.bench.farm_driver.timed_task`), ``failed``."""
        self.ok, self.failed = self.ok + len(outcomes), self.failed + failed
        self.task_s += sum(o["seconds"] for o in outcomes)
        self.values.extend(o["value"] for o in outcomes[:self.keep - len(self.values)])


def summarize(n_workers: int, wall_s: float, tally: Tally) -> dict:
    """Throughput and overhead of one timed window (or xTB batch)."""
    n_tasks = tally.ok + tally.failed
    return {"workers": n_workers, "tasks": n_tasks, "failed": tally.failed, "wall_s": wall_s,
            "task_s": tally.task_s, "tasks_per_s": n_tasks / wall_s,
            "overhead_ms_per_task": 1e3 * max(n_workers * wall_s - tally.task_s, 0.0) / n_tasks,
            "values": tally.values}


def time_window(n_workers: int, map_batch: MapBatch, batch: list[dict],
                window_s: float, keep: int) -> dict:
    """Run ``batch`` again and again until ``window_s`` has passed; one summary row."""
    tally = Tally(keep)
    start = time.perf_counter()
    while True:
        tally.add(*map_batch(batch))
        wall = time.perf_counter() - start
        if wall >= window_s:
            return summarize(n_workers, wall, tally)
