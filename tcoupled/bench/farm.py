"""Farm benchmark: the MPI task farm against Parsl HTEX and ``mpi4py.futures``, same tasks.

Every runner is launched as its own job by :mod:`tcoupled.bench.farm_driver` (the farm and
``mpi4py.futures`` under ``mpiexec -n workers+1``, Parsl with ``workers`` local HTEX
workers on loopback), on no-op tasks (the runner's own cost) and on GFN2 xTB ionization
energies of small molecules (real work), at 1 and 2 workers. Each competitor runs at its
defaults and at its documented best settings: ``mpi4py.futures`` with the farm's longest
polling sleep as ``MPI4PY_FUTURES_BACKOFF`` and four chunks per worker, Parsl with the
tasks bundled into four apps per worker. The farm gets the same chunks (``farm``, and
``farm-no-isolation``: isolation's cost) and runs one task per message too
(``farm-per-task``, what the active learner uses), always with its crash/timeout
isolation per task except in ``farm-no-isolation``; xTB tasks go one per message. No-op
throughput is timed in ``repeats`` windows of at least ``window_s`` seconds each and
reported as median and interquartile range. Each task reports its own run time, so a
runner's overhead per task is the worker time not spent inside tasks:
``(workers * wall - task time) / tasks``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "farm"
DRIVER = "tcoupled.bench.farm_driver"
LAUNCH_TIMEOUT_S = 600
#: runner name -> driver argument; the farm first, then its competitors. Chunked no-op
#: batches: farm, farm-no-isolation, mpi4py.futures-tuned, parsl-htex (``settings``)
RUNNERS = {"farm": "farm", "farm-no-isolation": "farm-no-isolation",
           "farm-per-task": "farm-per-task",
           "mpi4py.futures": "futures", "mpi4py.futures-tuned": "futures-tuned",
           "parsl-htex": "parsl", "parsl-htex-per-task": "parsl-per-task"}
PARSL_RUNNERS = ("parsl-htex", "parsl-htex-per-task")
NOOP_ONLY = ("farm-per-task",)  # its xTB tasks would repeat the farm row's (one per message)
LEFTOVERS: list[str] = []  # processes found alive after their job had exited


def sizes(quick: bool) -> dict[str, Any]:
    """No-op batch, xTB tasks, timed windows (count and seconds) and worker counts."""
    if quick:
        return {"noop": 200, "xtb": 4, "repeats": 2, "window_s": 0.1, "workers": [1, 2]}
    return {"noop": 2000, "xtb": 48, "repeats": 5, "window_s": 1.0, "workers": [1, 2]}


def launch(cmd: list[str], timeout: float = LAUNCH_TIMEOUT_S,
           extra_env: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """Run one driver job in its own process group; return its rows, or ``[]`` and why.

    On timeout the whole group (``mpiexec``, ranks, helpers) is killed. Processes of
    the group still alive after the job exits are recorded in ``LEFTOVERS`` and killed.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **(extra_env or {}))
    from tcoupled.runtime.jobs import run_group

    try:
        job = run_group(cmd, timeout, env)
    except TimeoutError:
        return [], f"timed out after {timeout:g} s"
    stragglers = processes(lambda pgid, _: pgid == job.pid)
    if stragglers:
        LEFTOVERS.extend(stragglers)
        os.killpg(job.pid, signal.SIGKILL)
    rows = [json.loads(line[len("RESULT "):]) for line in job.stdout.splitlines()
            if line.startswith("RESULT ")]
    if job.returncode != 0 or not rows:
        return [], f"exit {job.returncode}: {job.stderr.strip()[-500:]}"
    return rows[-1], ""


def processes(keep: Callable[[int, str], bool]) -> list[str]:
    """``"pid command"`` of the running processes for which ``keep(pgid, command)`` holds."""
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            args = " ".join(proc.info["cmdline"] or [])
            if keep(os.getpgid(proc.info["pid"]), args):
                found.append(f"{proc.info['pid']} {args}")
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue  # exited while listed, or not ours to see
    return found


def driver_command(runner: str, workers: int, batches: str, size: dict,
                   run_dir: Path) -> list[str]:
    """The command line that runs ``runner`` with ``workers`` workers."""
    python = sys.executable
    mpiexec = str(Path(python).parent / "mpiexec")
    arg = RUNNERS.get(runner, runner)
    args = [arg, "--batches", batches, "--repeats", str(size["repeats"]),
            "--window", str(size["window_s"])]
    if runner.startswith("farm"):
        return [mpiexec, "-n", str(workers + 1), python, "-m", "mpi4py", "-m", DRIVER, *args]
    if runner.startswith("mpi4py.futures"):
        return [mpiexec, "-n", str(workers + 1), python, "-m", "mpi4py.futures", "-m",
                DRIVER, *args]
    if runner in PARSL_RUNNERS:
        return [python, "-m", DRIVER, *args, "--workers", str(workers),
                "--run-dir", str(run_dir / f"{runner}_{workers}w")]
    return [python, "-m", DRIVER, *args]


