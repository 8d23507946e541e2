"""Reference kernel: NumPy slicing, the same expression in the same order as the C kernel."""

from __future__ import annotations

import numpy as np


class NumpyBackend:
    """Leapfrog update with NumPy array slices (the reference for all backends)."""

    name = "numpy"
    xp = np

    @staticmethod
    def zeros(shape: tuple[int, int], dtype: str) -> np.ndarray:
        """Zero-filled host array."""
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def step(u: np.ndarray, u_prev: np.ndarray, u_next: np.ndarray,
             box: tuple[int, int, int, int], cx: float, cy: float) -> None:
        """Update ``u_next`` on ``box`` (``u_next`` may be ``u_prev``)."""
        i0, i1, j0, j1 = box
        if i0 >= i1 or j0 >= j1:
            return
        two = u.dtype.type(2)
        cx, cy = u.dtype.type(cx), u.dtype.type(cy)
        c = u[i0:i1, j0:j1]
        lap_x = u[i0 + 1:i1 + 1, j0:j1] - two * c + u[i0 - 1:i1 - 1, j0:j1]
        lap_y = u[i0:i1, j0 + 1:j1 + 1] - two * c + u[i0:i1, j0 - 1:j1 - 1]
        u_next[i0:i1, j0:j1] = two * c - u_prev[i0:i1, j0:j1] + cx * lap_x + cy * lap_y


def load() -> NumpyBackend:
    """Return the NumPy backend (always available)."""
    return NumpyBackend()
