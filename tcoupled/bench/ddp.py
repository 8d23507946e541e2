"""DDP benchmark: CNN training samples per second at 1 and 2 train ranks, with error bars.

Each round launches :mod:`tcoupled.bench.ddp_driver` (the surrogate CNN
1->8->16->8->1, kernel 5, batches of 4 x 1 x 256^2 float32 per rank, one thread per
rank, gloo) twice: two independent one-rank runs at the same time (their timed windows
start together), then one two-rank DDP run. The baseline thus carries the same load
on the node as the DDP run, and the efficiency of a round is
``samples/s of the DDP run / (sum of the two one-rank runs' samples/s)``: the fraction of
perfect scaling that gradient averaging leaves. Rounds are repeated (7 by default); the
headline is the median efficiency with a distribution-free 95% interval
(:func:`tcoupled.bench.timing.median_ci95`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

NAME = "ddp"
DRIVER = "tcoupled.bench.ddp_driver"


def sizes(quick: bool) -> dict:
    """Grid, iterations per timed window and rounds."""
    if quick:
        return {"n": 64, "iters": 3, "rounds": 2}
    return {"n": 256, "iters": 24, "rounds": 7}


def one_round(size: dict) -> dict:
    """Two one-rank launches at once, then a two-rank launch; their rows and efficiency."""
    from tcoupled.bench.launch import run_driver, run_drivers_together

    args = ("--n", str(size["n"]), "--iters", str(size["iters"]), "--batch", "4",
            "--kernel-size", "5")
    with tempfile.TemporaryDirectory() as sync:
        singles = run_drivers_together(
            DRIVER, [(1, (*args, "--sync-dir", sync, "--sync-parties", "2"))] * 2, timeout=600)
    ddp = run_driver(DRIVER, 2, *args, timeout=600)
    baseline = sum(r["samples_per_s"] for r in singles)
    return {"singles": singles, "ddp": ddp, "baseline_samples_per_s": baseline,
            "efficiency": ddp["samples_per_s"] / baseline}


def run(options: dict) -> dict:
    """Run the DDP benchmark; ``options['quick']`` trains on 64^2 for a few iterations."""
    from tcoupled.bench.timing import median_ci95

    size = sizes(options.get("quick", False))
    rounds = [one_round(size) for _ in range(size["rounds"])]
    efficiency = median_ci95([r["efficiency"] for r in rounds])
    single = median_ci95([s["samples_per_s"] for r in rounds for s in r["singles"]])
    double = median_ci95([r["ddp"]["samples_per_s"] for r in rounds])
    share = median_ci95([r["ddp"]["allreduce_share"] for r in rounds])
    results = {**size, "rounds": rounds, "rows": rounds}
    results["headline"] = {
        "n": size["n"], "launches": size["rounds"],
        "efficiency_2": efficiency["median"], "ci95": efficiency["ci95"],
        "ci95_coverage": efficiency["coverage"],
        "samples_per_s_1": single["median"], "samples_per_s_1_ci95": single["ci95"],
        "samples_per_s_2": double["median"], "samples_per_s_2_ci95": double["ci95"],
        "speedup_2": double["median"] / single["median"],
        "allreduce_share_2": share["median"],
        "min_window_s": min(min(s["wall_s"] for s in r["singles"] + [r["ddp"]])
                            for r in rounds)}
    return results


def table(results: dict) -> list[str]:
    """One line per round, then the median efficiency and its interval."""
    lines = [f"{'round':>5} {'1 rank (x2) samples/s':>22} {'2 ranks samples/s':>18} "
             f"{'allreduce':>10} {'efficiency':>10}"]
    for i, r in enumerate(results["rounds"]):
        singles = " + ".join(f"{s['samples_per_s']:.1f}" for s in r["singles"])
        lines.append(f"{i:>5} {singles:>22} {r['ddp']['samples_per_s']:>18.1f} "
                     f"{r['ddp']['allreduce_share']:>10.1%} {r['efficiency']:>10.2f}")
    head = results["headline"]
    low, high = head["ci95"]
    lines.append(f"CNN k=5 on 4 x {results['n']}^2 per rank, {head['launches']} rounds: "
                 f"efficiency at 2 ranks {head['efficiency_2']:.2f} "
                 f"[{low:.2f}, {high:.2f}] ({head['ci95_coverage']:.1%} interval), baseline: "
                 "two one-rank runs at the same time")
    return lines


def plot(results: dict, path: Path) -> None:
    """Efficiency of each round, with the median and its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = results["headline"]
    values = [r["efficiency"] for r in results["rounds"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(range(len(values)), values, "o", label="round (DDP / two concurrent 1-rank runs)")
    ax.axhline(head["efficiency_2"], color="k", label="median")
    ax.axhspan(*head["ci95"], color="grey", alpha=0.2,
               label=f"{head['ci95_coverage']:.0%} interval of the median")
    ax.axhline(1.0, color="k", ls="--", lw=0.8, label="perfect scaling")
    ax.set(xlabel="round", ylabel="efficiency at 2 ranks", ylim=(0, max(1.2, *values)),
           title=f"DDP CNN training, k=5, 4 x {results['n']}^2 per rank")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
