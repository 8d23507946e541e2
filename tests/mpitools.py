"""Launch real MPI jobs from tests, with a timeout that kills every rank.

A hang is a failure: each launch runs in its own process group, and when the
timeout expires the whole group is killed and the test fails with the output.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


#: set by conftest.py while a test without ``@pytest.mark.mpi`` runs
GUARD = "TCOUPLED_TEST_WITHOUT_MPI_MARK"


def mpiexec_path() -> str:
    """Return ``TCOUPLED_MPIEXEC``, else the ``mpiexec`` next to Python, else the one on PATH.

    Fails a test that is not marked ``mpi`` (so ``pytest -m "not mpi"`` starts none).
    """
    if os.environ.get(GUARD):
        raise AssertionError(f"{os.environ[GUARD]} launches mpiexec: mark it @pytest.mark.mpi")
    if os.environ.get("TCOUPLED_MPIEXEC"):  # MPI installed elsewhere (run/device_check.sh)
        return os.environ["TCOUPLED_MPIEXEC"]
    local = Path(sys.executable).parent / "mpiexec"
    if local.exists():
        return str(local)
    found = shutil.which("mpiexec")
    if found is None:
        raise RuntimeError("mpiexec not found")
    return found


def job_env(extra: dict | None = None) -> dict:
    """Environment for launched jobs: one thread per rank, loopback only."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", UCX_NET_DEVICES="lo", MASTER_ADDR="127.0.0.1",
               GLOO_SOCKET_IFNAME="lo",
               PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def run(cmd: list[str], timeout: float = 120, env: dict | None = None,
        cwd: str | Path | None = None, preexec_fn=None,
        all_exit: bool = False) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the group on timeout and fail.

    With ``all_exit``, also fail if any process of the group (a rank, a helper)
    is still alive a few seconds after the launcher returned.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=job_env(env), cwd=cwd or REPO, start_new_session=True,
                            preexec_fn=preexec_fn)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"timed out after {timeout}s: {' '.join(cmd)}\n"
                             f"--- stdout\n{out}\n--- stderr\n{err}") from None
    if all_exit:
        assert_group_gone(proc.pid)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def assert_group_gone(pgid: int, grace: float = 10.0) -> None:
    """Fail (after killing them) if processes of group ``pgid`` outlive ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError(f"processes of the job were still running {grace:g} s "
                                 "after the launcher exited")
        time.sleep(0.05)


def tcoupled(*args: str, ranks: int | None = None, timeout: float = 120,
             env: dict | None = None, **options) -> subprocess.CompletedProcess:
    """Run ``python -m tcoupled ARGS``, under ``mpiexec -n ranks`` when given.

    ``options`` go to :func:`run` (``preexec_fn``, ``all_exit``).
    """
    return run(tcoupled_cmd(*args, ranks=ranks), timeout=timeout, env=env, **options)


def tcoupled_cmd(*args: str, ranks: int | None = None) -> list[str]:
    """The command line of :func:`tcoupled`."""
    cmd = [sys.executable, "-m", "tcoupled", *args]
    if ranks is not None:
        cmd = [mpiexec_path(), "-n", str(ranks), *cmd]
    return cmd


def python_mpi(script: str | Path, *args: str, ranks: int, timeout: float = 120,
               env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a Python script under ``mpiexec -n ranks`` (the script checks and exits)."""
    cmd = [mpiexec_path(), "-n", str(ranks), sys.executable, "-m", "mpi4py", str(script),
           *args]
    return run(cmd, timeout=timeout, env=env)


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert a launched job succeeded, showing its output if not."""
    assert proc.returncode == 0, (f"exit {proc.returncode}: {' '.join(proc.args)}\n"
                                  f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc
