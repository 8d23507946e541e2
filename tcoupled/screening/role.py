"""The farm role of ``couple``: the active-learning xTB screen on the farm ranks.

It runs :class:`~tcoupled.screening.loop.ScreenLoop` over the farm's own
communicator (rank 0 of it manages and learns, the others run xTB), beside the
coupled solver and trainers and independently of them. Its files live in
``DIR/farm/``: ``journal.jsonl`` (every finished calculation, appended as it
arrives -- a resumed run keeps them and never runs one again), ``results.h5``
and ``summary.json`` in the format of ``screen``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tcoupled.runtime import stopping
from tcoupled.screening.loop import TASKS, ScreenConfig, ScreenLoop
from tcoupled.screening.run import prepare_space

FARM_DIR = "farm"


class ProgressLoop(ScreenLoop):
    """A screen that logs one line per molecule: k of budget, best IE so far, ETA."""

    def run(self) -> None:
        """Screen until the budget is spent, with progress from the farm's rank 0."""
        log, start, first = self.log, time.perf_counter(), len(self.records)
        while len(self.records) < self.config.budget:
            if not stopping.requested():
                self._submit_while_idle()
            self._refit_if_stale()
            if not self.in_flight:
                log.info("farm: %s after %d molecules", "stopped by "
                         f"{stopping.signal_name(stopping.received())}"
                         if stopping.requested() else "search space exhausted",
                         len(self.records))
                break
            record = self._collect()
            best = self.best()
            done = len(self.records) - first
            eta = (time.perf_counter() - start) / done * (self.config.budget - len(self.records))
            shown = f"IE {record.ie_ev:.3f} eV" if record.status == "ok" else record.error
            log.info("farm: molecule %d/%d %s %s, best IE so far %s, ETA %.1f s",
                     len(self.records), self.config.budget, record.smiles, shown,
                     f"{best.ie_ev:.3f} eV ({best.smiles})" if best else "none", eta)


def _drive(config: ScreenConfig, manager: Any, log: Any) -> dict:
    """Run the screen on the manager; write ``DIR/farm/*``; return the farm's summary."""
    from tcoupled.runtime.store import write_summary
    from tcoupled.screening.loop import Journal
    from tcoupled.screening.outputs import summarize, write_results

    Path(config.out).mkdir(parents=True, exist_ok=True)
    journal = Journal(config.out)
    done = journal.load() if config.resume else []
    if not config.resume:
        journal.path.unlink(missing_ok=True)
    space, fingerprints, fp_seconds = prepare_space(config, log, "farm")
    loop = ProgressLoop(config, space, fingerprints, manager, journal, done)
    manager.stats.restart_clock()  # the farm starts with the first task, once the model is set
    loop.log = log
    loop.run()
    farm = manager.report()
    write_results(config.out, asdict(config), loop.rejected + loop.records, loop.snapshots,
                  farm)
    predict_s = float(sum(s.predict_s for s in loop.snapshots))
    summary = summarize(loop, farm, {"budget": config.budget, "resumed_records": len(done),
                                     "fingerprint_s": fp_seconds, "learn_s": predict_s})
    write_summary(config.out, summary)
    return summary


def run_farm_role(config: ScreenConfig, farm_comm: Any, log: Any) -> dict:
    """Run the farm on ``farm_comm`` (every farm rank); return this rank's record."""
    from tcoupled.farm.manager import run_farm

    start = time.perf_counter()
    summary = run_farm(farm_comm, TASKS[config.task], config.task_timeout,
                       lambda manager: _drive(config, manager, log))
    record: dict = {"role": "farm", "farm_rank": farm_comm.Get_rank(),
                    "wall_s": time.perf_counter() - start, "phases": {}}
    if summary is not None and stopping.requested():
        record["stopped"] = None  # the screen stopped early; its journal is kept
        record["signal"] = stopping.received()
    if summary is not None:
        record["farm"] = summary
        record["phases"] = {"learn": summary["learn_s"],
                            "fingerprints": summary["fingerprint_s"]}
    return record


def farm_phases(records: list[dict]) -> None:
    """Give every farm worker's record its busy time (``xtb``) from the manager's figures."""
    leader = next((r for r in records if r.get("farm")), None)
    if leader is None:
        return
    busy = leader["farm"]["worker_busy_s"]
    for record in records:
        if record["role"] == "farm" and str(record["farm_rank"]) in busy:
            record["phases"]["xtb"] = busy[str(record["farm_rank"])]


def farm_summary(records: list[dict]) -> dict | None:
    """The farm's key figures for ``summary.json`` (``None`` without farm ranks)."""
    leader = next((r for r in records if r.get("farm")), None)
    if leader is None:
        return None
    farm = leader["farm"]
    keys = ("simulated", "failed", "best_ie_ev", "best_smiles", "tasks_per_s",
            "resumed_records", "wall_s", "worker_utilization")
    return {"ranks": sum(r["role"] == "farm" for r in records),
            **{key: farm[key] for key in keys}}
