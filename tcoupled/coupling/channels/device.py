"""Device-agnostic helpers for channels: host staging, stream sync, DLPack.

Only protocols are used (``__dlpack__``, ``__cuda_array_interface__``, a
``get()`` method), so the GPU paths run on CPU against host-memory fakes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_device_array(array: Any) -> bool:
    """Whether ``array`` lives in GPU memory (exposes the CUDA array interface)."""
    return hasattr(array, "__cuda_array_interface__") and not isinstance(array, np.ndarray)


def synchronize(xp: Any) -> None:
    """Wait for the current stream of array module ``xp`` (no-op for NumPy).

    Called before an MPI call or a handoff so that kernels writing a slot
    have finished when another process or library reads it.
    """
    cuda = getattr(xp, "cuda", None)
    if cuda is not None and hasattr(cuda, "get_current_stream"):
        cuda.get_current_stream().synchronize()


def _current_torch_stream(tensor: Any) -> Any:
    import torch

    return torch.cuda.current_stream(tensor.device)


def wait_for_readers(tensor: Any) -> None:
    """Wait until the kernels queued on ``tensor``'s current stream have finished.

    Called before a receiver releases a device slot: the producer may overwrite it as
    soon as the release arrives, so every kernel that reads it must be done. A host
    tensor needs nothing.
    """
    if getattr(tensor, "is_cuda", False):
        _current_torch_stream(tensor).synchronize()


def to_host(array: Any) -> np.ndarray:
    """Return a host copy of a device array (``array.get()``), or ``array`` itself."""
    if is_device_array(array):
        return array.get()
    return np.asarray(array)


def as_tensor(array: Any) -> Any:
    """View ``array`` as a torch tensor without copying (DLPack, else CUDA interface)."""
    import torch

    if hasattr(array, "__dlpack__"):
        return torch.from_dlpack(array)
    if hasattr(array, "__cuda_array_interface__"):
        return torch.as_tensor(array, device="cuda")
    raise TypeError(f"cannot view {type(array).__name__} as a tensor without a copy")


class CudaArrayView:
    """A device pointer with shape and dtype, exposed as ``__cuda_array_interface__``.

    Wraps memory opened from a CUDA IPC handle so torch (or CuPy) can view it.
    """

    def __init__(self, pointer: int, shape: tuple[int, ...], dtype: str,
                 owner: Any = None) -> None:
        self.pointer, self.shape, self.dtype = int(pointer), tuple(shape), np.dtype(dtype)
        self.owner = owner  # keeps the mapping alive while the view exists

    @property
    def __cuda_array_interface__(self) -> dict:
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.pointer, False),
                "strides": None, "version": 3}
