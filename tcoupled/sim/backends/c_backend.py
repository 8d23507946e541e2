"""Compiled C kernel (``kernels/wave.c``) loaded with ctypes.

The library is built by ``pip install`` through CMake into ``tcoupled/_lib``.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import numpy as np

from tcoupled.runtime.errors import BackendUnavailable

_LIB_DIR = Path(__file__).resolve().parents[2] / "_lib"
_CTYPES = {np.dtype(np.float32): ctypes.c_float, np.dtype(np.float64): ctypes.c_double}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


@lru_cache(maxsize=1)
def library_path() -> Path:
    """Path of the built kernel library.

    Raises
    ------
    BackendUnavailable
        If the library was not built (no CMake or compiler at install time).
    """
    candidates = sorted(_LIB_DIR.glob("libtcoupled_wave*.so"))
    if not candidates:
        raise BackendUnavailable(
            f"the C kernel library is not built (nothing in {_LIB_DIR}); reinstall with "
            "CMake and a C compiler present: pip install -e .")
    return candidates[0]


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    ptr, ssize = ctypes.c_void_p, ctypes.c_ssize_t
    for dtype, ctype in _CTYPES.items():
        sfx = _SUFFIX[dtype]
        step = getattr(lib, f"tc_wave_step_{sfx}")
        step.argtypes = [ptr, ptr, ptr, ssize, ssize, ssize, ssize, ssize, ctype, ctype]
        step.restype = None
        getattr(lib, f"tc_copy_{sfx}").argtypes = [ptr, ptr, ssize]
        getattr(lib, f"tc_triad_{sfx}").argtypes = [ptr, ptr, ptr, ctype, ssize]
    return lib


class CBackend:
    """Fused C loop over a box; one pass over memory per step."""

    name = "c"
    xp = np

    def __init__(self) -> None:
        self.lib = _library()

    @staticmethod
    def zeros(shape: tuple[int, int], dtype: str) -> np.ndarray:
        """Zero-filled host array."""
        return np.zeros(shape, dtype=dtype)

    def step(self, u: np.ndarray, u_prev: np.ndarray, u_next: np.ndarray,
             box: tuple[int, int, int, int], cx: float, cy: float) -> None:
        """Update ``u_next`` on ``box`` (``u_next`` may be ``u_prev``)."""
        i0, i1, j0, j1 = box
        if i0 >= i1 or j0 >= j1:
            return
        if not (u.flags.c_contiguous and u_prev.flags.c_contiguous
                and u.dtype == u_prev.dtype == u_next.dtype and u.shape == u_next.shape):
            raise ValueError("C kernel needs C-contiguous arrays of one shape and dtype")
        fn = getattr(self.lib, f"tc_wave_step_{_SUFFIX[u.dtype]}")
        fn(u.ctypes.data, u_prev.ctypes.data, u_next.ctypes.data, u.shape[1],
           i0, i1, j0, j1, cx, cy)

    def copy(self, a: np.ndarray, b: np.ndarray) -> None:
        """STREAM copy ``b[:] = a`` (bandwidth probe)."""
        getattr(self.lib, f"tc_copy_{_SUFFIX[a.dtype]}")(a.ctypes.data, b.ctypes.data, a.size)

    def triad(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, s: float) -> None:
        """STREAM triad ``c[:] = a + s b`` (bandwidth probe)."""
        getattr(self.lib, f"tc_triad_{_SUFFIX[a.dtype]}")(a.ctypes.data, b.ctypes.data,
                                                          c.ctypes.data, s, a.size)


def load() -> CBackend:
    """Return the C backend, or raise :class:`BackendUnavailable` if it is not built."""
    return CBackend()
