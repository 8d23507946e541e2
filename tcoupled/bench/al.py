"""Active-learning benchmark: replay screening policies on a table of known GFN2 IEs.

The table (:mod:`tcoupled.bench.al_table`, built once on the farm and cached) holds
the ionization energies of a fixed random QM9 sample and the seconds each took. Every
policy is replayed on it without xTB (:mod:`tcoupled.screening.replay`): the same
queue-and-refit loop as the live ``screen``, with 2 or 8 asynchronous workers whose
tasks last what they lasted on the farm. Each row is ``repeats`` screens with seeds
``0 .. repeats-1``: the mean number of the table's top-1% molecules found (95%
Student-t interval) and the share of screens whose best molecule is in the top 1%.
It also times one refit of the default policy over all of QM9 at 1,000 training
molecules, on one core, and measures what the issue's async-greedy gap came from.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tcoupled.runtime.errors import ConfigError

NAME = "al"
BASELINE = "seed-greedy"
POLICY_ROWS = ("gp-ucb", "gp-ei", "greedy", "ucb", "seed-greedy", "random")


def sizes(quick: bool) -> dict[str, Any]:
    """Repeats, budgets, worker counts and the training-set size of the scoring timer."""
    if quick:
        return {"table": 40, "repeats": 3, "budgets": [24], "workers": [2], "score_train": 50,
                "score_space": 2000,
                "policies": ("gp-ucb", "seed-greedy", "random")}
    return {"table": 4000, "repeats": 20, "budgets": [24, 100], "workers": [2, 8],
            "score_train": 1000,
            "score_space": 0, "gap_repeats": 100,
            "policies": POLICY_ROWS}


def first_of_sample(rows: list[dict], n: int) -> list[dict]:
    """The rows of the first ``n`` molecules of the table's sample, in sample order."""
    from tcoupled.bench.al_table import sample_order
    from tcoupled.screening.space import load_qm9

    by_index = {r["index"]: r for r in rows}
    order = sample_order(len(load_qm9()))[:n]
    return [by_index[int(i)] for i in order if int(i) in by_index]


def build_table(n: int) -> dict:
    """Compute the missing rows of the table's first ``n`` molecules on a local farm.

    One manager and one worker per core, launched as its own ``mpiexec`` job; a row is
    appended as each result arrives, so an interrupted build resumes.
    """
    import os

    from tcoupled.bench.launch import run_driver

    workers = max(1, os.cpu_count() or 1)
    print(f"bench al: computing the IEs of {n} QM9 molecules on {workers} workers ...",
          flush=True)
    return run_driver("tcoupled.bench.al_table", workers + 1, "--n", str(n),
                      timeout=max(600.0, 2.0 * n))


