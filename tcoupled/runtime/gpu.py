"""The CUDA devices this process sees, and whether MPI can read their memory.

One home for each question: the solver's halos and the channels ask the same
:func:`cuda_aware_mpi`, so they never disagree on one machine. CuPy is imported only
inside functions; a missing CuPy or driver means "no GPU".
"""

from __future__ import annotations

import os

from tcoupled.runtime.mpienv import env


def cuda_device_count() -> int:
    """Number of visible CUDA devices (0 when CuPy or a driver is missing)."""
    try:
        import cupy
    except Exception:  # noqa: BLE001 - any import failure means "no GPU"
        return 0
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # noqa: BLE001 - CUDA driver/runtime errors mean "no GPU"
        return 0


def select_cuda_device(index: int) -> None:
    """Make ``index`` the current CUDA device of this process."""
    import cupy

    cupy.cuda.Device(index).use()


def cuda_aware_mpi() -> bool:
    """Whether MPI can read GPU memory directly.

    ``TCOUPLED_CUDA_AWARE_MPI=0|1`` overrides; otherwise MPI is asked
    (``MPIX_Query_cuda_support`` through mpi4py when available), and on
    cray-mpich ``MPICH_GPU_SUPPORT_ENABLED=1`` is taken as a yes.
    """
    forced = env("CUDA_AWARE_MPI")
    if forced is not None:
        return forced.strip() not in ("", "0", "false", "no")
    from tcoupled.runtime.mpienv import init_mpi

    MPI = init_mpi()
    query = getattr(MPI, "Query_cuda_support", None)
    if query is not None:
        try:
            return bool(query())
        except Exception:  # noqa: BLE001 - not implemented by this MPI
            pass
    return os.environ.get("MPICH_GPU_SUPPORT_ENABLED") == "1"
