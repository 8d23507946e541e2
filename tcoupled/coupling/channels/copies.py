"""The one place where copies of field data are made and counted.

Every copy of field data between the solver's step and the trainer's tensor goes
through a :class:`CopyLedger`: either the ledger makes it (:meth:`CopyLedger.copy`,
:meth:`CopyLedger.to_host`) or the code that hands bytes to a library that copies
them (an MPI send, an HDF5 write) declares them at that call (:meth:`CopyLedger.count`).
A rank has one ledger (``ChannelContext.ledger``); each channel endpoint keeps a child
ledger, so its own count and the rank's total agree by construction.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tcoupled.coupling.channels.device import is_device_array
from tcoupled.coupling.channels.device import to_host as _to_host


def nbytes_of(array: Any) -> int:
    """Bytes of ``array`` (NumPy, CuPy, torch or anything with ``nbytes``)."""
    if hasattr(array, "nbytes"):
        return int(array.nbytes)
    return int(array.numel() * array.element_size())  # torch


class CopyLedger:
    """Makes and counts copies of field data; ``bytes`` is the total, ``by_kind`` per kind.

    Parameters
    ----------
    parent : CopyLedger, optional
        A ledger that every count is also added to (the rank's total).
    """

    def __init__(self, parent: CopyLedger | None = None) -> None:
        self.parent = parent
        self.bytes = 0
        self.by_kind: dict[str, int] = defaultdict(int)

    def count(self, nbytes: int, kind: str) -> None:
        """Count ``nbytes`` copied by a library call made right here (MPI, HDF5, a kernel)."""
        self.bytes += int(nbytes)
        self.by_kind[kind] += int(nbytes)
        if self.parent is not None:
            self.parent.count(nbytes, kind)

    def copy(self, dst: Any, src: Any, kind: str) -> None:
        """``dst[...] = src``, counted."""
        dst[...] = src
        self.count(nbytes_of(src), kind)

    def to_host(self, array: Any, kind: str) -> Any:
        """A host copy of a device array (counted), or ``array`` itself (nothing copied)."""
        if not is_device_array(array):
            return array
        host = _to_host(array)
        self.count(host.nbytes, kind)
        return host

    def child(self) -> CopyLedger:
        """A ledger whose counts also go to this one."""
        return CopyLedger(self)

    def as_dict(self) -> dict[str, int]:
        """Bytes per kind of copy."""
        return dict(self.by_kind)


def address(array: Any) -> int:
    """Address of the first element of ``array`` (NumPy, CUDA array interface, torch)."""
    if hasattr(array, "data_ptr"):
        return int(array.data_ptr())
    if hasattr(array, "__cuda_array_interface__"):
        return int(array.__cuda_array_interface__["data"][0])
    return int(array.__array_interface__["data"][0])
