"""The solver run on its own (``tcoupled wave``): advance, measure, write the results.

Measures the accuracy against the exact standing mode, the discrete energy drift, the
cell-update rate and the halo share of the step time; rank 0 writes ``results.h5``
(the assembled global field) and ``summary.json``.

SIGTERM or SIGINT stops every rank at the same step (the ranks vote every chunk of
``--check-every`` steps, :class:`~tcoupled.runtime.stopping.StopVote`; a signal during
the last chunk stops too): each rank writes its checkpoint (:mod:`.checkpoint`), rank 0
a ``summary.json`` with ``stopped``, and the run exits 143 (130); ``--resume`` goes on.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tcoupled.sim.config import WaveConfig


@dataclass(frozen=True)
class WaveRun:
    """Resolved configuration of a ``wave`` run."""

    wave: WaveConfig
    out: str
    quiet: bool
    kernel: str  # the backend ``--kernel`` resolved to on this machine
    check_every: int = 50
    resume: bool = False  # continue from the checkpoint in ``out``


def run_wave(config: WaveRun, comm: Any) -> int:
    """Run the solver, write ``results.h5`` and ``summary.json``, print the key figures."""
    from dataclasses import replace

    from tcoupled.runtime import stopping
    from tcoupled.runtime.mpienv import set_role
    from tcoupled.runtime.telemetry import setup_logging
    from tcoupled.sim import checkpoint
    from tcoupled.sim.solver import WaveSolver

    set_role("sim")
    stopping.install()
    wave = replace(config.wave, kernel=config.kernel)
    log = setup_logging(config.out, comm.Get_rank(), config.quiet)
    _bind_gpu(wave, comm, log)
    wall0 = time.perf_counter()
    with WaveSolver(wave, comm, check_every=config.check_every, align_rows=True) as solver:
        log.info(f"wave: grid {wave.grid[0]}x{wave.grid[1]} on {comm.Get_size()} rank(s) "
                 f"({solver.dims[0]}x{solver.dims[1]}), kernel {solver.backend.name}, "
                 f"{wave.dtype}, dt {wave.dt:.6g}, {wave.steps} steps, "
                 f"time block {wave.time_block}")
        stats = checkpoint.restore(config.out, solver) if config.resume else {}
        if config.resume:
            log.info(f"wave: resumed at step {solver.steps_done} from {config.out}")
        vote = stopping.StopVote(comm)
        stats = _advance(solver, wave.steps, vote, config.check_every or 50, stats)
        vote.close()
        solver.check_finite()
        if vote.signum:
            checkpoint.save(config.out, comm.Get_rank(), solver, stats)
            return _stopped(config, comm, solver.steps_done, vote.signum, log)
        final = solver.gather(root=0)
        timers = _max_per_key(comm.gather(solver.timers.as_dict(), root=0))
        dims = solver.dims
    wall = comm.allreduce(time.perf_counter() - wall0, op=_mpi_max())
    if comm.Get_rank() == 0:
        summary = _summary(config, wave, final, stats, timers, dims, comm.Get_size(), wall)
        _write(config, wave, final, summary)
        log.info(_report_line(summary))
        log.info(f"results in {config.out}/results.h5 and {config.out}/summary.json")
    return 0


def _bind_gpu(wave: WaveConfig, comm: Any, log: Any) -> None:
    """On a GPU run, bind each rank to its node's GPU (the rule ``plan`` prints)."""
    from tcoupled.sim.backends import resolve_device

    if resolve_device(wave.device, wave.kernel) != "cuda":
        return
    from tcoupled.placement.layout import bind_node_gpu
    from tcoupled.runtime.gpu import describe_cuda_aware_mpi

    bind_node_gpu(comm)
    line = describe_cuda_aware_mpi()
    log.info(f"wave: {line}")


def _advance(solver: Any, steps: int, vote: Any, chunk: int, resumed: dict) -> dict:
    """Step the solver to ``steps``, measuring the energy after the first and last step.

    Stops early, at the same step on every rank, when ``vote`` agrees on a signal. The
    loop's time covers the steps run in this launch (after the first step).
    """
    stats: dict[str, Any] = {"energy_first": resumed.get("energy_first"),
                             "energy_last": None, "loop_s": 0.0, "loop_steps": 0}
    if solver.steps_done >= steps:
        stats["energy_last"] = solver.energy() if steps else None
        return stats
    if solver.steps_done == 0:
        solver.step(1)
        stats["energy_first"] = solver.energy()
    solver.cart.Barrier()
    start, first = time.perf_counter(), solver.steps_done
    while solver.steps_done < steps:
        solver.step(min(chunk, steps - solver.steps_done))
        if vote(solver.steps_done, last=solver.steps_done == steps):
            break
    _sync(solver.xp)
    solver.cart.Barrier()
    stats["loop_s"] = time.perf_counter() - start
    stats["loop_steps"] = solver.steps_done - first
    stats["energy_last"] = solver.energy()
    return stats


