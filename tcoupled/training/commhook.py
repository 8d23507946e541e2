"""DDP's gradient all-reduce: PyTorch's stock hook, with the time it is not hidden measured.

:func:`torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook` starts
each bucket's all-reduce asynchronously as soon as the bucket's gradients are ready, so
communication overlaps the rest of backward. What the step pays for it is the *exposed*
time: from the moment the last bucket was handed over (the end of gradient computation)
to the moment the last all-reduce finished. :class:`AllreduceClock` measures exactly that,
on the clock where the work happens: CUDA events on the GPU (NCCL returns at enqueue, so a
host clock would read nothing), the host clock for gloo (whose futures complete when the
data has arrived).
"""

from __future__ import annotations

import time
from typing import Any


class AllreduceClock:
    """The stock all-reduce hook plus the exposed all-reduce time of each optimizer step.

    Parameters
    ----------
    cuda : bool
        Whether gradients live on a CUDA device (events instead of the host clock).
    """

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self._handed: list[Any] = []   # when each bucket was handed to the all-reduce
        self._done: list[Any] = []     # when each bucket's all-reduce finished

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        import torch

        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    # no annotations: DDP inspects them, and postponed (string) annotations fail its check
    def hook(self, state, bucket):  # noqa: ANN001, ANN201
        """DDP comm hook: the stock ``allreduce_hook``, with its start and end recorded."""
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        self._handed.append(self._now())
        future = default_hooks.allreduce_hook(state, bucket)

        def finished(fut):  # noqa: ANN001, ANN202 - runs where the result is ready
            self._done.append(self._now())
            return fut.value()

        return future.then(finished)

    def exposed(self) -> float:
        """Seconds the last step's all-reduce ran past its last gradient; resets the clock.

        Call once the step's work has finished (after a device synchronisation).
        """
        handed, done = self._handed, self._done
        self._handed, self._done = [], []
        if not handed or not done:
            return 0.0
        if self.cuda:
            last = handed[-1]
            seconds = max(last.elapsed_time(event) for event in done) / 1e3
        else:
            seconds = max(done) - max(handed)
        return max(0.0, seconds)
