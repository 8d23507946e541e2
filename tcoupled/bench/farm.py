"""Farm benchmark: the MPI task farm against Parsl HTEX and ``mpi4py.futures``, same tasks.

Every runner is launched as its own job by :mod:`tcoupled.bench.farm_driver` (the farm and
``mpi4py.futures`` under ``mpiexec -n workers+1``, Parsl with ``workers`` local HTEX
workers on loopback), on no-op tasks (the runner's own cost) and on GFN2 xTB ionization
energies of small molecules (real work), at 1 and 2 workers. Each task reports its own
run time, so a runner's overhead per task is the worker time not spent inside tasks:
``(workers * wall - task time) / tasks``. The farm's helper process alone (one pipe
round trip per task, no MPI) is timed too: that is the price of isolating tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

NAME = "farm"
DRIVER = "tcoupled.bench.farm_driver"
LAUNCH_TIMEOUT_S = 600
RUNNERS = ("farm", "mpi4py.futures", "parsl-htex")
LEFTOVERS: list[str] = []  # processes found alive after their job had exited


def sizes(quick: bool) -> dict[str, Any]:
    """Task counts, repeats of the no-op batches and worker counts."""
    if quick:
        return {"noop": 200, "xtb": 4, "repeats": 2, "workers": [1, 2]}
    return {"noop": 2000, "xtb": 48, "repeats": 3, "workers": [1, 2]}


def launch(cmd: list[str], timeout: float = LAUNCH_TIMEOUT_S) -> tuple[list[dict], str]:
    """Run one driver job in its own process group; return its rows, or ``[]`` and why.

    On timeout the whole group (``mpiexec``, ranks, helpers) is killed. Processes of
    the group still alive after the job exits are recorded in ``LEFTOVERS`` and killed.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return [], f"timed out after {timeout:g} s"
    stragglers = processes(lambda pgid, _: pgid == proc.pid)
    if stragglers:
        LEFTOVERS.extend(stragglers)
        os.killpg(proc.pid, signal.SIGKILL)
    rows = [json.loads(line[len("RESULT "):]) for line in out.splitlines()
            if line.startswith("RESULT ")]
    if proc.returncode != 0 or not rows:
        return [], f"exit {proc.returncode}: {err.strip()[-500:]}"
    return rows[-1], ""


def processes(keep: Callable[[int, str], bool]) -> list[str]:
    """``"pid command"`` of the running processes for which ``keep(pgid, command)`` holds."""
    listing = subprocess.run(["ps", "-eo", "pgid=,pid=,args="], capture_output=True,
                             text=True, timeout=30).stdout
    found = []
    for line in listing.splitlines():
        pgid, pid, args = (line.split(None, 2) + ["", ""])[:3]
        if pgid.isdigit() and keep(int(pgid), args) and "ps -eo" not in args:
            found.append(f"{pid} {args}")
    return found


def driver_command(runner: str, workers: int, batches: str, repeats: int,
                   run_dir: Path) -> list[str]:
    """The command line that runs ``runner`` with ``workers`` workers."""
    python = sys.executable
    mpiexec = str(Path(python).parent / "mpiexec")
    args = ["--batches", batches, "--repeats", str(repeats)]
    if runner == "farm":
        return [mpiexec, "-n", str(workers + 1), python, "-m", "mpi4py", "-m", DRIVER,
                "farm", *args]
    if runner == "mpi4py.futures":
        return [mpiexec, "-n", str(workers + 1), python, "-m", "mpi4py.futures", "-m",
                DRIVER, "futures", *args]
    if runner == "parsl-htex":
        return [python, "-m", DRIVER, "parsl", "--workers", str(workers),
                "--run-dir", str(run_dir / f"parsl_{workers}w"), *args]
    return [python, "-m", DRIVER, "helper", *args]


def parsl_available() -> bool:
    """Whether Parsl is installed (the ``bench`` extra), without importing it."""
    import importlib.util

    return importlib.util.find_spec("parsl") is not None