def runner_env(runner: str) -> dict[str, str]:
    """Environment of the tuned ``mpi4py.futures``: the farm's longest polling sleep."""
    if runner != "mpi4py.futures-tuned":
        return {}
    from tcoupled.runtime.waiting import POLL_S

    return {"MPI4PY_FUTURES_BACKOFF": repr(POLL_S)}


def parsl_available() -> bool:
    """Whether Parsl is installed (the ``bench`` extra), without importing it."""
    import importlib.util

    return importlib.util.find_spec("parsl") is not None


def run_one(runner: str, workers: int, batches: str, size: dict, out: Path) -> list[dict]:
    """Rows of one runner at one worker count; a skipped or failed runner gives one row."""
    if runner in PARSL_RUNNERS and not parsl_available():
        return [{"runner": runner, "workers": workers, "skipped": "parsl is not installed"}]
    if runner in NOOP_ONLY:
        batches = ",".join(b for b in batches.split(",") if b.startswith("noop:"))
    rows, why = launch(driver_command(runner, workers, batches, size, out),
                       extra_env=runner_env(runner))
    if not rows:
        return [{"runner": runner, "workers": workers, "skipped": why}]
    return rows


def run(options: dict) -> dict:
    """Run the farm benchmark; ``options['quick']`` shrinks it, ``options['out']`` is the dir."""
    quick = options.get("quick", False)
    size = sizes(quick)
    out = Path(options.get("out") or "runs/bench").resolve()
    run_dir = out / "farm_runinfo"
    batches = f"noop:{size['noop']},xtb:{size['xtb']}"
    LEFTOVERS.clear()
    rows = run_one("helper", 1, batches, size, run_dir)
    for workers in size["workers"]:
        for runner in RUNNERS:
            rows.extend(run_one(runner, workers, batches, size, run_dir))
    results: dict[str, Any] = {"sizes": size, "rows": rows, "run_dir": str(run_dir),
                               "leftover_processes": LEFTOVERS + processes(
                                   lambda _, args: str(run_dir) in args)}
    results["efficiency"] = efficiencies(rows)
    results["headline"] = headline(results)
    return results


def pick(rows: list[dict], runner: str, task: str, workers: int) -> dict | None:
    """The measured row of ``runner`` on ``task`` at ``workers`` workers, if any."""
    for row in rows:
        if (row.get("runner"), row.get("task"), row.get("workers")) == (runner, task, workers):
            return row
    return None


def efficiencies(rows: list[dict]) -> list[dict]:
    """Parallel efficiency: 2-worker throughput / (2 x 1-worker throughput), per runner."""
    found = []
    for runner in RUNNERS:
        for task in ("noop", "xtb"):
            one, two = pick(rows, runner, task, 1), pick(rows, runner, task, 2)
            if one and two:
                found.append({"runner": runner, "task": task,
                              "efficiency": two["tasks_per_s"] / (2 * one["tasks_per_s"])})
    return found


def noop_spread(row: dict, key: str = "repeats_tasks_per_s") -> dict:
    """Median and quartiles of a no-op row's windows (tasks/s, or overhead in ms)."""
    from tcoupled.bench.timing import spread

    found = spread(row[key])
    return {k: found[k] for k in ("median", "q1", "q3", "iqr", "n")}


def headline(results: dict, workers: int = 2) -> dict:
    """No-op tasks/s and overhead per runner at ``workers`` workers, ratios and targets.

    Like with like: the chunked farm (``farm``) against the chunked competitors
    (``farm_over_parsl``: Parsl at its advised settings, ``..._futures_tuned``), the
    farm's one task per message (``farm-per-task``, what the active learner uses)
    against one task per app or future (``farm_over_parsl_per_task``,
    ``farm_over_mpi4py_futures``); the overhead target is the per-task farm's.
    """
    rows = results["rows"]
    head: dict[str, Any] = {"workers": workers, "tasks_per_s": {}, "overhead_ms_per_task": {}}
    for runner in ("helper", *RUNNERS):
        row = pick(rows, runner, "noop", 1 if runner == "helper" else workers)
        if row:
            head["tasks_per_s"][runner] = noop_spread(row)
            head["overhead_ms_per_task"][runner] = noop_spread(row, "repeats_overhead_ms")
    rate = {r: v["median"] for r, v in head["tasks_per_s"].items()}
    cost = {r: v["median"] for r, v in head["overhead_ms_per_task"].items()}
    for farm, other, key in (("farm", "parsl-htex", "farm_over_parsl"),
                             ("farm", "mpi4py.futures-tuned", "farm_over_mpi4py_futures_tuned"),
                             ("farm-per-task", "parsl-htex-per-task", "farm_over_parsl_per_task"),
                             ("farm-per-task", "mpi4py.futures", "farm_over_mpi4py_futures")):
        if farm in rate and other in rate:
            head[key] = rate[farm] / rate[other]
    if "farm_over_parsl" in head:
        head["farm_over_parsl_target_met"] = head["farm_over_parsl"] >= 10
    if "farm-per-task" in cost:
        head["farm_overhead_ms_per_task"] = cost["farm-per-task"]
        head["overhead_target_met"] = cost["farm-per-task"] <= 0.15
    if "farm" in cost and "farm-no-isolation" in cost:  # both chunked
        head["isolation_cost_ms_per_task"] = cost["farm"] - cost["farm-no-isolation"]
    farm_xtb = pick(rows, "farm", "xtb", workers)
    if farm_xtb:
        head["farm_xtb_tasks_per_s"] = farm_xtb["tasks_per_s"]
    for eff in results["efficiency"]:
        if eff["runner"] == "farm":
            head[f"farm_{eff['task']}_efficiency"] = eff["efficiency"]
    return head


