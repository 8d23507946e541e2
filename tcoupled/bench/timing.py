"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(fn: Callable[[], None], min_time: float = 0.2, repeats: int = 5) -> float:
    """Best per-call time of ``fn`` over ``repeats`` batches lasting ``min_time`` each.

    The batch size is calibrated once, so cheap calls are timed in bulk.
    """
    fn()  # warm-up (page faults, caches, JIT)
    calls, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / repeats or calls >= 1 << 20:
            break
        calls *= 2
    best = elapsed / calls
    for _ in range(repeats - 1):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def time_each(fn: Callable[[int], None], min_time: float = 0.2, least: int = 5,
              most: int = 1_000_000, warmup: int = 2) -> list[float]:
    """Seconds of each call ``fn(i)``: at least ``least`` calls, until ``min_time`` has passed.

    Every call is timed on its own (a handoff is one call), after ``warmup`` untimed ones.
    """
    for i in range(warmup):
        fn(i)
    times: list[float] = []
    total = 0.0
    while len(times) < most and (len(times) < least or total < min_time):
        start = time.perf_counter()
        fn(len(times) + warmup)
        times.append(time.perf_counter() - start)
        total += times[-1]
    return times
