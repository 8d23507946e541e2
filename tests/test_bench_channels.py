"""``bench channels`` in quick mode write sane rows (speed not asserted)."""

import json
import subprocess

import pytest

from mpitools import check, tcoupled

pytestmark = pytest.mark.timeout(240)


def _redis_processes(folder):
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if "redis-server" in line and str(folder) in line]


@pytest.mark.mpi
@pytest.mark.system  # the Redis row runs when redis-server is there
def test_bench_channels_quick(tmp_path):
    proc = check(tcoupled("bench", "channels", "--quick", "--out", str(tmp_path), timeout=200))
    assert "us per handoff" in proc.stdout and "handoff / touch" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["channels"]
    channels = {r["channel"] for r in results["rows"]}
    assert {"touch", "touch-2proc", "inproc", "shm", "mpi", "file", "np.save"} <= channels
    if results["redis_skipped"] is None:
        assert "redis" in channels
    assert set(results["labels"]) >= channels
    for row in results["rows"]:
        assert {"channel", "n", "dtype", "handoff_us", "touch_us", "bytes_copied"} <= set(row)
        assert row["dtype"] == "float32" and row["bytes"] == row["n"] ** 2 * 4, row
        assert row["handoff_us"] > 0 and row["touch_us"] > 0 and row["repeats"] >= 5, row
        assert row["p10_us"] <= row["handoff_us"] <= row["p90_us"], row
        if row["channel"] in ("touch", "touch-2proc", "inproc", "shm"):
            assert row["bytes_copied"] == 0, row
        else:
            assert row["bytes_copied"] >= row["bytes"], row
    head = results["headline"]
    assert head["n"] == results["sizes"][-1] == 256
    large = {r["channel"]: r for r in results["rows"] if r["n"] == 256}
    assert head["shm_over_touch"] == large["shm"]["handoff_us"] / large["touch"]["handoff_us"]
    assert head["mpi_over_touch"] > 0
    assert head["shm_over_touch_2proc"] == (large["shm"]["handoff_us"]
                                            / large["touch-2proc"]["handoff_us"])
    assert isinstance(results["oversubscribed"], bool)
    assert [p["n"] for p in results["ping_pong"]] == results["sizes"]
    assert (tmp_path / "bench_channels.png").stat().st_size > 10_000
    assert not (tmp_path / "channels_scratch").exists()
    assert _redis_processes(tmp_path) == []

