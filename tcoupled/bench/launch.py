"""Run a benchmark driver as its own job and read the JSON it prints.

Drivers print one line ``RESULT {json}`` on rank 0. Each launch runs in its own
process group with a timeout; on timeout the whole group (``mpiexec`` and every
rank) is killed, so a benchmark never leaves a process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import TcoupledError

RESULT_PREFIX = "RESULT "


def local_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a local launch: one thread per rank, traffic on loopback only."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", UCX_NET_DEVICES="lo", MASTER_ADDR="127.0.0.1",
               GLOO_SOCKET_IFNAME="lo", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def mpiexec() -> str:
    """``TCOUPLED_MPIEXEC`` if set, else the ``mpiexec`` next to the running Python.

    The one next to Python matches the mpi4py of its environment; the variable names
    another where MPI lives elsewhere (``run/device_check.sh`` installs MPICH under /tmp).
    """
    from tcoupled.runtime.mpienv import env

    forced = env("MPIEXEC")
    if forced:
        return forced
    local = Path(sys.executable).parent / "mpiexec"
    return str(local) if local.exists() else "mpiexec"


def driver_command(module: str, ranks: int, *args: str) -> list[str]:
    """``mpiexec -n ranks python -m mpi4py -m module args`` (an error aborts every rank)."""
    return [mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", module,
            *map(str, args)]


def run_job(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the group and raise on timeout."""
    from tcoupled.runtime.jobs import run_group

    try:
        job = run_group(cmd, timeout, local_env())
    except TimeoutError:
        raise TcoupledError(f"benchmark job timed out after {timeout:g} s: "
                            f"{' '.join(cmd)}") from None
    if job.returncode != 0:
        raise TcoupledError(f"benchmark job failed (exit {job.returncode}): "
                            f"{' '.join(cmd)}\n{job.stderr.strip()[-2000:]}")
    return job


def run_driver(module: str, ranks: int, *args: str, timeout: float = 300) -> Any:
    """Launch driver ``module`` on ``ranks`` ranks and return the JSON it printed."""
    proc = run_job(driver_command(module, ranks, *args), timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        raise TcoupledError(f"{module} printed no result:\n{proc.stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def run_drivers_together(module: str, launches: list[tuple[int, tuple[str, ...]]],
                         timeout: float = 300) -> list[Any]:
    """Start several launches of ``module`` at once (``(ranks, args)`` each); their results.

    Each launch runs in its own process group; on timeout or failure every group is
    killed and the error raised, so no launch outlives the call.
    """
    import time

    procs = [subprocess.Popen(driver_command(module, ranks, *args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=local_env(),
                              start_new_session=True) for ranks, args in launches]
    deadline, results = time.monotonic() + timeout, []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
            if proc.returncode != 0 or not lines:
                raise TcoupledError(f"{module} launch failed (exit {proc.returncode}):\n"
                                    f"{err.strip()[-2000:]}")
            results.append(json.loads(lines[-1][len(RESULT_PREFIX):]))
    except subprocess.TimeoutExpired:
        raise TcoupledError(f"{module} launches timed out after {timeout:g} s") from None
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    return results


def print_result(result: Any) -> None:
    """Print ``result`` as the driver's ``RESULT`` line."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)
