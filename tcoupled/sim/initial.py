"""Initial conditions and the exact standing-mode solution, evaluated on any block.

Values depend only on global indices, so every decomposition sees the same
numbers bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from tcoupled.sim.config import WaveConfig


def coordinates(global_shape: tuple[int, int], offset: tuple[int, int],
                local_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``x_i = i / (nx - 1)`` of a block's points (1D, along x and y)."""
    axes = []
    for n, off, size in zip(global_shape, offset, local_shape):
        axes.append(np.arange(off, off + size, dtype=np.float64) / (n - 1))
    return axes[0], axes[1]


def pulse_centers(config: WaveConfig) -> tuple[tuple[float, float], ...]:
    """Centres of the Gaussian pulses: given, or drawn from ``seed`` in [0.25, 0.75]^2."""
    if config.centers:
        return config.centers
    rng = np.random.default_rng(config.seed)
    return tuple((float(x), float(y)) for x, y in rng.uniform(0.25, 0.75, size=(config.pulses, 2)))


def initial_field(config: WaveConfig, offset: tuple[int, int],
                  local_shape: tuple[int, int]) -> np.ndarray:
    """u(t=0) on a block (float64), zero on the global boundary."""
    x, y = coordinates(config.grid, offset, local_shape)
    if config.init == "mode":
        k, l_ = config.mode
        u = np.outer(np.sin(k * math.pi * x), np.sin(l_ * math.pi * y))
    else:
        u = np.zeros(local_shape)
        two_w2 = 2.0 * config.width**2
        for cx, cy in pulse_centers(config):
            u += np.outer(np.exp(-((x - cx) ** 2) / two_w2), np.exp(-((y - cy) ** 2) / two_w2))
    _zero_boundary(u, config.grid, offset)
    return u


def _zero_boundary(u: np.ndarray, global_shape: tuple[int, int], offset: tuple[int, int]) -> None:
    lx, ly = u.shape
    (nx, ny), (ox, oy) = global_shape, offset
    if ox == 0:
        u[0, :] = 0.0
    if ox + lx == nx:
        u[-1, :] = 0.0
    if oy == 0:
        u[:, 0] = 0.0
    if oy + ly == ny:
        u[:, -1] = 0.0


def exact_mode(config: WaveConfig, t: float, offset: tuple[int, int] = (0, 0),
               local_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Exact standing-mode solution ``sin(k pi x) sin(l pi y) cos(omega t)`` on a block."""
    local_shape = local_shape or config.grid
    x, y = coordinates(config.grid, offset, local_shape)
    k, l_ = config.mode
    omega = config.c * math.pi * math.hypot(k, l_)
    u = np.outer(np.sin(k * math.pi * x), np.sin(l_ * math.pi * y)) * math.cos(omega * t)
    _zero_boundary(u, config.grid, offset)
    return u
