"""Failure behaviour of ``couple``: faults on each role, SIGTERM, a full disk, bad input.

Every launch has a timeout (a hang fails the test), every process of the job must be
gone shortly after the launcher (``all_exit``), and after each fault the results the
run had already finished (complete checkpoints, the farm's journal) must still load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import mpitools
from mpitools import tcoupled, tcoupled_cmd

pytestmark = [pytest.mark.faults, pytest.mark.mpi, pytest.mark.timeout(150)]

SMALL = ["C", "CC", "CCC", "CO", "CCO", "CN", "CCN", "C=O", "CC=O", "C#N", "CC#N", "O"]
BASE = ("--grid", "33", "33", "--init", "gaussian", "--seed", "5", "--sim-steps", "6",
        "--train-iters", "10", "--rollout", "2", "--no-report", "--quiet")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.smi"
    path.write_text("\n".join(SMALL) + "\n")
    return path


def complete_checkpoints(out, ranks: int) -> list[int]:
    """Complete checkpoints, each rank file loaded back (as ``--resume`` would)."""
    from tcoupled.coupling.checkpoint import complete_cycles, load_rank_state

    cycles = complete_cycles(out, ranks)
    for cycle in cycles:
        for rank in range(ranks):
            assert load_rank_state(out, cycle, rank)["cycle"] == cycle
    return cycles


def no_temporary_files(out) -> bool:
    return not [p for p in out.rglob(".*.tmp")]


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_nan_in_couple_names_step_and_rank_and_keeps_checkpoints(tmp_path):
    proc = tcoupled("couple", *BASE, "--cycles", "6", "--train-ranks", "1",
                    "--check-every", "5", "--checkpoint-every", "1", "--out", str(tmp_path),
                    ranks=2, timeout=90, all_exit=True,
                    env={"TCOUPLED_FAULT": "nan:sim:step=9"})
    assert proc.returncode == 3, proc.stderr
    assert ("tcoupled: error on rank 0 (sim): non-finite value (NaN or Inf) in the field at "
            "step 10 on sim rank(s) 0") in proc.stderr
    assert complete_checkpoints(tmp_path, 2) == [1]  # cycle 1 ended at step 6, before NaN
    assert not (tmp_path / "summary.json").exists() and no_temporary_files(tmp_path)


def test_exception_on_a_train_rank_aborts_the_job_naming_rank_and_role(tmp_path):
    proc = tcoupled("couple", *BASE, "--cycles", "6", "--train-ranks", "1",
                    "--division", "space", "--checkpoint-every", "1", "--out", str(tmp_path),
                    ranks=2, timeout=90, all_exit=True,
                    env={"TCOUPLED_FAULT": "raise:train:cycle=3:rank=0"})
    assert proc.returncode != 0
    assert ("tcoupled: error on rank 1 (train): RuntimeError: injected fault: train rank 0 "
            "at cycle 3") in proc.stderr
    assert complete_checkpoints(tmp_path, 2)[:2] == [1, 2]
    assert not (tmp_path / "summary.json").exists()


def test_exception_on_a_farm_rank_aborts_the_job_and_keeps_the_journal(tmp_path, space_file):
    from tcoupled.screening.loop import Journal

    proc = tcoupled("couple", *BASE, "--cycles", "40", "--farm-ranks", "2", "--farm-task",
                    "noop", "--farm-space", str(space_file), "--farm-budget", "10",
                    "--farm-initial", "2", "--checkpoint-every", "1", "--out", str(tmp_path),
                    ranks=3, timeout=90, all_exit=True,
                    env={"TCOUPLED_FAULT": "raise:farm:task=3:rank=1"})
    assert proc.returncode != 0
    assert ("tcoupled: error on rank 2 (farm): RuntimeError: injected fault: farm rank 1 at "
            "task 3") in proc.stderr
    records = Journal(tmp_path / "farm").load()  # the 3 finished before the fault
    assert len(records) == 3 and all(r.smiles in SMALL for r in records)
    assert not (tmp_path / "summary.json").exists()


def test_sigterm_checkpoints_stops_cleanly_and_resume_finishes(tmp_path, space_file):
    from tcoupled.screening.loop import Journal

    out = tmp_path / "run"
    flags = (*BASE, "--cycles", "16", "--train-ranks", "1", "--farm-ranks", "1",
             "--farm-space", str(space_file), "--farm-budget", "6", "--farm-initial", "2",
             "--checkpoint-every", "100", "--out", str(out))
    proc = subprocess.Popen(tcoupled_cmd("couple", *flags, ranks=3), text=True,
                            env=mpitools.job_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if "sim: cycle" in _log(out) and "train m0: cycle" in _log(out):
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the whole job, as a batch system does
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("the job did not end after SIGTERM") from None
    mpitools.assert_group_gone(proc.pid)
    assert proc.returncode == 143, stderr
    line = one_line(stderr)
    assert line.startswith("tcoupled couple: stopped by SIGTERM after cycle ")
    assert line.endswith(f"; resume with --resume {out}")
    cycle = int(line.split("after cycle ")[1].split(";")[0])
    assert 1 <= cycle < 16 and complete_checkpoints(out, 2) == [cycle]
    before = [r.smiles for r in Journal(out / "farm").load()]
    stopped = json.loads((out / "summary.json").read_text())
    assert stopped["stopped"] == "SIGTERM" and stopped["stopped_after_cycle"] == cycle
    assert stopped["checkpoints"] == [cycle] and no_temporary_files(out)

    mpitools.check(tcoupled("couple", "--resume", str(out), ranks=3, timeout=90,
                            all_exit=True))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_cycle"] == cycle and summary["handoffs"] == 16 - cycle
    after = [r.smiles for r in Journal(out / "farm").load()]
    assert after[:len(before)] == before and len(after) == 6 == len(set(after))


def _log(out) -> str:
    path = out / "run.log"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def small_disk(tmp_path):
    """A 900 kB tmpfs (a full disk in miniature); skipped where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(disk)],
                             capture_output=True, timeout=10).returncode == 0
    if not mounted:
        pytest.skip("mounting a small tmpfs needs root (the store-level test still runs)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def test_full_disk_is_one_line_naming_the_file_and_keeps_checkpoints(small_disk):
    # Each 129x129 checkpoint is ~340 kB: two fit, then results.h5 (~430 kB) does not
    # (--replay 0: a replay buffer's samples would make the checkpoints larger).
    out = small_disk / "run"
    proc = tcoupled("couple", *BASE, "--grid", "129", "129", "--cycles", "2", "--replay", "0",
                    "--dtype", "float64",  # the sizes above
                    "--train-iters", "2", "--checkpoint-every", "1", "--out", str(out),
                    ranks=1, timeout=90, all_exit=True)
    assert proc.returncode == 2, proc.stderr
    assert one_line(proc.stderr) == (f"tcoupled couple: error: cannot write "
                                     f"{out / 'results.h5'}: No space left on device")
    assert complete_checkpoints(out, 1) == [1, 2]
    assert not (out / "results.h5").exists() and no_temporary_files(out)


def test_a_write_past_the_file_size_limit_is_one_error_and_keeps_the_old_file(tmp_path):
    # No MPI here, so a size limit (what a quota does) works without root.
    script = ("import resource, sys\n"
              "from tcoupled.runtime.store import write_json\n"
              "from tcoupled.runtime.errors import TcoupledError\n"
              "write_json(sys.argv[1], {'small': 1})\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
              "try:\n    write_json(sys.argv[1], {'big': 'x' * 10000})\n"
              "except TcoupledError as exc:\n    print(exc)\n")
    target = tmp_path / "summary.json"
    proc = mpitools.run([sys.executable, "-c", script, str(target)], timeout=30)
    assert proc.stdout.strip() == f"cannot write {target}: File too large", proc.stderr
    assert json.loads(target.read_text()) == {"small": 1} and no_temporary_files(tmp_path)


def test_role_counts_that_do_not_add_up_are_refused_under_mpiexec(tmp_path):
    proc = tcoupled("couple", "--sim-ranks", "1", "--train-ranks", "1", "--farm-ranks", "1",
                    "--out", str(tmp_path / "o"), ranks=2, timeout=60, all_exit=True)
    assert proc.returncode == 2
    assert "= 3, but mpiexec started 2 ranks" in one_line(proc.stderr)
    assert not (tmp_path / "o").exists()
