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
    assert "farm / Parsl HTEX" in proc.stdout or "skipped: parsl is not installed" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["farm"]
    rows = results["rows"]
    for workers in (1, 2):
        for runner in ("farm", "mpi4py.futures"):
            for task, count in (("noop", 200), ("xtb", 4)):
                row = bench_farm.pick(rows, runner, task, workers)
                assert row is not None, (runner, task, workers, rows)
                assert row["tasks"] == count and row["failed"] == 0
                assert row["tasks_per_s"] > 0 and math.isfinite(row["overhead_ms_per_task"])
    farm_noop = bench_farm.pick(rows, "farm", "noop", 2)
    assert 0 <= farm_noop["overhead_ms_per_task"] < 5, farm_noop
    helper = bench_farm.pick(rows, "helper", "noop", 1)
    assert helper["values"] == farm_noop["values"]  # same tasks, same answers
    ie = bench_farm.pick(rows, "farm", "xtb", 1)["values"]
    assert all(5 < v < 25 for v in ie), ie
    assert bench_farm.pick(rows, "mpi4py.futures", "xtb", 2)["values"] == pytest.approx(ie)
    parsl = [r for r in rows if r["runner"] == "parsl-htex"]
    assert len(parsl) in (2, 4)
    if any("skipped" in r for r in parsl):
        assert all(r["skipped"] == "parsl is not installed" for r in parsl)
    else:
        assert bench_farm.pick(rows, "parsl-htex", "xtb", 2)["values"] == pytest.approx(ie)
        assert Path(results["run_dir"]).is_relative_to(tmp_path.resolve())
        assert (Path(results["run_dir"]) / "parsl_2w").is_dir()
        assert results["headline"]["farm_noop_over_parsl_htex"] > 0
    assert results["leftover_processes"] == []
    assert {e["runner"] for e in results["efficiency"]} >= {"farm", "mpi4py.futures"}
    assert 0 < results["headline"]["farm_noop_efficiency"] < 2
    assert (tmp_path / "bench_farm.png").stat().st_size > 10_000


@pytest.mark.timeout(30)
def test_missing_parsl_is_a_skipped_row(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_farm, "parsl_available", lambda: False)
    rows = bench_farm.run_one("parsl-htex", 2, "noop:10", 1, tmp_path)
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
