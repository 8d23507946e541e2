"""Stencil benchmark: kernel backends against the memory-bandwidth bound and Devito.

The bound is measured in the same run by STREAM-like copy and triad loops
compiled with the kernels (``kernels/wave.c``). A leapfrog cell update moves
three values (read ``u^n`` and ``u^{n-1}``, write ``u^{n+1}`` in place), so the
bound in cells per second is ``triad bandwidth / (3 * itemsize)``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.bench.timing import best_time

NAME = "stencil"


def bandwidth(dtype: str, mib: int) -> dict[str, float]:
    """Copy and triad bandwidth in GB/s (bytes read + written) on ``mib`` MiB arrays."""
    from tcoupled.sim.backends import load_backend

    c = load_backend("c")
    n = mib * 2**20 // np.dtype(dtype).itemsize
    a, b, out = (np.full(n, v, dtype=dtype) for v in (1.0, 2.0, 0.0))
    copy_s = best_time(lambda: c.copy(a, out))
    triad_s = best_time(lambda: c.triad(a, b, out, 3.0))
    size = a.nbytes
    return {"copy_GBps": 2 * size / copy_s / 1e9, "triad_GBps": 3 * size / triad_s / 1e9}


def kernel_rate(backend: Any, n: int, dtype: str) -> float:
    """Cell updates per second of one in-place leapfrog step on an ``n x n`` grid."""
    rng = np.random.default_rng(0)
    u = backend.xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    prev = backend.xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    box = (1, n - 1, 1, n - 1)

    def step() -> None:
        backend.step(u, prev, prev, box, 0.2, 0.2)
        if backend.xp is not np:
            backend.xp.cuda.get_current_stream().synchronize()

    return (n - 2) ** 2 / best_time(step)


def devito_rate(n: int, dtype: str, steps: int) -> float | None:
    """Cells per second of Devito on the same update (``None`` if Devito is missing).

    Runs in a subprocess with ``DEVITO_LANGUAGE=C`` (one thread) so Devito's
    configuration and compiler cache never leak into this process.
    """
    code = _DEVITO_SCRIPT.format(n=n, dtype=dtype, steps=steps)
    env = dict(os.environ, DEVITO_LANGUAGE="C", DEVITO_LOGGING="ERROR", OMP_NUM_THREADS="1",
               DEVITO_ARCH="gcc")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=600, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    line = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(line[-1])["cells_per_s"] if line else None


_DEVITO_SCRIPT = """
import json, time
import numpy as np
try:
    from devito import Eq, Grid, Operator, TimeFunction
except ImportError:
    raise SystemExit(3)
n, steps = {n}, {steps}
grid = Grid(shape=(n, n), extent=(1.0, 1.0), dtype=np.{dtype})
u = TimeFunction(name="u", grid=grid, time_order=2, space_order=2)
u.data[:] = np.random.default_rng(0).standard_normal((n, n))
dt = 0.5 / (n - 1)
op = Operator([Eq(u.forward, 2 * u - u.backward + dt**2 * u.laplace)])
op.apply(time_m=1, time_M=2, dt=dt)
best = float("inf")
for _ in range(3):
    t0 = time.perf_counter()
    op.apply(time_m=1, time_M=steps, dt=dt)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({{"cells_per_s": (n - 2) ** 2 * steps / best}}))
