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

import torch
from torch import nn

from tcoupled.runtime.telemetry import PhaseTimer
from tcoupled.training.commhook import AllreduceClock
from tcoupled.training.replay import ReplayBuffer
from tcoupled.training.samples import Samples
from tcoupled.training.schedule import LRSchedule

#: Adam's epsilon: the update's gradients are tiny (the loss reaches ~1e-7), and the
#: default 1e-8 would damp late steps; measured: smaller held-out rollout error
ADAM_EPS = 1e-14


class Trainer:
    """Train one model on the newest samples and a replay buffer, with DDP for a group.

    Parameters
    ----------
    model : nn.Module
        The member's model, already on ``device`` in its training dtype.
    lr : float
        Adam learning rate (the peak rate when there is a ``schedule``).
    device : torch.device or str
        Where the batches are moved (a no-op when they are there already).
    group : process group, optional
        The member's DDP group; ``None`` (a one-rank member) trains without DDP.
    timer : PhaseTimer, optional
        Receives ``train`` and ``allreduce`` times.
    batch_size : int, optional
        Newest samples per iteration (default: every sample of the cycle).
    replay : ReplayBuffer, optional
        Each iteration adds as many samples drawn from it as it takes from the newest
        slot; the newest samples are offered to it after the cycle's iterations.
    replay_draw : int, optional
        Replayed samples per iteration (default: as many as the newest slot gives).
    schedule : LRSchedule, optional
        Step ``i`` runs at rate ``lr * schedule.factor(i)``, ``i`` counted by the
        losses (restored on resume); ``None`` keeps ``lr`` constant.
    """

    def __init__(self, model: nn.Module, lr: float, device: Any = "cpu", group: Any = None,
                 timer: PhaseTimer | None = None, batch_size: int | None = None,
                 replay: ReplayBuffer | None = None, replay_draw: int | None = None,
                 schedule: LRSchedule | None = None) -> None:
        self.lr, self.schedule = lr, schedule
        self.device = torch.device(device)
        self.replay = replay if replay is not None else ReplayBuffer(0)
        self.replay_draw = replay_draw
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
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=ADAM_EPS)
        self.losses: list[float] = []

    def _run_batch(self, batch: Sequence[Samples]) -> float:
        """One optimizer step on ``batch``: groups of samples whose block shapes may differ.

        Each group gets its own forward and backward (gradient accumulation);
        DDP synchronises only after the last one (``no_sync`` before), so the
        step equals one step on the MSE over every pair of the batch.
        """
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        count = sum(group.y.numel() for group in batch)
        value = 0.0
        for index, group in enumerate(batch):
            last = index == len(batch) - 1
            with contextlib.nullcontext() if last else self._no_sync():
                out = group.cropped(self.model(group.x.to(self.device), group.walls))
                loss = ((out - group.y.to(self.device)) ** 2).sum() / count
                loss.backward()
            value += float(loss.detach())
        if self.schedule is not None:  # step len(losses) of the run
            for param_group in self.optimizer.param_groups:
                param_group["lr"] = self.lr * self.schedule.factor(len(self.losses))
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

    def _batches(self, groups: Sequence[Samples]) -> list[list[Samples]]:
        """Split every group into chunks of ``batch_size`` samples, chunk ``i`` of each together."""
        size = self.batch_size or max(len(g) for g in groups)
        longest = max(len(g) for g in groups)
        batches = []
        for start in range(0, longest, size):
            batch = [g.take(start, start + size) for g in groups if start < len(g)]
            batches.append(batch)
        return batches

    def _run_epoch(self, batches: Sequence[Sequence[Samples]], limit: int) -> int:
        """Run at most ``limit`` batches, each with as many replayed samples; return how many."""
        done = 0
        for batch in batches[:limit]:
            with self.timer.phase("replay"):
                draw = self.replay_draw
                replayed = self.replay.draw(sum(len(g) for g in batch) if draw is None else draw)
            self._run_batch([*batch, *replayed])
            done += 1
        return done

    def train(self, groups: Sequence[Samples], iterations: int) -> list[float]:
        """Run ``iterations`` optimizer steps over ``groups`` and the replay buffer.

        The newest samples are cycled through epoch after epoch; each step adds as
        many samples drawn from the buffer, which is then offered the newest ones.
        Every rank of a DDP group must call this with the same ``iterations``
        and the same number of batches per epoch.
        """
        batches = self._batches(groups)
        done, first = 0, len(self.losses)
        while done < iterations:
            done += self._run_epoch(batches, iterations - done)
        with self.timer.phase("replay"):
            self.replay.offer(groups)
        return self.losses[first:]
