"""``bench ddp`` in quick mode: paired rounds, a median and its interval (speed not asserted)."""

import json

import pytest

from mpitools import check, tcoupled


@pytest.mark.timeout(300)
def test_bench_ddp_quick(tmp_path):
    proc = check(tcoupled("bench", "ddp", "--quick", "--out", str(tmp_path), timeout=280))
    assert "efficiency at 2 ranks" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["ddp"]
    assert len(results["rounds"]) == 2
    for r in results["rounds"]:
        one, other = r["singles"]
        assert one["ranks"] == other["ranks"] == 1 and r["ddp"]["ranks"] == 2
        # the stock DDP hook may leave the allreduce untimed (share 0): never above 1
        assert one["allreduce_share"] == 0 and 0 <= r["ddp"]["allreduce_share"] < 1
        assert r["efficiency"] == pytest.approx(
            r["ddp"]["samples_per_s"] / (one["samples_per_s"] + other["samples_per_s"]))
    head = results["headline"]
    low, high = head["ci95"]
    assert low <= head["efficiency_2"] <= high and head["launches"] == 2
    assert sorted([low, high]) == sorted(r["efficiency"] for r in results["rounds"])
    assert (tmp_path / "bench_ddp.png").stat().st_size > 10_000


@pytest.mark.timeout(30)
def test_launches_wait_for_each_other(tmp_path):
    import threading
    import time

    from tcoupled.bench.ddp_driver import wait_for_parties

    started = []

    def late():
        time.sleep(0.3)
        started.append(time.monotonic())
        (tmp_path / "ready.late").touch()

    thread = threading.Thread(target=late)
    thread.start()
    wait_for_parties(str(tmp_path), 2)
    released = time.monotonic()
    thread.join()
    assert released >= started[0]
    with pytest.raises(TimeoutError, match="only some of 3"):
        wait_for_parties(str(tmp_path), 3, timeout=0.05)
