"""Time the GPU paths on a machine with an NVIDIA GPU (``run/device_check.sh``).

Measures, in one run: device-to-device copy bandwidth; the CuPy stencil's cell
rate on 8192^2 float32 as a fraction of the copy-bandwidth bound (3 values moved
per cell); the cost of a CuPy -> torch DLPack handoff at 256^2 and 8192^2.
Writes ``device_report.json`` into the directory given as the only argument.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _event_time(fn, repeats: int = 20) -> float:
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


def copy_bandwidth(n: int = 8192) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + written)."""
    import cupy

    a = cupy.ones((n, n), dtype=cupy.float32)
    b = cupy.empty_like(a)
    seconds = _event_time(lambda: b.__setitem__(Ellipsis, a))
    return 2 * a.nbytes / seconds / 1e9


def stencil_rate(n: int = 8192) -> float:
    """Cells per second of the CuPy leapfrog kernel on an ``n x n`` float32 grid."""
    import cupy

    from tcoupled.sim.backends import load_backend

    backend = load_backend("cupy")
    u = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    prev = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    seconds = _event_time(lambda: backend.step(u, prev, prev, (1, n - 1, 1, n - 1), 0.2, 0.2))
    return (n - 2) ** 2 / seconds


def dlpack_handoff_us(n: int) -> float:
    """Microseconds to hand an ``n x n`` CuPy array to torch through DLPack."""
    import time

    import cupy
    import torch

    field = cupy.zeros((n, n), dtype=cupy.float32)
    torch.from_dlpack(field)
    start = time.perf_counter()
    for _ in range(1000):
        tensor = torch.from_dlpack(field)
    assert tensor.data_ptr() == field.data.ptr
    return (time.perf_counter() - start) / 1000 * 1e6


def main(out: str) -> None:
    """Run every measurement and write ``device_report.json`` into ``out``."""
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    bw = copy_bandwidth()
    rate = stencil_rate()
    report = {
        "device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "copy_GBps": bw,
        "stencil_8192_float32_cells_per_s": rate,
        "stencil_fraction_of_copy_bound": rate * 12 / (bw * 1e9),
        "dlpack_handoff_us": {str(n): dlpack_handoff_us(n) for n in (256, 8192)},
    }
    from tcoupled.runtime.store import write_json

    write_json(Path(out, "device_report.json"), report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
