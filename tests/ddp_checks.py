"""DDP on 2 ranks against one-process training on the same global batch, and the
block-edge check: each rank holds one block of a field (as with 2 sim ranks); with
its neighbour's cells the prediction at the internal edge equals the one-rank one.

Run by ``tests/test_training.py`` under ``mpiexec -n 2 python -m mpi4py``.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch
from mpi4py import MPI

from tcoupled.sim.decomposition import Block
from tcoupled.training.ensemble import MemberParams, init_member_group
from tcoupled.training.model import build_model
from tcoupled.training.samples import Samples, member_windows, samples_from_frames
from tcoupled.training.trainer import Trainer

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

def model(seed: int) -> torch.nn.Module:
    built = build_model(PARAMS, "float64", seed=seed)
    torch.nn.init.normal_(built.net[-1].weight, std=0.1)  # seeded by build_model
    return built


trainer = Trainer(model(3), PARAMS.lr, group=group)
ddp_losses = trainer.train([samples_from_frames(slots[rank])], ITERS)
ddp = flat(trainer.module)
everyone = world.allgather(ddp)
if any(not np.array_equal(everyone[0], other) for other in everyone):
    raise AssertionError("parameters differ across the ranks of the member")
if trainer.timer.totals["allreduce"] <= 0:
    raise AssertionError("allreduce time not measured")

if rank == 0:
    # one process, the global batch: the MSE over both slots' pairs
    x = torch.cat([samples_from_frames(s).x for s in slots])
    y = torch.cat([samples_from_frames(s).y for s in slots])
    serial = Trainer(model(3), PARAMS.lr)
    serial_losses = serial.train([Samples(x, y)], ITERS)
    difference = np.max(np.abs(flat(serial.module) - ddp))
    mean_ddp_loss = world.reduce(ddp_losses[-1], root=0) / size
    if difference > 1e-10:
        raise AssertionError(f"DDP and one-process parameters differ by {difference:.3e}")
    print(f"ddp checks passed: max parameter difference {difference:.2e}, "
          f"losses {serial_losses[0]:.3e} -> {serial_losses[-1]:.3e} (ddp mean last "
          f"{mean_ddp_loss:.3e})")
else:
    world.reduce(ddp_losses[-1], root=0)

# block edges: the field of 2 sim ranks, split as the solver splits it
surrogate = model(5)
field = torch.tensor(np.random.default_rng(1).random((4, 21, 13)))
block = Block((21, 13), (size, 1), (rank, 0))
(ox, oy), (lx, ly) = block.offset, block.local_shape
mine = field[:, ox:ox + lx, oy:oy + ly].contiguous()
part, = member_windows(world, [((ox, oy), mine)], (21, 13), surrogate.radius)
edge = part.cropped(surrogate(part.x, part.walls))
whole = surrogate(samples_from_frames(field).x)[..., ox:ox + lx, oy:oy + ly]
if not torch.allclose(edge, whole, rtol=0, atol=1e-12):
    raise AssertionError(f"block edge prediction differs by {float((edge - whole).abs().max())}")
if rank == 0:
    print("block edge checks passed")
torch.distributed.destroy_process_group()
sys.stdout.flush()
