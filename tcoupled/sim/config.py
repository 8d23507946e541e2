"""Validated, frozen configuration objects and the flags that build them.

Every value is checked when the dataclass is constructed; a bad value raises
:class:`~tcoupled.runtime.errors.ConfigError` with the flag and the value in the message.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass

from tcoupled.runtime.errors import ConfigError

DTYPES = ("float32", "float64")
KERNELS = ("auto", "numpy", "c", "cupy")
INITS = ("mode", "gaussian")
DEVICES = ("auto", "cpu", "cuda")
#: Largest stable Courant number of the 2D five-point leapfrog on a square grid.
CFL_LIMIT = 1.0 / math.sqrt(2.0)


def grid_spacing(grid: tuple[int, int]) -> tuple[float, float]:
    """Spacing (dx, dy) of a grid whose points include both boundaries."""
    return 1.0 / (grid[0] - 1), 1.0 / (grid[1] - 1)


def courant_number(c: float, dt: float, grid: tuple[int, int]) -> float:
    """``c dt sqrt(1/dx^2 + 1/dy^2) / sqrt(2)``: equals ``c dt / dx`` on a square grid.

    The scheme is stable when this is at most ``1/sqrt(2)``.
    """
    dx, dy = grid_spacing(grid)
    return c * dt * math.sqrt(1.0 / dx**2 + 1.0 / dy**2) / math.sqrt(2.0)


def stable_dt(c: float, grid: tuple[int, int], cfl: float) -> float:
    """Time step with Courant number ``cfl`` (as defined by :func:`courant_number`)."""
    dx, dy = grid_spacing(grid)
    return cfl * math.sqrt(2.0) / (c * math.sqrt(1.0 / dx**2 + 1.0 / dy**2))


@dataclass(frozen=True)
class WaveConfig:
    """Parameters of the 2D wave-equation solver (see the design brief)."""

    grid: tuple[int, int] = (129, 129)
    steps: int = 100
    dt: float = 0.0
    c: float = 1.0
    dtype: str = "float64"
    kernel: str = "auto"
    init: str = "mode"
    mode: tuple[int, int] = (1, 1)
    centers: tuple[tuple[float, float], ...] = ()
    width: float = 0.05
    pulses: int = 1
    seed: int = 0
    device: str = "auto"
    time_block: int = 1

    def __post_init__(self) -> None:
        self._check_sizes()
        self._check_choices()
        if not (self.c > 0 and math.isfinite(self.c)):
            raise ConfigError(f"--c must be a positive number, got {self.c}")
        if not (self.dt > 0 and math.isfinite(self.dt)):
            raise ConfigError(f"--dt must be a positive number, got {self.dt}")
        courant = courant_number(self.c, self.dt, self.grid)
        if courant > CFL_LIMIT * (1 + 1e-12):
            raise ConfigError(
                f"--dt {self.dt:g} violates the CFL condition: c*dt/dx = {courant:.4f} > "
                f"1/sqrt(2) = {CFL_LIMIT:.4f} (largest stable dt here is "
                f"{stable_dt(self.c, self.grid, CFL_LIMIT):.6g})")
        self._check_init()

    def _check_sizes(self) -> None:
        if len(self.grid) != 2 or any(not isinstance(n, int) or n < 3 for n in self.grid):
            shown = " ".join(map(str, self.grid))
            raise ConfigError(f"--grid needs two integers >= 3, got {shown}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"--steps must be a non-negative integer, got {self.steps}")
        if not isinstance(self.time_block, int) or self.time_block < 1:
            raise ConfigError(f"--time-block must be a positive integer, got {self.time_block}")

    def _check_choices(self) -> None:
        for name, value, allowed in (("dtype", self.dtype, DTYPES),
                                     ("kernel", self.kernel, KERNELS),
                                     ("init", self.init, INITS),
                                     ("device", self.device, DEVICES)):
            if value not in allowed:
                raise ConfigError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")

    def _check_init(self) -> None:
        if self.init == "mode" and (len(self.mode) != 2 or min(self.mode) < 1):
            raise ConfigError(f"--mode needs two positive integers, got {self.mode}")
        if self.init == "gaussian":
            if not self.width > 0:
                raise ConfigError(f"--width must be positive, got {self.width}")
            if self.pulses < 1:
                raise ConfigError(f"--pulses must be at least 1, got {self.pulses}")
            for x, y in self.centers:
                if not (0 < x < 1 and 0 < y < 1):
                    raise ConfigError(f"--center {x},{y} lies outside the unit square")

    @property
    def t_final(self) -> float:
        """Time reached after ``steps`` steps."""
        return self.steps * self.dt

    def as_dict(self) -> dict:
        """Plain-data view, for JSON and HDF5 attributes."""
        return asdict(self)


def _center(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y, got {text!r}") from None
    return x, y


def add_wave_arguments(parser: argparse.ArgumentParser, dtype: str = "float64",
                       dtype_why: str = "") -> None:
    """Add the solver's flags (shared by ``wave`` and ``couple``; ``dtype`` is the default)."""
    g = parser.add_argument_group("wave solver")
    g.add_argument("--grid", nargs=2, type=int, metavar=("NX", "NY"), default=[129, 129],
                   help="grid points in x and y, boundaries included")
    g.add_argument("--steps", type=int, default=100, help="time steps")
    g.add_argument("--dt", type=float, default=None,
                   help="time step (default: --cfl times the stability limit's dx/c)")
    g.add_argument("--cfl", type=float, default=0.5,
                   help="Courant number c*dt/dx used when --dt is not given")
    g.add_argument("--c", type=float, default=1.0, help="wave speed")
    g.add_argument("--dtype", default=dtype, help=f"one of {', '.join(DTYPES)}{dtype_why}")
    g.add_argument("--kernel", default="auto",
                   help=f"one of {', '.join(KERNELS)} (auto: the fastest on --device)")
    g.add_argument("--device", default="auto",
                   help=f"one of {', '.join(DEVICES)} (auto: cuda when a CUDA GPU is "
                        "visible, else cpu; cuda is refused without one)")
    g.add_argument("--init", default="mode", help=f"initial condition: {', '.join(INITS)}")
    g.add_argument("--mode", nargs=2, type=int, metavar=("K", "L"), default=[1, 1],
                   help="standing mode sin(K pi x) sin(L pi y) for --init mode")
    g.add_argument("--center", type=_center, action="append", default=None, metavar="X,Y",
                   help="Gaussian pulse centre (repeat for several; default: random)")
    g.add_argument("--width", type=float, default=0.05, help="Gaussian pulse width")
    g.add_argument("--pulses", type=int, default=1,
                   help="number of random Gaussian pulses when no --center is given")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--time-block", type=int, default=1, metavar="K",
                   help="advance K steps per pass over memory, with K-deep halos exchanged "
                        "once per K steps (1: one step per pass, halo overlapped)")


def wave_config_from_args(args: argparse.Namespace) -> WaveConfig:
    """Build a :class:`WaveConfig` from parsed flags, resolving ``--dt``."""
    grid = tuple(args.grid)
    if any(n < 3 for n in grid):
        raise ConfigError(f"--grid needs two integers >= 3, got {' '.join(map(str, grid))}")
    if not args.c > 0:
        raise ConfigError(f"--c must be a positive number, got {args.c}")
    dt = args.dt
    if dt is None:
        if not 0 < args.cfl <= CFL_LIMIT:
            raise ConfigError(f"--cfl must be in (0, {CFL_LIMIT:.4f}], got {args.cfl}")
        dt = stable_dt(args.c, grid, args.cfl)
    centers = tuple(tuple(c) for c in (args.center or ()))
    return WaveConfig(grid=grid, steps=args.steps, dt=dt, c=args.c, dtype=args.dtype,
                      kernel=args.kernel, init=args.init, mode=tuple(args.mode),
                      centers=centers, width=args.width,
                      pulses=len(centers) or args.pulses, seed=args.seed,
                      device=getattr(args, "device", "auto"),
                      time_block=getattr(args, "time_block", 1))
