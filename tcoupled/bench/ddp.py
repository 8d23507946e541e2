"""DDP benchmark: CNN training samples per second at 1 and 2 train ranks, allreduce share.

Each rank count is one launch of :mod:`tcoupled.bench.ddp_driver` (the surrogate CNN
1->8->16->8->1, kernel 5, batches of 4 x 1 x 256^2 float32 per rank, one thread per
rank, gloo). The limit is perfect scaling: ``P`` ranks doing ``P`` times the samples of
one; the efficiency is the measured fraction of it, and the allreduce share says how
much of the gap is gradient averaging.
"""

from __future__ import annotations

from pathlib import Path

NAME = "ddp"
DRIVER = "tcoupled.bench.ddp_driver"


def run(options: dict) -> dict:
    """Run the DDP benchmark; ``options['quick']`` trains on 64^2 for a few iterations."""
    from tcoupled.bench.launch import run_driver

    quick = options.get("quick", False)
    n, iters = (64, 3) if quick else (256, 12)
    rows = []
    for ranks in (1, 2):
        rows.append(run_driver(DRIVER, ranks, "--n", str(n), "--iters", str(iters),
                               "--batch", "4", "--kernel-size", "5", timeout=600))
    results = {"n": n, "rows": rows}
    one, two = rows[0], rows[1]
    results["headline"] = {
        "n": n, "samples_per_s_1": one["samples_per_s"], "samples_per_s_2": two["samples_per_s"],
        "speedup_2": two["samples_per_s"] / one["samples_per_s"],
        "efficiency_2": two["samples_per_s"] / (2 * one["samples_per_s"]),
        "allreduce_share_2": two["allreduce_share"]}
    return results


def table(results: dict) -> list[str]:
    """One line per rank count, then the efficiency."""
    lines = [f"{'ranks':>5} {'samples/s':>10} {'s/iter':>8} {'allreduce':>10} {'share':>6}"]
    for r in results["rows"]:
        lines.append(f"{r['ranks']:>5} {r['samples_per_s']:>10.1f} {r['s_per_iter']:>8.3f} "
                     f"{r['allreduce_s_per_iter'] * 1e3:>8.1f}ms {r['allreduce_share']:>6.1%}")
    head = results["headline"]
    lines.append(f"CNN k=5 on 4 x {results['n']}^2 per rank: 2 ranks = "
                 f"{head['speedup_2']:.2f}x one rank (efficiency {head['efficiency_2']:.2f})")
    return lines


def plot(results: dict, path: Path) -> None:
    """Samples per second against ranks, with perfect scaling and the allreduce share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    ranks = [r["ranks"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(ranks, [r["samples_per_s"] for r in rows], width=0.5, label="measured")
    ax.plot(ranks, [rows[0]["samples_per_s"] * p for p in ranks], "k--", marker="o",
            label="perfect scaling")
    for r in rows:
        ax.annotate(f"allreduce {r['allreduce_share']:.0%}", (r["ranks"], r["samples_per_s"]),
                    ha="center", va="bottom")
    ax.set(xticks=ranks, xlabel="train ranks (gloo, one thread each)", ylabel="samples/s",
           title=f"DDP CNN training, k=5, 4 x {results['n']}^2 per rank")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
