"""The surrogate CNN (hyperparameters: :mod:`tcoupled.training.ensemble`).

The wave equation is second order in time: the next level depends on ``u^n`` and
``u^{n-1}``. The model therefore takes both levels as two input channels, in time
order ``(u^{n-1}, u^n)``, and predicts the leapfrog update
``u^{n+1} - 2u^n + u^{n-1}``; :meth:`SurrogateCNN.forward` returns the next level
``2u^n - u^{n-1} + update``. It learns in float32 whatever the solver's dtype
(:data:`TRAINING_DTYPE`).
"""

from __future__ import annotations

import torch
from torch import nn

from tcoupled.training.ensemble import ACTIVATIONS, MemberParams

#: the dtype every surrogate learns in (a float64 solver's slots are cast once per slot)
TRAINING_DTYPE = torch.float32
#: time levels the model reads: ``(u^{n-1}, u^n)``
LEVELS = 2
#: convolutions in :class:`SurrogateCNN`; its receptive radius is ``CONVS * (k - 1) // 2``
CONVS = 4
#: what the network's output is: the leapfrog ``update`` or the ``next`` level itself
TARGETS = ("update", "next")


class SurrogateCNN(nn.Module):
    """Conv2d 2 -> w -> 2w -> w -> 1 with 'same' zero padding and tanh (or ReLU).

    No biases: the network maps a zero field to a zero update (a bias is a constant
    acceleration, whose error grows quadratically along a rollout). With tanh (the
    default) and no biases the network is odd, ``f(-u) = -f(u)``, as the wave
    equation's update is (it is linear in ``u``), and it is smooth and close to linear
    at the fields' amplitudes: on the main job's data, with the same schedule, tanh
    halved the 5-step rollout error of ReLU (mean of 3 seeds 0.031 against 0.062); a
    no-bias ReLU network is only positively homogeneous and must learn the response
    to ``-u`` separately. The last layer starts at zero, so an untrained model
    extrapolates ``u^{n+1} = 2u^n - u^{n-1}``. Zero padding matches the solver's
    ``u = 0`` boundary, and the boundary cells of the prediction are set to zero
    (:func:`on_walls_zero`). At internal block edges
    the trainer hands the model the neighbours' cells (see :mod:`.samples`), so
    only the physical boundary is ever padded.

    Parameters
    ----------
    kernel_size, width : int
        Convolution size and channels of the first layer.
    activation : str
        ``"tanh"`` (default) or ``"relu"`` (the earlier default, kept for comparison).
    target : str
        ``"update"`` (default): the network predicts ``u^{n+1} - 2u^n + u^{n-1}``;
        ``"next"``: it predicts ``u^{n+1}`` directly (kept for comparison).
    bias : bool
        Biases in the convolutions (default off; kept for comparison).
    """

    def __init__(self, kernel_size: int = 3, width: int = 8, target: str = "update",
                 bias: bool = False, activation: str = ACTIVATIONS[0]) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                             f"got {activation!r}")
        k = kernel_size
        self.kernel_size, self.target, self.activation = k, target, activation
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
        self.net = nn.Sequential(
            nn.Conv2d(LEVELS, width, k, padding="same", bias=bias), act(),
            nn.Conv2d(width, 2 * width, k, padding="same", bias=bias), act(),
            nn.Conv2d(2 * width, width, k, padding="same", bias=bias), act(),
            nn.Conv2d(width, 1, k, padding="same", bias=bias))
        nn.init.zeros_(self.net[-1].weight)  # starts as u^{n+1} = 2u^n - u^{n-1}

    @property
    def radius(self) -> int:
        """Cells on each side that one output cell depends on (its receptive radius)."""
        return receptive_radius(self.kernel_size)

    def forward(self, levels: torch.Tensor,
                walls: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> torch.Tensor:
        """Map levels ``(u^{n-1}, u^n)`` (batch, 2, nx, ny) to ``u^{n+1}`` (batch, 1, nx, ny)."""
        out = self.net(levels)
        if self.target == "update":
            out = 2 * levels[:, 1:2] - levels[:, 0:1] + out
        return on_walls_zero(out, walls)


def on_walls_zero(field: torch.Tensor, walls: tuple[bool, bool, bool, bool]) -> torch.Tensor:
    """``field`` with its outer rows/columns zeroed where ``walls`` are the physical boundary.

    ``walls`` flags the edges x low, x high, y low, y high; on the boundary ``u = 0``
    is known, so the prediction is not asked to learn it.
    """
    if not any(walls):
        return field
    mask = torch.ones(field.shape[-2:], dtype=field.dtype, device=field.device)
    for flag, index in zip(walls, ((0, slice(None)), (-1, slice(None)),
                                   (slice(None), 0), (slice(None), -1))):
        if flag:
            mask[index] = 0
    return field * mask


def receptive_radius(kernel_size: int) -> int:
    """Receptive radius of :class:`SurrogateCNN` with ``kernel_size``: the halo it needs."""
    return CONVS * (kernel_size - 1) // 2


def build_model(params: MemberParams, dtype: str = "float32", device: str = "cpu",
                seed: int = 0, target: str = "update", bias: bool = False) -> SurrogateCNN:
    """Build a member's model on ``device``; couple always uses float32 (:data:`TRAINING_DTYPE`).

    ``dtype`` other than float32 is for exactness tests (e.g. DDP against one process).
    """
    torch.manual_seed(seed)
    model = SurrogateCNN(params.kernel_size, params.width, target, bias, params.activation)
    return model.to(device=device, dtype=getattr(torch, dtype))
