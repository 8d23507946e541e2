"""What a running job opens: no socket of tcoupled's own listens beyond loopback."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tcoupled.runtime.sysprog import find_program, missing_reason

from mpitools import job_env, mpiexec_path

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120),
              pytest.mark.system,
              pytest.mark.skipif(find_program("ss") is None,
                                 reason=missing_reason("ss", "iproute2"))]


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (the launcher may start new sessions)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parent.items() if p == pid and c not in found]
        found.update(children)
        frontier += children
    return found


def _listeners() -> list[tuple[str, set[int], set[str]]]:
    """(local address, owning pids, owning program names) of every listening TCP socket."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        users = " ".join(fields[5:])
        pids = {int(p) for p in re.findall(r"pid=(\d+)", users)}
        names = set(re.findall(r'\("([^"]+)"', users))
        rows.append((fields[3], pids, names))
    return rows


def test_single_node_job_listens_only_on_loopback(tmp_path):
    env = job_env()
    env.pop("GLOO_SOCKET_IFNAME", None)  # tcoupled itself must keep gloo on loopback
    env.pop("MASTER_ADDR", None)
    cmd = [mpiexec_path(), "-n", "3", sys.executable, "-m", "tcoupled", "couple",
           "--sim-ranks", "1", "--train-ranks", "2", "--division", "space", "--grid", "65", "65",
           "--cycles", "30", "--train-iters", "4", "--quiet", "--out", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen_own = 0
    offenders = []
    try:
        while proc.poll() is None:
            pids = _descendants(proc.pid)
            for address, owners, names in _listeners():
                if not owners & pids:
                    continue
                if names & {"mpiexec", "hydra_pmi_proxy", "mpiexec.hydra"}:
                    continue  # the MPI launcher's socket, inherited by its children
                seen_own += 1
                host = address.rsplit(":", 1)[0].strip("[]")
                if not (host.startswith("127.") or host == "::1"):
                    offenders.append((address, names))
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert seen_own > 0, "never saw the job's own (gloo) listeners; the test observed nothing"
    assert not offenders, offenders


def test_resume_refuses_a_checkpoint_crafted_to_run_code(tmp_path):
    import json
    import pickle

    from mpitools import check, tcoupled

    run = tmp_path / "run"
    check(tcoupled("couple", "--sim-ranks", "1", "--train-ranks", "1", "--division", "time",
                   "--grid", "33", "33", "--cycles", "2", "--sim-steps", "2", "--train-iters",
                   "2", "--checkpoint-every", "1", "--quiet", "--out", str(run), ranks=2,
                   timeout=90))
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for target in sorted(run.glob("checkpoints/*/rank-*.pt")):
        target.write_bytes(pickle.dumps(Payload()))
    proc = tcoupled("couple", "--resume", str(run), ranks=2, timeout=90)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "is unreadable" in lines[0], proc.stderr
    assert not marker.exists(), "the crafted checkpoint ran code"

    args = json.loads((run / "args.json").read_text())
    args["_tcoupled_version"] = "0.0.1"
    (run / "args.json").write_text(json.dumps(args))
    proc = tcoupled("couple", "--resume", str(run), ranks=2, timeout=90)
    assert proc.returncode == 2
    assert "written by tcoupled 0.0.1" in proc.stderr and "not trusted" in proc.stderr
