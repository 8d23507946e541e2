"""GPU paths on a real GPU (skipped without one): CuPy stencil, DLPack zero copy, IPC slots,
stream timers.

CPU runs cover the same logic through fakes (tests/test_gpu_paths.py, tests/gpu_fakes.py);
these run in ``run/device_check.sh`` on a machine with an NVIDIA GPU, which also runs the
multi-process checks (device halo with real neighbours, CUDA IPC, NCCL).
"""

import numpy as np
import pytest

from tcoupled.sim.backends import cuda_device_count

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(cuda_device_count() == 0, reason="no CUDA GPU")]


@pytest.mark.parametrize("tile", [None, (32, 8, 1), (64, 4, 16), (256, 1, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_kernel_matches_numpy_bitwise(dtype, tile):
    import cupy

    from tcoupled.sim.backends import load_backend
    from tcoupled.sim.backends.cupy_backend import CupyBackend

    rng = np.random.default_rng(2)
    u = rng.standard_normal((130, 257)).astype(dtype)
    prev = rng.standard_normal((130, 257)).astype(dtype)
    u.flat[::11] *= np.finfo(dtype).tiny  # subnormal values: a flushing kernel differs
    box = (1, 129, 1, 256)
    expected = prev.copy()
    load_backend("numpy").step(u, prev, expected, box, 0.2, 0.3)
    du, dprev = cupy.asarray(u), cupy.asarray(prev)
    # 128 rows, 255 columns: the tiles cut them unevenly
    CupyBackend(tile).step(du, dprev, dprev, box, 0.2, 0.3)
    got = cupy.asnumpy(dprev)
    assert np.array_equal(got, expected)  # compiled without FMA: NumPy's rounding exactly


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_solver_matches_numpy_solver(comm_self, dtype):
    """Bit for bit, the Taylor start included; in float32 the Gaussian's tails pass
    through subnormal values, which CuPy's -ftz=true would flush (the kernel's explicit
    PTX keeps them)."""
    from tcoupled.sim.config import WaveConfig, stable_dt
    from tcoupled.sim.solver import WaveSolver

    fields, subnormals = {}, 0
    for kernel in ("numpy", "cupy"):
        cfg = WaveConfig(grid=(65, 77), steps=50, dt=stable_dt(1.0, (65, 77), 0.5),
                         init="gaussian", pulses=2, kernel=kernel, dtype=dtype)
        with WaveSolver(cfg, comm_self) as solver:
            for _ in range(50):
                solver.step(1)
                field = solver.gather()
                tiny = (field != 0) & (np.abs(field) < np.finfo(dtype).tiny)
                subnormals += int(tiny.sum()) if kernel == "numpy" else 0
            fields[kernel] = field
    if dtype == "float32":
        assert subnormals > 0
    assert np.array_equal(fields["cupy"], fields["numpy"])


@pytest.mark.parametrize("n", [256, 8192])
def test_inproc_handoff_is_zero_copy_on_gpu(n):
    import cupy
    import torch

    field = cupy.zeros((n, n), dtype=cupy.float32)
    tensor = torch.from_dlpack(field)
    assert tensor.is_cuda and tensor.data_ptr() == field.data.ptr
    field[1, 2] = 7.0
    cupy.cuda.get_current_stream().synchronize()
    assert float(tensor[1, 2]) == 7.0


def test_ipc_slots_are_allocations_of_their_own():
    import cupy

    from tcoupled.coupling.channels.shm import ipc_slot

    slots = [ipc_slot(cupy, (3, 64, 64), "float32") for _ in range(2)]
    (a, (handle_a, offset_a)), (b, (handle_b, offset_b)) = slots
    assert offset_a == offset_b == 0 and handle_a != handle_b
    assert a.data.mem.ptr == a.data.ptr and bool((a == 0).all())


def test_cupy_backend_refuses_a_strided_device_array():
    import cupy

    from tcoupled.sim.backends import load_backend

    u = cupy.zeros((16, 32))
    with pytest.raises(ValueError, match="not C-contiguous"):
        load_backend("cupy").step(u[:, ::2], u[:, ::2], u[:, ::2], (1, 15, 1, 15), 0.1, 0.1)


def test_stream_timer_books_kernels_where_they_run():
    import cupy

    from tcoupled.runtime.telemetry import PhaseTimer, StreamPhaseTimer
    from tcoupled.sim.backends import load_backend

    backend = load_backend("cupy")
    u = cupy.random.standard_normal((4096, 4096), dtype=cupy.float32)
    prev = cupy.zeros_like(u)
    totals = {}
    for timer in (PhaseTimer(), StreamPhaseTimer(cupy.cuda)):
        for _ in range(5):
            with timer.phase("sim"):
                for _ in range(10):
                    backend.step(u, prev, prev, (1, 4095, 1, 4095), 0.1, 0.1)
            with timer.phase("halo"):
                cupy.cuda.get_current_stream().synchronize()
        totals[type(timer).__name__] = timer.as_dict()
    events = totals["StreamPhaseTimer"]
    assert events["sim"] > 5 * events["halo"]


def test_release_waits_for_the_reading_stream():
    import torch

    from tcoupled.coupling.channels.device import wait_for_readers

    x = torch.randn(2048, 2048, device="cuda")
    y = x @ x
    wait_for_readers(x)
    assert torch.cuda.current_stream().query()
    del y


@pytest.mark.mpi
@pytest.mark.timeout(90)
def test_shm_slot_is_one_device_memory_for_both_processes():
    """CUDA IPC across two real processes on one GPU: each side sees the other's write."""
    from pathlib import Path

    from mpitools import check, python_mpi

    proc = check(python_mpi(Path(__file__).with_name("channel_checks.py"), "cupy", ranks=2,
                            timeout=80, env={"CUDA_VISIBLE_DEVICES": "0"}))
    assert "shm cupy checks passed" in proc.stdout
