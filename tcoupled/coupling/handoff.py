"""Handoff costs of the channels, ``latency + bytes * s_per_byte``, and their fit.

These are the cost model's handoff inputs (:mod:`.costmodel`): measured in the
calibration job, or fitted to the rows of a ``bench channels`` result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HandoffCost:
    """Seconds to hand one slot of ``nbytes`` over: ``latency_s + nbytes * s_per_byte``."""

    latency_s: float
    s_per_byte: float = 0.0

    def seconds(self, nbytes: float) -> float:
        """Predicted seconds for ``nbytes``."""
        return self.latency_s + nbytes * self.s_per_byte


def handoff_costs_from_bench(channels: dict) -> dict[str, HandoffCost]:
    """Fit ``latency + bytes * s_per_byte`` per channel to ``bench channels`` rows.

    Rows need ``channel`` (or ``method``), ``bytes`` and ``seconds``, or ``handoff_us``
    with ``touch_us`` (timed end to end: the channel adds ``handoff_us - touch_us``);
    other rows are skipped, and a channel with fewer than two sizes is left out, so the
    in-run measurement stays.
    """
    fitted = {}
    rows = [r for r in channels.get("rows", []) if isinstance(r, dict)
            and isinstance(r.get("bytes"), (int, float)) and _channel_seconds(r) is not None]
    for name in ("inproc", "shm", "mpi", "file"):
        pts = sorted((r["bytes"], _channel_seconds(r)) for r in rows
                     if r.get("channel", r.get("method")) == name)
        if len(pts) < 2 or pts[0][0] == pts[-1][0]:
            continue
        (b0, t0), (b1, t1) = pts[0], pts[-1]
        slope = 0.0 if name in ("inproc", "shm") else max(0.0, (t1 - t0) / (b1 - b0))
        fitted[name] = HandoffCost(max(0.0, t0 - b0 * slope), slope)
    return fitted


def _channel_seconds(row: dict) -> float | None:
    """What the channel adds to one handoff: ``handoff_us - touch_us`` or ``seconds``."""
    if isinstance(row.get("handoff_us"), (int, float)):
        return max(0.0, row["handoff_us"] - row.get("touch_us", 0.0)) * 1e-6
    seconds = row.get("seconds")
    return seconds if isinstance(seconds, (int, float)) else None


def handoff_from_bench_json(path: str | None) -> tuple[dict[str, HandoffCost], str]:
    """Handoff costs fitted to the ``channels`` result of a ``bench.json``, and the source.

    ``path`` ``None`` reads ``TCOUPLED_BENCH_JSON``; no file, no ``channels`` result or
    rows of another layout give ``{}`` (the calibration's in-run measurement is used).
    """
    import json
    from pathlib import Path

    from tcoupled.runtime.mpienv import env

    path = path or env("BENCH_JSON")
    if not path or not Path(path).is_file():
        return {}, "in-run"
    try:
        channels = json.loads(Path(path).read_text()).get("channels")
    except (OSError, ValueError, AttributeError):
        return {}, "in-run"
    fitted = handoff_costs_from_bench(channels) if isinstance(channels, dict) else {}
    return fitted, (f"bench channels ({', '.join(sorted(fitted))})" if fitted else "in-run")
