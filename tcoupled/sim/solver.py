"""Domain-decomposed 2D wave-equation solver (leapfrog, five-point Laplacian).

``u^{n+1} = 2u^n - u^{n-1} + (c dt)^2 lap(u^n)`` with ``u = 0`` on the boundary
and the Taylor start ``u^1 = u^0 + (c dt)^2 / 2 lap(u^0)``. Each step overlaps
the halo exchange of ``u^n`` with the update of the inner box; the rim is
updated once the halo has arrived. :meth:`WaveSolver.step` writes ``u^{n+1}``
over ``u^{n-1}``; :meth:`WaveSolver.step_into` writes it into a frame the
caller owns (a channel's slot), so the time levels can live in that memory.
With ``time_block = K > 1`` the halos are ``K`` deep and exchanged once per block of
``K`` steps, which the backend advances in one pass over memory
(:mod:`tcoupled.sim.blocking`); the result is bitwise the same.
The solver works on NumPy or CuPy arrays alike and knows nothing of training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcoupled.runtime.errors import ConfigError, PhysicsError
from tcoupled.runtime.faults import inject
from tcoupled.runtime.telemetry import PhaseTimer, StreamPhaseTimer
from tcoupled.sim.backends import resolve_backend, resolve_device
from tcoupled.sim.blocking import advance_frames, advance_in_place
from tcoupled.sim.config import WaveConfig, grid_spacing
from tcoupled.sim.decomposition import Block, check_block_depth, check_grid_fits
from tcoupled.sim.halo import HaloExchange
from tcoupled.sim.initial import initial_field


def process_grid(comm: Any, global_shape: tuple[int, int]) -> tuple[int, int]:
    """Balanced 2D process grid (``MPI.Compute_dims``), checked against the grid size."""
    return rank_dims(comm.Get_size(), global_shape)


def rank_dims(size: int, global_shape: tuple[int, int]) -> tuple[int, int]:
    """The process grid of ``size`` ranks, more ranks along the longer axis (checked)."""
    from tcoupled.runtime.mpienv import init_mpi

    dims = tuple(init_mpi().Compute_dims(size, 2))
    if global_shape[0] < global_shape[1] and dims[0] > dims[1]:
        dims = dims[::-1]  # more ranks along the longer axis
    check_grid_fits(global_shape, dims)
    return dims  # type: ignore[return-value]


class WaveSolver:
    """Leapfrog solver on the block of the global grid this rank owns.

    Parameters
    ----------
    config : WaveConfig
        Physics and numerics.
    comm : MPI communicator
        The sim ranks (``sim_comm``); a 2D Cartesian communicator is derived.
    backend : optional
        A kernel backend object; default: resolved from ``config.kernel``.
    align_rows : bool
        Pad local rows to 64 bytes (``wave`` does; a channel's slot frames have
        unpadded rows, so a coupled solver does not).
    """

    def __init__(self, config: WaveConfig, comm: Any, backend: Any = None,
                 check_every: int = 0, align_rows: bool = False) -> None:
        self.config = config
        self.check_every = check_every
        device = resolve_device(config.device, config.kernel)
        self.backend = backend or resolve_backend(config.kernel, device)
        self.xp = self.backend.xp
        self.dims = process_grid(comm, config.grid)
        self.cart = comm.Create_cart(list(self.dims), periods=[False, False], reorder=False)
        self.time_block = config.time_block
        align = 64 // np.dtype(config.dtype).itemsize if align_rows else 1
        self.block = Block(config.grid, self.dims, tuple(self.cart.Get_coords(self.cart.rank)),
                           halo=self.time_block, align=align)
        check_block_depth(self.block, self.time_block)
        if self.time_block > 1 and self.xp is not np:
            raise ConfigError(f"--time-block {self.time_block} runs on host arrays only; the "
                              f"{self.backend.name} kernel needs --time-block 1")
        self.inner_box, self.rim_boxes = self.block.split_update()
        dx, dy = grid_spacing(config.grid)
        self.cx = (config.c * config.dt / dx) ** 2
        self.cy = (config.c * config.dt / dy) ** 2
        # device kernels return at launch: time them on the stream, not the host clock
        self.timers = PhaseTimer() if self.xp is np else StreamPhaseTimer(self.xp.cuda)
        self.halo = HaloExchange(self.cart, self.block, config.dtype, self.xp,
                                 cuda_aware=_cuda_aware(self.xp))
        self.u = self.backend.zeros(self.block.padded_shape, config.dtype)
        self.u_prev = self.backend.zeros(self.block.padded_shape, config.dtype)
        self._own = (self.u, self.u_prev)  # the levels' home outside a channel's slots
        self._owned = self.block.owned
        u0 = initial_field(config, self.block.offset, self.block.local_shape)
        self.u[self._owned] = self.xp.asarray(u0.astype(config.dtype))
        self.steps_done = 0

    # -- geometry ---------------------------------------------------------------------
    @property
    def global_shape(self) -> tuple[int, int]:
        """Points of the whole grid."""
        return self.config.grid

    @property
    def local_shape(self) -> tuple[int, int]:
        """Points this rank owns."""
        return self.block.local_shape

    @property
    def offset(self) -> tuple[int, int]:
        """Global index of this rank's first owned point."""
        return self.block.offset

    @property
    def time(self) -> float:
        """Simulated time of the current field."""
        return self.steps_done * self.config.dt

    @property
    def field(self) -> Any:
        """View of the owned block of ``u^n`` (no halo)."""
        return self.u[self._owned]

    @property
    def previous_field(self) -> Any:
        """View of the owned block of ``u^{n-1}`` (``u^0`` before the first step)."""
        return (self.u_prev if self.steps_done else self.u)[self._owned]

    # -- time stepping ----------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Advance ``n`` time steps (``u^{n+1}`` overwrites ``u^{n-1}``).

        With ``time_block > 1``, in blocks of up to ``time_block`` steps.
        """
        while n > 0:
            if self.steps_done == 0 or self.time_block == 1:
                self.step_into(self.u_prev)
                n -= 1
            else:
                n -= advance_in_place(self, min(self.time_block, n))

    def step_into_frames(self, frames: list) -> None:
        """Advance ``len(frames)`` steps, writing ``u^{n+s}`` into ``frames[s - 1]``.

        The frames are padded frames the caller owns (a channel's slot); each is
        written once, by blocks of up to ``time_block`` steps, and the last two become
        ``u_prev`` and ``u``. Needs the Taylor start taken (:meth:`step_into`).
        """
        advance_frames(self, frames)

    def after_step(self) -> None:
        """Count one step done; fault injection and the periodic finite check."""
        self.steps_done += 1
        if inject("sim", "step", self.steps_done, self.cart.rank) == "nan":
            (lx, ly), h = self.local_shape, self.block.halo
            self.u[h + lx // 2, h + ly // 2] = float("nan")  # mid-block: stays local
        if self.check_every and self.steps_done % self.check_every == 0:
            self.check_finite()

    def step_into(self, out: Any) -> None:
        """Advance one step writing ``u^{n+1}`` into ``out`` (a padded frame, or ``u_prev``).

        ``out`` becomes ``u`` and the old ``u`` becomes ``u_prev``; ``out`` must hold
        zeros (or any earlier level) on the global boundary and its halo.
        """
        if out is self.u:
            raise ValueError("step_into: out must not be the current level u")
        if self.steps_done == 0:
            self._taylor_start(out)
        else:
            self._leapfrog(out)
        self.u, self.u_prev = out, self.u
        self.after_step()

    def _leapfrog(self, out: Any) -> None:
        with self.timers.phase("halo"):
            self.halo.start(self.u)
        with self.timers.phase("sim"):
            self.backend.step(self.u, self.u_prev, out, self.inner_box, self.cx, self.cy)
        with self.timers.phase("halo"):
            self.halo.wait()
        with self.timers.phase("sim"):
            if hasattr(self.backend, "step_boxes"):  # the whole rim in one call
                self.backend.step_boxes(self.u, self.u_prev, out, self.rim_boxes,
                                        self.cx, self.cy)
                return
            for box in self.rim_boxes:
                self.backend.step(self.u, self.u_prev, out, box, self.cx, self.cy)

    def _taylor_start(self, out: Any) -> None:
        """``u^1 = u^0 + (c dt)^2 / 2 lap(u^0)``, written into ``out``.

        It is the backend's own leapfrog step with ``u^{-1} = u^0`` and half the
        coefficients (``2 u - u`` is ``u`` exactly, halving is exact), so every backend
        rounds the start as it rounds a step: the GPU's bit-for-bit agreement with NumPy
        covers the first step too.
        """
        with self.timers.phase("halo"):
            self.halo.exchange(self.u)
        with self.timers.phase("sim"):
            out[...] = self.u
            self.backend.step(self.u, self.u, out, self.block.update_box(),
                              self.cx / 2, self.cy / 2)

    # -- diagnostics --------------------------------------------------------------------
    def energy(self) -> float:
        """Discrete energy conserved exactly by leapfrog (between ``u^{n-1}`` and ``u^n``).

        ``E = sum((u^n - u^{n-1})^2) / dt^2 + c^2 sum(D u^n * D u^{n-1})`` over grid
        edges, times ``dx dy``. Collective over the sim ranks.
        """
        if self.steps_done == 0:
            raise ValueError("energy needs two time levels; take a step first")
        self.halo.exchange(self.u)
        self.halo.exchange(self.u_prev)
        xp, cfg = self.xp, self.config
        dx, dy = grid_spacing(cfg.grid)
        a = self.u.astype(np.float64)
        b = self.u_prev.astype(np.float64)
        (lx, ly), w = self.local_shape, self.block.halo
        kinetic = float(xp.sum((a[self._owned] - b[self._owned]) ** 2)) / cfg.dt**2
        potential = 0.0
        for axis, h in ((0, dx), (1, dy)):
            n_edges = min(self.offset[axis] + self.local_shape[axis], cfg.grid[axis] - 1)
            count = n_edges - self.offset[axis]  # owned edge starts (i, i+1)
            lo = [slice(w, w + lx), slice(w, w + ly)]
            hi = list(lo)
            lo[axis] = slice(w, w + count)
            hi[axis] = slice(w + 1, w + 1 + count)
            da = a[tuple(hi)] - a[tuple(lo)]
            db = b[tuple(hi)] - b[tuple(lo)]
            potential += float(xp.sum(da * db)) / h**2
        local = (kinetic + cfg.c**2 * potential) * dx * dy
        return self.cart.allreduce(local)

    def check_finite(self) -> None:
        """Stop every sim rank if any block holds NaN or Inf (collective over the sim ranks).

        Raises :class:`PhysicsError` on every sim rank, naming the step and the first
        sim rank whose block is not finite.
        """
        finite = bool(self.xp.isfinite(self.field).all())
        bad = self.cart.allgather(None if finite else (self.cart.rank, self.offset))
        bad = [b for b in bad if b is not None]
        if bad:
            ranks = ", ".join(str(rank) for rank, _ in bad)
            error = PhysicsError(f"non-finite value (NaN or Inf) in the field at step "
                                 f"{self.steps_done} on sim rank(s) {ranks} (first block at "
                                 f"offset {tuple(bad[0][1])}); the run was stopped")
            error.ranks_raising = self.cart.Get_size()
            error.reporter = self.cart.rank == 0  # the others leave the one line to it
            raise error

    def gather(self, root: int = 0) -> np.ndarray | None:
        """Assemble the global ``u^n`` on ``root`` (a NumPy array); ``None`` elsewhere."""
        return gather_blocks(self.cart, self.block, _to_host(self.field), root)

    def owned(self, frame: Any) -> Any:
        """View of the owned block of a padded frame (no halo)."""
        return frame[self._owned]

    def start_in(self, frame: Any) -> None:
        """Write ``u^0`` into the owned block of ``frame`` (before the first step).

        The initial condition is generated there, as the constructor does, so a
        channel's memory can hold the first level without a copy.
        """
        if self.steps_done:
            raise ValueError(f"start_in: the solver is at step {self.steps_done}, not 0")
        u0 = initial_field(self.config, self.block.offset, self.block.local_shape)
        frame[self._owned] = self.xp.asarray(u0.astype(self.config.dtype))

    @property
    def previous_level(self) -> Any:
        """The padded array of ``u^{n-1}`` (``u^0`` itself before the first step)."""
        return self.u_prev if self.steps_done else self.u

    def rebind(self, current: Any, previous: Any = None) -> None:
        """Make the padded frame ``current`` the level ``u`` (and ``previous`` ``u_prev``).

        Their owned blocks must already hold ``u^n`` (and ``u^{n-1}``); halos are
        refilled by the next step.
        """
        if previous is None and current is self.u_prev:
            raise ValueError("rebind: the current level cannot be u_prev's memory")
        self.u = current
        if previous is not None:
            self.u_prev = previous

    def take_levels_home(self) -> None:
        """Copy ``u`` and ``u_prev`` back into the solver's own buffers (after a coupled run).

        A channel's slots may be freed after the run; the held-out steps then work here.
        """
        home, home_prev = self._own
        if self.u_prev is home:
            home, home_prev = home_prev, home
        for buffer, level in ((home, self.u), (home_prev, self.u_prev)):
            if buffer is not level:
                buffer[...] = level
        self.u, self.u_prev = home, home_prev

    def close(self) -> None:
        """Release the halo plan and the Cartesian communicator."""
        self.halo.close()
        self.cart.Free()

    def __enter__(self) -> WaveSolver:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:  # on an error, leave MPI alone: the job is being aborted
            self.close()


def _to_host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a.get() if hasattr(a, "get") else a)


def _cuda_aware(xp: Any) -> bool:
    if xp is np:
        return False
    from tcoupled.runtime.gpu import cuda_aware_mpi

    return cuda_aware_mpi()


def gather_blocks(comm: Any, block: Block, local: np.ndarray, root: int = 0
                  ) -> np.ndarray | None:
    """Gather every rank's owned block into the global array on ``root``."""
    local = np.ascontiguousarray(local)
    layouts = comm.gather((block.offset, block.local_shape), root=root)
    if comm.Get_rank() != root:
        comm.Gatherv(local, None, root=root)
        return None
    counts = [lx * ly for _, (lx, ly) in layouts]
    displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    flat = np.empty(sum(counts), dtype=local.dtype)
    comm.Gatherv(local, [flat, counts, displs, None], root=root)
    out = np.empty(block.global_shape, dtype=local.dtype)
    for ((ox, oy), (lx, ly)), start, count in zip(layouts, displs, counts):
        out[ox:ox + lx, oy:oy + ly] = flat[start:start + count].reshape(lx, ly)
    return out
