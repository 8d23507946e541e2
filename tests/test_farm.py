"""The task farm: isolation of crashes, hangs and errors; the MPI farm's overhead."""

from __future__ import annotations

import json
import time

import pytest

from tcoupled.farm.manager import IsolatedRunner, Manager, map_tasks

from mpitools import REPO, python_mpi

TASK = "farm_tasks:misbehave"


@pytest.mark.faults
@pytest.mark.timeout(60)
def test_runner_survives_crash_hang_and_error():
    runner = IsolatedRunner(TASK, timeout=1.0)
    try:
        assert runner.run({"kind": "ok", "value": 3}) == ("ok", 3.0, "")
        status, _, error = runner.run({"kind": "crash"})
        assert status == "failed" and "SIGABRT" in error
        start = time.perf_counter()
        status, _, error = runner.run({"kind": "hang"})
        assert status == "failed" and error.startswith("timeout")
        assert time.perf_counter() - start < 5
        status, _, error = runner.run({"kind": "raise"})
        assert error == "RuntimeError: SCF did not converge"
        assert runner.run({"kind": "ok", "value": 4}) == ("ok", 4.0, "")
    finally:
        runner.close()


@pytest.mark.timeout(60)
def test_one_rank_farm_runs_tasks_on_the_manager():
    manager = Manager(None, TASK, timeout=5.0)
    try:
        results = map_tasks(manager, [{"kind": "ok", "value": v} for v in (1, 2, 3)])
    finally:
        manager.shutdown()
    assert [r.value for r in results] == [1.0, 2.0, 3.0]
    assert manager.report()["tasks"] == 3


@pytest.mark.faults
@pytest.mark.timeout(120)
@pytest.mark.mpi
def test_mpi_farm_records_failures_and_reuses_one_helper_per_worker():
    proc = python_mpi(REPO / "tests" / "farm_script.py", ranks=3, timeout=100,
                      env={"PYTHONPATH": str(REPO / "tests")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines()
                 if line.startswith(("FARM ", "OVERHEAD ")))
    farm, overhead = json.loads(lines["FARM"]), json.loads(lines["OVERHEAD"])
    assert farm["tasks"] == 10 and set(farm["worker_busy_s"]) == {"1", "2"}
    # What makes a task cheap (speed itself is measured in `bench farm`): every task
    # runs once, in the one helper process its worker started -- no process per task
    # -- and both workers share the load as they free up.
    assert overhead["tasks"] == overhead["ok"] == 400
    assert overhead["task_ids"] == list(range(400))
    helpers = overhead["helpers"]
    assert set(helpers) == {"1", "2"} and all(len(pids) == 1 for pids in helpers.values())
    assert helpers["1"] != helpers["2"]
    assert min(overhead["per_worker"].values()) >= 40, overhead["per_worker"]
