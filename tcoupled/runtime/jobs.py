"""Child jobs in their own process group: run with a timeout, kill the whole group on expiry.

Used where tcoupled launches a job of its own (the cost model's calibration, the
benchmarks' drivers): an ``mpiexec`` that outlives its timeout must take every rank with it.
"""

from __future__ import annotations

import os
import signal
import subprocess


def run_group(cmd: list[str], timeout: float,
              env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a new session; return it finished (``pid`` is its process group's id).

    Raises
    ------
    TimeoutError
        When it runs past ``timeout`` seconds (its whole process group is killed first).
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"timed out after {timeout:g} s") from None
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    done.pid = proc.pid  # type: ignore[attr-defined] - the group, for stragglers
    return done
