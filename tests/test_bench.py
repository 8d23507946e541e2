"""Every benchmark runs in quick mode and writes its results (speed is not asserted here)."""

import json

import pytest

from mpitools import check, tcoupled

pytestmark = pytest.mark.timeout(240)


@pytest.mark.mpi
def test_bench_stencil_quick(tmp_path):
    proc = check(tcoupled("bench", "stencil", "--quick", "--no-devito", "--out", str(tmp_path),
                          timeout=200))
    assert "bandwidth float32" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["stencil"]
    backends = {r["backend"] for r in results["rows"]}
    assert {"numpy", "c"} <= backends
    assert all(r["cells_per_s"] > 0 and r["bound_cells_per_s"] > 0 for r in results["rows"])
    assert {(r["mode"], r["ranks"]) for r in results["scaling"]} == {
        ("strong", 1), ("strong", 2), ("weak", 1), ("weak", 2)}
    assert (tmp_path / "bench_stencil.png").stat().st_size > 10_000


def test_unknown_benchmark_is_refused(tmp_path):
    proc = tcoupled("bench", "gpu-magic", "--out", str(tmp_path), timeout=30)
    assert proc.returncode == 2
    assert "bench must be one of" in proc.stderr and "'gpu-magic'" in proc.stderr
