"""``file``: HDF5 staging, one file per sim rank and cycle, written atomically.

The sender writes ``sim{rank}_cycle{c}.h5`` under a temporary name and
renames it, then announces it; each receiver reads it into its own buffer.
A file is deleted once every receiver has released its cycle. Bytes written
and bytes read are both counted as copies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.coupling.channels.base import Channel, ChannelContext, Receiver, Sender, SlotSpec
from tcoupled.coupling.channels.device import as_tensor, is_device_array, synchronize
from tcoupled.runtime.errors import TcoupledError


def staging_file(ctx: ChannelContext, sim_rank: int, cycle: int) -> Path:
    """Path of the staging file of world rank ``sim_rank`` for ``cycle``."""
    return Path(ctx.staging_dir) / f"sim{sim_rank}_cycle{cycle}.h5"


class FileSender(Sender):
    """Writes each published slot to its own HDF5 file."""

    def __init__(self, ctx: ChannelContext, feeds: tuple[int, ...], spec: SlotSpec) -> None:
        super().__init__(ctx, feeds, spec)
        self.buffers = [spec.zeros(ctx.xp) for _ in range(ctx.slots)]
        self.rank = ctx.world.Get_rank()

    def _publish(self, slot: int, cycle: int) -> None:
        import h5py

        from tcoupled.runtime.store import atomic_path

        synchronize(self.ctx.xp)
        data = self.ledger.to_host(self.buffers[slot], "staging")
        (_, lx, ly), p = self.spec.shape, self.spec.pad
        with atomic_path(staging_file(self.ctx, self.rank, cycle)) as tmp, \
                h5py.File(tmp, "w") as h5:
            frames = h5.create_dataset("frames", shape=self.spec.shape, dtype=self.spec.dtype)
            frames.write_direct(np.ascontiguousarray(data) if p == 0 else data,
                                source_sel=np.s_[:, p:p + lx, p:p + ly])
            h5.attrs["cycle"] = cycle
            h5.attrs["sim_rank"] = self.rank
        self.ledger.count(self.spec.nbytes, "file write")

    def _reuse(self, slot: int, old_cycle: int) -> None:
        staging_file(self.ctx, self.rank, old_cycle).unlink(missing_ok=True)

    def _free(self) -> None:
        for cycle in range(max(0, self.published - self.ctx.slots), self.published):
            staging_file(self.ctx, self.rank, cycle).unlink(missing_ok=True)


class FileReceiver(Receiver):
    """Reads each announced file into one of its own buffers."""

    def __init__(self, ctx: ChannelContext, source: int, spec: SlotSpec, cycles: int) -> None:
        super().__init__(ctx, source, spec, cycles)
        self.buffers = [np.empty(spec.shape, dtype=spec.dtype) for _ in range(ctx.slots)]
        self.device = is_device_array(ctx.xp.zeros(1))

    def _fetch(self, slot: int, cycle: int) -> Any:
        import h5py

        path = staging_file(self.ctx, self.source, cycle)
        with h5py.File(path, "r") as h5:
            frames = h5["frames"]
            if frames.shape != self.spec.shape or int(h5.attrs["cycle"]) != cycle:
                raise TcoupledError(f"file channel: {path} holds {frames.shape} of cycle "
                                    f"{h5.attrs['cycle']}, expected {self.spec.shape}/{cycle}")
            frames.read_direct(self.buffers[slot])
        self.ledger.count(self.spec.nbytes, "file read")
        tensor = as_tensor(self.buffers[slot])
        if self.device:
            self.ledger.count(self.spec.nbytes, "staging")
            tensor = tensor.to("cuda")
        return tensor


class FileChannel(Channel):
    """HDF5 staging channel; needs a folder every rank can see."""

    name = "file"

    def __init__(self, ctx: ChannelContext, spec: SlotSpec | None) -> None:
        super().__init__(ctx, spec)
        if ctx.staging_dir is None:
            raise TcoupledError("file channel needs a staging folder")
        Path(ctx.staging_dir).mkdir(parents=True, exist_ok=True)
        import h5py  # noqa: F401 - pay the import (~0.1 s) here, not in the first timed handoff

    def sender(self, feeds: tuple[int, ...]) -> FileSender:
        """Sender writing one file per cycle."""
        return FileSender(self.ctx, feeds, self.spec)

    def receiver(self, source: int, spec: SlotSpec, cycles: int) -> FileReceiver:
        """Receiver reading the files of ``source``."""
        return FileReceiver(self.ctx, source, spec, cycles)
