"""The surrogate CNN, the trainer, the ensemble and DDP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tcoupled.runtime.errors import ConfigError
from tcoupled.training.ensemble import MemberParams, member_params
from tcoupled.training.model import build_model
from tcoupled.training.trainer import Trainer, pairs_from_frames, relative_l2, rollout

from mpitools import check, python_mpi

torch.set_num_threads(1)


def test_member_defaults_span_kernel_sizes():
    members = member_params(3)
    assert [m.kernel_size for m in members] == [3, 5, 7]
    assert len({m.lr for m in members}) == 1
    custom = member_params(2, kernel_sizes=(5,), lrs=(1e-3, 1e-2), widths=(4, 6))
    assert [(m.kernel_size, m.lr, m.width) for m in custom] == [(5, 1e-3, 4), (5, 1e-2, 6)]


@pytest.mark.parametrize("kwargs, bad", [({"kernel_sizes": (4,)}, "4"),
                                         ({"lrs": (1e-3, 1e-3, 1e-3)}, "3"),
                                         ({"widths": (0,)}, "0")])
def test_member_params_refuse_bad_values(kwargs, bad):
    with pytest.raises(ConfigError, match=bad):
        member_params(2, **kwargs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_adopts_field_dtype_and_keeps_shape(dtype):
    model = build_model(MemberParams(kernel_size=5), dtype)
    u = torch.zeros(2, 1, 9, 7, dtype=getattr(torch, dtype))
    out = model(u)
    assert out.shape == u.shape and out.dtype == u.dtype
    assert all(p.dtype == u.dtype for p in model.parameters())


def test_pairs_are_views_of_the_slot():
    frames = torch.arange(4 * 3 * 3, dtype=torch.float64).reshape(4, 3, 3)
    x, y = pairs_from_frames(frames)
    assert x.shape == (3, 1, 3, 3) and torch.equal(x[1, 0], y[0, 0])
    assert x.data_ptr() == frames.data_ptr()


def test_blocks_of_different_shapes_equal_one_batch_of_their_pairs():
    """Two groups with different block shapes: one step equals MSE over all pairs."""
    small = pairs_from_frames(torch.rand(3, 5, 4, dtype=torch.float64))
    large = pairs_from_frames(torch.rand(3, 6, 6, dtype=torch.float64))
    trainer = Trainer(build_model(MemberParams(), "float64", seed=1), 1e-2)
    loss = trainer._run_batch([small, large])
    reference = build_model(MemberParams(), "float64", seed=1)
    sse = sum(((reference(x) - y) ** 2).sum() for x, y in (small, large))
    expected = sse / (small[0].numel() + large[0].numel())
    assert abs(loss - float(expected.detach())) < 1e-12


def test_trainer_learns_a_shift_and_rollout_reports_error():
    grid = np.linspace(0, 1, 16)
    frames = torch.tensor(np.array([np.outer(np.sin(np.pi * grid * (1 + 0.02 * t)),
                                             np.sin(np.pi * grid)) for t in range(9)]))
    trainer = Trainer(build_model(MemberParams(kernel_size=3, lr=5e-3), "float64"), 5e-3)
    losses = trainer.train([pairs_from_frames(frames)], 60)
    assert len(losses) == 60 and losses[-1] < losses[0] / 3
    assert trainer.timer.totals["train"] > 0
    predicted = rollout(trainer.model, frames[0].numpy(), 3)
    errors = relative_l2(predicted, [f.numpy() for f in frames[1:4]])
    assert len(errors) == 3 and all(np.isfinite(errors))


def test_minibatches_cover_every_pair():
    frames = torch.rand(8, 4, 4, dtype=torch.float64)
    trainer = Trainer(build_model(MemberParams(), "float64"), 1e-3, batch_size=3)
    batches = trainer._batches([pairs_from_frames(frames)])
    assert [len(b[0][0]) for b in batches] == [3, 3, 1]
    assert len(trainer.train([pairs_from_frames(frames)], 5)) == 5


@pytest.mark.timeout(90)
@pytest.mark.mpi
def test_ddp_two_ranks_matches_one_process_on_global_batch():
    """Parameters identical on both ranks and equal to serial training to round-off."""
    proc = check(python_mpi(Path(__file__).with_name("ddp_checks.py"), ranks=2, timeout=80,
                            env={"GLOO_SOCKET_IFNAME": "lo"}))
    assert "ddp checks passed" in proc.stdout
