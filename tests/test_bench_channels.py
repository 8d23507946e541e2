"""``bench channels`` in quick mode write sane rows (speed not asserted)."""

import json
import subprocess

import pytest

from mpitools import check, tcoupled

pytestmark = pytest.mark.timeout(240)


def _redis_processes(folder):
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "redis-server" in line and str(folder) in line]


def test_bench_channels_quick(tmp_path):
    proc = check(tcoupled("bench", "channels", "--quick", "--out", str(tmp_path), timeout=200))
    assert "us per handoff" in proc.stdout and "of ping-pong" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["channels"]
    methods = {r["method"] for r in results["rows"]}
    assert {"inproc", "shm", "mpi", "file", "np.save"} <= methods
    if results["redis_skipped"] is None:
        assert "redis" in methods
    for row in results["rows"]:
        assert row["seconds"] > 0 and row["bytes"] == row["n"] ** 2 * 4, row
        if row["method"] in ("inproc", "shm"):
            assert row["bytes_copied_per_handoff"] == 0, row
        else:
            assert row["bytes_copied_per_handoff"] >= row["bytes"], row
    assert [p["n"] for p in results["ping_pong"]] == results["sizes"]
    assert results["headline"]["mpi_fraction_of_ping_pong"] > 0
    assert (tmp_path / "bench_channels.png").stat().st_size > 10_000
    assert not (tmp_path / "channels_scratch").exists()
    assert _redis_processes(tmp_path) == []

