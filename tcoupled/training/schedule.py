"""The learning-rate schedule over a run's known number of optimizer steps.

Online training has a fixed budget, ``--cycles`` x ``--train-iters`` steps, known before
the first one. ``cosine`` (the default) warms the rate up linearly over the first
``warmup`` fraction of the steps and then decays it along a half cosine towards zero
(the shape of OneCycle and of SGDR's first cycle): large steps while the model is far
off, small ones at the end, where a constant rate leaves the weights jittering around
the optimum. The rate of a step is a function of the steps done before it, so a resumed
run (whose trainer restores its losses, one per step) continues on the same curve
without any state of its own. Nothing here imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tcoupled.runtime.errors import ConfigError

#: ``--lr-schedule`` choices
SCHEDULES = ("cosine", "constant")
#: fraction of the steps spent warming up (``--warmup``)
WARMUP = 0.25


@dataclass(frozen=True)
class LRSchedule:
    """Factor of the peak learning rate at each of ``total`` optimizer steps.

    Parameters
    ----------
    total : int
        Optimizer steps of the whole run (``cycles * train_iters``).
    warmup : float
        Fraction of them in the linear warm-up, in ``[0, 1)``.
    """

    total: int
    warmup: float = WARMUP

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ConfigError(f"a learning-rate schedule needs at least 1 step, got {self.total}")
        check_warmup(self.warmup)

    @property
    def warmup_steps(self) -> int:
        """Steps of the linear warm-up."""
        return round(self.warmup * self.total)

    def factor(self, step: int) -> float:
        """Factor of the peak rate for step ``step`` (0-based; past the end: the last one)."""
        step = min(max(step, 0), self.total - 1)
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / (self.total - warm)))


def check_warmup(warmup: float) -> None:
    """Refuse a warm-up fraction outside ``[0, 1)``."""
    if not 0.0 <= warmup < 1.0:
        raise ConfigError(f"--warmup must be a fraction in [0, 1), got {warmup}")


def make_schedule(name: str, total: int, warmup: float = WARMUP) -> LRSchedule | None:
    """The schedule ``--lr-schedule name`` over ``total`` steps (``None``: constant rate)."""
    if name not in SCHEDULES:
        raise ConfigError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return LRSchedule(total, warmup) if name == "cosine" else None
