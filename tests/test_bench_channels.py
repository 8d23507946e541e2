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



def _row(channel, n, us, round_):
    return {"channel": channel, "n": n, "dtype": "float32", "bytes": n * n * 4,
            "handoff_us": us, "p10_us": us * 0.9, "p90_us": us * 1.1, "repeats": 5,
            "bytes_copied": 0, "round": round_}


def test_rounds_give_ratios_within_each_round():
    from tcoupled.bench.channels import headline, merge_rounds, round_ratios

    # a slow spell in round 1 doubles both touch and shm: the ratio within rounds stays 1.1
    rows = [_row("touch", 64, 10.0, 0), _row("shm", 64, 30.0, 0)]
    rows += [_row(c, 256, us * (2 if r == 1 else 1), r) for r in range(3)
             for c, us in (("touch", 100.0), ("shm", 110.0))]
    merged = {(r["channel"], r["n"]): r for r in merge_rounds(rows)}
    assert merged[("touch", 256)]["rounds_us"] == [100.0, 200.0, 100.0]
    assert merged[("touch", 256)]["handoff_us"] == 100.0
    assert merged[("touch", 256)]["repeats"] == 15 and "round" not in merged[("touch", 256)]
    assert merged[("shm", 256)]["p90_us"] == 220.0 * 1.1
    assert merged[("shm", 64)]["rounds_us"] == [30.0]
    ratios = round_ratios(rows)
    assert ratios["shm"] == pytest.approx([1.1, 1.1, 1.1])
    for row in merged.values():
        row["touch_us"] = merged[("touch", row["n"])]["handoff_us"]
    head = headline({"sizes": [64, 256], "rows": list(merged.values()), "rounds": 3,
                     "round_ratios": ratios})
    assert head["shm_over_touch"] == pytest.approx(1.1) and head["rounds"] == 3
    assert head["shm_over_touch_rounds"] == pytest.approx([1.1, 1.1, 1.1])
