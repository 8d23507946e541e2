"""Measurements of the stencil benchmark: the honest bound, the C kernels, Devito.

Every rate is in cell updates per second on one core, on arrays laid out as the
solver lays them out (rows padded to 64 bytes, ``tcoupled.sim.decomposition.Block``).
The bound is the in-place stream ``b = a + s b`` over the same two arrays: the
traffic of one leapfrog step (read ``u^n`` and ``u^{n-1}``, write ``u^{n+1}`` over
``u^{n-1}``: three transfers per cell). A single-pass kernel cannot beat it by more
than the noise; a temporal block of ``K`` steps can, by reusing rows from cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CX = CY = 0.2  # Courant numbers squared: stable (cx + cy <= 1), so values stay bounded


def llc_bytes() -> int | None:
    """Size of the last-level cache in bytes, read from sysfs (``None`` if unknown)."""
    best: tuple[int, int] | None = None
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            kind = (index / "type").read_text().strip()
            text = (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not text:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        size = int(text.rstrip("KMG")) * scale
        if best is None or level > best[0]:
            best = (level, size)
    if best is None:
        size = os.sysconf("SC_LEVEL3_CACHE_SIZE") if hasattr(os, "sysconf") else 0
        return size or None
    return best[1]


def grid_arrays(n: int, dtype: str, halo: int = 1) -> tuple[np.ndarray, np.ndarray, tuple, Any]:
    """Two arrays laid out as the solver's (one rank, ``n x n`` grid) and the update box."""
    from tcoupled.sim.decomposition import Block

    block = Block((n, n), (1, 1), (0, 0), halo=halo, align=64 // np.dtype(dtype).itemsize)
    rng = np.random.default_rng(0)
    from tcoupled.sim.backends.c_backend import aligned_zeros

    u = aligned_zeros(block.padded_shape, dtype)  # as the solver's C backend allocates
    prev = aligned_zeros(block.padded_shape, dtype)
    box = block.update_box()
    i0, i1, j0, j1 = box
    u[i0:i1, j0:j1] = rng.standard_normal((i1 - i0, j1 - j0))
    prev[i0:i1, j0:j1] = rng.standard_normal((i1 - i0, j1 - j0))
    return u, prev, box, block


def cells(box: tuple) -> int:
    """Points of a box."""
    return (box[1] - box[0]) * (box[3] - box[2])


Probe = tuple[Callable[[], None], int]  # (one call, cell updates it does)


def window_rates(probes: dict[Any, Probe], seconds: float, repeats: int) -> dict[Any, dict]:
    """Cells per second of each probe: median, min and max over ``repeats`` windows.

    Each window calls the probe until ``seconds`` of wall-clock time have passed; the
    probes take turns window by window, so the machine's drift hits them all alike.
    """
    rates: dict[Any, list[float]] = {key: [] for key in probes}
    for fn, _ in probes.values():
        fn()  # warm-up: page faults, caches
    for _ in range(repeats):
        for key, (fn, work) in probes.items():
            calls, start = 0, time.perf_counter()
            while True:
                fn()
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    break
            rates[key].append(work * calls / elapsed)
    return {key: {"cells_per_s": statistics.median(r), "min": min(r), "max": max(r),
                  "windows": len(r)} for key, r in rates.items()}


def bound_probe(u: np.ndarray, prev: np.ndarray, box: tuple) -> Probe:
    """The in-place stream ``b = a + s b`` over both arrays, counted in cells of ``box``."""
    from tcoupled.sim.backends import load_backend

    c = load_backend("c")
    a, b = u.reshape(-1), prev.reshape(-1)
    return (lambda: c.update(a, b, 0.5)), cells(box)  # b -> 2a: stays bounded


def single_probe(backend: Any, u: np.ndarray, prev: np.ndarray, box: tuple) -> Probe:
    """One in-place leapfrog step over the whole box (one call)."""
    xp = backend.xp
    du, dprev = xp.asarray(u), xp.asarray(prev)

    def step() -> None:
        backend.step(du, dprev, dprev, box, CX, CY)
        if xp is not np:
            xp.cuda.get_current_stream().synchronize()

    return step, cells(box)


def blocked_probe(u: np.ndarray, prev: np.ndarray, box: tuple, k: int) -> Probe:
    """The C temporal block of ``k`` steps (one call per block)."""
    from tcoupled.sim.backends import load_backend

    c = load_backend("c")
    return (lambda: c.block(u, prev, box, (0, 0, 0, 0), k, CX, CY)), cells(box) * k


def frames_probe(u: np.ndarray, prev: np.ndarray, box: tuple, pool: list, k: int,
                 blocked: bool) -> Probe:
    """``k`` steps written into ``k`` frames of ``pool`` (a slot's), each written once.

    Out of place, as ``couple`` stores every step for the trainer: one call per step
    (each step reads two frames from memory and writes one) or one temporal block for
    all ``k`` (rows reused from cache, each frame still written to memory).
    """
    from tcoupled.sim.backends import load_backend

    c = load_backend("c")
    levels = [prev, u, *pool[:k]]

    def one_by_one() -> None:
        for s in range(1, k + 1):
            c.step(levels[s], levels[s - 1], levels[s + 1], box, CX, CY)

    def block() -> None:
        c.levels(levels, box, (0, 0, 0, 0), CX, CY)

    return (block if blocked else one_by_one), cells(box) * k


def devito_rate(n: int, dtype: str, seconds: float, repeats: int) -> dict | None:
    """Devito's best configuration on the same update, one core (``None`` if missing).

    Devito runs its default ``advanced`` optimisation and ``advanced`` with
    ``blockrelax`` (loop blocking forced on); the one with the higher median is kept
    and named. Each is timed over ``repeats`` windows of at least ``seconds`` (the
    number of time steps per window is calibrated first). Runs in a subprocess with
    ``DEVITO_LANGUAGE=C`` (no OpenMP: one thread) so Devito's configuration and
    compiler cache never leak into this process.
    """
    code = _DEVITO_SCRIPT.format(n=n, dtype=dtype, seconds=seconds, repeats=repeats)
    env = dict(os.environ, DEVITO_LANGUAGE="C", DEVITO_LOGGING="ERROR", OMP_NUM_THREADS="1",
               DEVITO_ARCH="gcc")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=1800, check=True).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    return max(lines, key=lambda r: r["cells_per_s"]) if lines else None


