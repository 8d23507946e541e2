"""Block decomposition of a 2D grid: index arithmetic only, no MPI.

A global grid of ``global_shape`` points is split over a ``dims`` process grid.
Along each axis, block ``p`` of ``P`` holds ``n // P`` points, plus one for the
first ``n % P`` blocks (uneven blocks allowed). Local arrays carry ``halo`` layers on
every side (one by default; ``K`` for temporal blocks of ``K`` steps): owned points have
local indices ``halo .. halo + local_shape - 1``. Rows may be padded to a multiple of
``align`` elements (64 bytes), so every row starts on a cache line.
"""

from __future__ import annotations

from dataclasses import dataclass

from tcoupled.runtime.errors import ConfigError

Box = tuple[int, int, int, int]  # (i0, i1, j0, j1), half-open, local padded indices


def block_sizes(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous blocks covering ``n`` points."""
    if parts < 1:
        raise ConfigError(f"cannot split into {parts} parts")
    if n < parts:
        raise ConfigError(f"grid of {n} points cannot be split over {parts} ranks along an axis")
    base, extra = divmod(n, parts)
    return [base + (1 if p < extra else 0) for p in range(parts)]


def block_offsets(n: int, parts: int) -> list[int]:
    """Global index of the first point of each block."""
    offsets, start = [], 0
    for size in block_sizes(n, parts):
        offsets.append(start)
        start += size
    return offsets


@dataclass(frozen=True)
class Block:
    """The part of the global grid one rank owns.

    Attributes
    ----------
    global_shape : (nx, ny) points of the whole grid.
    dims : process grid shape.
    coords : this block's position in the process grid.
    halo : halo layers on every side of the local arrays.
    align : local rows are padded to a multiple of this many elements.
    local_shape : owned points (without halo).
    offset : global index of the first owned point.
    """

    global_shape: tuple[int, int]
    dims: tuple[int, int]
    coords: tuple[int, int]
    halo: int = 1
    align: int = 1

    @property
    def local_shape(self) -> tuple[int, int]:
        """Owned points along each axis."""
        return tuple(block_sizes(n, p)[c] for n, p, c in
                     zip(self.global_shape, self.dims, self.coords))  # type: ignore[return-value]

    @property
    def offset(self) -> tuple[int, int]:
        """Global index of the first owned point along each axis."""
        return tuple(block_offsets(n, p)[c] for n, p, c in
                     zip(self.global_shape, self.dims, self.coords))  # type: ignore[return-value]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Local array shape: ``halo`` layers per side, rows padded to ``align``."""
        lx, ly = self.local_shape
        h, a = self.halo, self.align
        return lx + 2 * h, -(-(ly + 2 * h) // a) * a

    @property
    def owned(self) -> tuple[slice, slice]:
        """Local slices of the owned points."""
        (lx, ly), h = self.local_shape, self.halo
        return slice(h, h + lx), slice(h, h + ly)

    def global_slices(self) -> tuple[slice, slice]:
        """Slices of the global array this block owns."""
        (ox, oy), (lx, ly) = self.offset, self.local_shape
        return slice(ox, ox + lx), slice(oy, oy + ly)

    def update_box(self) -> Box:
        """Owned points that the scheme updates (global boundary points stay zero)."""
        bounds = []
        for n, off, size in zip(self.global_shape, self.offset, self.local_shape):
            first = max(off, 1)               # global index of first updated point
            last = min(off + size, n - 1)     # one past the last updated point
            bounds += [first - off + self.halo, max(first, last) - off + self.halo]
        return bounds[0], bounds[1], bounds[2], bounds[3]

    def split_update(self) -> tuple[Box, list[Box]]:
        """Split :meth:`update_box` into an inner box and the rim touching the halo.

        The inner box needs no halo values and can be updated while the halo
        exchange is in flight; the rim boxes are updated after it completes.
        """
        i0, i1, j0, j1 = self.update_box()
        lx, ly = self.local_shape
        h = self.halo
        ii0, ii1 = min(max(i0, h + 1), i1), max(min(i1, h + lx - 1), i0)
        jj0, jj1 = min(max(j0, h + 1), j1), max(min(j1, h + ly - 1), j0)
        if ii0 >= ii1 or jj0 >= jj1:
            return (i0, i0, j0, j0), [b for b in [(i0, i1, j0, j1)] if _size(b)]
        rim = [(i0, ii0, j0, j1), (ii1, i1, j0, j1), (ii0, ii1, j0, jj0), (ii0, ii1, jj1, j1)]
        return (ii0, ii1, jj0, jj1), [b for b in rim if _size(b)]


    def growth(self) -> tuple[int, int, int, int]:
        """Per side (i0, i1, j0, j1): 1 where a neighbour's halo lies, 0 at the global edge.

        A temporal block grows its update box into the halo on the sides marked 1.
        """
        sides = []
        for n, off, size in zip(self.global_shape, self.offset, self.local_shape):
            sides += [int(off > 0), int(off + size < n)]
        return sides[0], sides[1], sides[2], sides[3]


def _size(box: Box) -> int:
    i0, i1, j0, j1 = box
    return max(i1 - i0, 0) * max(j1 - j0, 0)


def box_size(box: Box) -> int:
    """Number of points in a box."""
    return _size(box)


def check_grid_fits(global_shape: tuple[int, int], dims: tuple[int, int]) -> None:
    """Refuse a grid with fewer points than ranks along an axis."""
    for axis, (n, p) in enumerate(zip(global_shape, dims)):
        if n < p:
            raise ConfigError(
                f"--grid {global_shape[0]} {global_shape[1]} is smaller than the "
                f"{dims[0]}x{dims[1]} rank grid along {'xy'[axis]} ({n} < {p})")


def check_block_depth(block: Block, k: int) -> None:
    """Refuse a temporal block deeper than a neighbour's block (its halo would not fit)."""
    for axis, (p, n) in enumerate(zip(block.dims, block.global_shape)):
        thinnest = n // p
        if p > 1 and k > thinnest:
            raise ConfigError(f"--time-block {k} needs at least {k} points per rank along "
                              f"{'xy'[axis]}, but the {block.dims[0]}x{block.dims[1]} rank "
                              f"grid leaves {thinnest}")
