"""Halo exchange as a plan object: built once, ``start()``/``wait()`` every step.

``start``/``wait`` move the one-point face next to the owned points (all four sides
at once, overlapped with the inner update). ``exchange_deep(u, depth)`` fills
``depth`` layers for a temporal block in two phases, y then x: the x messages carry
the y halo just received, so the corner regions a block of steps reads are filled
too (a five-point stencil applied several times reaches diagonal neighbours).

Host arrays (NumPy) are exchanged in place with MPI subarray datatypes, so no
packing copy is made. Device arrays (CuPy) are packed into contiguous device
buffers; with a CUDA-aware MPI they are sent as they are, otherwise they are
staged through host buffers. The stream is synchronised before any MPI call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcoupled.sim.decomposition import Block

# (axis, direction): message goes to the neighbour at coords + direction.
_DIRECTIONS = ((0, -1), (0, +1), (1, -1), (1, +1))


def _face_slices(block: Block, axis: int, direction: int, halo: bool,
                 depth: int = 1, corners: bool = False) -> tuple[slice, slice]:
    """Local padded slices of the ``depth`` layers sent towards ``direction`` (or its halo).

    The face spans the owned points across it; with ``corners``, an x face (axis 0)
    spans ``depth`` layers of the y halo too, which phase y of
    :meth:`HaloExchange.exchange_deep` has filled.
    """
    lx, ly = block.local_shape
    h = block.halo
    n = (lx, ly)[axis]
    if halo:
        start = h + n if direction > 0 else h - depth
    else:
        start = h + n - depth if direction > 0 else h
    line = slice(start, start + depth)
    across = (ly, lx)[axis]
    wide = depth if corners and axis == 0 else 0
    inner = slice(h - wide, h + across + wide)
    return (line, inner) if axis == 0 else (inner, line)


class HaloExchange:
    """Non-blocking exchange of the one-point halo of a block-decomposed 2D array.

    Parameters
    ----------
    cart_comm : MPI Cartesian communicator (2D, non-periodic).
    block : the :class:`~tcoupled.sim.decomposition.Block` this rank owns.
    dtype : element type of the arrays exchanged.
    xp : array module of the arrays (``numpy`` or ``cupy``).
    cuda_aware : whether MPI can read device memory directly.
    """

    def __init__(self, cart_comm: Any, block: Block, dtype: Any, xp: Any = np,
                 cuda_aware: bool = False) -> None:
        from tcoupled.runtime.mpienv import init_mpi

        self.MPI = init_mpi()
        self.comm = cart_comm
        self.block = block
        self.xp = xp
        self.dtype = np.dtype(dtype)
        self.device = xp is not np
        self.cuda_aware = cuda_aware
        self.neighbours = {}
        for axis in (0, 1):
            low, high = cart_comm.Shift(axis, 1)
            self.neighbours[(axis, -1)], self.neighbours[(axis, +1)] = low, high
        self._requests: list[Any] = []
        self._pending: Any = None
        self._types = self._build_datatypes() if not self.device else {}
        self._deep: dict = {}
        self._buffers = self._build_buffers() if self.device else {}

    def _build_datatypes(self) -> dict:
        base = self.MPI._typedict[self.dtype.char]
        shape = self.block.padded_shape
        types = {}
        for axis, direction in _DIRECTIONS:
            for halo in (False, True):
                sl = _face_slices(self.block, axis, direction, halo)
                starts = [s.start for s in sl]
                sizes = [s.stop - s.start for s in sl]
                dt = base.Create_subarray(list(shape), sizes, starts).Commit()
                types[(axis, direction, halo)] = dt
        return types

    def _build_buffers(self) -> dict:
        buffers = {}
        for axis, direction in _DIRECTIONS:
            rows, cols = _face_slices(self.block, axis, direction, False)
            n = (rows.stop - rows.start) * (cols.stop - cols.start)
            for kind in ("send", "recv"):
                device = self.xp.empty(n, dtype=self.dtype)
                host = None if self.cuda_aware else np.empty(n, dtype=self.dtype)
                buffers[(axis, direction, kind)] = (device, host)
        return buffers

    def start(self, u: Any) -> None:
        """Post the receives and sends of ``u``'s halo; return immediately."""
        if self._pending is not None:
            raise RuntimeError("halo exchange already in flight; call wait() first")
        self._pending = u
        if self.device:
            self._start_device(u)
            return
        reqs = []
        for axis, direction in _DIRECTIONS:
            src = self.neighbours[(axis, direction)]
            recv_type = self._types[(axis, direction, True)]
            tag = 2 * axis + (direction < 0)
            reqs.append(self.comm.Irecv([u, 1, recv_type], source=src, tag=tag))
        for axis, direction in _DIRECTIONS:
            dest = self.neighbours[(axis, direction)]
            send_type = self._types[(axis, direction, False)]
            tag = 2 * axis + (direction > 0)
            reqs.append(self.comm.Isend([u, 1, send_type], dest=dest, tag=tag))
        self._requests = reqs

    def _start_device(self, u: Any) -> None:
        reqs = []
        for axis, direction in _DIRECTIONS:
            device, host = self._buffers[(axis, direction, "recv")]
            src = self.neighbours[(axis, direction)]
            buf = device if self.cuda_aware else host
            reqs.append(self.comm.Irecv(buf, source=src, tag=2 * axis + (direction < 0)))
        for axis, direction in _DIRECTIONS:
            device, host = self._buffers[(axis, direction, "send")]
            device[...] = u[_face_slices(self.block, axis, direction, False)].reshape(-1)
        self.xp.cuda.get_current_stream().synchronize()
        for axis, direction in _DIRECTIONS:
            device, host = self._buffers[(axis, direction, "send")]
            buf = device
            if not self.cuda_aware:
                device.get(out=host)
                buf = host
            dest = self.neighbours[(axis, direction)]
            reqs.append(self.comm.Isend(buf, dest=dest, tag=2 * axis + (direction > 0)))
        self._requests = reqs

    def wait(self) -> None:
        """Complete the exchange started by :meth:`start`; the halo of ``u`` is then valid."""
        if self._pending is None:
            return
        self.MPI.Request.Waitall(self._requests)
        if self.device:
            self._unpack_device(self._pending)
        self._requests, self._pending = [], None

    def _unpack_device(self, u: Any) -> None:
        for axis, direction in _DIRECTIONS:
            if self.neighbours[(axis, direction)] == self.MPI.PROC_NULL:
                continue
            device, host = self._buffers[(axis, direction, "recv")]
            if host is not None:
                device.set(host)
            target = _face_slices(self.block, axis, direction, True)
            u[target] = device.reshape(u[target].shape)

    def exchange(self, u: Any) -> None:
        """Blocking exchange: :meth:`start` then :meth:`wait`."""
        self.start(u)
        self.wait()

    def exchange_deep(self, fields: list[tuple[Any, int]]) -> None:
        """Blocking exchange of ``depth`` halo layers of each ``(array, depth)`` (corners too).

        All arrays travel in the same two rounds (y, then x), so a temporal block pays
        two message latencies per neighbour pair, whatever the number of arrays.

        Raises
        ------
        ValueError
            If a depth exceeds the arrays' halo (or these are device arrays: deep
            halos are host-only).
        """
        fields = [(u, d) for u, d in fields if d >= 1]
        for _, depth in fields:
            if depth > self.block.halo or self.device:
                raise ValueError(f"halo depth {depth} needs host arrays with a halo of at "
                                 f"least {depth} (this block has {self.block.halo})")
        for axis in (1, 0):
            reqs = []
            for index, (u, depth) in enumerate(fields):
                for direction in (-1, +1):
                    recv = self._deep_type(axis, direction, True, depth)
                    reqs.append(self.comm.Irecv(
                        [u, 1, recv], source=self.neighbours[(axis, direction)],
                        tag=8 + 4 * index + 2 * axis + (direction < 0)))
            for index, (u, depth) in enumerate(fields):
                for direction in (-1, +1):
                    send = self._deep_type(axis, direction, False, depth)
                    reqs.append(self.comm.Isend(
                        [u, 1, send], dest=self.neighbours[(axis, direction)],
                        tag=8 + 4 * index + 2 * axis + (direction > 0)))
            self.MPI.Request.Waitall(reqs)

    def _deep_type(self, axis: int, direction: int, halo: bool, depth: int) -> Any:
        key = (axis, direction, halo, depth)
        if key not in self._deep:
            sl = _face_slices(self.block, axis, direction, halo, depth, corners=True)
            base = self.MPI._typedict[self.dtype.char]
            self._deep[key] = base.Create_subarray(
                list(self.block.padded_shape), [s.stop - s.start for s in sl],
                [s.start for s in sl]).Commit()
        return self._deep[key]

    def close(self) -> None:
        """Free the datatypes; the plan cannot be used afterwards."""
        self.wait()
        for dt in [*self._types.values(), *self._deep.values()]:
            dt.Free()
        self._types, self._deep = {}, {}

    def __enter__(self) -> HaloExchange:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
