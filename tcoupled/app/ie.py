"""``tcoupled ie SMILES...``: vertical ionization energies of given molecules.

Molecules are spread over the ranks by the task farm (rank 0 manages, the others
compute; one rank computes serially). A start geometry RDKit cannot make comes from
QM9 (by canonical SMILES) or harder embedding; each row says which. A molecule that
fails is reported with its reason; the command still succeeds. SIGTERM or SIGINT: the
molecules running finish, the rest are not started (status ``not run``), the
summary says ``stopped`` and the exit status is 143 (130); run them again by name.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from tcoupled.runtime.errors import ConfigError

HELP = "vertical ionization energies (xTB) of molecules given as SMILES"
USES_MPI = True
ENGINE_NAMES = ("tblite", "xtb-python")
METHOD_NAMES = ("gfn2", "ipea")


@dataclass(frozen=True)
class IEConfig:
    """Validated options of the ``ie`` command."""

    smiles: tuple[str, ...]
    method: str = "gfn2"
    engine: str = "tblite"
    fmax: float = 0.05
    seed: int = 42
    task_timeout: float = 300.0
    out: str = "runs/ie"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ie`` options."""
    parser.add_argument("smiles", nargs="+", metavar="SMILES", help="molecules")
    parser.add_argument("--method", default="gfn2", choices=METHOD_NAMES,
                        help="gfn2: raw GFN2-xTB difference; ipea: IPEA1-xTB as xtb --vip")
    parser.add_argument("--engine", default="tblite", choices=ENGINE_NAMES,
                        help="xTB engine")
    parser.add_argument("--fmax", type=float, default=0.05,
                        help="relaxation force threshold (eV/Angstrom)")
    parser.add_argument("--seed", type=int, default=42, help="ETKDG random seed")
    parser.add_argument("--task-timeout", type=float, default=300.0,
                        help="seconds one molecule may take before it is recorded as failed")
    parser.add_argument("--out", default="runs/ie", help="output directory")


def make_config(args: argparse.Namespace, world_size: int) -> IEConfig:
    """Validate the options (rank 0); raise :class:`ConfigError` naming a bad value."""
    if not (math.isfinite(args.fmax) and args.fmax > 0):
        raise ConfigError(f"--fmax must be positive, got {args.fmax}")
    if not (math.isfinite(args.task_timeout) and args.task_timeout > 0):
        raise ConfigError(f"--task-timeout must be positive, got {args.task_timeout}")
    from tcoupled.chemistry.engines import get_engine
    from tcoupled.runtime.store import prepare_out_dir

    get_engine(args.engine)  # a one-line error if it cannot run here
    prepare_out_dir(args.out)
    return IEConfig(tuple(args.smiles), args.method, args.engine, args.fmax, args.seed,
                    args.task_timeout, args.out)


def _payload(config: IEConfig, smiles: str) -> dict:
    return {"smiles": smiles, "method": config.method, "engine": config.engine,
            "fmax": config.fmax, "seed": config.seed}


def run(config: IEConfig, comm: Any) -> int:
    """Compute the ionization energies on the farm; rank 0 prints and writes results."""
    from tcoupled.farm.manager import CANCELLED, TaskResult, run_farm
    from tcoupled.runtime import stopping
    from tcoupled.runtime.faults import inject

    def drive(manager):
        results = [TaskResult(i, "not run", error="stopped before it started", worker=-1)
                   for i in range(len(config.smiles))]
        pending = list(enumerate(config.smiles))
        while manager.n_running or (pending and not stopping.requested()):
            while pending and manager.n_free and not stopping.requested():
                index, smiles = pending.pop(0)
                manager.submit(index, _payload(config, smiles))
            if stopping.requested():
                manager.cancel_queued()  # the running molecules finish, no new one starts
            result = manager.next_result()
            if result.status != CANCELLED:
                results[result.task_id] = result
            inject("ie", "result", sum(r.status != "not run" for r in results), 0)
        _report(config, results, manager.report())
        return stopping.exit_status(stopping.received()) if stopping.requested() else 0

    stopping.install()
    status = run_farm(comm, "tcoupled.chemistry.ie:ie_task", config.task_timeout, drive)
    return comm.bcast(status, root=0) if comm is not None and comm.Get_size() > 1 else status


def _rows(config: IEConfig, results: list) -> list[dict]:
    rows = []
    for smiles, result in zip(config.smiles, results):
        ok = result.status == "ok"
        rows.append({"smiles": smiles, "ie_ev": result.value["ie_ev"] if ok else None,
                     "geometry": result.value.get("geometry") if ok else None,
                     "status": result.status, "error": result.error,
                     "seconds": result.seconds, "worker": result.worker})
    return rows


def _report(config: IEConfig, results: list, farm: dict) -> None:
    from tcoupled.runtime.store import write_summary

    rows = _rows(config, results)
    print(f"{'SMILES':30s} {'IE / eV':>10s} {'time / s':>9s}  status")
    for row in rows:
        ie = f"{row['ie_ev']:10.4f}" if row["ie_ev"] is not None else f"{'-':>10s}"
        note = "ok" if row["status"] == "ok" else f"{row['status']}: {row['error']}"
        print(f"{row['smiles']:30s} {ie} {row['seconds']:9.2f}  {note}")
    _write_h5(config, rows)
    from tcoupled.runtime import stopping

    stopped = stopping.signal_name(stopping.received()) if stopping.requested() else None
    write_summary(config.out, {"command": "ie", "method": config.method, "stopped": stopped,
                               "engine": config.engine, "results": rows,
                               "failed": sum(r["status"] == "failed" for r in rows),
                               "tasks_per_s": farm["tasks_per_s"],
                               "worker_utilization": farm["worker_utilization"],
                               "wall_s": farm["wall_s"]})


def _write_h5(config: IEConfig, rows: list[dict]) -> None:
    import h5py
    import numpy as np

    from tcoupled.runtime.store import open_results

    with open_results(config.out, asdict(config), "ie") as h5:
        group = h5.create_group("molecules")
        for key in ("smiles", "status", "error", "geometry"):
            group.create_dataset(key, data=[r[key] or "" for r in rows],
                                 dtype=h5py.string_dtype())
        group.create_dataset("ie_ev", data=np.array(
            [np.nan if r["ie_ev"] is None else r["ie_ev"] for r in rows]))
        group.create_dataset("seconds", data=np.array([r["seconds"] for r in rows]))
        group.create_dataset("worker", data=np.array([r["worker"] for r in rows]))
        group["ie_ev"].attrs["units"] = "eV"
