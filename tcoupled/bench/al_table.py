"""The table behind ``bench al``: GFN2 ionization energies of a fixed random QM9 sample.

The sample is the first ``n`` molecules of one seeded permutation of QM9, so a larger
table extends a smaller one. Rows are computed on the task farm (the ``ie`` task the
screen runs, same payload) and appended to a CSV in the user cache as they arrive: a
killed build resumes where it stopped, and nothing is computed twice.

Run as a job (``bench al --build-table N`` launches it)::

    mpiexec -n 3 python -m mpi4py -m tcoupled.bench.al_table --n 2000
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("index", "smiles", "ie_ev", "status", "seconds", "worker")
SAMPLE_SEED = 0  # the sample is the same for every table; only the calculation varies
DEFAULT_EMBED = 0  # ETKDG seed: the screen's default --seed
DEFAULT_FMAX = 0.05


def table_path(embed_seed: int = DEFAULT_EMBED, fmax: float = DEFAULT_FMAX,
               method: str = "gfn2", cache_dir: str | Path = "") -> Path:
    """Return the cache file of the table with these settings."""
    from tcoupled.screening.learner import default_cache_dir

    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    return folder / f"al-table-qm9-{method}-fmax{fmax:g}-embed{embed_seed}.csv"


def sample_order(n_space: int) -> np.ndarray:
    """Return the seeded permutation of the space whose prefix is the sample."""
    return np.random.default_rng(SAMPLE_SEED).permutation(n_space)


def read_table(path: str | Path) -> list[dict]:
    """Return the rows of a table file (``ie_ev`` as float, nan for failures)."""
    rows = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                rows.append({"index": int(row["index"]), "smiles": row["smiles"],
                             "ie_ev": float(row["ie_ev"]) if row["ie_ev"] else np.nan,
                             "status": row["status"], "seconds": float(row["seconds"]),
                             "worker": int(row["worker"])})
            except (KeyError, ValueError, TypeError):
                continue  # a torn last line from a killed build
    return rows


def build(comm: Any, n: int, embed_seed: int = DEFAULT_EMBED, fmax: float = DEFAULT_FMAX,
          method: str = "gfn2", path: str | Path = "", timeout: float = 300.0,
          task: str = "ie") -> dict:
    """Compute the missing rows of the first ``n`` sampled molecules on the farm.

    Rank 0 of ``comm`` manages and appends each result to the table as it arrives;
    the other ranks run xTB (``task="noop"``: a pseudo-energy, for tests). Returns (on
    rank 0) the counts and the rate.
    """
    from tcoupled.farm.manager import map_tasks, run_farm
    from tcoupled.screening.loop import TASKS
    from tcoupled.screening.space import load_qm9

    def drive(manager: Any) -> dict:
        target = Path(path) if path else table_path(embed_seed, fmax, method)
        target.parent.mkdir(parents=True, exist_ok=True)
        space = load_qm9()
        wanted = sample_order(len(space))[:n]
        have = {row["index"] for row in read_table(target)} if target.exists() else set()
        todo = [int(i) for i in wanted if int(i) not in have]
        payloads = [{"smiles": space.smiles[i], "method": method, "engine": "tblite",
                     "fmax": fmax, "seed": embed_seed, "fallback": space.fallback_geometry(i)}
                    for i in todo]
        new = not target.exists() or target.stat().st_size == 0
        start = time.perf_counter()
        manager.stats.restart_clock()
        with open(target, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(COLUMNS)

            def append(result: Any) -> None:
                index = todo[result.task_id]
                ok = result.status == "ok"
                value = result.value["ie_ev"] if isinstance(result.value, dict) \
                    else result.value
                ie = f"{value:.6f}" if ok else ""
                writer.writerow([index, space.smiles[index], ie, result.status,
                                 f"{result.seconds:.3f}", result.worker])
                handle.flush()

            results = map_tasks(manager, payloads, append)
        wall = time.perf_counter() - start
        return {"path": str(target), "requested": n, "computed": len(todo),
                "failed": sum(r.status != "ok" for r in results), "wall_s": wall,
                "molecules_per_s": len(todo) / max(wall, 1e-9),
                "worker_utilization": manager.report()["mean_utilization"]}

    return run_farm(comm, TASKS[task], timeout, drive)


def main() -> None:
    """Entry point of the build job (under ``mpiexec``)."""
    from tcoupled.bench.launch import print_result
    from tcoupled.runtime.mpienv import init_mpi

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--embed-seed", type=int, default=DEFAULT_EMBED)
    parser.add_argument("--fmax", type=float, default=DEFAULT_FMAX)
    parser.add_argument("--method", default="gfn2")
    parser.add_argument("--path", default="")
    args = parser.parse_args()
    comm = init_mpi().COMM_WORLD
    outcome = build(comm, args.n, args.embed_seed, args.fmax, args.method, args.path)
    if comm.Get_rank() == 0:
        print_result(outcome)


if __name__ == "__main__":
    main()
