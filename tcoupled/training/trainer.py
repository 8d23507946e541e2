"""DDP training of one ensemble member, and the autoregressive rollout.

The loop has the shape of pytorch/examples ``distributed/ddp-tutorial-series``
(``_run_batch`` / ``_run_epoch`` / ``train``) but everything -- the device, the
process group, the timer -- is passed in; nothing is read from the environment.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tcoupled.runtime.telemetry import PhaseTimer
from tcoupled.training.commhook import AllreduceClock

#: one group of training pairs: inputs and targets, each (n, 1, nx, ny)
Pairs = tuple[torch.Tensor, torch.Tensor]


def pairs_from_frames(frames: torch.Tensor) -> Pairs:
    """Return views ``(frames[i], frames[i + 1])`` of a slot ``(F, nx, ny)``; nothing is copied."""
    return frames[:-1].unsqueeze(1), frames[1:].unsqueeze(1)


class Trainer:
    """Train one model on batches of pairs, with DDP when a process group is given.

    Parameters
    ----------
    model : nn.Module
        The member's model, already on ``device`` with the field dtype.
    lr : float
        Adam learning rate.
    device : torch.device or str
        Where the batches are moved (a no-op when they are there already).
    group : process group, optional
        The member's DDP group; ``None`` trains without DDP.
    timer : PhaseTimer, optional
        Receives ``train`` and ``allreduce`` times.
    batch_size : int, optional
        Pairs per iteration (default: every pair of the cycle).
    """

    def __init__(self, model: nn.Module, lr: float, device: Any = "cpu", group: Any = None,
                 timer: PhaseTimer | None = None, batch_size: int | None = None) -> None:
        self.device = torch.device(device)
        self.timer = timer or PhaseTimer()
        self.batch_size = batch_size
        self.module = model
        self.model: nn.Module = model
        self.allreduce: AllreduceClock | None = None
        if group is not None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids, process_group=group)
            self.allreduce = AllreduceClock(self.device.type == "cuda")
            self.model.register_comm_hook(group, self.allreduce.hook)  # the stock hook
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.losses: list[float] = []

    def _run_batch(self, batch: Sequence[Pairs]) -> float:
        """One optimizer step on ``batch``: groups of pairs whose block shapes may differ.

        Each group gets its own forward and backward (gradient accumulation);
        DDP synchronises only after the last one (``no_sync`` before), so the
        step equals one step on the MSE over every pair of the batch.
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        count = sum(x.numel() for x, _ in batch)
        value = 0.0
        for index, (x, y) in enumerate(batch):
            last = index == len(batch) - 1
            with contextlib.nullcontext() if last else self._no_sync():
                loss = ((self.model(x.to(self.device)) - y.to(self.device)) ** 2).sum() / count
                loss.backward()
            value += float(loss.detach())
        self.optimizer.step()
        if self.device.type == "cuda":  # the phase edge: the step's kernels are done
            torch.cuda.synchronize(self.device)
        spent = time.perf_counter() - start
        if self.allreduce is not None:  # all-reduce time not hidden behind backward
            exposed = self.allreduce.exposed()
            self.timer.add("allreduce", exposed)
            spent -= exposed
        self.timer.add("train", spent)
        self.losses.append(value)
        return value

    def _no_sync(self) -> Any:
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if no_sync is not None else contextlib.nullcontext()

    def _batches(self, groups: Sequence[Pairs]) -> list[list[Pairs]]:
        """Split every group into chunks of ``batch_size`` pairs, chunk ``i`` of each together."""
        size = self.batch_size or max(len(x) for x, _ in groups)
        longest = max(len(x) for x, _ in groups)
        batches = []
        for start in range(0, longest, size):
            batch = [(x[start:start + size], y[start:start + size]) for x, y in groups
                     if start < len(x)]
            batches.append(batch)
        return batches

    def _run_epoch(self, batches: Sequence[Sequence[Pairs]], limit: int) -> int:
        """Run at most ``limit`` batches; return how many ran."""
        done = 0
        for batch in batches[:limit]:
            self._run_batch(batch)
            done += 1
        return done

    def train(self, groups: Sequence[Pairs], iterations: int) -> list[float]:
        """Run ``iterations`` optimizer steps over ``groups``, epoch after epoch.

        Every rank of a DDP group must call this with the same ``iterations``
        and the same number of batches per epoch.
        """
        batches = self._batches(groups)
        done, first = 0, len(self.losses)
        while done < iterations:
            done += self._run_epoch(batches, iterations - done)
        return self.losses[first:]


@torch.no_grad()
def rollout(model: nn.Module, start: np.ndarray, steps: int, device: Any = "cpu"
            ) -> list[np.ndarray]:
    """Apply ``model`` autoregressively ``steps`` times from the global field ``start``."""
    module = getattr(model, "module", model)
    dtype = next(module.parameters()).dtype
    u = torch.as_tensor(start, dtype=dtype, device=device)[None, None]
    fields = []
    for _ in range(steps):
        u = module(u)
        fields.append(u[0, 0].cpu().numpy())
    return fields


def relative_l2(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> list[float]:
    """Relative L2 error ``|p - t| / |t|`` per step."""
    return [float(np.linalg.norm(p - t) / max(np.linalg.norm(t), np.finfo(float).tiny))
            for p, t in zip(predicted, truth, strict=True)]
