"""The screen's figure: best ionization energy found against simulations and time."""

from __future__ import annotations

from pathlib import Path

from tcoupled.report.figures import pyplot, save_figure
from tcoupled.screening.outputs import best_so_far


def plot_progress(out_dir: str | Path, records: list, label: str,
                  baseline: list | None = None) -> Path:
    """Plot the best IE found vs simulations and vs time; return the PNG path."""
    plt = pyplot()
    fig, (by_count, by_time) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    runs = [(label, records)] + ([("random baseline", baseline)] if baseline else [])
    for name, rows in runs:
        count, end, best = best_so_far(rows)
        by_count.step(count, best, where="post", label=name)
        by_time.step(end, best, where="post", label=name)
    by_count.set_xlabel("simulations")
    by_time.set_xlabel("time / s")
    by_count.set_ylabel("best IE found / eV")
    by_count.legend()
    fig.tight_layout()
    path = Path(out_dir) / "best_ie.png"
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
