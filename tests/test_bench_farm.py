"""``bench farm``: the farm against Parsl HTEX and mpi4py.futures on the same tasks."""

import argparse
import json
import math
import time
from pathlib import Path

import pytest

from tcoupled.bench import farm as bench_farm
from tcoupled.bench.farm_driver import parse_batches

from mpitools import check, tcoupled


@pytest.mark.timeout(150)
@pytest.mark.mpi
def test_bench_farm_quick(tmp_path):
    proc = check(tcoupled("bench", "farm", "--quick", "--out", str(tmp_path), timeout=140))
    assert ("chunked: farm / Parsl HTEX" in proc.stdout
            or "skipped: parsl is not installed" in proc.stdout)
    results = json.loads((tmp_path / "bench.json").read_text())["farm"]
    rows = results["rows"]
    for workers in (1, 2):
        for runner in ("farm", "farm-no-isolation", "mpi4py.futures", "mpi4py.futures-tuned"):
            for task, count in (("noop", 200), ("xtb", 4)):
                row = bench_farm.pick(rows, runner, task, workers)
                assert row is not None, (runner, task, workers, rows)
                # a no-op window repeats the whole batch until it is full
                assert row["tasks"] % count == 0 and row["failed"] == 0
                assert row["tasks"] == count or task == "noop"
                assert row["tasks_per_s"] > 0 and math.isfinite(row["overhead_ms_per_task"])
                if task == "noop":
                    assert row["wall_s"] >= 0.1 and len(row["repeats_tasks_per_s"]) == 2
                    assert row["tasks_per_s"] in row["repeats_tasks_per_s"]
    tuned = bench_farm.pick(rows, "mpi4py.futures-tuned", "noop", 2)
    assert tuned["settings"] == {"backoff_s": 5e-4, "chunksize": 25}
    # the farm gets the same chunks of no-ops; xTB tasks, and farm-per-task, one a message
    for runner, isolation in (("farm", True), ("farm-no-isolation", False)):
        for workers, chunk in ((1, 50), (2, 25)):
            row = bench_farm.pick(rows, runner, "noop", workers)
            assert row["settings"] == {"chunksize": chunk, "isolation": isolation}
            assert bench_farm.pick(rows, runner, "xtb", workers)["settings"]["chunksize"] == 1
    for workers in (1, 2):
        per_task = bench_farm.pick(rows, "farm-per-task", "noop", workers)
        assert per_task["settings"] == {"chunksize": 1, "isolation": True}
        assert per_task["failed"] == 0 and per_task["tasks"] % 200 == 0
        assert bench_farm.pick(rows, "farm-per-task", "xtb", workers) is None
        assert per_task["values"] == bench_farm.pick(rows, "farm", "noop", workers)["values"]
    assert bench_farm.pick(rows, "mpi4py.futures", "noop", 2)["settings"]["chunksize"] == 1
    farm_noop = bench_farm.pick(rows, "farm", "noop", 2)
    assert 0 <= farm_noop["overhead_ms_per_task"] < 5, farm_noop
    helper = bench_farm.pick(rows, "helper", "noop", 1)
    assert helper["values"] == farm_noop["values"]  # same tasks, same answers
    ie = bench_farm.pick(rows, "farm", "xtb", 1)["values"]
    assert all(5 < v < 25 for v in ie), ie
    assert bench_farm.pick(rows, "mpi4py.futures", "xtb", 2)["values"] == pytest.approx(ie)
    parsl = [r for r in rows if r["runner"].startswith("parsl-htex")]
    assert len(parsl) in (4, 8)
    if any("skipped" in r for r in parsl):
        assert all(r["skipped"] == "parsl is not installed" for r in parsl)
    else:
        assert bench_farm.pick(rows, "parsl-htex", "xtb", 2)["values"] == pytest.approx(ie)
        assert Path(results["run_dir"]).is_relative_to(tmp_path.resolve())
        assert (Path(results["run_dir"]) / "parsl-htex_2w").is_dir()
        assert results["headline"]["farm_over_parsl"] > 0
        assert results["headline"]["farm_over_parsl_per_task"] > 0
    head = results["headline"]
    assert set(head["tasks_per_s"]) >= {"farm", "farm-no-isolation", "farm-per-task",
                                        "mpi4py.futures", "mpi4py.futures-tuned"}
    rate = {r: q["median"] for r, q in head["tasks_per_s"].items()}
    assert head["farm_over_mpi4py_futures_tuned"] == pytest.approx(
        rate["farm"] / rate["mpi4py.futures-tuned"])
    assert head["farm_over_mpi4py_futures"] == pytest.approx(
        rate["farm-per-task"] / rate["mpi4py.futures"])
    assert head["farm_overhead_ms_per_task"] == (
        head["overhead_ms_per_task"]["farm-per-task"]["median"])
    for q in head["tasks_per_s"].values():
        assert q["q1"] <= q["median"] <= q["q3"] and q["n"] == 2
    assert head["isolation_cost_ms_per_task"] == pytest.approx(
        head["overhead_ms_per_task"]["farm"]["median"]
        - head["overhead_ms_per_task"]["farm-no-isolation"]["median"])
    assert results["leftover_processes"] == []
    assert {e["runner"] for e in results["efficiency"]} >= {"farm", "mpi4py.futures"}
    assert 0 < results["headline"]["farm_noop_efficiency"] < 2
    assert (tmp_path / "bench_farm.png").stat().st_size > 10_000


