"""GPU paths on a real GPU (skipped without one): CuPy stencil, DLPack zero copy.

CPU runs cover the same logic through fakes (tests/test_channels.py); these run in
``run/device_check.sh`` on a machine with an NVIDIA GPU.
"""

import numpy as np
import pytest

from tcoupled.sim.backends import cuda_device_count

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(cuda_device_count() == 0, reason="no CUDA GPU")]


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-6), ("float64", 1e-14)])
def test_cupy_kernel_matches_numpy(dtype, tol):
    import cupy

    from tcoupled.sim.backends import load_backend

    rng = np.random.default_rng(2)
    u = rng.standard_normal((130, 257)).astype(dtype)
    prev = rng.standard_normal((130, 257)).astype(dtype)
    box = (1, 129, 1, 256)
    expected = prev.copy()
    load_backend("numpy").step(u, prev, expected, box, 0.2, 0.3)
    du, dprev = cupy.asarray(u), cupy.asarray(prev)
    load_backend("cupy").step(du, dprev, dprev, box, 0.2, 0.3)
    got = cupy.asnumpy(dprev)
    assert np.abs(got - expected).max() <= tol * np.abs(expected).max()


def test_cupy_solver_matches_numpy_solver(comm_self):
    from tcoupled.sim.config import WaveConfig, stable_dt
    from tcoupled.sim.solver import WaveSolver

    fields = {}
    for kernel in ("numpy", "cupy"):
        cfg = WaveConfig(grid=(65, 77), steps=50, dt=stable_dt(1.0, (65, 77), 0.5),
                         init="gaussian", pulses=2, kernel=kernel)
        with WaveSolver(cfg, comm_self) as solver:
            solver.step(50)
            fields[kernel] = solver.gather()
    ref = fields["numpy"]
    assert np.abs(fields["cupy"] - ref).max() <= 1e-12 * np.abs(ref).max()


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