def table(results: dict) -> list[str]:
    """Printable rows (median of the windows, with quartiles), then the headline ratios.

    ``chunk`` is the tasks per message (per app, per future) of the row's batch.
    """
    lines = [f"{'runner':<21} {'task':<5} {'workers':>7} {'chunk':>5} {'tasks':>7} "
             f"{'tasks/s':>9} {'IQR tasks/s':>17} {'overhead ms/task':>16}"]
    for r in results["rows"]:
        if "skipped" in r:
            lines.append(f"{r['runner']:<21} {'-':<5} {r['workers']:>7} skipped: {r['skipped']}")
            continue
        iqr = ""
        if r["task"] == "noop":
            q = noop_spread(r)
            iqr = f"{q['q1']:.0f}-{q['q3']:.0f}"
        chunk = r.get("settings", {}).get("chunksize", 1)
        lines.append(f"{r['runner']:<21} {r['task']:<5} {r['workers']:>7} {chunk:>5} "
                     f"{r['tasks']:>7} {r['tasks_per_s']:>9.1f} {iqr:>17} "
                     f"{r['overhead_ms_per_task']:>16.3f}")
    for eff in results["efficiency"]:
        lines.append(f"efficiency 1->2 workers, {eff['runner']} {eff['task']}: "
                     f"{eff['efficiency']:.2f}")
    head = results["headline"]
    for key, what in (("farm_over_parsl", "chunked: farm / Parsl HTEX"),
                      ("farm_over_mpi4py_futures_tuned", "chunked: farm / mpi4py.futures tuned"),
                      ("farm_over_parsl_per_task", "per task: farm / Parsl HTEX"),
                      ("farm_over_mpi4py_futures", "per task: farm / mpi4py.futures")):
        if key in head:
            lines.append(f"{what} no-op throughput at {head['workers']} workers: "
                         f"{head[key]:.2f}x")
    if "farm_overhead_ms_per_task" in head:
        lines.append(f"farm overhead, one task per message: "
                     f"{head['farm_overhead_ms_per_task']:.4f} ms/task")
    if "isolation_cost_ms_per_task" in head:
        lines.append(f"isolation cost, chunked: {head['isolation_cost_ms_per_task']:.4f} ms/task")
    lines.append(f"leftover processes: {len(results['leftover_processes'])}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Tasks per second per runner and worker count (median, IQR bars), no-op and xTB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    runners = ["helper", *RUNNERS]
    for ax, task in zip(axes, ("noop", "xtb")):
        for offset, workers in enumerate(results["sizes"]["workers"]):
            found = [pick(results["rows"], r, task, 1 if r == "helper" else workers) or {}
                     for r in runners]
            heights = [row.get("tasks_per_s", 0.0) for row in found]
            errors = [[0.0] * len(found), [0.0] * len(found)]
            for i, row in enumerate(found):
                if task == "noop" and row.get("repeats_tasks_per_s"):
                    q = noop_spread(row)
                    errors[0][i] = max(heights[i] - q["q1"], 0.0)
                    errors[1][i] = max(q["q3"] - heights[i], 0.0)
            positions = [i + 0.4 * offset for i in range(len(runners))]
            ax.bar(positions, heights, width=0.4, yerr=errors, capsize=2,
                   label=f"{workers} worker(s)")
        ax.set_xticks([i + 0.2 for i in range(len(runners))], runners, fontsize=7,
                      rotation=30, ha="right")
        ax.set(ylabel="tasks/s (median, IQR)", title=f"{task} tasks",
               yscale="log" if task == "noop" else "linear")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