@pytest.mark.timeout(30)
def test_missing_parsl_is_a_skipped_row(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_farm, "parsl_available", lambda: False)
    rows = bench_farm.run_one("parsl-htex", 2, "noop:10", bench_farm.sizes(True), tmp_path)
    assert rows == [{"runner": "parsl-htex", "workers": 2, "skipped": "parsl is not installed"}]
    results = {"rows": rows, "efficiency": [], "headline": {}, "leftover_processes": []}
    assert any("skipped: parsl is not installed" in line for line in bench_farm.table(results))


@pytest.mark.timeout(30)
def test_failed_launch_is_reported_not_raised():
    rows, why = bench_farm.launch(["false"], timeout=10)
    assert rows == [] and why.startswith("exit 1")
    rows, why = bench_farm.launch(["sleep", "30"], timeout=0.5)
    assert rows == [] and why.startswith("timed out")


@pytest.mark.timeout(30)
def test_processes_left_behind_are_reported_and_killed():
    bench_farm.LEFTOVERS.clear()
    script = "sleep 27.5 >/dev/null 2>&1 & echo 'RESULT [{\"ok\": 1}]'"
    rows, why = bench_farm.launch(["bash", "-c", script], timeout=10)
    assert rows == [{"ok": 1}] and why == ""
    assert len(bench_farm.LEFTOVERS) == 1 and "sleep 27.5" in bench_farm.LEFTOVERS[0]
    pid = int(bench_farm.LEFTOVERS[0].split()[0])
    time.sleep(0.2)
    assert not bench_farm.processes(lambda _, args: args == "sleep 27.5"), pid
    bench_farm.LEFTOVERS.clear()


def test_batches_are_parsed_and_checked():
    assert parse_batches("noop:2000,xtb:12") == [("noop", 2000), ("xtb", 12)]
    for bad in ("noop", "gpu:3", "xtb:0", "noop:-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="batch must be"):
            parse_batches(bad)


def test_in_process_runner_reports_failures_like_the_helper():
    from tcoupled.farm.isolation import InProcessRunner

    runner = InProcessRunner("tcoupled.farm.manager:noop_task", 1.0)
    status, value, error = runner.run({"smiles": "CC"})
    assert (status, error) == ("ok", "") and value == bench_farm_noop({"smiles": "CC"})
    status, value, error = runner.run(None)  # noop_task(None) -> str(None): still fine
    assert status == "ok"
    bad = InProcessRunner("tcoupled.bench.farm_driver:timed_task", 1.0)
    status, value, error = bad.run({})
    assert status == "failed" and value is None and error == "KeyError: 'kind'"


def bench_farm_noop(payload):
    from tcoupled.farm.manager import noop_task

    return noop_task(payload)


def test_spread_and_median_interval():
    from tcoupled.bench.timing import median_ci95, spread

    q = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (q["median"], q["q1"], q["q3"], q["iqr"], q["n"]) == (3.0, 2.0, 4.0, 2.0, 5)
    ci = median_ci95([7.0, 1.0, 3.0, 2.0, 4.0, 6.0, 5.0])
    assert ci["median"] == 4.0 and ci["ci95"] == [1.0, 7.0]
    assert ci["coverage"] == pytest.approx(1 - 2 / 128)
    wide = median_ci95([float(i) for i in range(20)])  # k = 6: coverage 0.9586
    assert wide["ci95"] == [5.0, 14.0] and wide["coverage"] == pytest.approx(0.958610, abs=1e-6)
    assert median_ci95([1.0, 2.0, 3.0, 4.0, 5.0])["coverage"] == pytest.approx(0.9375)


def test_chunks_cover_the_batch_in_order():
    from tcoupled.bench.farm_driver import chunk_size, chunks

    assert chunk_size(2000, 2) == 250 and chunk_size(3, 2) == 1 and chunk_size(9, 2) == 2
    batch = list(range(9))
    assert [x for c in chunks(batch, chunk_size(9, 2)) for x in c] == batch
