"""Kernel backends keyed by name: ``numpy`` (reference), ``c`` (compiled), ``cupy`` (GPU).

A backend is an object with

``name``                     its registry key;
``xp``                       the array module its arrays live in;
``step(u, u_prev, u_next, box, cx, cy)``  the fused leapfrog update on a box of
                             local padded indices (``u_next`` may be ``u_prev``);
``zeros(shape, dtype)``      a zero-filled array of the right kind.

A new backend is one new module and one line in :data:`BACKENDS`. A backend
that cannot run here raises :class:`BackendUnavailable` from its loader, so a
missing CuPy or an unbuilt C library means "not available", never an ImportError.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from tcoupled.runtime.errors import BackendUnavailable, ConfigError
from tcoupled.runtime.gpu import cuda_device_count

BACKENDS = {
    "numpy": "tcoupled.sim.backends.numpy_backend",
    "c": "tcoupled.sim.backends.c_backend",
    "cupy": "tcoupled.sim.backends.cupy_backend",
}
#: Preference order of ``--kernel auto`` on each device.
AUTO_ORDER = {"cuda": ("cupy",), "cpu": ("c", "numpy")}

_warned: set[str] = set()


def load_backend(name: str) -> Any:
    """Return the backend called ``name``.

    Raises
    ------
    ConfigError
        If ``name`` is not a known backend.
    BackendUnavailable
        If the backend cannot run here (e.g. ``cupy`` without a GPU).
    """
    if name not in BACKENDS:
        raise ConfigError(f"--kernel must be one of auto, {', '.join(BACKENDS)}, got {name!r}")
    return importlib.import_module(BACKENDS[name]).load()


#: element types the compiled kernels (C and CUDA) are built for
KERNEL_DTYPES = ("float32", "float64")


def check_step_arrays(u: Any, u_prev: Any, u_next: Any,
                      box: tuple[int, int, int, int] | None = None) -> None:
    """Refuse arrays a compiled kernel would read wrongly.

    The C and CUDA kernels index every array as ``a[i * ny + j]`` with ``ny =
    u.shape[1]``, so all three must be 2D, C-contiguous (row stride ``ny`` elements),
    of one shape and of one supported dtype; the five-point stencil of ``box`` must
    stay inside the arrays.

    Raises
    ------
    ValueError
        Naming the first array that breaks a rule and how.
    """
    for name, array in (("u", u), ("u_prev", u_prev), ("u_next", u_next)):
        if len(array.shape) != 2:
            raise ValueError(f"kernel step: {name} must be 2D, got shape {tuple(array.shape)}")
        if str(array.dtype) not in KERNEL_DTYPES or array.dtype != u.dtype:
            raise ValueError(f"kernel step: {name} has dtype {array.dtype}; all three arrays "
                             f"need one dtype of {', '.join(KERNEL_DTYPES)} (u is {u.dtype})")
        itemsize = array.dtype.itemsize
        if (not array.flags.c_contiguous
                or tuple(array.strides) != (array.shape[1] * itemsize, itemsize)):
            raise ValueError(f"kernel step: {name} is not C-contiguous (strides "
                             f"{tuple(array.strides)}); the kernel assumes rows of "
                             f"{array.shape[1]} elements")
        if tuple(array.shape) != tuple(u.shape):
            raise ValueError(f"kernel step: {name} has shape {tuple(array.shape)}, u has "
                             f"{tuple(u.shape)}")
    if box is not None:
        i0, i1, j0, j1 = box
        if i0 < 1 or j0 < 1 or i1 > u.shape[0] - 1 or j1 > u.shape[1] - 1:
            raise ValueError(f"kernel step: box {tuple(box)} reaches outside the interior of "
                             f"an array of shape {tuple(u.shape)}")


def resolve_backend(name: str, device: str = "cpu") -> Any:
    """Resolve ``auto`` to the fastest backend available on ``device``.

    Falling back from the C kernel to NumPy is reported once per process.
    """
    if name != "auto":
        return load_backend(name)
    reasons = []
    for candidate in AUTO_ORDER[device]:
        try:
            backend = load_backend(candidate)
        except BackendUnavailable as exc:
            reasons.append(str(exc))
            continue
        if reasons and "fallback" not in _warned:
            _warned.add("fallback")
            print(f"tcoupled: note: {'; '.join(reasons)}; using the {candidate} kernel",
                  file=sys.stderr)
        return backend
    raise BackendUnavailable(f"no kernel backend available on {device}: {'; '.join(reasons)}")


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str, kernel: str = "auto") -> str:
    """Resolve ``--device`` (with ``--kernel``) to ``"cpu"`` or ``"cuda"``.

    ``auto`` is ``cuda`` when a CUDA GPU is visible (or ``--kernel cupy`` asks for
    one), else ``cpu``.

    Raises
    ------
    ConfigError
        If the device is unknown or contradicts the kernel.
    BackendUnavailable
        If ``cuda`` is asked for and no CUDA GPU is visible.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cpu" and kernel == "cupy":
        raise ConfigError("--kernel cupy runs on a GPU; it cannot be used with --device cpu")
    if device == "cuda" and kernel in ("numpy", "c"):
        raise ConfigError(f"--kernel {kernel} runs on the CPU; --device cuda needs "
                          "--kernel cupy or auto")
    if device == "auto":
        return "cuda" if kernel == "cupy" or (kernel == "auto"
                                               and cuda_device_count() > 0) else "cpu"
    if device == "cuda" and cuda_device_count() == 0:
        raise BackendUnavailable("--device cuda needs a CUDA GPU; none found")
    return device


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine."""
    names = []
    for name in BACKENDS:
        try:
            load_backend(name)
        except BackendUnavailable:
            continue
        names.append(name)
    return names
