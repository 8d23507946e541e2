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
def spread(values: list[float]) -> dict:
    """Median and interquartile range of repeated measurements (``n``, ``q1``, ``q3``)."""
    import statistics

    ordered = sorted(values)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {"median": statistics.median(ordered), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "n": len(ordered), "values": list(values)}


def median_ci95(values: list[float]) -> dict:
    """Median with a distribution-free interval of at least 95% coverage (when n >= 6).

    The interval is ``[x_(k), x_(n+1-k)]`` of the sorted values with the largest ``k``
    whose binomial coverage ``1 - 2 P(Bin(n, 1/2) < k)`` is still >= 0.95; below six
    values no such ``k`` exists and the full range is given, with its coverage
    (93.75% for five values).
    """
    import statistics
    from math import comb

    ordered, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= n // 2 and coverage(k + 1) >= 0.95:
        k += 1
    return {"median": statistics.median(ordered), "ci95": [ordered[k - 1], ordered[n - k]],
            "coverage": coverage(k), "n": n, "values": list(values)}
