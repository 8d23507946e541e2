"""The surrogate alone on one core: the main job's training data and held-out rollout.

``python -m tcoupled.bench.surrogate [--target next] [--bias] [--replay 0] [--activation
relu] [--lr-schedule constant] ...`` trains one
member exactly as ``couple --sim-ranks 1 --train-ranks 1`` does (the same slots of
``--sim-steps + 1`` frames, cast to float32, the same trainer and replay buffer), without
MPI launches or channels, and prints the held-out rollout errors of
:mod:`tcoupled.coupling.evaluate`. It is how the README's model choices were compared.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from types import SimpleNamespace


def run(args: argparse.Namespace) -> dict:
    """Train one member on the solver's slots; return its held-out rollout errors."""
    import numpy as np
    import torch

    from tcoupled.coupling.evaluate import held_out_trajectory, rollout_errors
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.sim.config import WaveConfig, stable_dt
    from tcoupled.sim.solver import WaveSolver
    from tcoupled.training.ensemble import MemberParams, default_lr
    from tcoupled.training.model import build_model
    from tcoupled.training.replay import ReplayBuffer
    from tcoupled.training.samples import as_training_dtype, samples_from_frames
    from tcoupled.training.schedule import make_schedule
    from tcoupled.training.trainer import Trainer

    torch.set_num_threads(1)
    comm = init_mpi().COMM_SELF
    grid = (args.grid, args.grid)
    wave = WaveConfig(grid=grid, steps=args.cycles * args.sim_steps + 1,
                      dt=stable_dt(1.0, grid, 0.5), init="gaussian", seed=args.seed)
    lr = args.lr or default_lr(args.kernel_size, args.lr_schedule,
                               args.cycles * args.train_iters)
    params = MemberParams(kernel_size=args.kernel_size, lr=lr, width=args.width,
                          activation=args.activation)
    model = build_model(params, seed=args.seed * 1000, target=args.target, bias=args.bias)
    schedule = make_schedule(args.lr_schedule, args.cycles * args.train_iters, args.warmup)
    trainer = Trainer(model, params.lr, replay=ReplayBuffer(args.replay, (args.seed, 0, 0)),
                      schedule=schedule)
    start = time.perf_counter()
    with WaveSolver(replace(wave), comm) as solver:
        for _ in range(args.cycles):
            frames = [solver.field.copy()]
            for _ in range(args.sim_steps):
                solver.step()
                frames.append(solver.field.copy())
            slot, _ = as_training_dtype(torch.from_numpy(np.array(frames)))
            trainer.train([samples_from_frames(slot)], args.train_iters)
    wall = time.perf_counter() - start
    config = SimpleNamespace(wave=wave, sim_steps=args.sim_steps, rollout=args.rollout)
    errors = rollout_errors(trainer.model, held_out_trajectory(config, comm), "cpu")
    return {"target": args.target, "bias": args.bias, "replay": args.replay,
            "width": args.width, "activation": args.activation, "lr": params.lr,
            "lr_schedule": args.lr_schedule, "seed": args.seed,
            "train_s": round(wall, 2), "last_loss": trainer.losses[-1],
            "rollout_vrmse": [round(v, 5) for v in errors["rollout_vrmse"]],
            "rollout_rel_l2": [round(v, 5) for v in errors["rollout_rel_l2"]]}


def main(argv: list[str] | None = None) -> None:
    """Parse the flags (the main job's by default), run, print one JSON line."""
    from tcoupled.training.ensemble import ACTIVATIONS
    from tcoupled.training.schedule import SCHEDULES

    parser = argparse.ArgumentParser(prog="python -m tcoupled.bench.surrogate")
    parser.add_argument("--grid", type=int, default=65)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--sim-steps", type=int, default=8)
    parser.add_argument("--train-iters", type=int, default=20)
    parser.add_argument("--rollout", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--lr", type=float, default=None,
                        help="peak rate (default: couple's, ensemble.default_lr)")
    parser.add_argument("--lr-schedule", default="cosine", choices=SCHEDULES)
    parser.add_argument("--warmup", type=float, default=0.25)
    parser.add_argument("--activation", default="tanh", choices=ACTIVATIONS)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--replay", type=int, default=256)
    parser.add_argument("--target", default="update", choices=("update", "next"))
    parser.add_argument("--bias", action="store_true", help="convolutions with biases")
    print(json.dumps(run(parser.parse_args(argv))), flush=True)


if __name__ == "__main__":
    main()
