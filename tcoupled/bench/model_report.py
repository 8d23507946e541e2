"""The cost-model benchmark's table and plot (:mod:`tcoupled.bench.model`)."""

from __future__ import annotations

from pathlib import Path


def table(results: dict) -> list[str]:
    """Predicted against measured seconds per cycle, one line per case, then auto."""
    lines = [f"{'case':<40} {'ch':<4} {'sim/train':>9} {'predicted s':>11} "
             f"{'measured s (IQR)':>25} {'ratio':>6} {'sums':>5}"]
    for r in results["rows"]:
        head = (f"{r['case']:<40} {r['channel']:<4} {r['solver_to_training']:>9.2f} "
                f"{r['predicted_s']:>11.4f}")
        if r.get("failed"):
            lines.append(f"{head} {'failed':>25}")
            continue
        spread = f"{r['measured_s']:.4f} ({r['measured_q1']:.4f}-{r['measured_q3']:.4f})"
        lines.append(f"{head} {spread:>25} {r['ratio']:>6.2f} {r['analytic_ratio']:>5.2f}")
    for c in results["choices"]:
        if "failed" in c:
            lines.append(f"{c['workload']}: failed ({c['failed'][:200]})")
            continue
        verdict = f"; measured faster: {c['measured_faster']}" if "measured_faster" in c else ""
        if "correct" in c:
            verdict += " -> correct" if c["correct"] else " -> WRONG"
        lines.append(f"auto for {c['workload']}: {c['auto']}{verdict}")
    head = results["headline"]
    lines.append(f"{head['cases']} cases x {head['launches_per_case']} launches: within 25% "
                 f"{head['within_25pct']} ({head['within_25pct_fraction']:.0%}), worst error "
                 f"{head['worst_error']:.0%} (the analytic sums alone: "
                 f"{head['analytic_within_25pct']}); auto correct {head['auto_correct']}/"
                 f"{head['auto_judged']}; handoff costs from {head['handoff_source']}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Predicted against measured cycle time (IQR bars), with the 25% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for division, marker in (("time", "o"), ("space", "s")):
        pts = [r for r in results["rows"] if r["division"] == division and not r.get("failed")]
        if pts:
            ax.errorbar([r["measured_s"] for r in pts], [r["predicted_s"] for r in pts],
                        xerr=[[r["measured_s"] - r["measured_q1"] for r in pts],
                              [r["measured_q3"] - r["measured_s"] for r in pts]],
                        fmt=marker, label=f"{division} division")
    values = [v for r in results["rows"] if not r.get("failed")
              for v in (r["measured_s"], r["predicted_s"])] or [1.0]
    low, high = min(values) / 1.5, max(values) * 1.5
    ax.plot([low, high], [low, high], "k-", lw=0.8)
    ax.fill_between([low, high], [low * 0.75, high * 0.75], [low * 1.25, high * 1.25],
                    color="grey", alpha=0.2, label="±25%")
    ax.set(xscale="log", yscale="log", xlabel="measured s/cycle (median, IQR)",
           ylabel="predicted s/cycle", title="Cost model against real couple runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
