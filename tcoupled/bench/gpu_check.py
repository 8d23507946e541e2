"""The GPU checks of ``run/device_check.sh``, and the report they write.

Measures, in one run: device-to-device copy bandwidth; the CuPy stencil's cell rate on
8192^2 float32 as a fraction of the copy-bandwidth bound (3 values moved per cell, the
same 12 bytes a copy moves in 1.5 elements), with the program's tile and with each tile of
:data:`TILES`; the CuPy -> torch DLPack handoff; then the
multi-process checks of :mod:`tcoupled.bench.gpu_runs`. Writes ``device_report.json``
(card, driver, date, every check ok/failed with its figure) into the output folder.

Usage: ``python -m tcoupled.bench.gpu_check OUT [--build ok|failed] [--tests ok|failed]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

#: the stencil must reach this fraction of the measured copy bandwidth
STENCIL_TARGET = 0.8


def _event_time(fn: Callable[[], None], repeats: int = 20) -> float:
    """Median seconds per call of ``fn``, timed with CUDA events after a warm-up."""
    import cupy

    fn()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    times.sort()
    return times[len(times) // 2]


def copy_bandwidths(n: int = 8192) -> dict[str, float]:
    """Device-to-device copy bandwidth in GB/s (bytes read + written), two ways.

    ``kernel``: CuPy's element-wise copy (a kernel like the stencil's); ``memcpy``: the
    driver's ``cudaMemcpyAsync``. The stencil is judged against the faster.
    """
    import cupy

    a = cupy.ones((n, n), dtype=cupy.float32)
    b = cupy.empty_like(a)
    kernel = _event_time(lambda: b.__setitem__(Ellipsis, a))
    memcpy = _event_time(lambda: b.data.copy_from_device_async(a.data, a.nbytes))
    return {name: 2 * a.nbytes / seconds / 1e9
            for name, seconds in (("kernel", kernel), ("memcpy", memcpy))}


#: the tiles the stencil is timed with: (block x, block y, rows per thread)
TILES = [(bx, by, rows) for bx, by in ((32, 8), (64, 4), (128, 2), (256, 1), (32, 4), (128, 1))
         for rows in (1, 2, 4, 8)]


def stencil_rate(n: int = 8192, tile: tuple[int, int, int] | None = None) -> float:
    """Cells per second of the CuPy leapfrog kernel on an ``n x n`` float32 grid."""
    import cupy

    from tcoupled.sim.backends.cupy_backend import CupyBackend

    backend = CupyBackend(tile)
    u = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    prev = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    seconds = _event_time(lambda: backend.step(u, prev, prev, (1, n - 1, 1, n - 1), 0.2, 0.2))
    return (n - 2) ** 2 / seconds


def tile_sweep(bandwidth: float) -> dict[str, float]:
    """Fraction of the copy-bandwidth bound (12 bytes per cell) of each tile in TILES."""
    return {tile_name(tile): stencil_rate(tile=tile) * 12 / (bandwidth * 1e9)
            for tile in TILES}


def tile_name(tile: tuple[int, int, int]) -> str:
    """``BXxBYxROWS``."""
    return "x".join(map(str, tile))


def dlpack_handoff_us(n: int) -> float:
    """Microseconds to hand an ``n x n`` CuPy array to torch through DLPack (zero copy)."""
    import time

    import cupy
    import torch

    field = cupy.zeros((n, n), dtype=cupy.float32)
    tensor = torch.from_dlpack(field)
    start = time.perf_counter()
    for _ in range(1000):
        tensor = torch.from_dlpack(field)
    seconds = (time.perf_counter() - start) / 1000
    if tensor.data_ptr() != field.data.ptr:
        raise RuntimeError("DLPack handoff copied the field")
    return seconds * 1e6


def machine() -> dict:
    """Card, driver and library versions."""
    import cupy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"]
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True)
    mpi = subprocess.run([sys.executable, "-c", "from mpi4py import MPI; "
                          "print(MPI.Get_library_version().splitlines()[0])"],
                         capture_output=True, text=True)  # no MPI here: it launches jobs
    return {"card": name.decode() if isinstance(name, bytes) else name,
            "driver": smi.stdout.strip() or "unknown",
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
            "torch": torch.__version__, "cupy": cupy.__version__,
            "mpi": mpi.stdout.strip() or mpi.stderr.strip()[-200:],
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def single_gpu_checks() -> dict[str, dict]:
    """Bandwidth, stencil fraction and DLPack handoff, each as a check."""
    from tcoupled.sim.backends.cupy_backend import TILE, CupyBackend

    program = CupyBackend()  # the tile the program runs (TCOUPLED_CUDA_TILE or TILE)
    copies = copy_bandwidths()
    bw = max(copies.values())
    rate = stencil_rate()
    fraction = rate * 12 / (bw * 1e9)
    sweep = tile_sweep(bw)
    best = max(sweep, key=sweep.__getitem__)
    return {"copy_bandwidth": {"ok": bw > 0, "figure": bw, "unit": "GB/s read + written",
                               **copies},
            "stencil_8192_float32": {"ok": fraction >= STENCIL_TARGET, "figure": fraction,
                                     "unit": "fraction of copy-bandwidth bound",
                                     "cells_per_s": rate, "target": STENCIL_TARGET,
                                     "tile": tile_name(program.tile),
                                     "default_tile": tile_name(TILE),
                                     "best_tile": best, "best_figure": sweep[best],
                                     "tiles": sweep},
            "dlpack_handoff": {"ok": True, "figure": dlpack_handoff_us(8192),
                               "unit": "us per handoff of 8192^2 float32",
                               "at_256_us": dlpack_handoff_us(256)}}


def _guard(name: str, fn: Callable[[], dict]) -> dict:
    """Run a group of checks; a crash is a failed check ``name``, not a missing report."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure goes into the report
        return {name: {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}}


def main(argv: list[str] | None = None) -> int:
    """Run every check and write ``device_report.json``; exit 1 if any failed."""
    parser = argparse.ArgumentParser(prog="python -m tcoupled.bench.gpu_check")
    parser.add_argument("out")
    parser.add_argument("--build", default="ok", choices=("ok", "failed"))
    parser.add_argument("--tests", default="ok", choices=("ok", "failed"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    checks = {"build": {"ok": args.build == "ok"},
              "tests_gpu": {"ok": args.tests == "ok", "detail": "pytest tests/test_gpu.py"}}
    report = _guard("machine", machine)
    checks.update(_guard("single_gpu", single_gpu_checks))
    from tcoupled.bench.gpu_runs import run_all

    checks.update(_guard("multi_process", lambda: run_all(out / "runs")))
    report["checks"] = checks
    report["all_ok"] = all(c.get("ok") for c in checks.values())
    from tcoupled.runtime.store import write_json

    write_json(out / "device_report.json", report)
    print(json.dumps(report, indent=2))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
