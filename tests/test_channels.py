"""Channels: one interface, zero copy where promised, the same bytes everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tcoupled.coupling.channels import CHANNELS, ZERO_COPY, ChannelContext, SlotSpec, channel_class
from tcoupled.coupling.channels.device import CudaArrayView, as_tensor, is_device_array, to_host
from tcoupled.runtime.errors import ConfigError, TcoupledError

from mpitools import check, python_mpi

SPEC = SlotSpec(4, (6, 5), "float64")


def _inproc():
    ctx = ChannelContext()
    channel = channel_class("inproc")(ctx, SPEC)
    sender = channel.sender(())
    return ctx, sender, channel.receiver(0, SPEC, 3)


def test_registry_names_and_unknown_channel():
    assert set(CHANNELS) == {"inproc", "shm", "mpi", "file"}
    assert set(ZERO_COPY) == {"inproc", "shm"}
    with pytest.raises(ConfigError, match="'carrier-pigeon'"):
        channel_class("carrier-pigeon")


def test_slot_spec_sizes():
    assert SPEC.shape == (4, 6, 5)
    assert SPEC.nbytes == 4 * 6 * 5 * 8


def test_inproc_tensor_shares_memory_with_solver_buffer():
    _, sender, receiver = _inproc()
    slot = sender.acquire()
    slot[...] = np.arange(slot.size, dtype=slot.dtype).reshape(slot.shape)
    sender.publish()
    tensor = receiver.receive()
    assert tensor.data_ptr() == slot.ctypes.data
    assert tensor.dtype.is_floating_point and tensor.element_size() == 8
    tensor[0, 1, 2] = -5.0                      # trainer-side write, seen by the solver
    assert slot[0, 1, 2] == -5.0
    slot[3, 4, 4] = 42.0                        # solver-side write, seen by the trainer
    assert float(tensor[3, 4, 4]) == 42.0
    receiver.release()
    assert sender.bytes_copied == 0 and receiver.bytes_copied == 0


def test_inproc_double_buffer_and_protocol_errors():
    _, sender, receiver = _inproc()
    first = sender.acquire()
    sender.publish()
    second = sender.acquire()
    sender.publish()
    assert first.ctypes.data != second.ctypes.data
    with pytest.raises(TcoupledError, match="still held"):
        sender.acquire()                        # both slots unreleased: would deadlock
    receiver.receive()
    with pytest.raises(TcoupledError, match="before release"):
        receiver.receive()
    receiver.release()
    assert sender.acquire().ctypes.data == first.ctypes.data


def test_inproc_receive_unpublished_raises():
    _, _, receiver = _inproc()
    with pytest.raises(TcoupledError, match="never published"):
        receiver.receive()


class _FakeDeviceArray:
    def __init__(self, array):
        self.array = array

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.array.shape, "typestr": self.array.dtype.str,
                "data": (self.array.ctypes.data, False), "strides": None, "version": 3}

    def get(self):
        return self.array.copy()


def test_device_helpers_through_fakes():
    host = np.ones((2, 3))
    fake = _FakeDeviceArray(host)
    assert is_device_array(fake) and not is_device_array(host)
    staged = to_host(fake)
    assert np.array_equal(staged, host) and staged.ctypes.data != host.ctypes.data
    view = CudaArrayView(1234, (2, 3), "float32")
    cai = view.__cuda_array_interface__
    assert cai["data"] == (1234, False) and cai["shape"] == (2, 3) and cai["typestr"] == "<f4"
    assert as_tensor(host).data_ptr() == host.ctypes.data


class _FakeRuntime:
    """CUDA IPC stand-in: a handle is the pointer itself."""

    opened: list = []

    def ipcGetMemHandle(self, pointer):  # noqa: N802 - CuPy's name
        return ("handle", pointer)

    def ipcOpenMemHandle(self, handle):  # noqa: N802
        self.opened.append(handle)
        return handle[1]


def test_shm_cuda_ipc_path_with_fake_runtime():
    from tcoupled.coupling.channels.shm import uses_cuda_ipc

    class FakeCupy:
        class cuda:  # noqa: N801
            runtime = _FakeRuntime()

    assert uses_cuda_ipc(FakeCupy) and not uses_cuda_ipc(np)
    runtime = FakeCupy.cuda.runtime
    buffers = [np.zeros(SPEC.shape) for _ in range(2)]
    pointers = [runtime.ipcOpenMemHandle(runtime.ipcGetMemHandle(b.ctypes.data))
                for b in buffers]
    views = [CudaArrayView(p, SPEC.shape, SPEC.dtype) for p in pointers]
    assert [v.__cuda_array_interface__["data"][0] for v in views] == \
        [b.ctypes.data for b in buffers]


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no GPU")
def test_cuda_view_is_zero_copy_on_gpu():  # pragma: no cover - needs a GPU
    import torch

    source = torch.arange(6.0, device="cuda").reshape(2, 3)
    view = CudaArrayView(source.data_ptr(), (2, 3), "float32")
    tensor = as_tensor(view)
    assert tensor.data_ptr() == source.data_ptr()


@pytest.mark.timeout(60)
@pytest.mark.mpi
def test_channels_across_two_processes():
    """shm zero copy both ways; shm/mpi/file deliver every cycle in order, in both
    divisions, with backpressure timed and copies counted; device staging counted."""
    proc = check(python_mpi(Path(__file__).with_name("channel_checks.py"), ranks=2,
                            timeout=50))
    assert "channel checks passed" in proc.stdout
