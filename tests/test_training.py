"""The surrogate CNN, the trainer, the ensemble and DDP."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from tcoupled.runtime.errors import ConfigError
from tcoupled.training.ensemble import MemberParams, member_params
from tcoupled.training.model import SurrogateCNN, build_model
from tcoupled.training.replay import ReplayBuffer
from tcoupled.training.rollout import relative_l2, rollout, vrmse
from tcoupled.training.samples import as_training_dtype, member_windows, samples_from_frames
from tcoupled.training.schedule import LRSchedule, make_schedule
from tcoupled.training.trainer import Trainer

from mpitools import check, python_mpi

torch.set_num_threads(1)


def test_member_defaults_span_kernel_sizes():
    members = member_params(3)
    assert [m.kernel_size for m in members] == [3, 5, 7]
    assert [m.lr for m in members] == pytest.approx([0.03 / 3, 0.03 / 5, 0.03 / 7])
    assert {m.activation for m in members} == {"tanh"}
    assert MemberParams().lr == pytest.approx(1e-2)
    assert {m.lr for m in member_params(3, schedule="constant")} == {3e-3}
    assert member_params(1, steps=160)[0].lr == pytest.approx(1e-2)
    assert member_params(1, steps=1280)[0].lr == pytest.approx(1e-2 / 8 ** 0.5)
    custom = member_params(2, kernel_sizes=(5,), lrs=(1e-3, 1e-2), widths=(4, 6),
                           activations=("relu", "tanh"))
    assert [(m.kernel_size, m.lr, m.width, m.activation) for m in custom] == [
        (5, 1e-3, 4, "relu"), (5, 1e-2, 6, "tanh")]


@pytest.mark.parametrize("kwargs, bad", [({"kernel_sizes": (4,)}, "4"),
                                         ({"lrs": (1e-3, 1e-3, 1e-3)}, "3"),
                                         ({"widths": (0,)}, "0"),
                                         ({"activations": ("gelu",)}, "gelu")])
def test_member_params_refuse_bad_values(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        member_params(2, **kwargs)


def test_model_sees_two_levels_and_learns_in_float32():
    """Two input channels (u^{n-1}, u^n); the output moves with either level."""
    model = build_model(MemberParams(kernel_size=5), seed=2)
    assert model.net[0].in_channels == 2
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.nn.init.normal_(model.net[-1].weight)  # the last layer starts at zero
    levels = torch.rand(2, 2, 9, 7)
    out = model(levels)
    assert out.shape == (2, 1, 9, 7) and out.dtype == torch.float32
    for level in (0, 1):
        nudged = levels.clone()
        nudged[:, level, 4, 3] += 1.0
        assert not torch.equal(model(nudged), out), level


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_model_without_biases_maps_zero_to_zero_and_tanh_is_odd(activation):
    model = build_model(MemberParams(activation=activation), "float64", seed=3)
    torch.nn.init.normal_(model.net[-1].weight)
    levels = torch.rand(1, 2, 7, 6, dtype=torch.float64)
    update = model.net(levels)
    assert torch.equal(model.net(torch.zeros_like(levels)), torch.zeros_like(update))
    odd = torch.allclose(model.net(-levels), -update, atol=1e-12)
    assert odd == (activation == "tanh")
    with pytest.raises(ValueError, match="activation"):
        SurrogateCNN(activation="gelu")


def test_untrained_model_extrapolates_and_keeps_the_boundary_zero():
    """Zero last layer: u^{n+1} = 2u^n - u^{n-1} inside, 0 on the physical boundary."""
    model = build_model(MemberParams(), "float64")
    levels = torch.rand(1, 2, 6, 5, dtype=torch.float64)
    out = model(levels)[0, 0]
    expected = 2 * levels[0, 1] - levels[0, 0]
    assert torch.equal(out[1:-1, 1:-1], expected[1:-1, 1:-1])
    assert not out[0].any() and not out[-1].any() and not out[:, 0].any()
    assert not out[:, -1].any()
    inner = model(levels, (False, False, False, False))[0, 0]
    assert torch.equal(inner, expected)


def test_cast_once_counts_its_bytes_and_samples_are_views():
    slot = torch.rand(5, 4, 3, dtype=torch.float64)
    cast, copied = as_training_dtype(slot)
    assert cast.dtype == torch.float32 and copied == 5 * 4 * 3 * 4
    same, none = as_training_dtype(cast)
    assert same is cast and none == 0
    samples = samples_from_frames(cast)
    assert samples.x.shape == (3, 2, 4, 3) and samples.y.shape == (3, 1, 4, 3)
    assert samples.x.data_ptr() == cast.data_ptr()
    assert torch.equal(samples.x[1, 0], cast[1]) and torch.equal(samples.x[1, 1], cast[2])
    assert torch.equal(samples.y[1, 0], cast[3])


def _blocks(field: torch.Tensor, dims: tuple[int, int]) -> list:
    """Split ``field`` (F, nx, ny) into the solver's blocks for a ``dims`` process grid."""
    from tcoupled.sim.decomposition import Block

    blocks = []
    for cx in range(dims[0]):
        for cy in range(dims[1]):
            block = Block(tuple(field.shape[1:]), dims, (cx, cy))
            (ox, oy), (lx, ly) = block.offset, block.local_shape
            blocks.append(((ox, oy), field[:, ox:ox + lx, oy:oy + ly].contiguous()))
    return blocks