"""


def scaling(ranks: list[int], n_strong: int, n_weak: int, steps: int) -> list[dict]:
    """Strong and weak scaling of ``tcoupled wave`` at each rank count (real launches)."""
    rows = []
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    for mode, base in (("strong", n_strong), ("weak", n_weak)):
        for p in ranks:
            n = base if mode == "strong" else int(round(base * p ** 0.5))
            with tempfile.TemporaryDirectory() as out:
                cmd = [mpiexec, "-n", str(p), sys.executable, "-m", "tcoupled", "wave",
                       "--grid", str(n), str(n), "--steps", str(steps), "--dtype", "float64",
                       "--out", out, "--quiet"]
                subprocess.run(cmd, check=True, timeout=600,
                               env=dict(os.environ, OMP_NUM_THREADS="1"))
                summary = json.loads((Path(out) / "summary.json").read_text())
            rows.append({"mode": mode, "ranks": p, "grid": n,
                         "cells_per_s": summary["cells_per_s"],
                         "halo_fraction": summary["halo_fraction"]})
    return rows


def run(options: dict) -> dict:
    """Run the stencil benchmark; ``options['quick']`` shrinks every size."""
    from tcoupled.sim.backends import available_backends, load_backend

    quick = options.get("quick", False)
    sizes = [64, 256] if quick else [128, 512, 1024, 2048, 4096]
    mib = 8 if quick else 64
    results: dict[str, Any] = {"sizes": sizes, "bandwidth": {}, "rows": []}
    for dtype in ("float32", "float64"):
        bw = bandwidth(dtype, mib)
        results["bandwidth"][dtype] = bw
        bound = bw["triad_GBps"] * 1e9 / (3 * np.dtype(dtype).itemsize)
        for n in sizes:
            for name in available_backends():
                rate = kernel_rate(load_backend(name), n, dtype)
                results["rows"].append({"backend": name, "dtype": dtype, "n": n,
                                        "cells_per_s": rate, "bound_cells_per_s": bound,
                                        "fraction_of_bound": rate / bound})
            if options.get("devito", True) and (n == sizes[-1] or not quick):
                rate = devito_rate(n, dtype, steps=5 if quick else 20)
                if rate is not None:
                    results["rows"].append({"backend": "devito", "dtype": dtype, "n": n,
                                            "cells_per_s": rate, "bound_cells_per_s": bound,
                                            "fraction_of_bound": rate / bound})
    results["scaling"] = scaling([1, 2] if quick else [1, 2, 4], 128 if quick else 2048,
                                 96 if quick else 1024, 10 if quick else 50)
    results["headline"] = _headline(results)
    return results


def _headline(results: dict) -> dict:
    """C kernel at the largest size in float32: fraction of bound and speed-up over Devito."""
    n = results["sizes"][-1]
    pick = {(r["backend"], r["dtype"]): r for r in results["rows"] if r["n"] == n}
    c32 = pick.get(("c", "float32"))
    head: dict[str, Any] = {"n": n}
    if c32:
        head["c_fraction_of_bound_float32"] = c32["fraction_of_bound"]
        numpy32 = pick.get(("numpy", "float32"))
        if numpy32:
            head["c_over_numpy_float32"] = c32["cells_per_s"] / numpy32["cells_per_s"]
        dev = pick.get(("devito", "float32"))
        if dev:
            head["c_over_devito_float32"] = c32["cells_per_s"] / dev["cells_per_s"]
    return head


def table(results: dict) -> list[str]:
    """Printable rows."""
    lines = [f"{'backend':<8} {'dtype':<8} {'n':>6} {'Mcells/s':>10} {'bound':>8} {'frac':>6}"]
    for r in results["rows"]:
        lines.append(f"{r['backend']:<8} {r['dtype']:<8} {r['n']:>6} "
                     f"{r['cells_per_s'] / 1e6:>10.1f} {r['bound_cells_per_s'] / 1e6:>8.0f} "
                     f"{r['fraction_of_bound']:>6.2f}")
    for dtype, bw in results["bandwidth"].items():
        lines.append(f"bandwidth {dtype}: copy {bw['copy_GBps']:.1f} GB/s, "
                     f"triad {bw['triad_GBps']:.1f} GB/s")
    for r in results["scaling"]:
        lines.append(f"{r['mode']:<6} scaling: {r['ranks']} rank(s), {r['grid']}^2: "
                     f"{r['cells_per_s'] / 1e6:.1f} Mcells/s, halo {r['halo_fraction']:.0%}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Cells per second against grid size per backend, with the bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, dtype in zip(axes, ("float32", "float64")):
        rows = [r for r in results["rows"] if r["dtype"] == dtype]
        for backend in sorted({r["backend"] for r in rows}):
            pts = sorted((r["n"], r["cells_per_s"] / 1e6) for r in rows
                         if r["backend"] == backend)
            ax.plot(*zip(*pts), marker="o", label=backend)
        bound = rows[0]["bound_cells_per_s"] / 1e6 if rows else 0
        ax.axhline(bound, color="k", ls="--", label="bandwidth bound")
        ax.set(xscale="log", yscale="log", xlabel="grid points per side",
               title=f"2D wave leapfrog, {dtype}, one core")
        ax.set_xticks(results["sizes"], [str(n) for n in results["sizes"]])
        ax.minorticks_off()
        ax.legend()
    axes[0].set_ylabel("Mcells/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
