"""Figures shared by every report: pyplot on Agg, atomic PNG writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """Matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_tight(fig: Any, path: Path) -> Path:
    """Lay ``fig`` out tightly, save it at 90 dpi and close it."""
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
    pyplot().close(fig)
    return path


def save_figure(fig: Any, path: Path, dpi: int) -> Path:
    """Save ``fig`` as PNG atomically (a killed report never leaves half an image)."""
    from tcoupled.runtime.store import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path
