"""One timed run of a task runner, launched by the ``farm`` benchmark; prints ``RESULT <json>``.

Runners (the first argument):

``farm`` / ``farm-no-isolation`` / ``farm-per-task``
    the tcoupled MPI task farm over ``COMM_WORLD`` (run under ``mpiexec -n W+1``), with
    its helper process per worker, or with tasks called in the worker (isolation's cost);
    no-op batches in four chunks per worker (the chunks Parsl and tuned futures get),
    except ``farm-per-task``: one task per message, as the active learner submits them.
    xTB batches always run one task per message;
``futures`` / ``futures-tuned``
    ``mpi4py.futures.MPIPoolExecutor`` (run as ``mpiexec -n W+1 python -m
    mpi4py.futures -m tcoupled.bench.farm_driver futures ...``), at its defaults or
    with four chunks per worker (the launcher sets ``MPI4PY_FUTURES_BACKOFF``);
``parsl`` / ``parsl-per-task``
    Parsl's ``HighThroughputExecutor`` with ``W`` workers on this node, loopback only,
    its run directory under ``--run-dir`` (run without ``mpiexec``); tasks bundled
    into four apps per worker (Parsl's advice for short tasks), or one app per task;
``helper``
    the farm's helper process alone (``IsolatedRunner``, no MPI): one pipe round trip.

Every runner first runs one warm-up task per worker (imports, helper start-up). A no-op
batch is then timed in ``--repeats`` windows of at least ``--window`` seconds each (the
batch repeated until the window is full); an xTB batch once. Tasks are wrapped so
that each reports its own run time, measured inside the process that ran it; the
runner's overhead is the worker time not spent inside tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from tcoupled.bench.farm_tally import MapBatch, Tally, summarize, time_window
from tcoupled.farm.manager import noop_task

MODULE = "tcoupled.bench.farm_driver"
TASK = f"{MODULE}:timed_task"
# Small neutral closed-shell molecules for the xTB tasks (GFN2 ionization energies).
MOLECULES = ["O", "N", "CO", "CC", "C=O", "CCO", "CC#N", "CC(C)=O", "OCCO", "C1CC1",
             "CC(=O)O", "c1ccccc1"]
WARMUP_MOLECULE = "C"



def timed_task(payload: dict) -> dict:
    """Run the farm's no-op task or the xTB ionization-energy task; report its own run time.

    ``payload["kind"]`` is ``"noop"`` (:func:`tcoupled.farm.manager.noop_task`) or ``"xtb"``
    (:func:`tcoupled.chemistry.ie.ie_task`, GFN2 by default).
    """
    start = time.perf_counter()
    if payload["kind"] == "xtb":
        from tcoupled.chemistry.ie import ie_task

        value = ie_task(payload)["ie_ev"]
    else:
        value = noop_task(payload)
    return {"value": value, "seconds": time.perf_counter() - start}


def payloads(kind: str, n_tasks: int) -> list[dict]:
    """The batch of ``n_tasks`` payloads of ``kind`` (``noop`` or ``xtb``)."""
    if kind == "noop":
        return [{"kind": kind, "smiles": str(i)} for i in range(n_tasks)]
    return [{"kind": kind, "smiles": MOLECULES[i % len(MOLECULES)], "method": "gfn2"}
            for i in range(n_tasks)]


def warmup_payloads(kind: str, n_workers: int) -> list[dict]:
    """One cheap task per worker, run before the clock starts (imports, start-up)."""
    if kind == "noop":
        return payloads("noop", n_workers)
    return [{"kind": kind, "smiles": WARMUP_MOLECULE, "method": "gfn2"}] * n_workers


def task_function() -> Callable[[dict], dict]:
    """:func:`timed_task` as an object importable by name (never from ``__main__``)."""
    import importlib

    return importlib.import_module(MODULE).timed_task


def timed_chunk(chunk: list[dict]) -> list[dict]:
    """:func:`timed_task` on each payload of ``chunk`` (one Parsl app runs a chunk)."""
    return [timed_task(p) for p in chunk]


def chunks(batch: list, size: int) -> list[list]:
    """``batch`` cut into consecutive lists of ``size`` items."""
    return [batch[i:i + size] for i in range(0, len(batch), size)]


def chunk_size(n_tasks: int, n_workers: int) -> int:
    """Four chunks per worker, as ``multiprocessing.Pool.map`` sizes its chunks."""
    return max(1, -(-n_tasks // (4 * n_workers)))


def measure(runner: str, n_workers: int, map_batch: MapBatch,
            batches: list[tuple[str, int]], repeats: int, window_s: float) -> list[dict]:
    """Warm up, then time each batch; no-op batches in ``repeats`` windows of ``window_s``.

    A no-op window repeats its batch until ``window_s`` has passed, so a fast runner is
    timed as long as a slow one; the row carries every window's tasks/s and overhead.
    xTB batches are real work, long enough by themselves: timed once.
    """
    rows = []
    for kind, n_tasks in batches:
        map_batch(warmup_payloads(kind, n_workers))
        batch = payloads(kind, n_tasks)
        if kind == "xtb":
            start, tally = time.perf_counter(), Tally(len(MOLECULES))
            tally.add(*map_batch(batch))
            runs = [summarize(n_workers, time.perf_counter() - start, tally)]
        else:
            runs = [time_window(n_workers, map_batch, batch, window_s, len(MOLECULES))
                    for _ in range(repeats)]
        middle = sorted(runs, key=lambda r: r["tasks_per_s"])[len(runs) // 2]
        rows.append({"runner": runner, "task": kind, **middle, "batch": n_tasks,
                     "windows": len(runs),
                     "repeats_tasks_per_s": [r["tasks_per_s"] for r in runs],
                     "repeats_overhead_ms": [r["overhead_ms_per_task"] for r in runs]})
    return rows


def run_farm(batches: list[tuple[str, int]], repeats: int, window_s: float, timeout: float,
             isolate: bool = True, chunked: bool = True) -> list | None:
    """The MPI farm over ``COMM_WORLD``; the rows on rank 0, ``None`` elsewhere.

    ``isolate=False`` swaps the workers' helper process for an in-process call
    (:class:`~tcoupled.farm.isolation.InProcessRunner`), in this benchmark only: the
    difference is what the crash and timeout isolation costs. ``chunked`` sends no-op
    batches in four chunks per worker (:func:`chunk_size`); xTB tasks go one at a time.
    """
    from tcoupled.farm import manager as farm
    from tcoupled.farm.isolation import InProcessRunner, IsolatedRunner
    from tcoupled.runtime.mpienv import init_mpi

    farm_comm = init_mpi().COMM_WORLD.Dup()
    name = "farm" if chunked else "farm-per-task"
    name = name if isolate else "farm-no-isolation"

    def size(batch: list, workers: int) -> int:
        return chunk_size(len(batch), workers) if chunked and batch[0]["kind"] == "noop" else 1

    def drive(manager: farm.Manager) -> list[dict]:
        workers = len(manager.workers)

        def map_batch(batch: list) -> tuple[list[dict], int]:
            results = farm.map_tasks(manager, batch, chunksize=size(batch, workers))
            good = [r.value for r in results if r.status == "ok"]
            return good, len(results) - len(good)

        rows = measure(name, workers, map_batch, batches, repeats, window_s)
        for row in rows:
            row["settings"] = {"chunksize": size(payloads(row["task"], row["batch"]), workers),
                               "isolation": isolate}
        return rows

    try:
        return farm.run_farm(farm_comm, TASK, timeout, drive,
                             IsolatedRunner if isolate else InProcessRunner)
    finally:
        farm_comm.Free()


def run_futures(batches: list[tuple[str, int]], repeats: int, window_s: float,
                tuned: bool) -> list[dict]:
    """``mpi4py.futures.MPIPoolExecutor`` on the other ranks of ``COMM_WORLD``.

    Defaults: ``chunksize=1`` and the backoff of the environment (``MPI4PY_FUTURES_BACKOFF``,
    1 ms unless set). Tuned: four chunks per worker (the launcher sets the backoff).
    """
    import os

    from mpi4py.futures import MPIPoolExecutor

    func = task_function()
    name = "mpi4py.futures-tuned" if tuned else "mpi4py.futures"
    with MPIPoolExecutor() as executor:
        workers = executor.num_workers

        def map_batch(batch: list) -> tuple[list[dict], int]:
            size = chunk_size(len(batch), workers) if tuned else 1
            return list(executor.map(func, batch, chunksize=size)), 0

        rows = measure(name, workers, map_batch, batches, repeats, window_s)
    for row in rows:
        row["settings"] = {"backoff_s": float(os.environ.get("MPI4PY_FUTURES_BACKOFF", 1e-3)),
                           "chunksize": chunk_size(row["batch"], workers) if tuned else 1}
    return rows


def parsl_config(n_workers: int, run_dir: str) -> Any:
    """HTEX with ``n_workers`` local workers, listening on loopback only."""
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    executor = HighThroughputExecutor(
        label="htex", address="127.0.0.1", loopback_address="127.0.0.1",
        max_workers_per_node=n_workers, cores_per_worker=1, encrypted=False,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                               worker_init="export OMP_NUM_THREADS=1"))
    return Config(executors=[executor], run_dir=run_dir, usage_tracking=0,
                  initialize_logging=False, strategy="none")


def run_parsl(batches: list[tuple[str, int]], repeats: int, window_s: float, n_workers: int,
              run_dir: str, chunked: bool) -> list[dict]:
    """Parsl HTEX on the same tasks; shut down (workers, interchange) before returning.

    Chunked (Parsl's advice for short tasks: bundle many into one app): four apps per
    worker, each running a chunk of the batch. Otherwise one app per task.
    """
    import os

    import parsl
    from parsl import python_app

    # HTEX starts its interchange and worker pool by script name, from PATH.
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable),
                                          os.environ.get("PATH", "")])
    import importlib

    module = importlib.import_module(MODULE)
    app = python_app(module.timed_task, executors=["htex"])
    chunk_app = python_app(module.timed_chunk, executors=["htex"])
    name = "parsl-htex" if chunked else "parsl-htex-per-task"

    def map_batch(batch: list) -> tuple[list[dict], int]:
        if not chunked:
            return [f.result() for f in [app(p) for p in batch]], 0
        futures = [chunk_app(c) for c in chunks(batch, chunk_size(len(batch), n_workers))]
        return [o for f in futures for o in f.result()], 0

    dfk = parsl.load(parsl_config(n_workers, run_dir))
    try:
        rows = measure(name, n_workers, map_batch, batches, repeats, window_s)
    finally:
        dfk.cleanup()
        parsl.clear()
    for row in rows:
        row["settings"] = {"chunksize": chunk_size(row["batch"], n_workers) if chunked else 1}
    return rows


def run_helper(batches: list[tuple[str, int]], repeats: int, window_s: float,
               timeout: float) -> list[dict]:
    """The farm's helper process alone (one pipe round trip per task, no MPI)."""
    from tcoupled.farm.isolation import IsolatedRunner

    runner = IsolatedRunner(TASK, timeout)

    def map_batch(batch: list) -> tuple[list[dict], int]:
        outcomes = [runner.run(p) for p in batch]
        good = [value for status, value, _ in outcomes if status == "ok"]
        return good, len(outcomes) - len(good)

    try:
        return measure("helper", 1, map_batch, batches, repeats, window_s)
    finally:
        runner.close()


def parse_batches(text: str) -> list[tuple[str, int]]:
    """``"noop:2000,xtb:12"`` -> ``[("noop", 2000), ("xtb", 12)]``."""
    batches = []
    for item in text.split(","):
        kind, _, count = item.partition(":")
        if kind not in ("noop", "xtb") or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"batch must be noop:N or xtb:N, got {item!r}")
        batches.append((kind, int(count)))
    return batches


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line of the driver."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}")
    parser.add_argument("runner", choices=["farm", "farm-no-isolation", "farm-per-task",
                                           "futures", "futures-tuned", "parsl",
                                           "parsl-per-task", "helper"])
    parser.add_argument("--batches", type=parse_batches, default=[("noop", 200)],
                        help="kind:count,... with kind noop or xtb")
    parser.add_argument("--repeats", type=int, default=1, help="timed windows of no-op batches")
    parser.add_argument("--window", type=float, default=1.0, help="seconds per no-op window")
    parser.add_argument("--workers", type=int, default=1, help="parsl only")
    parser.add_argument("--timeout", type=float, default=300.0, help="per task (farm, helper)")
    parser.add_argument("--run-dir", default="runinfo", help="parsl's run directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the batches and print ``RESULT <json rows>`` (on rank 0 only under MPI)."""
    args = parse(argv)
    common = (args.batches, args.repeats, args.window)
    if args.runner.startswith("farm"):
        rows = run_farm(*common, args.timeout, isolate=args.runner != "farm-no-isolation",
                        chunked=args.runner != "farm-per-task")
    elif args.runner in ("futures", "futures-tuned"):
        rows = run_futures(*common, tuned=args.runner == "futures-tuned")
    elif args.runner in ("parsl", "parsl-per-task"):
        rows = run_parsl(*common, args.workers, args.run_dir, chunked=args.runner == "parsl")
    else:
        rows = run_helper(*common, args.timeout)
    if rows is not None:
        print("RESULT " + json.dumps(rows), flush=True)


if __name__ == "__main__":
    main()