@pytest.mark.parametrize("kernel_size, dims", [(3, (2, 1)), (5, (2, 2))])
def test_block_prediction_equals_whole_field_prediction(comm_self, kernel_size, dims):
    """Blocks with their neighbours' cells: at internal edges as on the whole field."""
    model = build_model(MemberParams(kernel_size=kernel_size), "float64", seed=4)
    torch.nn.init.normal_(model.net[-1].weight, std=0.1)
    field = torch.rand(4, 23, 19, dtype=torch.float64)
    whole = samples_from_frames(field)
    reference = model(whole.x)
    blocks = _blocks(field, dims)
    parts = member_windows(comm_self, blocks, (23, 19), model.radius)
    for (offset, frames), part in zip(blocks, parts, strict=True):
        predicted = part.cropped(model(part.x, part.walls))
        lx, ly = frames.shape[1:]
        expected = reference[..., offset[0]:offset[0] + lx, offset[1]:offset[1] + ly]
        assert torch.allclose(predicted, expected, rtol=0, atol=1e-12), offset
        assert torch.equal(part.y[:, 0], frames[2:])
    # without the context (zero padding at the internal edge) the edge is wrong
    (offset, frames), = blocks[:1]
    bare = samples_from_frames(frames)
    lx, ly = frames.shape[1:]
    assert not torch.allclose(model(bare.x), reference[..., :lx, :ly], atol=1e-6)


def test_blocks_of_different_shapes_equal_one_batch_of_their_samples():
    """Two groups with different block shapes: one step equals MSE over all samples."""
    small = samples_from_frames(torch.rand(4, 5, 4, dtype=torch.float64))
    large = samples_from_frames(torch.rand(4, 6, 6, dtype=torch.float64))
    model = build_model(MemberParams(), "float64", seed=1)
    torch.nn.init.normal_(model.net[-1].weight, std=0.1)
    reference = copy.deepcopy(model)
    trainer = Trainer(model, 1e-2)
    loss = trainer._run_batch([small, large])
    sse = sum(((reference(s.x) - s.y) ** 2).sum() for s in (small, large))
    expected = sse / (small.y.numel() + large.y.numel())
    assert abs(loss - float(expected.detach())) < 1e-12


def _wave_frames(count: int, n: int = 17) -> torch.Tensor:
    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.sim.config import WaveConfig, stable_dt
    from tcoupled.sim.solver import WaveSolver

    grid = (n, n)
    wave = WaveConfig(grid=grid, steps=count, dt=stable_dt(1.0, grid, 0.5), init="gaussian",
                      width=0.1, seed=2)
    with WaveSolver(wave, init_mpi().COMM_SELF) as solver:
        frames = [solver.field.copy()]
        for _ in range(count - 1):
            solver.step()
            frames.append(solver.field.copy())
    return torch.tensor(np.array(frames))


def test_trainer_learns_the_wave_and_rollout_reports_errors():
    frames, _ = as_training_dtype(_wave_frames(12))
    samples = samples_from_frames(frames[:9])
    trainer = Trainer(build_model(MemberParams(kernel_size=3)), 3e-3)
    losses = trainer.train([samples], 60)
    assert len(losses) == 60 and losses[-1] < losses[0] / 3
    assert trainer.timer.totals["train"] > 0
    truth = [f.numpy() for f in frames[9:12]]
    predicted = rollout(trainer.model, frames[7].numpy(), frames[8].numpy(), 3)
    errors = vrmse(predicted, truth)
    untrained = rollout(build_model(MemberParams()), frames[7].numpy(), frames[8].numpy(), 3)
    assert len(errors) == 3 and errors[0] < vrmse(untrained, truth)[0]
    assert len(relative_l2(predicted, truth)) == 3


def test_vrmse_is_rmse_over_the_true_fields_std():
    truth = np.outer(np.sin(np.linspace(0, 3, 20)), np.cos(np.linspace(0, 2, 10)))
    shifted = truth + 0.25 * truth.std()
    assert vrmse([shifted], [truth]) == pytest.approx([0.25], rel=1e-12)
    assert vrmse([np.full_like(truth, truth.mean())], [truth]) == pytest.approx([1.0])


