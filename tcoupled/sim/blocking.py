"""Temporal blocking: ``k`` leapfrog steps per pass over memory, after one deep exchange.

A block of ``k`` steps needs ``u^n`` ``k`` layers deep and ``u^{n-1}`` ``k - 1`` layers
deep around the owned points (corners included); step ``s`` then updates the owned
update box grown by ``k - s`` layers towards every neighbour, so the last step lands
exactly on the owned points. The halo layers are computed redundantly by both
neighbours, in exactly the same arithmetic, so the result is bitwise that of ``k``
single steps. The levels are a list: ``levels[0] = u^{n-1}``, ``levels[1] = u^n`` and
step ``s`` writes ``levels[s + 1]`` -- the two solver buffers alternating (in place)
or a channel's frames (each written once).
"""

from __future__ import annotations

from typing import Any

from tcoupled.sim.decomposition import Box


def grown(box: Box, ext: tuple[int, int, int, int], layers: int) -> Box:
    """``box`` grown by ``layers`` on the sides where ``ext`` is 1."""
    return (box[0] - ext[0] * layers, box[1] + ext[1] * layers,
            box[2] - ext[2] * layers, box[3] + ext[3] * layers)


def in_place_levels(u: Any, u_prev: Any, k: int) -> list:
    """The level list of ``k`` steps in the solver's two buffers (they alternate)."""
    return ([u_prev, u] * (k // 2 + 2))[:k + 2]


def run_block(solver: Any, levels: list, k: int) -> None:
    """Exchange the deep halos of ``levels[1]`` and ``levels[0]``, then advance ``k`` steps.

    One backend call for the whole block where the backend has ``levels`` (the C
    kernel's wavefront); otherwise one ``step`` per step over the grown boxes.
    """
    with solver.timers.phase("halo"):
        solver.halo.exchange_deep([(levels[1], k), (levels[0], k - 1)])
    box, ext = solver.block.update_box(), solver.block.growth()
    backend, cx, cy = solver.backend, solver.cx, solver.cy
    with solver.timers.phase("sim"):
        if hasattr(backend, "levels"):
            backend.levels(levels, box, ext, cx, cy, k)
            return
        for s in range(1, k + 1):
            backend.step(levels[s], levels[s - 1], levels[s + 1], grown(box, ext, k - s),
                         cx, cy)


def advance_in_place(solver: Any, k: int) -> int:
    """``k`` steps in the solver's two buffers after one deep exchange; returns ``k``."""
    levels = in_place_levels(solver.u, solver.u_prev, k)
    run_block(solver, levels, k)
    solver.u_prev, solver.u = levels[k], levels[k + 1]
    for _ in range(k):
        solver.after_step()
    return k


def advance_frames(solver: Any, frames: list) -> None:
    """``len(frames)`` steps written into ``frames`` (each once), in blocks of ``time_block``."""
    if solver.steps_done == 0:
        raise ValueError("step_into_frames needs the Taylor start first: call step(1)")
    done = 0
    while done < len(frames):
        k = min(solver.time_block, len(frames) - done)
        levels = [solver.u_prev, solver.u, *frames[done:done + k]]
        run_block(solver, levels, k)
        solver.u_prev, solver.u = levels[-2], levels[-1]
        done += k
        for _ in range(k):
            solver.after_step()