_DEVITO_SCRIPT = """
import json, statistics, time
import numpy as np
try:
    from devito import Eq, Grid, Operator, TimeFunction
except ImportError:
    raise SystemExit(3)
n, seconds, repeats = {n}, {seconds}, {repeats}
for name, opt in (("advanced", "advanced"), ("advanced+blockrelax",
                                              ("advanced", {{"blockrelax": True}}))):
    grid = Grid(shape=(n, n), extent=(1.0, 1.0), dtype=np.{dtype})
    u = TimeFunction(name="u", grid=grid, time_order=2, space_order=2)
    u.data[:] = np.random.default_rng(0).standard_normal((n, n))
    dt = 0.5 / (n - 1)
    op = Operator([Eq(u.forward, 2 * u - u.backward + dt**2 * u.laplace)], opt=opt)
    t0 = time.perf_counter()
    op.apply(time_m=1, time_M=4, dt=dt)
    steps = max(4, int(4 * seconds / max(time.perf_counter() - t0, 1e-6)))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        op.apply(time_m=1, time_M=steps, dt=dt)
        rates.append((n - 2) ** 2 * steps / (time.perf_counter() - t0))
    print(json.dumps({{"config": name, "cells_per_s": statistics.median(rates),
                      "min": min(rates), "max": max(rates), "windows": repeats}}))
"""
