"""Training samples from a slot: the cast to float32, the windows with context, the views.

A sample is three consecutive time levels ``(u^{n-1}, u^n) -> u^{n+1}`` of one block.
:func:`samples_from_frames` makes them as views of the frames (nothing is copied);
:func:`as_training_dtype` is the one place where a slot is cast (once per slot, its
bytes counted); :func:`member_windows` gives each block the neighbours' cells within
the model's receptive radius, so that only the physical boundary is zero-padded and
the prediction on a block equals the one on the whole field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tcoupled.training.model import TRAINING_DTYPE

#: which edges of a window (x low, x high, y low, y high) are the physical boundary
Walls = tuple[bool, bool, bool, bool]
WHOLE: Walls = (True, True, True, True)


@dataclass(frozen=True)
class Samples:
    """Inputs ``x`` (n, 2, wx, wy), targets ``y`` (n, 1, lx, ly) at ``crop`` = (i0, j0) of ``x``.

    ``walls`` says which edges of the window are the physical boundary (``u = 0``
    there is imposed on the prediction, not learned).
    """

    x: torch.Tensor
    y: torch.Tensor
    crop: tuple[int, int] = (0, 0)
    walls: Walls = WHOLE

    def __len__(self) -> int:
        return len(self.x)

    def cropped(self, out: torch.Tensor) -> torch.Tensor:
        """The owned cells of a model output on ``x``."""
        (i0, j0), (lx, ly) = self.crop, self.y.shape[-2:]
        return out[..., i0:i0 + lx, j0:j0 + ly]

    def take(self, start: int, stop: int) -> Samples:
        """Samples ``start:stop`` (views)."""
        return Samples(self.x[start:stop], self.y[start:stop], self.crop, self.walls)


def as_training_dtype(tensor: torch.Tensor, dtype: torch.dtype = TRAINING_DTYPE
                      ) -> tuple[torch.Tensor, int]:
    """Return ``tensor`` in the training dtype and the bytes copied to get it.

    The only cast of field data on the training side: a float64 slot becomes one
    float32 copy (its bytes are returned, to be counted as a copy); a slot already
    in ``dtype`` is returned as is (0 bytes).
    """
    if tensor.dtype == dtype:
        return tensor, 0
    cast = tensor.to(dtype)
    return cast, cast.numel() * cast.element_size()


def samples_from_frames(frames: torch.Tensor, crop: tuple[int, int] = (0, 0),
                        owned: tuple[int, int] | None = None, walls: Walls = WHOLE) -> Samples:
    """Samples of consecutive levels of ``frames`` ``(F, wx, wy)``: views, nothing copied.

    ``x[i] = frames[i:i + 2]`` (levels ``u^{n-1}, u^n``), ``y[i] = frames[i + 2]``
    restricted to the owned box of shape ``owned`` at ``crop`` (default: all of it).
    """
    if frames.shape[0] < 3:
        raise ValueError(f"a slot needs at least 3 frames for a sample, got {frames.shape[0]}")
    lx, ly = owned or tuple(frames.shape[1:])
    i0, j0 = crop
    x = frames.unfold(0, 2, 1)[:-1].permute(0, 3, 1, 2)  # (F-2, 2, wx, wy) view
    y = frames[2:, i0:i0 + lx, j0:j0 + ly].unsqueeze(1)
    return Samples(x, y, crop, walls)


@dataclass(frozen=True)
class Window:
    """A block grown by ``radius`` cells towards its neighbours, clipped to the domain."""

    lo: tuple[int, int]     # global index of the window's first cell
    hi: tuple[int, int]     # one past its last cell
    crop: tuple[int, int]   # where the owned block starts inside the window
    walls: Walls            # which of its edges are the physical boundary


def context_window(global_shape: Sequence[int], offset: Sequence[int],
                   shape: Sequence[int], radius: int) -> Window:
    """The window a block needs so that the model's output on its cells is exact."""
    lo = tuple(max(0, o - radius) for o in offset)
    hi = tuple(min(n, o + s + radius) for n, o, s in zip(global_shape, offset, shape))
    walls = (lo[0] == 0, hi[0] == global_shape[0], lo[1] == 0, hi[1] == global_shape[1])
    crop = tuple(o - low for o, low in zip(offset, lo))
    return Window(lo, hi, crop, walls)  # type: ignore[arg-type]


def member_windows(comm: Any, blocks: Sequence[tuple[tuple[int, int], torch.Tensor]],
                   global_shape: Sequence[int], radius: int) -> list[Samples]:
    """Samples of every block this rank holds, each with its neighbours' cells.

    ``blocks`` holds ``(offset, frames)`` pairs, frames ``(F, lx, ly)`` in the
    training dtype. When one block is the whole domain, its samples are views of
    it. Otherwise the ranks of ``comm`` (the member's ranks, collective) gather every
    block into the member's field and each block's window is cut from it (views).
    """
    nx, ny = global_shape
    whole = all(tuple(o) == (0, 0) and tuple(f.shape[1:]) == (nx, ny) for o, f in blocks)
    if comm.Get_size() > 1:
        whole = bool(comm.allreduce(int(whole), op=_mpi_min()))
    if whole:
        return [samples_from_frames(frames) for _, frames in blocks]
    field = assemble_field(comm, blocks, global_shape)
    samples = []
    for offset, frames in blocks:
        window = context_window(global_shape, offset, frames.shape[1:], radius)
        part = field[:, window.lo[0]:window.hi[0], window.lo[1]:window.hi[1]]
        samples.append(samples_from_frames(part, window.crop, tuple(frames.shape[1:]),
                                           window.walls))
    return samples


def _mpi_min() -> Any:
    from tcoupled.runtime.mpienv import init_mpi

    return init_mpi().MIN


def assemble_field(comm: Any, blocks: Sequence[tuple[tuple[int, int], torch.Tensor]],
                   global_shape: Sequence[int]) -> torch.Tensor:
    """The member's field ``(F, nx, ny)`` from every rank's blocks (collective over ``comm``)."""
    local = [(tuple(o), f.detach().cpu().numpy()) for o, f in blocks]
    everyone = comm.allgather(local) if comm.Get_size() > 1 else [local]
    first = blocks[0][1]
    field = np.zeros((first.shape[0], *global_shape), dtype=local[0][1].dtype)
    for part in everyone:
        for (ox, oy), frames in part:
            field[:, ox:ox + frames.shape[1], oy:oy + frames.shape[2]] = frames
    return torch.from_numpy(field).to(first.device)
