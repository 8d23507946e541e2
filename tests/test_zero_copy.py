"""Zero copy from the solver's step to the trainer's tensor, and every copy counted once."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from tcoupled.coupling.channels import ChannelContext, SlotSpec, channel_class
from tcoupled.coupling.channels.copies import CopyLedger, address
from tcoupled.coupling.channels.ring import RingSlots
from tcoupled.coupling.schedule import DigestLog, fill_slot
from tcoupled.runtime.mpienv import init_mpi
from tcoupled.runtime.telemetry import PhaseTimer
from tcoupled.sim.config import WaveConfig, stable_dt
from tcoupled.sim.solver import WaveSolver

GRID = (23, 19)
STEPS, CYCLES = 4, 3


def _config(dtype: str = "float64") -> WaveConfig:
    return WaveConfig(grid=GRID, steps=1, dt=stable_dt(1.0, GRID, 0.5), init="gaussian",
                      dtype=dtype)


def _reference(dtype: str, steps: int = STEPS) -> list[np.ndarray]:
    """The fields of today's solver (its own two buffers), one per step."""
    with WaveSolver(_config(dtype), init_mpi().COMM_SELF) as solver:
        fields = [solver.field.copy()]
        for _ in range(CYCLES * steps + 1):
            solver.step()
            fields.append(solver.field.copy())
    return fields


def _inproc(spec: SlotSpec):
    ctx = ChannelContext()
    channel = channel_class("inproc")(ctx, spec)
    sender = channel.sender(())
    return ctx, sender, channel.receiver(0, spec, CYCLES)


@pytest.mark.parametrize("dtype, steps, ring", [("float64", STEPS, True),
                                                ("float32", STEPS, True),
                                                ("float64", 1, True), ("float64", STEPS, False)])
def test_solver_steps_into_the_slot_bitwise_and_in_place(dtype, steps, ring, monkeypatch):
    if not ring:                                    # separate slots: u^n carried by a copy
        monkeypatch.setattr(RingSlots, "usable", staticmethod(lambda spec, xp: False))
    reference = _reference(dtype, steps)
    with WaveSolver(_config(dtype), init_mpi().COMM_SELF) as solver:
        spec = SlotSpec(steps + 1, solver.local_shape, dtype, pad=1)
        ctx, sender, receiver = _inproc(spec)
        for cycle in range(CYCLES):
            slot = sender.acquire()
            written = fill_slot(solver, slot, steps, ctx.timer, sender.ledger,
                                sender.same_memory)
            assert address(solver.u) == address(slot[steps])   # the level lives in the slot
            sender.publish(written)
            tensor = receiver.receive()
            assert not tensor.is_contiguous()                  # a view of the padded frames
            assert tensor.data_ptr() == address(slot) + spec.interior_offset
            expected = np.stack(reference[cycle * steps:(cycle + 1) * steps + 1])
            assert np.array_equal(tensor.numpy(), expected)   # bitwise
            receiver.release()
        solver.take_levels_home()                              # slots may be freed now
        assert address(solver.u) in {address(level) for level in solver._own}
        solver.step()                                          # the held-out step
        assert np.array_equal(solver.field, reference[-1])
    frame = int(np.prod(solver.local_shape)) * np.dtype(dtype).itemsize
    assert sender.in_place and receiver.verified
    assert (sender.ring is not None) == ring
    # a ring window starts at the frame the last one ended with; separate slots copy it
    assert ctx.ledger.as_dict() == ({} if ring else {"carry": (CYCLES - 1) * frame})
    assert receiver.bytes_copied == 0


def test_a_slot_not_written_in_place_is_not_verified():
    spec = SlotSpec(3, (4, 5), "float64", pad=1)
    _, sender, receiver = _inproc(spec)
    slot = sender.acquire()
    elsewhere = np.zeros_like(slot)                            # the solver wrote here ...
    slot[...] = elsewhere                                       # ... and it was copied over
    sender.publish([address(frame) for frame in elsewhere])
    receiver.receive()
    assert not sender.in_place and not receiver.verified


def test_a_copying_path_counts_exactly_its_bytes():
    class FakeDevice:                                           # device memory stand-in
        def __init__(self, array):
            self.array = array

        @property
        def __cuda_array_interface__(self):
            return {"shape": self.array.shape, "typestr": self.array.dtype.str,
                    "data": (self.array.ctypes.data, False), "strides": None, "version": 3}

        def get(self):
            return self.array.copy()

    ledger = CopyLedger()
    child = ledger.child()
    slot = np.arange(60.0).reshape(3, 4, 5)
    assert child.to_host(slot, "staging") is slot and ledger.bytes == 0   # host: no copy
    host = child.to_host(FakeDevice(slot), "staging")
    assert np.array_equal(host, slot)
    assert child.bytes == ledger.bytes == slot.nbytes
    before = ledger.bytes
    child.copy(np.empty_like(slot[0]), slot[0], "carry")
    assert ledger.bytes - before == slot[0].nbytes
    assert ledger.as_dict() == {"staging": slot.nbytes, "carry": slot[0].nbytes}


def test_digest_reads_in_place_and_is_off_unless_asked():
    padded = np.random.default_rng(0).random((3, 6, 7))
    view = torch.from_numpy(padded)[:, 1:-1, 1:-1]
    contiguous = np.ascontiguousarray(padded[:, 1:-1, 1:-1])
    expected = hashlib.sha256(f"{contiguous.shape}{contiguous.dtype}".encode())
    expected.update(contiguous.tobytes())
    ledger = CopyLedger()
    log = DigestLog(PhaseTimer(), ledger)
    log.add(0, 0, view)
    assert log.entries == [(0, 0, expected.hexdigest())] and ledger.bytes == 0
    off = DigestLog(PhaseTimer(), ledger, enabled=False)
    off.add(0, 0, view)
    assert off.entries == [] and "digest" not in off.timer.totals


def test_a_slot_may_carry_two_levels():
    reference = _reference("float64")
    with WaveSolver(_config(), init_mpi().COMM_SELF) as solver:
        spec = SlotSpec(STEPS + 2, solver.local_shape, "float64", pad=1, carried=2)
        ctx, sender, receiver = _inproc(spec)
        for cycle in range(CYCLES):
            sender.publish(fill_slot(solver, sender.acquire(), STEPS, ctx.timer, sender.ledger,
                                     sender.same_memory))
            tensor = receiver.receive().numpy()
            first = cycle * STEPS
            assert np.array_equal(tensor[1:], np.stack(reference[first:first + STEPS + 1]))
            assert np.array_equal(tensor[0], reference[max(first - 1, 0)])
            receiver.release()
    assert sender.in_place and receiver.verified and sender.ring is not None
    assert ctx.ledger.as_dict() == {}
