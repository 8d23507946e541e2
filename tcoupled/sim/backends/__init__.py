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
