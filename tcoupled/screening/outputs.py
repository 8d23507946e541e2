"""Outputs of a screen: ``results.h5`` and ``summary.json``.

Its plot is drawn by :mod:`tcoupled.report.screen`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

TEXT_FIELDS = ("smiles", "status", "error")
NUMBER_FIELDS = ("index", "ie_ev", "worker", "start", "end", "seconds", "predicted")


def write_results(out_dir: str | Path, config: dict, records: list, snapshots: list,
                  farm: dict) -> None:
    """Write every simulated molecule and the per-iteration model snapshots."""
    import h5py

    from tcoupled.runtime.store import open_results, to_json

    with open_results(out_dir, config, "screen") as h5:
        molecules = h5.create_group("molecules")
        molecules.attrs["description"] = (
            "every finished calculation in completion order (molecules RDKit cannot parse "
            "first, worker 0, no time); start/end in s since the screen began")
        for name in TEXT_FIELDS:
            molecules.create_dataset(name, data=[getattr(r, name) for r in records],
                                     dtype=h5py.string_dtype())
        for name in NUMBER_FIELDS:
            molecules.create_dataset(name, data=np.array([getattr(r, name) for r in records],
                                                         dtype=float))
        molecules["ie_ev"].attrs["units"] = "eV"
        iterations = h5.create_group("iterations")
        iterations.attrs["description"] = "one row per refit of the model"
        rows = [asdict(s) for s in snapshots]
        for name in asdict(snapshots[0]) if snapshots else ():
            data = [row[name] for row in rows]
            kind = h5py.string_dtype() if isinstance(data[0], str) else float
            iterations.create_dataset(name, data=data, dtype=kind)
        h5.attrs["farm_json"] = to_json(farm, sort_keys=True)


def best_so_far(records: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (simulation count, end time, best IE so far) in completion order."""
    ordered = sorted(records, key=lambda r: r.end)
    values = np.array([r.ie_ev if r.status == "ok" else -np.inf for r in ordered])
    best = np.maximum.accumulate(values) if len(values) else values
    best[~np.isfinite(best)] = np.nan
    return np.arange(1, len(ordered) + 1), np.array([r.end for r in ordered]), best


def read_records(out_dir: str | Path) -> list:
    """Read the records of a finished screen (for a baseline overlay)."""
    from tcoupled.runtime.inputs import open_h5_input
    from tcoupled.screening.loop import Record

    with open_h5_input(Path(out_dir) / "results.h5", "", root=out_dir) as h5:
        group = h5["molecules"]
        columns = {n: [v.decode() if isinstance(v, bytes) else v for v in group[n][()]]
                   for n in TEXT_FIELDS}
        columns.update({n: group[n][()] for n in NUMBER_FIELDS})
    count = len(columns["smiles"])
    return [Record(**{n: columns[n][i] for n in columns}) for i in range(count)]


def summarize(loop: Any, farm: dict, extra: dict) -> dict:
    """Return the ``summary.json`` content (stable key names, see README)."""
    best = loop.best()
    predict = [s.predict_s for s in loop.snapshots]
    return {"command": "screen", "simulated": len(loop.records),
            "failed": sum(r.status != "ok" for r in loop.records),
            "best_ie_ev": best.ie_ev if best else None,
            "best_smiles": best.smiles if best else None,
            "tasks_per_s": farm["tasks_per_s"],
            "worker_utilization": farm["worker_utilization"],
            "worker_busy_s": farm["worker_busy_s"], "wall_s": farm["wall_s"],
            "retrainings": len(loop.snapshots),
            "predict_s_mean": float(np.mean(predict)) if predict else None,
            "predict_s_max": float(np.max(predict)) if predict else None,
            "invalid_smiles": len(getattr(loop, "rejected", ())), **extra}
