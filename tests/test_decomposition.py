"""Decomposition arithmetic, serially (no MPI)."""

import numpy as np
import pytest

from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.decomposition import Block, block_offsets, block_sizes, box_size, check_grid_fits


@pytest.mark.parametrize("n,parts", [(10, 3), (129, 4), (7, 7), (1000, 6), (5, 1)])
def test_blocks_cover_the_axis_evenly(n, parts):
    sizes = block_sizes(n, parts)
    assert sum(sizes) == n
    assert max(sizes) - min(sizes) <= 1
    offsets = block_offsets(n, parts)
    assert offsets[0] == 0
    assert all(o + s == nxt for o, s, nxt in zip(offsets, sizes, offsets[1:]))


def test_too_many_parts_is_refused():
    with pytest.raises(ConfigError, match="cannot be split"):
        block_sizes(3, 5)
    with pytest.raises(ConfigError, match=r"--grid 3 40 is smaller than the 5x1 rank grid"):
        check_grid_fits((3, 40), (5, 1))


@pytest.mark.parametrize("shape,dims", [((37, 53), (2, 2)), ((10, 11), (3, 2)),
                                        ((5, 5), (2, 3)), ((64, 3), (4, 1))])
def test_blocks_tile_the_global_grid_and_updates_skip_the_boundary(shape, dims):
    owner = np.zeros(shape, int)
    updated = np.zeros(shape, int)
    for cx in range(dims[0]):
        for cy in range(dims[1]):
            block = Block(shape, dims, (cx, cy))
            owner[block.global_slices()] += 1
            inner, rim = block.split_update()
            boxes = [inner, *rim]
            assert sum(box_size(b) for b in boxes) == box_size(block.update_box())
            (ox, oy) = block.offset
            lx, ly = block.local_shape
            for i0, i1, j0, j1 in boxes:
                assert 1 <= i0 and i1 <= lx + 1 and 1 <= j0 and j1 <= ly + 1
                updated[ox + i0 - 1:ox + i1 - 1, oy + j0 - 1:oy + j1 - 1] += 1
            ii0, ii1, jj0, jj1 = inner
            if box_size(inner):  # the inner box never touches the halo
                assert ii0 >= 2 and ii1 <= lx and jj0 >= 2 and jj1 <= ly
    assert (owner == 1).all()
    expected = np.zeros(shape, int)
    expected[1:-1, 1:-1] = 1
    assert (updated == expected).all()