def run(options: dict) -> dict:
    """Replay every policy at every budget and worker count; time the scoring."""
    from tcoupled.bench.al_checks import gap_diagnosis, ie_noise, scoring_time
    from tcoupled.bench.al_replay import Table, policy_settings, row
    from tcoupled.bench.al_table import read_table, table_path
    from tcoupled.screening.policies import DEFAULT_POLICY

    size = sizes(options["quick"])
    path = table_path()
    wanted = options.get("build_table") or size["table"]
    built = None
    if len(read_table(path) if path.exists() else []) < wanted:
        built = build_table(wanted)  # only the missing rows are computed
    rows_in = first_of_sample(read_table(path), wanted)
    if len(rows_in) < wanted:
        raise ConfigError(f"bench al: the table {path} holds {len(rows_in)} of the first "
                          f"{wanted} sampled molecules")
    start = time.perf_counter()
    table = Table(rows_in)
    rows, curves = [], {}
    for policy in size["policies"]:
        for budget in size["budgets"]:
            for workers in size["workers"]:
                outcome = table.screens(policy, budget, workers, size["repeats"])
                rows.append(row(policy, budget, workers, outcome))
                if workers == size["workers"][0] and budget == size["budgets"][-1]:
                    curves[policy] = outcome["curve"].tolist()
    top_budget = size["budgets"][-1]

    def mean_of(policy: str) -> float:
        return next(r["mean_top1_found"] for r in rows if r["policy"] == policy
                    and r["budget"] == top_budget and r["workers"] == size["workers"][0])

    headline = {"default_policy": DEFAULT_POLICY, "budget": top_budget,
                "workers": size["workers"][0],
                "default_over_seed_greedy": mean_of(DEFAULT_POLICY) / mean_of(BASELINE),
                "default_over_random": mean_of(DEFAULT_POLICY) / max(mean_of("random"), 1e-9)}
    replay_s = time.perf_counter() - start
    return {"table": str(path), "build": built, "molecules": len(table.values),
            "failed": int(np.isnan(table.values).sum()), "top1_count": len(table.top),
            "top1_threshold_ev": float(table.values[table.top].min()),
            "settings": {p: policy_settings(p) for p in size["policies"]},
            "rows": rows, "headline": headline, "curves": curves, "replay_s": replay_s,
            "gap": gap_diagnosis(table, size, row) if not options["quick"] else {},
            "ie_noise": ie_noise(rows_in),
            "scoring": scoring_time(size["score_train"], table.values,
                                    space=size["score_space"])}


def table(results: dict) -> list[str]:
    """Text table of the rows and the headline."""
    lines = [f"table: {results['molecules']} molecules ({results['failed']} failed), "
             f"top 1% = {results['top1_count']} molecules >= "
             f"{results['top1_threshold_ev']:.3f} eV",
             f"{'policy':12s} {'budget':>6s} {'workers':>7s} {'top-1% found':>13s} "
             f"{'95% interval':>14s} {'P(best in top 1%)':>18s}"]
    for r in results["rows"]:
        lines.append(f"{r['policy']:12s} {r['budget']:6d} {r['workers']:7d} "
                     f"{r['mean_top1_found']:13.2f} [{r['ci95'][0]:5.2f}, {r['ci95'][1]:5.2f}] "
                     f"{r['p_best_in_top1']:18.2f}")
    head = results["headline"]
    lines.append(f"{head['default_policy']} over {BASELINE} at budget {head['budget']}, "
                 f"{head['workers']} workers: {head['default_over_seed_greedy']:.2f}x "
                 f"({head['default_over_random']:.1f}x random)")
    score = results["scoring"]
    lines.append(f"scoring all {score['space']} QM9 molecules at {score['n_train']} training "
                 f"molecules, one core: {score['refit_s_median']:.3f} s per refit (median of "
                 f"{len(score['refit_s'])}; kNN greedy {score['knn_predict_s']:.3f} s)")
    for key, value in results.get("gap", {}).items():
        lines.append(f"gap: {key}: {value['mean_top1_found']:.2f} "
                     f"[{value['ci95'][0]:.2f}, {value['ci95'][1]:.2f}] of "
                     f"{value.get('top1_count', results['top1_count'])}, sd of one screen "
                     f"{value['sd']:.2f} ({value['repeats']} screens)")
    noise = results.get("ie_noise") or {}
    if noise:
        lines.append(f"IE noise: {noise['note']}")
    return lines


def plot(results: dict, path: Any) -> None:
    """Mean top-1% molecules found against results, default vs random and seed-greedy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    head = results["headline"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for policy, curve in results["curves"].items():
        x = np.arange(1, len(curve) + 1)
        style = {"lw": 2.5} if policy == head["default_policy"] else {"lw": 1.2}
        ax.plot(x, curve, label=policy, **style)
    ax.set_xlabel(f"calculations finished ({head['workers']} asynchronous workers)")
    ax.set_ylabel(f"top-1% molecules found (of {results['top1_count']})")
    ax.set_title(f"replay on {results['molecules']} QM9 GFN2 IEs, mean of "
                 f"{results['rows'][0]['repeats']} screens")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