def _stopped(config: WaveRun, comm: Any, steps_done: int, signum: int, log: Any) -> int:
    """Every rank wrote its checkpoint: rank 0 writes ``summary.json`` and says so."""
    import sys

    from tcoupled.runtime.stopping import exit_status, signal_name
    from tcoupled.runtime.store import write_summary

    comm.Barrier()
    if comm.Get_rank() == 0:
        write_summary(config.out, {"command": "wave", "stopped": signal_name(signum),
                                   "steps_done": steps_done, "steps": config.wave.steps,
                                   "ranks": comm.Get_size(),
                                   "resume": f"--resume {config.out}"})
        log.info(f"wave: checkpoint of step {steps_done} in {config.out}/checkpoint")
        sys.stderr.write(f"tcoupled wave: stopped by {signal_name(signum)} after step "
                         f"{steps_done}; resume with --resume {config.out}\n")
        sys.stderr.flush()
    return exit_status(signum)


def _sync(xp: Any) -> None:
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def _summary(config: WaveRun, wave: WaveConfig, final: np.ndarray, stats: dict,
             timers: dict, dims: tuple, ranks: int, wall: float) -> dict:
    from tcoupled.sim.initial import exact_mode

    l2 = None
    if wave.init == "mode":
        exact = exact_mode(wave, wave.t_final)
        diff = final.astype(np.float64) - exact
        l2 = float(np.linalg.norm(diff) / np.linalg.norm(exact))
    e0, e1 = stats["energy_first"], stats["energy_last"]
    drift = abs(e1 - e0) / abs(e0) if e0 else None
    cells = (wave.grid[0] - 2) * (wave.grid[1] - 2)
    loop_s = stats["loop_s"]
    cells_per_s = cells * stats["loop_steps"] / loop_s if loop_s > 0 else None
    step_total = timers.get("sim", 0.0) + timers.get("halo", 0.0)
    return {
        "command": "wave", "ranks": ranks, "dims": list(dims), "grid": list(wave.grid),
        "steps": wave.steps, "dt": wave.dt, "c": wave.c, "t_final": wave.t_final,
        "dtype": wave.dtype, "init": wave.init, "kernel": config.kernel,
        "time_block": wave.time_block,
        "l2_rel_error": l2, "energy_first": e0, "energy_last": e1, "energy_drift": drift,
        "cells_per_s": cells_per_s, "halo_fraction": (timers.get("halo", 0.0) / step_total
                                                      if step_total else None),
        "max_abs_u": float(np.max(np.abs(final))), "wall_s": wall,
    }


def _write(config: WaveRun, wave: WaveConfig, final: np.ndarray, summary: dict) -> None:
    from tcoupled.runtime.store import open_results, write_summary
    from tcoupled.sim.config import grid_spacing

    resolved = {"wave": asdict(wave), "out": config.out}
    with open_results(config.out, resolved, command="wave") as h5:
        grp = h5.create_group("wave")
        dset = grp.create_dataset("u", data=final)
        dset.attrs["description"] = "u(x, y, t_final) on the global grid; axis 0 is x"
        dx, dy = grid_spacing(wave.grid)
        for key, value in (("t_final", wave.t_final), ("dt", wave.dt), ("c", wave.c),
                           ("steps", wave.steps), ("dx", dx), ("dy", dy),
                           ("init", wave.init), ("kernel", config.kernel)):
            dset.attrs[key] = value
        grp.create_dataset("x", data=np.linspace(0.0, 1.0, wave.grid[0]))
        grp.create_dataset("y", data=np.linspace(0.0, 1.0, wave.grid[1]))
        for key, value in summary.items():
            if value is not None and not isinstance(value, (list, dict)):
                grp.attrs[key] = value
    write_summary(config.out, summary)


def _report_line(s: dict) -> str:
    parts = [f"t = {s['t_final']:.4g}"]
    if s["l2_rel_error"] is not None:
        parts.append(f"L2 error vs exact {s['l2_rel_error']:.3e}")
    if s["energy_drift"] is not None:
        parts.append(f"energy drift {s['energy_drift']:.2e}")
    if s["cells_per_s"]:
        parts.append(f"{s['cells_per_s'] / 1e6:.1f} Mcells/s")
    parts.append(f"wall {s['wall_s']:.2f} s")
    return "wave: " + ", ".join(parts)


def _mpi_max() -> Any:
    from tcoupled.runtime.mpienv import init_mpi

    return init_mpi().MAX


def _max_per_key(dicts: list[dict] | None) -> dict:
    """Per-key maximum over the ranks' timer dicts (``None`` off the root)."""
    if dicts is None:
        return {}
    return {k: max(d.get(k, 0.0) for d in dicts) for k in set().union(*dicts)}