def run_one(runner: str, workers: int, batches: str, repeats: int,
            out: Path) -> list[dict]:
    """Rows of one runner at one worker count; a skipped or failed runner gives one row."""
    if runner == "parsl-htex" and not parsl_available():
        return [{"runner": runner, "workers": workers, "skipped": "parsl is not installed"}]
    rows, why = launch(driver_command(runner, workers, batches, repeats, out))
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
    rows = run_one("helper", 1, batches, size["repeats"], run_dir)
    for workers in size["workers"]:
        for runner in RUNNERS:
            rows.extend(run_one(runner, workers, batches, size["repeats"], run_dir))
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
    for runner in ("farm", *RUNNERS[1:]):
        for task in ("noop", "xtb"):
            one, two = pick(rows, runner, task, 1), pick(rows, runner, task, 2)
            if one and two:
                found.append({"runner": runner, "task": task,
                              "efficiency": two["tasks_per_s"] / (2 * one["tasks_per_s"])})
    return found


def headline(results: dict) -> dict:
    """The farm at 2 workers: no-op overhead, throughput and its ratio over Parsl HTEX."""
    rows = results["rows"]
    head: dict[str, Any] = {}
    farm_noop, farm_xtb = pick(rows, "farm", "noop", 2), pick(rows, "farm", "xtb", 2)
    if farm_noop:
        head["farm_noop_tasks_per_s"] = farm_noop["tasks_per_s"]
        head["farm_overhead_ms_per_task"] = farm_noop["overhead_ms_per_task"]
        head["overhead_under_1ms"] = farm_noop["overhead_ms_per_task"] < 1.0
        for runner, key in (("parsl-htex", "over_parsl_htex"),
                            ("mpi4py.futures", "over_mpi4py_futures")):
            other = pick(rows, runner, "noop", 2)
            if other:
                head[f"farm_noop_{key}"] = farm_noop["tasks_per_s"] / other["tasks_per_s"]
    if farm_xtb:
        head["farm_xtb_tasks_per_s"] = farm_xtb["tasks_per_s"]
    for eff in results["efficiency"]:
        if eff["runner"] == "farm":
            head[f"farm_{eff['task']}_efficiency"] = eff["efficiency"]
    return head


def table(results: dict) -> list[str]:
    """Printable rows, then efficiencies and the headline ratio."""
    lines = [f"{'runner':<15} {'task':<5} {'workers':>7} {'tasks':>6} {'tasks/s':>10} "
             f"{'overhead ms/task':>16}"]
    for r in results["rows"]:
        if "skipped" in r:
            lines.append(f"{r['runner']:<15} {'-':<5} {r['workers']:>7} skipped: {r['skipped']}")
            continue
        lines.append(f"{r['runner']:<15} {r['task']:<5} {r['workers']:>7} {r['tasks']:>6} "
                     f"{r['tasks_per_s']:>10.1f} {r['overhead_ms_per_task']:>16.3f}")
    for eff in results["efficiency"]:
        lines.append(f"efficiency 1->2 workers, {eff['runner']} {eff['task']}: "
                     f"{eff['efficiency']:.2f}")
    head = results["headline"]
    if "farm_noop_over_parsl_htex" in head:
        lines.append(f"farm / Parsl HTEX no-op throughput at 2 workers: "
                     f"{head['farm_noop_over_parsl_htex']:.1f}x")
    lines.append(f"leftover processes: {len(results['leftover_processes'])}")
    return lines


def plot(results: dict, path: Path) -> None:
    """Tasks per second per runner and worker count, no-op and xTB side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    runners = ["helper", *RUNNERS]
    for ax, task in zip(axes, ("noop", "xtb")):
        for offset, workers in enumerate(results["sizes"]["workers"]):
            heights = [(pick(results["rows"], r, task, 1 if r == "helper" else workers)
                        or {}).get("tasks_per_s", 0.0) for r in runners]
            positions = [i + 0.4 * offset for i in range(len(runners))]
            ax.bar(positions, heights, width=0.4, label=f"{workers} worker(s)")
        ax.set_xticks([i + 0.2 for i in range(len(runners))], runners, fontsize=8)
        ax.set(ylabel="tasks/s", title=f"{task} tasks, 2 cores",
               yscale="log" if task == "noop" else "linear")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
