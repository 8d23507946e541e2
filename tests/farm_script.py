"""Run under mpiexec: a farm of misbehaving tasks, then no-op tasks for the overhead.

Exits non-zero (and aborts every rank) if any expectation fails; rank 0
prints the overhead figures as ``OVERHEAD <json>``.
"""

import json
import sys

from tcoupled.farm.manager import map_tasks, run_farm
from tcoupled.runtime.mpienv import init_mpi

KINDS = ["ok", "crash", "ok", "hang", "raise", "exit", "scf", "ok", "ok", "ok"]


def check_misbehaving(manager):
    payloads = [{"kind": kind, "value": i} for i, kind in enumerate(KINDS)]
    results = map_tasks(manager, payloads)
    reasons = {kind: r.error for kind, r in zip(KINDS, results)}
    assert [r.status for r in results] == ["ok" if k == "ok" else "failed" for k in KINDS]
    assert [r.value for r, k in zip(results, KINDS) if k == "ok"] == [0, 2, 7, 8, 9]
    assert reasons["crash"].startswith("crash") and "SIGABRT" in reasons["crash"], reasons
    assert "exit status 7" in reasons["exit"], reasons
    assert reasons["hang"].startswith("timeout"), reasons
    assert "SCF did not converge" in reasons["raise"], reasons
    assert reasons["scf"], reasons
    assert {r.worker for r in results} == {1, 2}, "both workers must have worked"
    return manager.report()


def noop_overhead(manager):
    manager.stats.restart_clock()
    map_tasks(manager, [{"smiles": str(i)} for i in range(400)])
    return manager.report()


def main():
    comm = init_mpi().COMM_WORLD.Dup()
    try:
        report = run_farm(comm, "farm_tasks:misbehave", 2.0, check_misbehaving)
        overhead = run_farm(comm, "tcoupled.farm.manager:noop_task", 5.0, noop_overhead)
    except BaseException:
        import traceback

        traceback.print_exc()
        comm.Abort(1)
    if comm.Get_rank() == 0:
        print("FARM", json.dumps(report))
        print("OVERHEAD", json.dumps(overhead))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
