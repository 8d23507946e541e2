"""DDP on 2 ranks against one-process training on the same global batch.

Run by ``tests/test_training.py`` under ``mpiexec -n 2 python -m mpi4py``.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch
from mpi4py import MPI

from tcoupled.training.ensemble import MemberParams, init_member_group
from tcoupled.training.model import build_model
from tcoupled.training.trainer import Trainer, pairs_from_frames

world = MPI.COMM_WORLD
rank, size = world.Get_rank(), world.Get_size()
torch.set_num_threads(1)
PARAMS = MemberParams(kernel_size=3, lr=1e-2, width=4)
ITERS = 6


def global_frames() -> list[torch.Tensor]:
    """One slot of frames per rank (a smooth moving bump), float64."""
    x = np.linspace(0, 1, 12)
    slots = []
    for r in range(size):
        frames = [np.outer(np.sin(np.pi * (x + 0.03 * (t + 5 * r))), np.sin(np.pi * x))
                  for t in range(5)]
        slots.append(torch.tensor(np.array(frames)))
    return slots


def flat(model: torch.nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().numpy().ravel() for p in model.parameters()])


scratch = world.bcast(tempfile.mkdtemp() if rank == 0 else None)
group = init_member_group(world, "gloo", scratch)
slots = global_frames()
trainer = Trainer(build_model(PARAMS, "float64", seed=3), PARAMS.lr, group=group)
ddp_losses = trainer.train([pairs_from_frames(slots[rank])], ITERS)
ddp = flat(trainer.module)
everyone = world.allgather(ddp)
if any(not np.array_equal(everyone[0], other) for other in everyone):
    raise AssertionError("parameters differ across the ranks of the member")
if trainer.timer.totals["allreduce"] <= 0:
    raise AssertionError("allreduce time not measured")

if rank == 0:
    # one process, the global batch: the MSE over both slots' pairs
    x = torch.cat([pairs_from_frames(s)[0] for s in slots])
    y = torch.cat([pairs_from_frames(s)[1] for s in slots])
    serial = Trainer(build_model(PARAMS, "float64", seed=3), PARAMS.lr)
    serial_losses = serial.train([(x, y)], ITERS)
    difference = np.max(np.abs(flat(serial.module) - ddp))
    mean_ddp_loss = world.reduce(ddp_losses[-1], root=0) / size
    if difference > 1e-10:
        raise AssertionError(f"DDP and one-process parameters differ by {difference:.3e}")
    print(f"ddp checks passed: max parameter difference {difference:.2e}, "
          f"losses {serial_losses[0]:.3e} -> {serial_losses[-1]:.3e} (ddp mean last "
          f"{mean_ddp_loss:.3e})")
else:
    world.reduce(ddp_losses[-1], root=0)
torch.distributed.destroy_process_group()
sys.stdout.flush()
