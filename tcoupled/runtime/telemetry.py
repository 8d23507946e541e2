"""Timers, per-rank time breakdowns and logging."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

LOGGER_NAME = "tcoupled"


class PhaseTimer:
    """Accumulate wall time per named phase (``sim``, ``halo``, ``train``, ...)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block under ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to phase ``name``."""
        self.totals[name] += seconds
        self.counts[name] += 1

    def as_dict(self) -> dict[str, float]:
        """Return the totals as a plain dict (seconds per phase)."""
        return dict(self.totals)


class StreamPhaseTimer(PhaseTimer):
    """Phase times of asynchronous device work, read from events on the stream.

    A kernel launch returns before the kernel has run, so a host clock around it
    measures the launch only (and the next synchronisation absorbs the kernel's time
    into whatever phase it falls in). Here each phase records an event on the current
    stream at its start and at its end; the time between the two is what the device
    spent from the end of the previous phase to the end of this one -- consecutive
    phases partition the stream's timeline. Nothing synchronises in the loop: finished
    events are read when many are pending, the rest when the totals are asked for.

    Parameters
    ----------
    cuda : module
        ``cupy.cuda`` (anything with ``Event``, ``get_elapsed_time``).
    """

    PENDING = 256

    def __init__(self, cuda: object) -> None:
        super().__init__()
        self.cuda = cuda
        self._pending: list[tuple[str, object, object]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the device work queued by the body of a ``with`` block under ``name``."""
        start = self.cuda.Event()
        start.record()
        try:
            yield
        finally:
            end = self.cuda.Event()
            end.record()
            self._pending.append((name, start, end))
            if len(self._pending) >= self.PENDING:
                self._collect(wait=False)

    def _collect(self, wait: bool) -> None:
        """Add the finished phases (all of them when ``wait``) to the totals."""
        left = []
        for name, start, end in self._pending:
            if wait:
                end.synchronize()
            if left or not (wait or end.done):  # events finish in order on a stream
                left.append((name, start, end))
                continue
            self.add(name, self.cuda.get_elapsed_time(start, end) / 1e3)
        self._pending = left

    def as_dict(self) -> dict[str, float]:
        """Wait for the pending events; return seconds per phase."""
        self._collect(wait=True)
        return super().as_dict()


def setup_logging(out_dir: str | Path | None = None, rank: int = 0,
                  quiet: bool = False, leader: bool | None = None) -> logging.Logger:
    """Log progress to stdout (unless ``quiet``) and to ``out_dir/run.log``.

    Only leaders log: rank 0 by default, or whoever ``leader`` says (``couple``
    makes rank 0 of each role a leader). Each message is one line, written with
    one ``write`` in append mode, so the leaders' lines never tear in the shared
    log file or in a PBS log.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    logger.propagate = False
    leads = rank == 0 if leader is None else leader
    if leads and not quiet:
        stream = logging.StreamHandler(sys.stdout)
        stream.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(stream)
    if leads and out_dir is not None:
        from tcoupled.runtime.store import LOG_FILE

        handler = logging.FileHandler(Path(out_dir) / LOG_FILE)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def get_logger() -> logging.Logger:
    """Return the package logger."""
    return logging.getLogger(LOGGER_NAME)
