"""Stencil benchmark: the C kernels against an honest single-pass bound and Devito.

At every size and dtype, in one run and on the same arrays (laid out as the solver
lays them out), each figure the median (with min and max) of five windows of at least
one second, the probes taking turns: the bound (an in-place stream with the traffic of one leapfrog
step, :mod:`tcoupled.bench.stencil_kernels`), every kernel backend's single pass,
the C temporal block at several ``K``, and Devito's best configuration. The largest
size is chosen so that its two arrays exceed twice the last-level cache read from
sysfs. ``wave --time-block K`` is launched at 2 ranks to measure the halo share, and
``wave`` at 1, 2, 4 ranks for strong and weak scaling.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tcoupled.bench import stencil_kernels as sk

NAME = "stencil"


def sizes_for(llc: int | None, quick: bool) -> list[int]:
    """Grid sides; the last one's two float32 arrays exceed 2x the last-level cache."""
    if quick:
        return [64, 256]
    sizes = [512, 2048, 4096]
    need = math.sqrt((llc or 0) / 4)  # 2 n^2 * 4 bytes > 2 llc
    while sizes[-1] <= need:
        sizes.append(sizes[-1] * 2)
    return sizes


def measure_size(n: int, dtype: str, ks: list[int], devito: bool, fks: list[int],
                 seconds: float, repeats: int) -> list[dict]:
    """Bound, single-pass backends, C blocks, slot frames and Devito at one size.

    ``fks``: block lengths for the slot-frame rows (``couple``'s case: every step is
    kept), measured against one call per frame over ``max(fks)`` frames. Every figure
    is the median of ``repeats`` windows of ``seconds``, the probes taking turns.
    """
    from tcoupled.sim.backends import available_backends, load_backend
    from tcoupled.sim.backends.c_backend import aligned_zeros

    u, prev, box, _ = sk.grid_arrays(n, dtype)
    probes: dict[tuple[str, int], sk.Probe] = {("bound", 1): sk.bound_probe(u, prev, box)}
    for name in available_backends():
        probes[(name, 1)] = sk.single_probe(load_backend(name), u, prev, box)
    for k in ks:
        probes[("c-blocked", k)] = sk.blocked_probe(u, prev, box, k)
    pool = [aligned_zeros(u.shape, u.dtype) for _ in range(max(fks, default=0))]
    if fks:
        probes[("c-frames", 1)] = sk.frames_probe(u, prev, box, pool, fks[-1], False)
    for k in fks:
        probes[("c-frames-blocked", k)] = sk.frames_probe(u, prev, box, pool, k, True)
    rates = sk.window_rates(probes, seconds, repeats)
    bound = rates[("bound", 1)]["cells_per_s"]
    base = {"dtype": dtype, "n": n, "array_bytes": u.nbytes, "bound_cells_per_s": bound,
            "bound_GBps": 3 * u.nbytes * bound / sk.cells(box) / 1e9}
    rows = [{"backend": backend, "k": k, **rate, **base} for (backend, k), rate in rates.items()]
    del u, prev, pool, probes
    if devito:
        found = sk.devito_rate(n, dtype, seconds, repeats)
        if found is not None:
            rows.append({"backend": "devito", "k": 1, **found, **base})
    for row in rows:
        row["fraction_of_bound"] = row["cells_per_s"] / row["bound_cells_per_s"]
    return rows


