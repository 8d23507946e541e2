"""The ``screen`` job: the active-learning loop on the farm, then its results and plot."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tcoupled.screening.loop import TASKS, ScreenConfig
from tcoupled.screening.run import CONFIG_FILE, prepare_space


def run_screen(config: ScreenConfig, comm: Any) -> int:
    """Run the screen: rank 0 learns and manages, the other ranks compute."""
    from tcoupled.farm.manager import run_farm
    from tcoupled.runtime import stopping

    stopping.install()
    rank = 0 if comm is None else comm.Get_rank()
    if rank == 0:
        from tcoupled.runtime.telemetry import setup_logging

        setup_logging(config.out, rank)
    status = run_farm(comm, TASKS[config.task], config.task_timeout,
                      lambda manager: _drive(config, manager))
    return comm.bcast(status, root=0) if comm is not None and comm.Get_size() > 1 else status


def _stopped(config: ScreenConfig, loop: Any) -> int:
    """Rank 0 after SIGTERM/SIGINT: the journal holds every result; say where it stopped."""
    import sys

    from tcoupled.runtime import stopping
    from tcoupled.runtime.store import write_summary

    signum = stopping.received()
    name = stopping.signal_name(signum)
    best = loop.best()
    write_summary(config.out, {
        "command": "screen", "stopped": name, "simulated": len(loop.records),
        "failed": sum(r.status != "ok" for r in loop.records), "budget": config.budget,
        "best_ie_ev": best.ie_ev if best else None, "best_smiles": best.smiles if best else None,
        "resume": f"--resume {config.out}"})
    sys.stderr.write(f"tcoupled screen: stopped by {name} after {len(loop.records)} "
                     f"molecules; resume with --resume {config.out}\n")
    sys.stderr.flush()
    return stopping.exit_status(signum)


def _drive(config: ScreenConfig, manager: Any) -> int:
    from tcoupled.report.screen import plot_progress
    from tcoupled.runtime.store import write_json, write_summary
    from tcoupled.runtime.telemetry import get_logger
    from tcoupled.screening.loop import Journal, ScreenLoop
    from tcoupled.screening.outputs import read_records, summarize, write_results

    journal = Journal(config.out)
    done = journal.load() if config.resume else []
    if not config.resume:
        journal.path.unlink(missing_ok=True)
        write_json(Path(config.out) / CONFIG_FILE, asdict(config))
    space, fingerprints, fp_seconds = prepare_space(config, get_logger(), "screen")
    loop = ScreenLoop(config, space, fingerprints, manager, journal, done)
    manager.stats.restart_clock()  # the farm starts with the first task, once the model is set
    loop.run()
    from tcoupled.runtime import stopping

    if stopping.requested():
        return _stopped(config, loop)
    farm = manager.report()
    write_results(config.out, asdict(config), loop.rejected + loop.records, loop.snapshots,
                  farm)
    baseline = read_records(config.baseline) if config.baseline else None
    plot = plot_progress(config.out, loop.records, config.policy, baseline)
    extra = {"policy": config.policy, "budget": config.budget, "resumed_records": len(done),
             "fingerprint_s": fp_seconds, "plot": plot.name, "farm": farm}
    summary = summarize(loop, farm, extra)
    write_summary(config.out, summary)
    print(f"screen: {summary['simulated']} simulated, {summary['failed']} failed, best "
          f"{summary['best_ie_ev']} eV ({summary['best_smiles']}), "
          f"{summary['tasks_per_s']:.2f} tasks/s -> {config.out}")
    return 0
