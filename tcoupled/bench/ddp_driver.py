"""Driver of ``bench ddp``: CNN training throughput on every rank of one launch.

Run as ``mpiexec -n P python -m mpi4py -m tcoupled.bench.ddp_driver --n 256 --batch 4
--iters 10``. Each rank trains the surrogate CNN (Conv2d 1->8->16->8->1, kernel 5) on
its own batch of ``batch`` random ``n x n`` float32 pairs; with ``P > 1`` the ranks are
one DDP group (gloo, gradients averaged by PyTorch's stock all-reduce hook, which
overlaps the all-reduce with backward; :class:`~tcoupled.training.trainer.Trainer`
wraps it in a clock that times the part not hidden behind backward). Rank 0 prints
``RESULT {json}``: samples per second over all ranks and the share of the time spent
in the exposed all-reduce.

``--sync-dir D --sync-parties N`` makes independent launches start their timed window
together: after its warm-up each rank 0 writes a file into ``D`` and waits (sleeping)
until ``N`` files are there. ``bench ddp`` runs two one-rank launches this way, so the
one-rank baseline runs under the same load as a two-rank run.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def wait_for_parties(sync_dir: str, parties: int, timeout: float = 300.0) -> None:
    """Announce this launch in ``sync_dir``; return once ``parties`` launches have."""
    import os
    from pathlib import Path

    Path(sync_dir, f"ready.{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while sum(1 for _ in Path(sync_dir).glob("ready.*")) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only some of {parties} launches reached {sync_dir}")
        time.sleep(1e-3)


def measure(world: object, n: int, batch: int, iters: int, warmup: int,
            kernel_size: int, sync: tuple[str, int] | None = None) -> dict:
    """Train ``warmup + iters`` iterations; time the last ``iters`` on every rank."""
    import torch

    from tcoupled.runtime.telemetry import PhaseTimer
    from tcoupled.training.ensemble import MemberParams, init_member_group
    from tcoupled.training.model import build_model
    from tcoupled.training.samples import Samples
    from tcoupled.training.trainer import Trainer

    torch.set_num_threads(1)
    size = world.Get_size()
    params = MemberParams(kernel_size=kernel_size, width=8)
    group = None
    if size > 1:
        scratch = world.bcast(tempfile.mkdtemp() if world.Get_rank() == 0 else None)
        group = init_member_group(world, "gloo", scratch)
    timer = PhaseTimer()
    trainer = Trainer(build_model(params, "float32"), params.lr, group=group, timer=timer)
    generator = torch.Generator().manual_seed(world.Get_rank())
    x = torch.randn(batch, 2, n, n, generator=generator)
    y = torch.randn(batch, 1, n, n, generator=generator)
    trainer.train([Samples(x, y)], warmup)
    timer.totals.clear()
    if sync is not None and world.Get_rank() == 0:
        wait_for_parties(*sync)
    world.Barrier()
    start = time.perf_counter()
    trainer.train([Samples(x, y)], iters)
    wall = time.perf_counter() - start
    if group is not None:
        from tcoupled.training.ensemble import close_member_group

        del trainer  # DDP holds the process group: release it before tearing down
        close_member_group(world)
    return {"wall_s": wall, "allreduce_s": timer.totals.get("allreduce", 0.0),
            "train_s": timer.totals.get("train", 0.0)}


def main(argv: list[str] | None = None) -> None:
    """Measure on every rank; rank 0 prints the aggregate."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--kernel-size", type=int, default=5)
    parser.add_argument("--sync-dir", default=None, help="start with other launches")
    parser.add_argument("--sync-parties", type=int, default=1)
    args = parser.parse_args(argv)
    from tcoupled.bench.launch import print_result
    from tcoupled.runtime.mpienv import init_mpi

    world = init_mpi().COMM_WORLD
    sync = (args.sync_dir, args.sync_parties) if args.sync_dir else None
    mine = measure(world, args.n, args.batch, args.iters, args.warmup, args.kernel_size, sync)
    everyone = world.gather(mine, root=0)
    if world.Get_rank() == 0:
        size = world.Get_size()
        wall = max(r["wall_s"] for r in everyone)
        allreduce = sum(r["allreduce_s"] for r in everyone) / size
        print_result({"ranks": size, "n": args.n, "batch_per_rank": args.batch,
                      "iters": args.iters, "kernel_size": args.kernel_size, "wall_s": wall,
                      "samples_per_s": size * args.batch * args.iters / wall,
                      "s_per_iter": wall / args.iters,
                      "allreduce_s_per_iter": allreduce / args.iters,
                      "allreduce_share": allreduce / wall})


if __name__ == "__main__":
    main()
