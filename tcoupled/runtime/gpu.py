"""The CUDA devices this process sees, and whether MPI can read their memory.

One home for each question: the solver's halos and the channels ask the same
:func:`cuda_aware_mpi`, so they never disagree on one machine. CuPy is imported only
inside functions; a missing CuPy or driver means "no GPU".
"""

from __future__ import annotations

import os
import sys

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


def select_cuda_device(index: int) -> str:
    """Make visible device ``index`` current for CuPy (and torch); return its identity.

    The identity (``host/PCI bus id``) names the physical GPU whatever
    ``CUDA_VISIBLE_DEVICES`` renumbered, so two processes can tell whether they share one.
    """
    import cupy

    cupy.cuda.Device(index).use()
    torch = sys.modules.get("torch")  # set torch's too when it is loaded; the trainer
    if torch is not None and torch.cuda.is_available():  # sets it when it loads torch
        torch.cuda.set_device(index)
    return current_gpu_identity()


def current_gpu_identity() -> str:
    """``host/PCI bus id`` of CuPy's current device (see :func:`select_cuda_device`)."""
    import socket

    import cupy

    return f"{socket.gethostname()}/{cupy.cuda.Device().pci_bus_id}"


def cuda_aware_mpi_reason() -> tuple[bool, str]:
    """Whether MPI can read GPU memory directly, and what decided it (one line)."""
    forced = env("CUDA_AWARE_MPI")
    if forced is not None:
        return (forced.strip() not in ("", "0", "false", "no"),
                f"TCOUPLED_CUDA_AWARE_MPI={forced}")
    from tcoupled.runtime.mpienv import init_mpi

    MPI = init_mpi()
    query = getattr(MPI, "Query_cuda_support", None)
    if query is not None:
        try:
            return bool(query()), "MPIX_Query_cuda_support"
        except Exception:  # noqa: BLE001 - not implemented by this MPI
            pass
    gpu_support = os.environ.get("MPICH_GPU_SUPPORT_ENABLED")
    return gpu_support == "1", f"MPICH_GPU_SUPPORT_ENABLED={gpu_support or 'unset'}"


def describe_cuda_aware_mpi() -> str:
    """The line printed at start of a GPU run: which way device buffers go through MPI."""
    aware, reason = cuda_aware_mpi_reason()
    how = ("device buffers go straight to MPI" if aware
           else "device buffers are staged through host memory")
    return (f"CUDA-aware MPI: {'yes' if aware else 'no'} ({reason}): {how} "
            "(halos and the mpi channel alike; set TCOUPLED_CUDA_AWARE_MPI=0|1 to override)")


def cuda_aware_mpi() -> bool:
    """Whether MPI can read GPU memory directly (the one switch; see the reason function).

    ``TCOUPLED_CUDA_AWARE_MPI=0|1`` overrides; otherwise MPI is asked
    (``MPIX_Query_cuda_support`` through mpi4py when available), and on
    cray-mpich ``MPICH_GPU_SUPPORT_ENABLED=1`` is taken as a yes.
    """
    return cuda_aware_mpi_reason()[0]
