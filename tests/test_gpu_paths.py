"""GPU paths on CPU, through fakes that model the GPU semantics (tests/gpu_fakes.py).

The real-GPU versions of these checks run in ``run/device_check.sh``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel
from tcoupled.coupling.channels import shm as shm_module

from gpu_fakes import FakeCupy, view_pointer

SPEC = SlotSpec(3, (5, 7), "float64")


def _host_tensor(array):
    """Receiver-side view of an opened IPC pointer (torch's CUDA view, on the host)."""
    cai = array.__cuda_array_interface__
    return torch.from_numpy(view_pointer(cai["data"][0], cai["shape"], cai["typestr"]))


@pytest.fixture(params=[1, 2], ids=["time-division-1-slot", "space-division-2-slots"])
def fake_gpu(monkeypatch, comm_self, request):
    FakeCupy.reset()
    monkeypatch.setattr(shm_module, "as_tensor", _host_tensor)
    ctx = ChannelContext(world=comm_self, node_comm=comm_self, xp=FakeCupy, slots=request.param)
    channel = open_channel("shm", ctx, SPEC)
    yield ctx, channel
    channel.close()


def test_cuda_ipc_slots_are_read_where_the_sender_wrote_them(fake_gpu):
    """Each slot opened from its IPC handle shows the sender's bytes, not a pool block's."""
    ctx, channel = fake_gpu
    sender = channel.sender((0,))
    receiver = channel.receiver(0, SPEC, cycles=4)
    for cycle in range(4):
        slot = sender.acquire()
        values = np.arange(np.prod(SPEC.shape), dtype=SPEC.dtype).reshape(SPEC.shape)
        slot[...] = values + 1000 * cycle
        sender.publish()
        tensor = receiver.receive()
        np.testing.assert_array_equal(tensor.numpy(), values + 1000 * cycle,
                                      err_msg=f"cycle {cycle}: the receiver reads other bytes")
        assert tensor.data_ptr() == slot.data.ptr     # zero copy: the sender's own bytes
        receiver.release()
    sender.close()
    receiver.close()
    runtime = FakeCupy.cuda.runtime
    assert sorted(runtime.closed) == sorted(runtime.opened)
    assert len(runtime.opened) == ctx.slots     # one IPC allocation per slot, opened once


def test_slot_released_only_after_the_reading_stream_finished(fake_gpu, monkeypatch):
    """The receiver synchronises the stream that read the slot before it releases it."""
    ctx, channel = fake_gpu
    events = []

    class Stream:
        def synchronize(self):
            events.append("sync")

    class Recorder:
        def __init__(self, comm):
            self.comm = comm

        def isend(self, obj, dest, tag):
            events.append(("isend", tag))
            return self.comm.isend(obj, dest=dest, tag=tag)

        def __getattr__(self, name):
            return getattr(self.comm, name)

    from tcoupled.coupling.channels import device

    class CudaTensor:   # what torch.as_tensor(view, device="cuda") gives: a CUDA tensor
        is_cuda, device = True, "cuda:0"

        def __init__(self, array, view=None):
            self.array = array
            self.view = _host_tensor(array) if view is None else view

        def __getitem__(self, key):
            return CudaTensor(self.array, self.view[key])

        def data_ptr(self):
            return self.view.data_ptr()

    monkeypatch.setattr(device, "_current_torch_stream", lambda tensor: Stream())
    monkeypatch.setattr(shm_module, "as_tensor", CudaTensor)
    sender = channel.sender((0,))
    receiver = channel.receiver(0, SPEC, cycles=1)
    sender.acquire()[...] = 1.0
    sender.publish()
    receiver.receive()
    ctx.world = Recorder(ctx.world)
    receiver.release()
    from tcoupled.coupling.channels.base import RELEASE_TAG

    assert events == ["sync", ("isend", RELEASE_TAG)]
    ctx.world = ctx.world.comm
    sender.close()
    receiver.close()


def _cupy_backend_with(launches, tile=None):
    """The CuPy backend object with a recording kernel (no GPU, no compiler)."""
    from tcoupled.sim.backends.cupy_backend import TILE, CupyBackend

    backend = object.__new__(CupyBackend)
    backend.xp, backend.tile = np, tile or TILE
    backend._kernels = {d: (lambda grid, block, args: launches.append((grid, block)))
                        for d in ("float32", "float64")}
    return backend


def test_cupy_launch_covers_the_box_with_whole_tiles():
    launches = []
    u = np.zeros((40, 50))
    # rows 1..38 (38 of them) in groups of 3 threads x 4 rows; columns 2..47 (46) by 16
    _cupy_backend_with(launches, (16, 3, 4)).step(u, u.copy(), u.copy(), (1, 39, 2, 48),
                                                  0.1, 0.1)
    assert launches == [((3, 4), (16, 3))]  # ceil(46/16) = 3, ceil(38/12) = 4


@pytest.mark.parametrize("bad,match", [
    (lambda a: a[:, ::2], "not C-contiguous"),                 # strided view
    (lambda a: np.asfortranarray(a), "not C-contiguous"),      # column-major
    (lambda a: a.astype(np.float16), "dtype float16"),         # no kernel for it
    (lambda a: a[:-1], "shape"),                               # another shape
])
def test_cupy_backend_refuses_arrays_the_kernel_would_misread(bad, match):
    launches = []
    backend = _cupy_backend_with(launches)
    u = np.zeros((8, 10))
    backend.step(u, u.copy(), u.copy(), (1, 7, 1, 5), 0.1, 0.1)
    assert len(launches) == 1
    for position in range(3):
        arrays = [u, u.copy(), u.copy()]
        arrays[position] = bad(np.zeros((8, 10)))
        with pytest.raises(ValueError, match=match):
            backend.step(*arrays, (1, 7, 1, 5), 0.1, 0.1)
    with pytest.raises(ValueError, match="outside the interior"):
        backend.step(u, u, u, (0, 7, 1, 5), 0.1, 0.1)
    assert len(launches) == 1


def test_allreduce_clock_counts_only_what_backward_did_not_hide(monkeypatch):
    from tcoupled.training.commhook import AllreduceClock

    clock = AllreduceClock(cuda=False)
    # bucket 1 handed at 1.0, done at 2.5; bucket 2 (the last gradients) handed at 2.0,
    # done at 3.0: the all-reduce of bucket 1 hid behind backward, 1.0 s was exposed
    clock._handed, clock._done = [1.0, 2.0], [2.5, 3.0]
    assert clock.exposed() == 1.0 and clock._handed == [] and clock.exposed() == 0.0

    class Event:  # torch.cuda.Event: elapsed_time in milliseconds
        def __init__(self, t):
            self.t = t

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    clock = AllreduceClock(cuda=True)
    clock._handed, clock._done = [Event(1.0), Event(2.0)], [Event(1.5), Event(2.25)]
    assert clock.exposed() == pytest.approx(0.25)


def test_ddp_uses_the_stock_allreduce_hook_and_matches_serial_training(tmp_path, monkeypatch):
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from tcoupled.runtime.telemetry import PhaseTimer
    from tcoupled.training.model import build_model
    from tcoupled.training.samples import samples_from_frames
    from tcoupled.training.trainer import Trainer

    calls = []
    stock = default_hooks.allreduce_hook
    monkeypatch.setattr(default_hooks, "allreduce_hook",
                        lambda state, bucket: calls.append(1) or stock(state, bucket))
    from tcoupled.training.ensemble import MemberParams

    frames = torch.randn((5, 12, 10), generator=torch.Generator().manual_seed(3))
    params = {}
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1),
                            rank=0, world_size=1)
    try:
        for ddp in (False, True):
            timer = PhaseTimer()
            model = build_model(MemberParams(), "float32", seed=11)
            trainer = Trainer(model, 1e-3, group=dist.group.WORLD if ddp else None,
                              timer=timer)
            trainer.train([samples_from_frames(frames)], 3)
            params[ddp] = [p.detach().clone() for p in model.parameters()]
            assert timer.counts["train"] == 3
            assert timer.counts["allreduce"] == (3 if ddp else 0)
            del trainer
    finally:
        dist.destroy_process_group()
    assert calls, "DDP did not call the stock allreduce hook"
    for serial, parallel in zip(params[False], params[True], strict=True):
        assert torch.equal(serial, parallel)


