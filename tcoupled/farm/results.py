"""What the farm's manager hands back: a result per task, and the farm's figures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class TaskResult:
    """What came back from one task."""

    task_id: int
    status: str  # "ok" or "failed"
    value: Any = None
    error: str = ""
    worker: int = 0
    seconds: float = 0.0  # time the worker spent on the task
    #: when the worker began it, seconds since the farm started (manager clock): the
    #: receive time less the worker's time, not before the dispatch
    start: float = 0.0
    end: float = 0.0  # receive time, seconds since the farm started


@dataclass
class FarmStats:
    """Per-worker busy time and counts, kept by the manager."""

    n_workers: int
    started: float = field(default_factory=time.perf_counter)
    busy_s: dict[int, float] = field(default_factory=dict)
    tasks: dict[int, int] = field(default_factory=dict)

    def add(self, result: TaskResult) -> None:
        """Account for one finished task."""
        self.add_many(result.worker, result.seconds, 1)

    def add_many(self, worker: int, seconds: float, count: int) -> None:
        """Account for ``count`` finished tasks of ``worker`` that took ``seconds`` in all."""
        self.busy_s[worker] = self.busy_s.get(worker, 0.0) + seconds
        self.tasks[worker] = self.tasks.get(worker, 0) + count

    def restart_clock(self) -> None:
        """Count time from now (call when the first task is about to be submitted)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the farm started."""
        return time.perf_counter() - self.started

    def as_dict(self, workers: list[int]) -> dict:
        """Return tasks per second, per-worker busy time and utilisation."""
        wall = max(self.elapsed(), 1e-9)
        done = sum(self.tasks.values())
        busy = {str(w): self.busy_s.get(w, 0.0) for w in workers}
        util = {w: b / wall for w, b in busy.items()}
        return {"n_workers": len(workers), "tasks": done, "wall_s": wall,
                "tasks_per_s": done / wall, "worker_busy_s": busy,
                "worker_tasks": {str(w): self.tasks.get(w, 0) for w in workers},
                "worker_utilization": util,
                "mean_utilization": sum(util.values()) / max(len(util), 1)}
