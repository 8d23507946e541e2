"""A ring of frames mapped twice back to back, so every window of frames is one array.

The slots of a link are windows of one ring: the window of cycle ``c`` starts at
frame ``c * steps`` and holds ``steps + carried`` frames, so its first ``carried``
frames *are* the last frames of the previous window -- the levels a cycle starts
from are where the solver wrote them, and nothing is carried over by a copy. A
window that runs past the end of the ring continues in the second mapping of the
same memory, so it is still one strided array (and one tensor). ``slots`` windows
in flight need ``slots * steps + carried`` frames. Each frame starts on a page
boundary (the second mapping must start on one). Linux only (``MAP_FIXED``);
:func:`ring_supported` says whether it works here, and the channels fall back to
separate slots with a counted carry copy when it does not.
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import os
import tempfile
import uuid
from typing import Any

import numpy as np

MAP_FIXED = 0x10  # Linux
PROT_NONE = 0
SHM_DIR = "/dev/shm"


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_long]
    lib.munmap.restype = ctypes.c_int
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return lib


def ring_frames(frames: int, carried: int, slots: int) -> int:
    """Frames of a ring holding ``slots`` windows of ``frames`` frames sharing ``carried``."""
    return slots * (frames - carried) + carried


def _double_map(fd: int, length: int) -> int:
    """Map ``length`` bytes of ``fd`` twice, back to back; return the address."""
    lib = _libc()
    failed = ctypes.c_void_p(-1).value
    base = lib.mmap(None, 2 * length, PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, failed):
        raise OSError(ctypes.get_errno(), "ring: cannot reserve address space")
    for half in (0, length):
        got = lib.mmap(base + half, length, mmap.PROT_READ | mmap.PROT_WRITE,
                       mmap.MAP_SHARED | MAP_FIXED, fd, 0)
        if got != base + half:
            lib.munmap(base, 2 * length)
            raise OSError(ctypes.get_errno(), "ring: cannot map the ring twice")
    return base


class FrameRing:
    """``count`` padded frames of ``spec`` in the memory of ``fd``, mapped twice."""

    def __init__(self, spec: Any, count: int, fd: int, create: bool) -> None:
        self.spec, self.count = spec, count
        raw = math.prod(spec.padded_shape[1:]) * spec.itemsize
        self.frame_bytes = -(-raw // mmap.PAGESIZE) * mmap.PAGESIZE
        self.length = count * self.frame_bytes
        if create:
            os.ftruncate(fd, self.length)
        self.base = _double_map(fd, self.length)
        buffer = (ctypes.c_char * (2 * self.length)).from_address(self.base)
        self._flat = np.frombuffer(buffer, dtype=spec.dtype)

    def window(self, first: int, frames: int) -> np.ndarray:
        """Frames ``first .. first + frames - 1`` (mod ``count``), padded, as one array."""
        if frames > self.count:
            raise ValueError(f"ring of {self.count} frames cannot hold a window of {frames}")
        start = (first % self.count) * self.frame_bytes // self.spec.itemsize
        _, px, py = self.spec.padded_shape
        item = self.spec.itemsize
        return np.lib.stride_tricks.as_strided(self._flat[start:], shape=(frames, px, py),
                                               strides=(self.frame_bytes, py * item, item))

    def offset(self, address: int) -> int | None:
        """Place of ``address`` in the ring's memory (the same for both mappings)."""
        if not self.base <= address < self.base + 2 * self.length:
            return None
        return (address - self.base) % self.length

    def close(self) -> None:
        """Unmap the ring; every array over it must be gone."""
        self._flat = None
        if self.base:
            _libc().munmap(self.base, 2 * self.length)
            self.base = 0


def anonymous_ring(spec: Any, count: int) -> FrameRing:
    """A ring in this process only (``memfd``)."""
    fd = os.memfd_create("tcoupled-ring")
    try:
        return FrameRing(spec, count, fd, create=True)
    finally:
        os.close(fd)


def shared_ring_file() -> str:
    """A new private file name for a ring shared on this node (``/dev/shm``)."""
    folder = SHM_DIR if os.path.isdir(SHM_DIR) else tempfile.gettempdir()
    return os.path.join(folder, f"tcoupled-ring-{os.getpid()}-{uuid.uuid4().hex[:12]}")


def open_shared_ring(spec: Any, count: int, path: str, create: bool) -> FrameRing:
    """Map the ring in ``path`` (created with mode 0600 when ``create``)."""
    flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        return FrameRing(spec, count, fd, create)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def ring_supported() -> bool:
    """Whether a double-mapped ring works on this machine (tried once on a page)."""
    from tcoupled.coupling.channels.base import SlotSpec

    try:
        ring = anonymous_ring(SlotSpec(1, (1, 1), "float64"), 1)
    except (OSError, AttributeError, ValueError):
        return False
    window = ring.window(0, 1)
    window[0, 0, 0] = 1.5
    seen = float(np.frombuffer((ctypes.c_char * 8).from_address(ring.base + ring.length),
                               dtype=np.float64)[0])
    del window
    ring.close()
    return seen == 1.5


class RingSlots:
    """The slots of one link as windows of a :class:`FrameRing` (sender or receiver side)."""

    def __init__(self, ring: FrameRing, spec: Any) -> None:
        self.ring, self.spec = ring, spec
        self.steps = spec.frames - spec.carried

    @staticmethod
    def usable(spec: Any, xp: Any) -> bool:
        """Whether ``spec``'s slots can be ring windows: host frames with a halo, ring works."""
        return spec.pad > 0 and getattr(xp, "__name__", "") == "numpy" and ring_supported()

    @classmethod
    def count(cls, spec: Any, slots: int) -> int:
        """Frames of the ring for ``slots`` windows in flight."""
        return ring_frames(spec.frames, spec.carried, slots)

    def window(self, cycle: int) -> np.ndarray:
        """The padded frames of ``cycle``."""
        return self.ring.window(cycle * self.steps, self.spec.frames)

    def same(self, a: Any, b: Any) -> bool:
        """Whether ``a`` and ``b`` start at the same bytes of the ring (either mapping)."""
        from tcoupled.coupling.channels.copies import address

        where = self.ring.offset(address(a))
        return where is not None and where == self.ring.offset(address(b))

    def close(self) -> None:
        """Unmap the ring."""
        self.ring.close()
