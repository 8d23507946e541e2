"""The ``couple`` job: sim, train and farm roles side by side in one launch.

Splits the world into the coupled ranks (sim + train, :mod:`tcoupled.coupling`) and the
farm ranks (:mod:`tcoupled.screening.role`), runs each rank's role, gathers every rank's
record and lets rank 0 write the outputs and the report. torch is imported lazily.
"""

from __future__ import annotations

from typing import Any

from tcoupled.coupling.config import CoupleRun, colocation_problem


def run(config: CoupleRun, comm: Any) -> int:
    """Lay out the ranks; run the coupled roles and the farm side by side; report on rank 0."""
    from tcoupled.placement.layout import split_coupled
    from tcoupled.placement.plan import RoleCounts
    from tcoupled.runtime import stopping

    if config.dry_run:
        if comm.Get_rank() == 0:
            print("\n".join(describe(config)))
        return 0
    stopping.install()
    counts = RoleCounts(config.sim_ranks, config.train_ranks, config.farm_ranks)
    part = split_coupled(comm, counts)
    in_farm = comm.Get_rank() >= config.sim_ranks + config.train_ranks
    layout, problem = (None, None) if in_farm else _coupled_layout(config, part)
    problem = comm.bcast(problem, root=0)
    status = 2
    if problem is None:
        from tcoupled.runtime.cores import node_load
        from tcoupled.runtime.waiting import adapt_to, gather_polling

        load = node_load(comm)
        adapt_to(load, naps=config.division == "time")
        record = {**_run_role(config, comm, part, layout, in_farm), **load}
        status = _conclude(config, comm, gather_polling(comm, record, root=0))
    elif comm.Get_rank() == 0:
        import sys

        sys.stderr.write(f"tcoupled couple: error: {problem}\n")
    if layout is not None:
        layout.free()
    part.Free()
    return status


def _stopped(config: CoupleRun, records: list[dict]) -> tuple[int, str]:
    """Rank 0 of a stopped run: write ``summary.json`` saying so; return status and line."""
    from tcoupled.coupling.checkpoint import complete_cycles
    from tcoupled.runtime.stopping import exit_status, signal_name
    from tcoupled.runtime.store import write_summary

    signum = max(int(r.get("signal") or 0) for r in records if "stopped" in r) or 15
    cycles = [r["stopped"] for r in records if r.get("stopped") is not None]
    where = (f"after cycle {min(cycles)}" if cycles
             else f"(farm only; sim and train finished all {config.cycles} cycles)")
    farm = next((r["farm"] for r in records if r.get("farm")), None)
    write_summary(config.out, {
        "command": "couple", "stopped": signal_name(signum),
        "stopped_after_cycle": min(cycles) if cycles else config.cycles,
        "cycles": config.cycles,
        "checkpoints": complete_cycles(config.out, config.sim_ranks + config.train_ranks),
        "farm": None if farm is None else {k: farm.get(k) for k in (
            "simulated", "failed", "best_ie_ev", "best_smiles", "resumed_records")},
        "resume": f"--resume {config.out}"})
    return exit_status(signum), (f"stopped by {signal_name(signum)} {where}; resume with "
                                 f"--resume {config.out}")


def _conclude(config: CoupleRun, comm: Any, records: list[dict] | None) -> int:
    """Rank 0 writes the outputs (or reports the stop); every rank gets the same status.

    An error while writing (e.g. a full disk) is raised on every rank at once, so
    the job ends with one line instead of an abort.
    """
    from tcoupled.runtime.errors import TcoupledError

    outcome: tuple[int, str, bool] = (0, "", False)
    if comm.Get_rank() == 0:
        try:
            if any("stopped" in r for r in records or ()):
                outcome = (*_stopped(config, records or []), True)
            else:
                _finish(config, records or [])
        except TcoupledError as exc:
            outcome = (exc.exit_code, str(exc), False)
    from tcoupled.runtime.waiting import bcast_polling

    status, message, stopped = bcast_polling(comm, outcome, root=0)
    if stopped:
        if comm.Get_rank() == 0:
            import sys

            sys.stderr.write(f"tcoupled couple: {message}\n")
            sys.stderr.flush()
        return status
    if status:
        error = TcoupledError(message)
        error.exit_code, error.ranks_raising = status, comm.Get_size()
        raise error
    return 0


def _coupled_layout(config: CoupleRun, comm: Any) -> tuple[Any, str | None]:
    """Build the sim/train layout on the coupled ranks and check colocation (collective)."""
    from tcoupled.placement.layout import Layout
    from tcoupled.placement.plan import RoleCounts
    from tcoupled.sim.backends import resolve_device

    layout = Layout.create(comm, RoleCounts(config.sim_ranks, config.train_ranks),
                           config.placement, max(config.ensemble, 1))
    if resolve_device(config.wave.device, config.wave.kernel) == "cuda":
        layout.bind_gpu()  # before any CUDA work: each rank on the GPU plan gives it
    return layout, colocation_problem(config, layout)


def _run_role(config: CoupleRun, world: Any, part: Any, layout: Any, in_farm: bool) -> dict:
    """Run this rank's role (farm, or sim/train) and return its record."""
    from tcoupled.runtime.telemetry import setup_logging

    if in_farm:
        from tcoupled.screening.role import run_farm_role

        log = setup_logging(config.out, world.Get_rank(), config.quiet,
                            leader=part.Get_rank() == 0)
        return run_farm_role(config.farm, part, log)
    from tcoupled.coupling.rank import CoupledRank

    coupled = CoupledRank(config, layout, None)
    log = setup_logging(config.out, world.Get_rank(), config.quiet,
                        leader=coupled.leads or world.Get_rank() == 0)
    if world.Get_rank() == 0:
        for line in describe(config):
            log.info(line)
    coupled.log = log
    return coupled.run()


def _finish(config: CoupleRun, records: list[dict]) -> None:
    """Rank 0: write ``results.h5`` and ``summary.json``, then the report."""
    from tcoupled.coupling.outputs import write_outputs
    from tcoupled.runtime.telemetry import get_logger
    from tcoupled.screening.role import farm_phases, farm_summary

    log = get_logger()
    farm_phases(records)
    write_outputs(config, records, log, farm_summary(records))
    if config.report:
        from tcoupled.report.couple import write_report

        path = write_report(config.out)
        log.info(f"report: {path}")


def describe(config: CoupleRun) -> list[str]:
    """The resolved configuration and the rank layout, one line each (printed at start)."""
    from tcoupled.coupling.config import config_dict
    from tcoupled.placement.plan import RoleCounts, format_plan, plan_ranks
    from tcoupled.runtime.store import to_json

    lines = ["couple: resolved configuration"]
    for key, value in sorted(config_dict(config).items()):
        lines.append(f"  {key}: {to_json(value)}")
    counts = RoleCounts(config.sim_ranks, config.train_ranks, config.farm_ranks)
    plan = plan_ranks(counts, config.ppn, 0, config.placement, config.ensemble)
    from tcoupled.sim.backends import resolve_device

    if resolve_device(config.wave.device, config.wave.kernel) == "cuda":
        from tcoupled.runtime.gpu import describe_cuda_aware_mpi

        lines += [f"couple: {describe_cuda_aware_mpi()}",
                  "couple: the k-th of a node's n sim/train ranks uses GPU G-1-k*G//n "
                  "(tcoupled plan --gpus-per-node G prints it)"]
    return lines + format_plan(plan, rows=16)
