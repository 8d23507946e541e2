"""After training: the held-out trajectory and every member's rollout errors.

The held-out initial condition is one the surrogate never saw: Gaussian pulses from
another seed and one pulse more (a standing mode: the next mode along y). The sim
ranks solve it from rest for one cycle's steps (``--sim-steps``), so that the rollout
starts from a moving field ``(u^{n-1}, u^n)``, then ``--rollout`` steps more: the truth.
Each member's rank 0 rolls its model out from the same two levels and compares, step
by step: VRMSE and relative L2 (:mod:`tcoupled.training.rollout`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tcoupled.sim.config import WaveConfig

#: added to ``--seed`` for the held-out pulses
HELD_OUT_SEED = 7919


def held_out_wave(wave: WaveConfig) -> WaveConfig:
    """The held-out initial condition: other seed and one pulse more (or the next mode)."""
    if wave.init == "mode":
        k, l_ = wave.mode
        return replace(wave, mode=(k, l_ + 1))
    return replace(wave, seed=wave.seed + HELD_OUT_SEED, pulses=wave.pulses + 1, centers=())


def held_out_trajectory(config: Any, comm: Any) -> tuple[Any, Any, list[Any]] | None:
    """Sim ranks (collective over ``comm``): ``(u^{n-1}, u^n, truth)`` on rank 0, else None.

    The solver runs ``config.sim_steps`` steps from the held-out field at rest, then
    ``config.rollout`` steps more, gathering the global field after each.
    """
    from tcoupled.sim.solver import WaveSolver

    with WaveSolver(held_out_wave(config.wave), comm) as solver:
        solver.step(max(config.sim_steps - 1, 0))
        previous = solver.gather(root=0)
        solver.step()
        start = solver.gather(root=0)
        truth = []
        for _ in range(config.rollout):
            solver.step()
            truth.append(solver.gather(root=0))
    if comm.Get_rank() != 0:
        return None
    return previous, start, truth


def rollout_errors(model: Any, held_out: tuple[Any, Any, list[Any]], device: Any) -> dict:
    """Roll ``model`` out from the held-out levels: last prediction, VRMSE and rel. L2 per step."""
    from tcoupled.training.rollout import relative_l2, rollout, vrmse

    previous, start, truth = held_out
    predicted = rollout(model, previous, start, len(truth), device)
    return {"prediction": predicted[-1] if predicted else None,
            "rollout_vrmse": vrmse(predicted, truth),
            "rollout_rel_l2": relative_l2(predicted, truth)}