def wave_launch(ranks: int, n: int, steps: int, dtype: str, k: int = 1) -> dict:
    """One real ``tcoupled wave`` launch; its summary."""
    mpiexec = str(Path(sys.executable).parent / "mpiexec")
    with tempfile.TemporaryDirectory() as out:
        cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "tcoupled", "wave",
               "--grid", str(n), str(n), "--steps", str(steps), "--dtype", dtype,
               "--time-block", str(k), "--out", out, "--quiet"]
        subprocess.run(cmd, check=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return json.loads((Path(out) / "summary.json").read_text())


def halo_by_k(n: int, steps: int, ks: list[int]) -> list[dict]:
    """``wave --time-block K`` at 2 ranks, float32: rate and halo share per K."""
    rows = []
    for k in ks:
        s = wave_launch(2, n, steps, "float32", k)
        rows.append({"ranks": 2, "grid": n, "k": k, "dims": s["dims"],
                     "cells_per_s": s["cells_per_s"], "halo_fraction": s["halo_fraction"]})
    return rows


def scaling(ranks: list[int], n_strong: int, n_weak: int, steps: int) -> list[dict]:
    """Strong and weak scaling of ``tcoupled wave`` (float64, K = 1) at each rank count."""
    rows = []
    for mode, base in (("strong", n_strong), ("weak", n_weak)):
        for p in ranks:
            n = base if mode == "strong" else int(round(base * p ** 0.5))
            s = wave_launch(p, n, steps, "float64")
            rows.append({"mode": mode, "ranks": p, "grid": n, "cells_per_s": s["cells_per_s"],
                         "halo_fraction": s["halo_fraction"]})
    return rows


def run(options: dict) -> dict:
    """Run the stencil benchmark; ``options['quick']`` shrinks every size."""
    quick = options.get("quick", False)
    llc = sk.llc_bytes()
    sizes = sizes_for(llc, quick)
    ks = [2, 4] if quick else [2, 4, 8, 16, 32]
    results: dict[str, Any] = {"sizes": sizes, "llc_bytes": llc, "ks": ks, "rows": [],
                               "bandwidth": {}}
    for dtype in ("float32", "float64"):
        for n in sizes:
            devito = options.get("devito", True) and (n == sizes[-1] or not quick)
            fks = ([2, 4] if quick else [2, 4, 8]) if n == sizes[-1] else []
            rows = measure_size(n, dtype, ks, devito, fks, seconds=0.05 if quick else 1.0,
                                repeats=2 if quick else 5)
            results["rows"] += rows
        big = [r for r in results["rows"] if r["dtype"] == dtype and r["n"] == sizes[-1]]
        results["bandwidth"][dtype] = {"update_GBps": big[0]["bound_GBps"], "n": sizes[-1]}
    results["halo_by_k"] = halo_by_k(128 if quick else 2048, 16 if quick else 97,
                                     [1, 2, 4] if quick else [1, 2, 4, 8, 16])
    results["scaling"] = scaling([1, 2] if quick else [1, 2, 4], 128 if quick else 2048,
                                 96 if quick else 1024, 10 if quick else 50)
    results["headline"] = headline(results)
    return results


def headline(results: dict) -> dict:
    """At the largest size in float32: single and blocked C against the bound and Devito."""
    n = results["sizes"][-1]
    rows = [r for r in results["rows"] if r["n"] == n and r["dtype"] == "float32"]
    pick = {r["backend"]: r for r in rows if r["k"] == 1}
    head: dict[str, Any] = {"n": n, "dtype": "float32", "llc_bytes": results["llc_bytes"]}
    if "bound" not in pick or "c" not in pick:
        return head
    bound, single = pick["bound"], pick["c"]
    head.update(array_bytes=bound["array_bytes"], arrays_bytes=2 * bound["array_bytes"],
                bound_GBps=bound["bound_GBps"], bound_cells_per_s=bound["cells_per_s"],
                c_single_cells_per_s=single["cells_per_s"],
                c_single_over_bound=single["fraction_of_bound"])
    if results["llc_bytes"]:
        head["arrays_over_llc"] = 2 * bound["array_bytes"] / results["llc_bytes"]
    blocked = [r for r in rows if r["backend"] == "c-blocked"]
    if blocked:
        best = max(blocked, key=lambda r: r["cells_per_s"])
        head.update(blocked_k=best["k"], c_blocked_cells_per_s=best["cells_per_s"],
                    c_blocked_over_bound=best["fraction_of_bound"],
                    c_blocked_over_single=best["cells_per_s"] / single["cells_per_s"])
    framed = [r for r in rows if r["backend"] == "c-frames-blocked"]
    if framed and "c-frames" in pick:
        fbest = max(framed, key=lambda r: r["cells_per_s"])
        head.update(frames_k=fbest["k"], frames_blocked_over_single=(
            fbest["cells_per_s"] / pick["c-frames"]["cells_per_s"]))
    if "numpy" in pick:
        head["c_over_numpy"] = single["cells_per_s"] / pick["numpy"]["cells_per_s"]
    if "devito" in pick:
        dev = pick["devito"]
        head.update(devito_config=dev["config"], devito_cells_per_s=dev["cells_per_s"],
                    devito_over_bound=dev["fraction_of_bound"],
                    c_single_over_devito=single["cells_per_s"] / dev["cells_per_s"])
        if blocked:
            head["c_blocked_over_devito"] = best["cells_per_s"] / dev["cells_per_s"]
    halo = results.get("halo_by_k") or []
    head["halo_fraction_2_ranks_by_k"] = {str(r["k"]): r["halo_fraction"] for r in halo}
    # the share can stay flat while the step itself gets faster: the halo time per step
    head["halo_us_per_step_2_ranks_by_k"] = {
        str(r["k"]): 1e6 * r["halo_fraction"] * r["grid"] ** 2 / r["cells_per_s"] for r in halo}
    return head


def table(results: dict) -> list[str]:
    """Printable rows."""
    lines = [f"{'backend':<16} {'K':>3} {'dtype':<8} {'n':>6} {'Mcells/s':>9} "
             f"{'[min-max]':>13} {'bound':>6} {'frac':>5}"]
    for r in results["rows"]:
        spread = f"[{r['min'] / 1e6:.0f}-{r['max'] / 1e6:.0f}]" if "min" in r else ""
        lines.append(f"{r['backend']:<16} {r['k']:>3} {r['dtype']:<8} {r['n']:>6} "
                     f"{r['cells_per_s'] / 1e6:>9.1f} {spread:>13} "
                     f"{r['bound_cells_per_s'] / 1e6:>6.0f} {r['fraction_of_bound']:>5.2f}")
    llc = results.get("llc_bytes")
    for dtype, bw in results["bandwidth"].items():
        lines.append(f"bandwidth {dtype}: in-place update stream {bw['update_GBps']:.1f} GB/s "
                     f"at {bw['n']}^2 (last-level cache {llc / 2**20 if llc else 0:.0f} MiB)")
    for r in results.get("halo_by_k", []):
        lines.append(f"time block {r['k']:>2} at 2 ranks, {r['grid']}^2 float32: "
                     f"{r['cells_per_s'] / 1e6:.1f} Mcells/s, halo {r['halo_fraction']:.1%}")
    for r in results["scaling"]:
        lines.append(f"{r['mode']:<6} scaling: {r['ranks']} rank(s), {r['grid']}^2: "
                     f"{r['cells_per_s'] / 1e6:.1f} Mcells/s, halo {r['halo_fraction']:.0%}")
    head = results.get("headline", {})
    keys = ("c_single_over_bound", "c_blocked_over_bound", "blocked_k", "c_blocked_over_devito",
            "frames_blocked_over_single")
    lines.append("headline: " + ", ".join(f"{k} {head[k]:.3g}" for k in keys if k in head))
    return lines


def plot(results: dict, path: Path) -> None:
    """Cells per second against grid size: bound, single pass, best block, Devito."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, dtype in zip(axes, ("float32", "float64")):
        rows = [r for r in results["rows"] if r["dtype"] == dtype]
        for backend in sorted({r["backend"] for r in rows}):
            best: dict[int, float] = {}
            for r in rows:
                if r["backend"] == backend:
                    best[r["n"]] = max(best.get(r["n"], 0.0), r["cells_per_s"] / 1e6)
            style = {"color": "k", "ls": "--"} if backend == "bound" else {"marker": "o"}
            label = {"bound": "single-pass bound (in-place stream)",
                     "c-blocked": "c, temporal block (best K)"}.get(backend, backend)
            ax.plot(*zip(*sorted(best.items())), label=label, **style)
        ax.set(xscale="log", yscale="log", xlabel="grid points per side",
               title=f"2D wave leapfrog, {dtype}, one core")
        ax.set_xticks(results["sizes"], [str(n) for n in results["sizes"]])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Mcells/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