def test_replay_buffer_is_a_bounded_reservoir_and_restores_bitwise(tmp_path):
    frames = torch.rand(12, 6, 5)
    buffer = ReplayBuffer(4, seed=(1, 2))
    buffer.offer([samples_from_frames(frames[:7])])
    assert len(buffer) == 4 and buffer.seen == 5
    buffer.offer([samples_from_frames(frames[6:])])
    assert len(buffer) == 4 and buffer.seen == 9
    assert buffer.nbytes == 4 * 3 * 6 * 5 * 4
    kept = [next(i for i in range(10) if torch.equal(t[0], frames[i])) for t in buffer.levels]
    for start, levels in zip(kept, buffer.levels, strict=True):
        assert torch.equal(levels, frames[start:start + 3])  # three consecutive levels
    path = tmp_path / "replay.pt"
    torch.save(buffer.state_dict(), path)
    restored = ReplayBuffer(4, seed=99)
    restored.load_state_dict(torch.load(path, weights_only=True))
    for ours, theirs in zip(buffer.draw(3), restored.draw(3), strict=True):
        assert torch.equal(ours.x, theirs.x) and torch.equal(ours.y, theirs.y)
    with pytest.raises(ValueError, match="--replay 5"):
        ReplayBuffer(5).load_state_dict(buffer.state_dict())


def test_replay_mixes_into_every_iteration():
    frames = torch.rand(6, 5, 5)
    replay = ReplayBuffer(8)
    trainer = Trainer(build_model(MemberParams()), 1e-3, replay=replay)
    seen = []
    trainer._run_batch = lambda batch: seen.append(sum(len(g) for g in batch)) or 0.0
    trainer.train([samples_from_frames(frames)], 2)
    assert seen == [4, 4] and len(replay) == 4      # empty buffer, then filled
    trainer.train([samples_from_frames(frames)], 2)
    assert seen[2:] == [8, 8] and len(replay) == 8  # newest 4 + 4 replayed


def test_one_rank_member_is_not_wrapped_in_ddp(comm_self, tmp_path):
    from tcoupled.training.ensemble import close_member_group, init_member_group

    group = init_member_group(comm_self, "gloo", tmp_path)
    assert group is None and not torch.distributed.is_initialized()
    model = build_model(MemberParams())
    trainer = Trainer(model, 1e-3, group=group)
    assert trainer.model is model
    close_member_group(comm_self)  # nothing to tear down


def test_minibatches_cover_every_sample():
    frames = torch.rand(10, 4, 4)
    trainer = Trainer(build_model(MemberParams()), 1e-3, batch_size=3)
    batches = trainer._batches([samples_from_frames(frames)])
    assert [len(b[0]) for b in batches] == [3, 3, 2]
    assert len(trainer.train([samples_from_frames(frames)], 5)) == 5


@pytest.mark.timeout(90)
@pytest.mark.mpi
def test_ddp_two_ranks_matches_one_process_and_block_edges_match_one_rank():
    """Parameters identical on both ranks and equal to serial training to round-off;
    with 2 blocks on 2 ranks the prediction at the internal edge equals the one-rank one."""
    proc = check(python_mpi(Path(__file__).with_name("ddp_checks.py"), ranks=2, timeout=80,
                            env={"GLOO_SOCKET_IFNAME": "lo"}))
    assert "ddp checks passed" in proc.stdout
    assert "block edge checks passed" in proc.stdout


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = LRSchedule(160, 0.25)
    factors = [schedule.factor(i) for i in range(160)]
    assert schedule.warmup_steps == 40
    assert factors[0] == pytest.approx(1 / 40) and factors[39] == 1.0
    assert all(a < b for a, b in zip(factors[:40], factors[1:40]))       # warm-up
    assert all(a > b for a, b in zip(factors[40:], factors[41:]))        # decay
    assert 0 < factors[-1] < 1e-3 and schedule.factor(500) == factors[-1]
    assert LRSchedule(10, 0.0).factor(0) == 1.0
    assert make_schedule("constant", 10) is None
    for name, total, warmup, bad in (("cosine", 10, 1.0, "--warmup"),
                                     ("cosine", 10, -0.1, "--warmup"),
                                     ("linear", 10, 0.25, "--lr-schedule"),
                                     ("cosine", 0, 0.25, "1 step")):
        with pytest.raises(ConfigError, match=bad):
            make_schedule(name, total, warmup)


def test_trainer_follows_the_schedule_across_a_resume():
    """Step i runs at lr * factor(i); a trainer with restored losses continues the curve."""
    frames = torch.rand(5, 6, 6)
    schedule = LRSchedule(6, 0.5)
    trainer = Trainer(build_model(MemberParams()), 0.1, schedule=schedule)
    rates = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda: rates.append(trainer.optimizer.param_groups[0]["lr"]) \
        or step()
    trainer.train([samples_from_frames(frames)], 4)
    resumed = Trainer(build_model(MemberParams()), 0.1, schedule=schedule)
    resumed.losses[:] = trainer.losses
    resumed_step = resumed.optimizer.step
    resumed.optimizer.step = lambda: rates.append(resumed.optimizer.param_groups[0]["lr"]) \
        or resumed_step()
    resumed.train([samples_from_frames(frames)], 2)
    assert rates == pytest.approx([0.1 * schedule.factor(i) for i in range(6)])
