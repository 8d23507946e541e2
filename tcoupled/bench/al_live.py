"""Live screens on the ``bench al`` table's molecules, against their replay.

Each live screen is a real ``screen`` job (``mpiexec``, 2 xTB workers) over a SMILES file
holding the table's molecules, with seeds ``0 .. repeats-1``; its molecules are judged
by the table (the same IE code, ETKDG seed and ``--fmax``, so a molecule's IE is the
table's). The live screens and the replay of the same policy, budget and seeds agree when
the 95% interval of the difference of their means (Welch) holds 0; if they do not, the
replay is missing something (or, at 8 screens, 1 time in 20, chance).

    python -m tcoupled.bench.al_live --repeats 8 --budget 100 --policies gp-ucb seed-greedy
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np


def live_found(out: Path, table_smiles: list[str], top: np.ndarray) -> tuple[int, bool, float]:
    """Top-1% molecules a finished screen found, whether its best is one, its utilisation."""
    import h5py

    from tcoupled.runtime.store import read_json

    top_smiles = {table_smiles[i] for i in top}
    with h5py.File(out / "results.h5", "r") as h5:
        smiles = h5["molecules/smiles"].asstr()[()]
        ie = h5["molecules/ie_ev"][()]
    found = sum(s in top_smiles for s in smiles)
    best = str(smiles[int(np.nanargmax(ie))]) in top_smiles if np.isfinite(ie).any() else False
    utilization = read_json(out / "summary.json")["worker_utilization"]
    return found, best, float(np.mean(list(utilization.values())))


def difference(a: list[float], b: list[float]) -> list[float]:
    """95% Welch interval of ``mean(a) - mean(b)``."""
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = float(np.sqrt(va + vb))
    if se == 0.0:
        return [float(x.mean() - y.mean())] * 2
    dof = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(stats.t.ppf(0.975, dof)) * se
    return [float(x.mean() - y.mean()) - half, float(x.mean() - y.mean()) + half]


def compare(policies: list[str], budget: int, repeats: int, workers: int = 2) -> list[dict]:
    """Run the live screens and the replays; return one row per policy."""
    from tcoupled.bench.al import first_of_sample, sizes
    from tcoupled.bench.al_replay import Table, interval
    from tcoupled.bench.al_table import read_table, table_path
    from tcoupled.bench.launch import mpiexec, run_job

    wanted = sizes(False)["table"]
    table = Table(first_of_sample(read_table(table_path()), wanted))
    out_rows = []
    with tempfile.TemporaryDirectory(prefix="al-live-") as tmp:
        space = Path(tmp) / "table.smi"
        space.write_text("\n".join(table.smiles) + "\n")
        for policy in policies:
            found, best, util = [], [], []
            for seed in range(repeats):
                out = Path(tmp) / f"{policy}-{seed}"
                run_job([mpiexec(), "-n", str(workers + 1), sys.executable, "-m", "tcoupled",
                         "screen", "--space", str(space), "--budget", str(budget),
                         "--policy", policy, "--seed", str(seed), "--out", str(out)],
                        timeout=600)
                result = live_found(out, table.smiles, table.top)
                found.append(result[0])
                best.append(result[1])
                util.append(result[2])
            replayed = table.screens(policy, budget, workers, repeats)
            live_mean, live_ci = interval(found)
            replay_mean, replay_ci = interval(replayed["found"])
            out_rows.append({
                "policy": policy, "budget": budget, "workers": workers, "repeats": repeats,
                "live_found": found, "live_mean": live_mean, "live_ci95": live_ci,
                "replay_mean": replay_mean, "replay_ci95": replay_ci,
                "live_p_best_in_top1": float(np.mean(best)),
                "replay_p_best_in_top1": float(np.mean(replayed["best_in_top"])),
                "live_mean_utilization": float(np.mean(util)),
                "difference_ci95": (diff := difference(found, replayed["found"])),
                "agree": bool(diff[0] <= 0.0 <= diff[1])})
            row = out_rows[-1]
            print(f"{policy:12s} live {live_mean:5.2f} [{live_ci[0]:5.2f}, {live_ci[1]:5.2f}]"
                  f"  replay {replay_mean:5.2f} [{replay_ci[0]:5.2f}, {replay_ci[1]:5.2f}]"
                  f"  difference [{row['difference_ci95'][0]:.2f}, "
                  f"{row['difference_ci95'][1]:.2f}]"
                  f"  utilisation {row['live_mean_utilization']:.3f}"
                  f"  {'agree' if row['agree'] else 'DISAGREE'}", flush=True)
    return out_rows


def main() -> None:
    """Run the comparison and add it to ``OUT/bench.json`` under ``al.live``."""
    from tcoupled.runtime.store import read_json, write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--policies", nargs="+", default=["gp-ucb", "seed-greedy"])
    parser.add_argument("--out", default="runs/bench")
    args = parser.parse_args()
    rows = compare(args.policies, args.budget, args.repeats)
    path = Path(args.out) / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    everything = read_json(path) if path.exists() else {}
    everything.setdefault("al", {})["live"] = rows
    write_json(path, everything)


if __name__ == "__main__":
    main()
