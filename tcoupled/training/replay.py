"""A bounded replay buffer of training samples, filled by reservoir sampling.

Online training sees each slot once; without memory the model drifts towards the
newest fields and forgets the earlier ones (the problem online-training frameworks
such as Melissa answer with a replay buffer). The buffer holds at most ``capacity``
samples (three consecutive levels of one block window each, copied out of the slot);
after ``seen`` samples were offered, each of them is in the buffer with probability
``capacity / seen`` (Vitter's algorithm R). Its contents and its random state are
plain data (:meth:`ReplayBuffer.state_dict`), saved in checkpoints and restored bitwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from tcoupled.training.samples import Samples


class ReplayBuffer:
    """At most ``capacity`` samples; :meth:`offer` new ones, :meth:`draw` random ones.

    Parameters
    ----------
    capacity : int
        Samples kept (0: no buffer; :meth:`draw` then returns nothing).
    seed : int
        Seed of the buffer's own random generator (reservoir choice and draws).
    """

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"replay capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.levels: list[torch.Tensor] = []   # each (3, wx, wy): u^{n-1}, u^n, u^{n+1}
        self.boxes: list[tuple] = []  # crop i0, j0, owned lx, ly, then the 4 walls (0/1)
        self.seen = 0
        self.bytes_copied = 0

    def __len__(self) -> int:
        return len(self.levels)

    @property
    def nbytes(self) -> int:
        """Bytes the buffer holds now (at most ``capacity`` samples' worth)."""
        return sum(t.numel() * t.element_size() for t in self.levels)

    def offer(self, groups: Sequence[Samples]) -> None:
        """Offer every sample of ``groups``; a kept one is copied (the slot is reused)."""
        if not self.capacity:
            return
        for group in groups:
            lx, ly = group.y.shape[-2:]
            box = (*group.crop, int(lx), int(ly), *(int(w) for w in group.walls))
            for index in range(len(group)):
                self.seen += 1
                if len(self.levels) < self.capacity:
                    where = len(self.levels)
                else:
                    where = int(self.rng.integers(0, self.seen))
                    if where >= self.capacity:
                        continue
                levels = _levels(group, index)
                self.bytes_copied += levels.numel() * levels.element_size()
                if where == len(self.levels):
                    self.levels.append(levels)
                    self.boxes.append(box)
                else:
                    self.levels[where], self.boxes[where] = levels, box

    def draw(self, count: int) -> list[Samples]:
        """``count`` distinct samples at random (fewer if the buffer holds fewer), grouped.

        Samples of equal window shape and crop are stacked into one group.
        """
        count = min(count, len(self.levels))
        if count <= 0:
            return []
        picked = sorted(self.rng.choice(len(self.levels), size=count, replace=False).tolist())
        groups: dict[tuple, list[torch.Tensor]] = {}
        for index in picked:
            key = (tuple(self.levels[index].shape), self.boxes[index])
            groups.setdefault(key, []).append(self.levels[index])
        out = []
        for (_, (i0, j0, lx, ly, *walls)), items in groups.items():
            stacked = torch.stack(items)
            out.append(Samples(stacked[:, 0:2], stacked[:, 2:3, i0:i0 + lx, j0:j0 + ly],
                               (i0, j0), tuple(bool(w) for w in walls)))  # type: ignore[arg-type]
        return out

    def state_dict(self) -> dict:
        """Plain data (tensors, ints, a JSON string) to checkpoint the buffer."""
        return {"capacity": self.capacity, "seen": self.seen,
                "bytes_copied": self.bytes_copied,
                "levels": [t.clone() for t in self.levels],
                "boxes": [list(b) for b in self.boxes],
                "rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a buffer saved by :meth:`state_dict` (bitwise: same samples, same draws)."""
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"checkpoint replay buffer holds {state['capacity']} samples, "
                             f"this run --replay {self.capacity}")
        self.seen = int(state["seen"])
        self.bytes_copied = int(state["bytes_copied"])
        self.levels = [t.clone() for t in state["levels"]]
        self.boxes = [tuple(int(v) for v in b) for b in state["boxes"]]
        self.rng.bit_generator.state = json.loads(state["rng"])


def _levels(group: Samples, index: int) -> torch.Tensor:
    """Sample ``index`` of ``group`` as one contiguous copy ``(3, wx, wy)``.

    The target level ``u^{n+1}`` is stored on the whole window (outside the owned
    box it is never read), so a sample is three levels of one shape.
    """
    x = group.x[index]
    full = _full_target(group, index, x)
    return torch.cat([x, full[None]]).clone()


def _full_target(group: Samples, index: int, x: torch.Tensor) -> torch.Tensor:
    """The target level on the whole window: zeros outside the owned box."""
    (i0, j0), (lx, ly) = group.crop, group.y.shape[-2:]
    full = torch.zeros_like(x[0])
    full[i0:i0 + lx, j0:j0 + ly] = group.y[index, 0]
    return full


def steady_copies(offered: int, capacity: int, cycles: int) -> float:
    """Samples a reservoir of ``capacity`` copies in a steady cycle (median of cycles 2..C).

    Cycle ``c`` offers samples ``(c - 1) n + 1 .. c n``; sample ``s`` is kept (copied)
    surely while the buffer fills, then with probability ``capacity / s``.
    """
    if not offered or not capacity:
        return 0.0
    per_cycle = [sum(1.0 if s <= capacity else capacity / s
                     for s in range(c * offered + 1, (c + 1) * offered + 1))
                 for c in range(max(cycles, 1))]
    return float(np.median(per_cycle[1:] or per_cycle))
