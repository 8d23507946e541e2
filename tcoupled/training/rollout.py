"""The autoregressive rollout of a surrogate and the errors PDE-surrogate benchmarks report.

The model is applied to its own output: from ``(u^{n-1}, u^n)`` it predicts ``u^{n+1}``,
then from ``(u^n, u^{n+1})`` the next level, and so on. Errors per step against the
solver: VRMSE (RMSE divided by the standard deviation of the true field, as in The
Well and PDEBench; 1 means no better than predicting the field's mean) and the
relative L2 error ``|p - t| / |t|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tcoupled.training.samples import as_training_dtype


@torch.no_grad()
def rollout(model: nn.Module, previous: np.ndarray, start: np.ndarray, steps: int,
            device: Any = "cpu") -> list[np.ndarray]:
    """Apply ``model`` ``steps`` times from the global levels ``previous``, ``start``."""
    module = getattr(model, "module", model)
    dtype = next(module.parameters()).dtype
    levels, _ = as_training_dtype(torch.as_tensor(np.stack([previous, start]), device=device),
                                  dtype)
    levels = levels[None]
    fields = []
    for _ in range(steps):
        nxt = module(levels)
        levels = torch.cat([levels[:, 1:2], nxt], dim=1)
        fields.append(nxt[0, 0].cpu().numpy())
    return fields


def relative_l2(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> list[float]:
    """Relative L2 error ``|p - t| / |t|`` per step."""
    return [float(np.linalg.norm(p - t) / max(np.linalg.norm(t), np.finfo(float).tiny))
            for p, t in zip(predicted, truth, strict=True)]


def vrmse(predicted: Sequence[np.ndarray], truth: Sequence[np.ndarray]) -> list[float]:
    """VRMSE per step: ``sqrt(mean((p - t)^2)) / std(t)`` over the grid (float64)."""
    out = []
    for p, t in zip(predicted, truth, strict=True):
        t = np.asarray(t, dtype=np.float64)
        rmse = np.sqrt(np.mean((np.asarray(p, dtype=np.float64) - t) ** 2))
        out.append(float(rmse / max(float(np.std(t)), np.finfo(float).tiny)))
    return out
