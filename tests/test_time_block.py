"""Temporal blocking (``--time-block K``): bitwise equal to K = 1, serial and under MPI."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.backends import load_backend
from tcoupled.sim.config import WaveConfig, stable_dt
from tcoupled.sim.decomposition import Block
from tcoupled.sim.solver import WaveSolver

from mpitools import check, python_mpi, tcoupled

SCRIPTS = Path(__file__).parent / "scripts"
GRID = (37, 53)


def _solve(comm, k, dtype="float32", steps=23):
    cfg = WaveConfig(grid=GRID, steps=steps, dt=stable_dt(1.0, GRID, 0.6), dtype=dtype,
                     kernel="c", init="gaussian", pulses=2, seed=3, time_block=k)
    with WaveSolver(cfg, comm) as solver:
        solver.step(steps)
        return solver.gather(), np.array(solver.previous_field), solver.steps_done


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_time_block_is_bitwise_k1_on_one_rank(comm_self, dtype):
    ref = _solve(comm_self, 1, dtype)
    for k in (2, 4, 8):
        got = _solve(comm_self, k, dtype)
        assert got[2] == ref[2] == 23
        assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), k


@pytest.mark.parametrize("k", [1, 2, 5])
def test_c_block_kernel_equals_numpy_steps(k):
    rng = np.random.default_rng(k)
    h, box, ext = 5, (5, 25, 6, 40), (1, 0, 1, 1)
    a = rng.standard_normal((31, 48)).astype(np.float64)
    b = rng.standard_normal((31, 48))
    ref_a, ref_b = a.copy(), b.copy()
    numpy = load_backend("numpy")
    for s in range(1, k + 1):
        g = k - s
        grown = (box[0] - ext[0] * g, box[1] + ext[1] * g, box[2] - ext[2] * g,
                 box[3] + ext[3] * g)
        numpy.step(ref_a, ref_b, ref_b, grown, 0.21, 0.17)
        ref_a, ref_b = ref_b, ref_a
    load_backend("c").block(a, b, box, ext, k, 0.21, 0.17)
    newest, older = (b, a) if k % 2 else (a, b)
    assert h >= k and np.array_equal(newest, ref_a) and np.array_equal(older, ref_b)


def _grown_steps(backend, levels, box, ext, k):
    """Reference: k single steps, step s on the box grown by ext * (k - s)."""
    for s in range(1, k + 1):
        g = k - s
        grown = (box[0] - ext[0] * g, box[1] + ext[1] * g, box[2] - ext[2] * g,
                 box[3] + ext[3] * g)
        backend.step(levels[s], levels[s - 1], levels[s + 1], grown, 0.21, 0.17)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [3, 16])
def test_c_block_is_bitwise_across_tiles_bands_and_frames(dtype, k):
    # wide enough for several column tiles, tall enough for two row bands and a short pass
    rng = np.random.default_rng(k)
    h = k + 1
    shape = (2 * h + 45, 2 * h + 1400)
    box, ext = (h, shape[0] - h, h + 3, shape[1] - h), (1, 0, 1, 1)
    numpy, c = load_backend("numpy"), load_backend("c")
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    frames = [np.zeros(shape, dtype) for _ in range(k)]
    want = [b.copy(), a.copy()] + [f.copy() for f in frames]
    _grown_steps(numpy, want, box, ext, k)
    got = [b.copy(), a.copy()] + frames
    c.levels(got, box, ext, 0.21, 0.17)
    assert all(np.array_equal(x, y) for x, y in zip(got, want))
    ref_a, ref_b = a.copy(), b.copy()
    _grown_steps(numpy, ([ref_b, ref_a] * k)[:k + 2], box, ext, k)
    c.block(a, b, box, ext, k, 0.21, 0.17)
    assert np.array_equal(a, ref_a) and np.array_equal(b, ref_b)


def test_aligned_arrays_alternate_half_a_page():
    from tcoupled.sim.backends.c_backend import aligned_zeros
    x, y = aligned_zeros((9, 4112), "float32"), aligned_zeros((9, 4112), "float32")
    assert x.ctypes.data % 64 == 0 and y.ctypes.data % 64 == 0
    assert (x.ctypes.data - y.ctypes.data) % 4096 == 2048


def test_rows_are_padded_to_64_bytes_and_halo_is_k_deep():
    block = Block((37, 4096), (1, 1), (0, 0), halo=8, align=16)
    assert block.padded_shape == (53, 4112) and block.padded_shape[1] * 4 % 64 == 0
    assert block.owned == (slice(8, 45), slice(8, 4104))
    assert block.update_box() == (9, 44, 9, 4103) and block.growth() == (0, 0, 0, 0)


def test_time_block_deeper_than_a_block_is_refused(MPI):
    cfg = WaveConfig(grid=(37, 53), steps=1, dt=0.001, time_block=1)
    with pytest.raises(ConfigError, match="--time-block must be a positive integer, got 0"):
        WaveConfig(grid=(37, 53), steps=1, dt=0.001, time_block=0)
    assert cfg.time_block == 1
    from tcoupled.sim.decomposition import check_block_depth
    with pytest.raises(ConfigError, match="--time-block 20 needs at least 20 points per rank "
                                          "along y, but the 1x3 rank grid leaves 17"):
        check_block_depth(Block((37, 53), (1, 3), (0, 0), halo=20), 20)


@pytest.mark.mpi
@pytest.mark.timeout(200)
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_time_block_is_bitwise_k1_under_mpi(ranks):
    proc = check(python_mpi(SCRIPTS / "time_block.py", ranks=ranks, timeout=150))
    assert f"time-block ok: 12 cases bitwise at {ranks} ranks" in proc.stdout


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_wave_cli_time_block_matches_k1(tmp_path):
    args = ["wave", "--grid", "65", "66", "--steps", "40", "--dtype", "float32", "--quiet"]
    check(tcoupled(*args, "--out", str(tmp_path / "k1"), ranks=2))
    check(tcoupled(*args, "--time-block", "8", "--out", str(tmp_path / "k8"), ranks=2))
    k1 = h5py.File(tmp_path / "k1" / "results.h5")["wave/u"][()]
    k8 = h5py.File(tmp_path / "k8" / "results.h5")["wave/u"][()]
    assert np.array_equal(k1, k8)
    summary = json.loads((tmp_path / "k8" / "summary.json").read_text())
    assert summary["time_block"] == 8 and summary["halo_fraction"] is not None


@pytest.mark.parametrize("kernel", ["c", "numpy"])
def test_stepping_into_frames_equals_stepping_in_place(comm_self, kernel):
    cfg = WaveConfig(grid=GRID, steps=12, dt=stable_dt(1.0, GRID, 0.6), dtype="float64",
                     kernel=kernel, init="gaussian", pulses=2, seed=5, time_block=4)
    with WaveSolver(cfg, comm_self) as ref:
        ref.step(1)
        expected = []
        for _ in range(11):
            ref.step(1)
            expected.append(np.array(ref.field))
    with WaveSolver(cfg, comm_self) as solver:
        with pytest.raises(ValueError, match="needs the Taylor start first"):
            solver.step_into_frames([])
        solver.step(1)
        frames = [np.zeros(solver.block.padded_shape) for _ in range(11)]
        solver.step_into_frames(frames)  # blocks of 4, 4 and 3 steps
        assert solver.steps_done == 12 and solver.u is frames[-1]
        for frame, want in zip(frames, expected):
            assert np.array_equal(frame[solver.block.owned], want)


def test_couple_refuses_time_block_in_one_line(tmp_path):
    proc = tcoupled("couple", "--time-block", "4", "--out", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tcoupled couple: error: --time-block 4 is not available in couple yet: the slot "
        "frames are filled one step at a time; use --time-block 1"]


def test_stencil_bench_picks_a_size_beyond_twice_the_cache_and_reads_ratios():
    from tcoupled.bench.stencil import headline, sizes_for

    assert sizes_for(32 * 2**20, quick=False) == [512, 2048, 4096]  # 2 x 64 MiB > 2 x 32 MiB
    assert sizes_for(480 * 2**20, quick=False)[-1] == 16384     # 2 x 1 GiB > 2 x 480 MiB
    base = {"n": 4096, "dtype": "float32", "array_bytes": 100, "bound_cells_per_s": 10.0,
            "bound_GBps": 1.0}
    rows = [dict(base, backend=b, k=k, cells_per_s=v, fraction_of_bound=v / 10.0)
            for b, k, v in (("bound", 1, 10.0), ("c", 1, 9.0), ("c-blocked", 4, 20.0),
                            ("c-blocked", 8, 25.0), ("devito", 1, 5.0))]
    rows[-1]["config"] = "advanced"
    head = headline({"sizes": [512, 4096], "llc_bytes": 50, "rows": rows,
                     "halo_by_k": [{"k": 1, "halo_fraction": 0.5, "grid": 100,
                                    "cells_per_s": 1e7}]})
    assert head["c_single_over_bound"] == 0.9 and head["blocked_k"] == 8
    assert head["c_blocked_over_bound"] == 2.5 and head["c_blocked_over_devito"] == 5.0
    assert head["arrays_bytes"] == 200 and head["arrays_over_llc"] == 4.0
    assert head["halo_fraction_2_ranks_by_k"] == {"1": 0.5}
    assert head["halo_us_per_step_2_ranks_by_k"] == {"1": pytest.approx(500.0)}  # 0.5 ms


def test_solver_rows_start_on_cache_lines(comm_self):
    cfg = WaveConfig(grid=(37, 53), steps=1, dt=0.001, kernel="c", dtype="float32",
                     time_block=3)
    with WaveSolver(cfg, comm_self, align_rows=True) as solver:
        for level in (solver.u, solver.u_prev):
            assert level.ctypes.data % 64 == 0 and level.strides[0] % 64 == 0
        assert solver.u.shape == (37 + 6, 64)  # 53 + 2 * 3 = 59 points, padded to 64