def test_stream_timer_puts_kernel_time_in_its_own_phase():
    """A kernel launch returns at once; the halo's stream sync then waits for it. The host
    clock books the kernel under ``halo``; events on the stream book it under ``sim``."""
    from tcoupled.runtime.telemetry import PhaseTimer, StreamPhaseTimer

    FakeCupy.reset()
    stream = FakeCupy.cuda.stream
    timers = {"host": PhaseTimer(), "stream": StreamPhaseTimer(FakeCupy.cuda)}
    for timer in timers.values():
        for _ in range(3):
            with timer.phase("sim"):
                stream.launch(0.05)           # the kernel: 50 ms on the device
            with timer.phase("halo"):
                stream.synchronize()          # halo.start waits before MPI reads the faces
    host, device = timers["host"].as_dict(), timers["stream"].as_dict()
    # the defect, as the fake models it: the host clock books the kernels under halo
    assert host["halo"] >= 0.15 and host["sim"] < host["halo"] / 5
    # events book them where they ran (halo keeps only the host's own wake-up delay)
    assert device["sim"] >= 0.15 and device["halo"] < device["sim"] / 5
    assert timers["stream"].counts["sim"] == 3


def test_cost_model_slot_lives_where_the_solver_field_lives():
    """``--division auto`` on CuPy fields: a NumPy slot refuses a device field (as CuPy
    refuses implicit conversion); the calibration's slot is made by the solver's backend."""
    from types import SimpleNamespace

    from tcoupled.coupling.calibration import new_slot

    FakeCupy.reset()
    field = FakeCupy.zeros((4, 5), "float32")
    field[...] = 2.0
    solver = SimpleNamespace(block=SimpleNamespace(padded_shape=(4, 5)),
                             config=SimpleNamespace(dtype="float32"),
                             backend=SimpleNamespace(zeros=FakeCupy.zeros))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.empty((3, 4, 5), dtype="float32")[0][...] = field
    slot = new_slot(solver, 2)
    assert isinstance(slot, type(field)) and slot.shape == (3, 4, 5)
    slot[1][...] = field                     # device to device: no conversion
    assert (slot.get()[1] == 2.0).all()


