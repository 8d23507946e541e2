"""Host-memory fakes that model the GPU semantics the tcoupled GPU paths depend on.

Each fake models the behaviour that matters, not what the code expects:

* :class:`FakeCupy` -- arrays from ``zeros``/``empty`` are *sub-allocations* of one
  pool allocation (as CuPy's memory pool hands them out), while ``cuda.Memory`` is an
  allocation of its own; arrays refuse implicit conversion to NumPy (``__array__``
  raises ``TypeError`` as CuPy's do).
* :class:`FakeRuntime` -- ``ipcGetMemHandle(ptr)`` names the *allocation* containing
  ``ptr`` and ``ipcOpenMemHandle`` returns that allocation's *base* (what CUDA does: a
  handle of a pooled array opens at the pool block's start, cupy issue #9436).
* :class:`FakeStream` / :class:`FakeEvent` -- a launch returns at once and the work
  finishes later on a device clock; an event completes when the stream reaches it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

ALIGN = 512  # CuPy rounds pool sub-allocations up to 512 bytes


class FakeRuntime:
    """CUDA IPC stand-in: handles name allocations, not pointers."""

    def __init__(self) -> None:
        self.allocations: dict[int, np.ndarray] = {}   # base pointer -> backing bytes
        self.opened: list[int] = []
        self.closed: list[int] = []

    def register(self, buffer: np.ndarray) -> int:
        base = buffer.ctypes.data
        self.allocations[base] = buffer
        return base

    def _base_of(self, pointer: int) -> int:
        for base, buffer in self.allocations.items():
            if base <= pointer < base + buffer.nbytes:
                return base
        raise RuntimeError(f"cudaErrorInvalidValue: {pointer:#x} is not device memory")

    def ipcGetMemHandle(self, pointer: int) -> bytes:  # noqa: N802 - CUDA's name
        return b"ipc:%d" % self._base_of(pointer)

    def ipcOpenMemHandle(self, handle: bytes, flags: int = 1) -> int:  # noqa: N802
        base = int(handle.split(b":")[1])
        self.opened.append(base)
        return base                                    # the allocation's base, always

    def ipcCloseMemHandle(self, pointer: int) -> None:  # noqa: N802
        self.closed.append(pointer)

    def getDeviceCount(self) -> int:  # noqa: N802
        return 1


class Memory:
    """``cupy.cuda.Memory``: one allocation of its own."""

    def __init__(self, size: int) -> None:
        self.buffer = np.zeros(max(size, 1), dtype=np.uint8)
        self.ptr = FakeCupy.cuda.runtime.register(self.buffer)
        self.size = size


class MemoryPointer:
    """``cupy.cuda.MemoryPointer``: an allocation and an offset into it."""

    def __init__(self, mem: Memory, offset: int) -> None:
        self.mem, self.offset = mem, offset
        self.ptr = mem.ptr + offset


class FakeArray:
    """A device array: a view of bytes in an allocation, no implicit host conversion."""

    def __init__(self, host: np.ndarray, mem: Memory | None = None) -> None:
        self.host, self.mem = host, mem
        offset = host.ctypes.data - (mem.ptr if mem is not None else host.ctypes.data)
        self.data = MemoryPointer(mem, offset) if mem is not None else None

    shape = property(lambda self: self.host.shape)
    dtype = property(lambda self: self.host.dtype)
    strides = property(lambda self: self.host.strides)
    nbytes = property(lambda self: self.host.nbytes)

    @property
    def flags(self) -> Any:
        return self.host.flags

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __getitem__(self, index: Any) -> FakeArray:
        return FakeArray(self.host[index], self.mem)

    def __setitem__(self, index: Any, value: Any) -> None:
        self.host[index] = value.host if isinstance(value, FakeArray) else value

    def get(self) -> np.ndarray:
        return self.host.copy()

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.host.shape, "typestr": self.host.dtype.str,
                "data": (self.host.ctypes.data, False), "strides": self.host.strides,
                "version": 3}


class FakeEvent:
    """``cupy.cuda.Event``: completes when the stream reaches it."""

    def __init__(self) -> None:
        self.when: float | None = None

    def record(self, stream: FakeStream | None = None) -> None:
        stream = stream or FakeCupy.cuda.stream
        self.when = max(time.perf_counter(), stream.busy_until)
        stream.busy_until = self.when

    @property
    def done(self) -> bool:
        return self.when is not None and time.perf_counter() >= self.when

    def synchronize(self) -> None:
        while not self.done:
            time.sleep(max(0.0, (self.when or 0.0) - time.perf_counter()))


class FakeStream:
    """An in-order device queue: a launch returns at once, the work ends later."""

    def __init__(self) -> None:
        self.busy_until = 0.0
        self.syncs = 0

    def launch(self, seconds: float) -> None:
        self.busy_until = max(time.perf_counter(), self.busy_until) + seconds

    def synchronize(self) -> None:
        self.syncs += 1
        delay = self.busy_until - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def get_elapsed_time(start: FakeEvent, stop: FakeEvent) -> float:
    """Milliseconds between two completed events (``cupy.cuda.get_elapsed_time``)."""
    if not (start.done and stop.done):
        raise RuntimeError("cudaErrorNotReady")
    return (stop.when - start.when) * 1e3


class _Cuda:
    runtime = FakeRuntime()
    stream = FakeStream()
    Memory = Memory
    MemoryPointer = MemoryPointer
    Event = FakeEvent
    get_elapsed_time = staticmethod(get_elapsed_time)

    @staticmethod
    def get_current_stream() -> FakeStream:
        return _Cuda.stream


class FakeCupy:
    """A CuPy stand-in whose ``zeros``/``empty`` sub-allocate from one pool block."""

    __name__ = "fake_cupy"
    cuda = _Cuda
    ndarray_type = FakeArray

    _pool: Memory | None = None
    _used = 0

    @classmethod
    def reset(cls, pool_bytes: int = 1 << 20, already_used: int = 4096) -> None:
        """A fresh device: new runtime, stream and pool (with earlier arrays in it)."""
        cls.cuda.runtime = FakeRuntime()
        cls.cuda.stream = FakeStream()
        cls._pool = Memory(pool_bytes)
        cls._used = already_used

    @classmethod
    def zeros(cls, shape: Any, dtype: Any = "float64") -> FakeArray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        start = cls._used
        cls._used += -(-nbytes // ALIGN) * ALIGN
        raw = cls._pool.buffer[start:start + nbytes]
        raw[...] = 0
        return FakeArray(raw.view(dtype).reshape(shape), cls._pool)

    empty = zeros

    @staticmethod
    def ndarray(shape: Any, dtype: Any = "float64", memptr: MemoryPointer | None = None
                ) -> FakeArray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = memptr.mem.buffer[memptr.offset:memptr.offset + nbytes]
        return FakeArray(raw.view(dtype).reshape(shape), memptr.mem)


def view_pointer(pointer: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """NumPy view of ``pointer`` (what a device view of an opened handle reads)."""
    import ctypes

    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(pointer)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
