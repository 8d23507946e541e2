"""The surrogate CNN (hyperparameters: :mod:`tcoupled.training.ensemble`)."""

from __future__ import annotations

import torch
from torch import nn

from tcoupled.training.ensemble import MemberParams


class SurrogateCNN(nn.Module):
    """Conv2d 1 -> w -> 2w -> w -> 1 with 'same' zero padding and ReLU.

    Zero padding matches the solver's ``u = 0`` boundary, so the model trained
    on subdomain blocks applies to the whole grid.
    """

    def __init__(self, kernel_size: int = 3, width: int = 8) -> None:
        super().__init__()
        k = kernel_size
        self.net = nn.Sequential(
            nn.Conv2d(1, width, k, padding="same"), nn.ReLU(),
            nn.Conv2d(width, 2 * width, k, padding="same"), nn.ReLU(),
            nn.Conv2d(2 * width, width, k, padding="same"), nn.ReLU(),
            nn.Conv2d(width, 1, k, padding="same"))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Map fields ``(batch, 1, nx, ny)`` to the next step's fields."""
        return self.net(u)


def build_model(params: MemberParams, dtype: str = "float32", device: str = "cpu",
                seed: int = 0) -> SurrogateCNN:
    """Build a member's model with the solver's dtype (so handoffs need no cast)."""
    torch.manual_seed(seed)
    model = SurrogateCNN(params.kernel_size, params.width)
    return model.to(device=device, dtype=getattr(torch, dtype))