@pytest.mark.parametrize("ppn,counts,ensemble", [(16, (4, 8, 4), 2), (8, (4, 4, 0), 1),
                                                 (4, (2, 2, 0), 1)])
def test_each_rank_binds_the_gpu_plan_prints(monkeypatch, ppn, counts, ensemble):
    """Layout.bind_gpu, rank by rank on a simulated node, against ``plan --gpus-per-node 4``."""
    from types import SimpleNamespace

    from tcoupled.placement.layout import Layout
    from tcoupled.placement.plan import RoleCounts, plan_ranks
    from tcoupled.runtime import gpu

    plan = plan_ranks(RoleCounts(*counts), ppn, 4, "colocated", ensemble)
    gpu_ranks = [r for r in plan.ranks if r.role != "farm"]   # the coupled node_comm
    chosen = []
    monkeypatch.setattr(gpu, "cuda_device_count", lambda: 4)
    monkeypatch.setattr(gpu, "select_cuda_device",
                        lambda index: chosen.append(index) or f"node0/bus{index}")
    for k, info in enumerate(gpu_ranks):
        node_comm = SimpleNamespace(Get_rank=lambda k=k: k, Get_size=lambda: len(gpu_ranks))
        fake = SimpleNamespace(role=info.role, node_comm=node_comm)
        assert Layout.bind_gpu(fake) == info.gpu, info
        assert fake.gpu_identity == f"node0/bus{info.gpu}"
    assert chosen == [r.gpu for r in gpu_ranks]


def test_shm_pair_on_two_gpus_is_refused_naming_both(monkeypatch):
    from types import SimpleNamespace

    from tcoupled.coupling.config import colocation_problem

    identities = ["n0/0000:07:00.0", "n0/0000:46:00.0"]    # sim rank 0, train rank 1

    class World:
        def allgather(self, value):
            return identities if value in identities else [value, value]

    def layout(rank, role, sources):
        return SimpleNamespace(role=role, world=World(), gpu_identity=identities[rank],
                               info=SimpleNamespace(rank=rank, sources=sources),
                               same_node=lambda other: True)

    config = SimpleNamespace(channel="shm", division="time", train_ranks=1)
    problem = colocation_problem(config, layout(1, "train", (0,)))
    assert problem and "sim rank 0 and train rank 1 on one GPU" in problem
    assert identities[0] in problem and identities[1] in problem
    config.channel = "mpi"
    assert colocation_problem(config, layout(1, "train", (0,))) is None
    identities[1] = identities[0]
    config.channel = "shm"
    assert colocation_problem(config, layout(1, "train", (0,))) is None


def test_the_cuda_aware_choice_is_one_switch_and_printed(monkeypatch):
    from tcoupled.runtime.gpu import cuda_aware_mpi, describe_cuda_aware_mpi

    monkeypatch.setenv("TCOUPLED_CUDA_AWARE_MPI", "0")
    assert not cuda_aware_mpi()
    assert describe_cuda_aware_mpi().startswith("CUDA-aware MPI: no (TCOUPLED_CUDA_AWARE_MPI=0)")
    monkeypatch.setenv("TCOUPLED_CUDA_AWARE_MPI", "1")
    assert cuda_aware_mpi() and "straight to MPI" in describe_cuda_aware_mpi()


class _MemberComm:
    """A member's communicator as seen from rank ``rank``: the ranks' GPUs, allgathered."""

    def __init__(self, gpus, rank=0):
        self.gpus, self.rank = gpus, rank

    def allgather(self, value):
        assert value == self.gpus[self.rank]
        return list(self.gpus)


def test_ddp_uses_nccl_only_when_every_rank_of_a_member_has_its_own_gpu():
    from tcoupled.training.ensemble import member_backend

    assert member_backend(_MemberComm(["n0/0000:19:00.0", "n0/0000:1A:00.0"]),
                          "n0/0000:19:00.0")[0] == "nccl"
    # one GPU shared (a one-GPU machine): NCCL would stop with "Duplicate GPU detected"
    backend, why = member_backend(_MemberComm(["n0/0000:19:00.0"] * 2, 1), "n0/0000:19:00.0")
    assert backend == "gloo" and "2 ranks share 1 GPU" in why
    # the same bus id on two hosts is two GPUs
    assert member_backend(_MemberComm(["n0/0000:19:00.0", "n1/0000:19:00.0"]),
                          "n0/0000:19:00.0")[0] == "nccl"
    assert member_backend(_MemberComm([None, None]), None) == ("gloo", "training on the CPU")


def test_cuda_tile_is_parsed_and_bad_ones_are_named():
    from tcoupled.runtime.errors import ConfigError
    from tcoupled.sim.backends.cupy_backend import parse_tile

    assert parse_tile("128x2x8") == (128, 2, 8)
    for bad in ("128x2", "64x0x8", "64x32x1", "ax2x8", "256x1x16"):
        with pytest.raises(ConfigError, match=f"TCOUPLED_CUDA_TILE='{bad}'"):
            parse_tile(bad)


def test_a_block_the_compiled_kernel_cannot_launch_is_refused_by_name():
    from types import SimpleNamespace

    from tcoupled.runtime.errors import ConfigError
    from tcoupled.sim.backends.cupy_backend import check_block

    kernels = {"float32": SimpleNamespace(max_threads_per_block=1024),
               "float64": SimpleNamespace(max_threads_per_block=512)}
    check_block((256, 2, 8), kernels)
    with pytest.raises(ConfigError, match="1024x1x8: 1024 threads .* float64 kernel .* 512"):
        check_block((1024, 1, 8), kernels)


def test_device_check_judges_zero_copy_by_pointer_and_by_kind_of_copy():
    from tcoupled.bench.gpu_runs import _zero_copy

    # on a GPU a device slot carries its last frame and --verify reads each slot: no handoff
    assert _zero_copy({"zero_copy_verified": True,
                       "handoff_copies": {"carry": 199692, "digest": 2396304, "cast": 0}})
    assert not _zero_copy({"zero_copy_verified": True,
                           "handoff_copies": {"carry": 199692, "mpi": 4942368}})
    assert not _zero_copy({"zero_copy_verified": False, "handoff_copies": {"cast": 0}})
