"""SIGTERM and SIGINT stop wave, screen, ie and couple cleanly on every rank, and --resume
goes on (marker: faults).

A stopped run exits 128 + the signal (143, 130), writes what it computed (a checkpoint or
the journal) and a summary.json whose "stopped" names the signal. Signals come either
from outside, to the whole process group as a batch system or Ctrl-C sends them, or
from the fault hook (``TCOUPLED_FAULT=sigterm:ROLE:POINT=N:rank=R``) to one rank at a
chosen step -- the others must stop with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest

import mpitools
from mpitools import check, tcoupled, tcoupled_cmd

pytestmark = [pytest.mark.faults, pytest.mark.mpi, pytest.mark.timeout(180)]

SMALL = ["CCO", "CC", "CCC", "CCCC", "CCN", "CNC", "OCCO", "CC=O", "C#N", "CCCl"]


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("[mpiexec@")]
    assert len(lines) == 1, stderr
    return lines[0]


def _signal_group(cmd: list[str], signum: int, ready, timeout: float = 60):
    """Start ``cmd`` in its own group, send ``signum`` to the group once ``ready()``."""
    proc = subprocess.Popen(cmd, text=True, env=mpitools.job_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signum)
    sent = time.monotonic()
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the job did not end within 30 s of {signum}") from None
    mpitools.assert_group_gone(proc.pid)
    return proc.returncode, out, err, time.monotonic() - sent


def test_wave_stops_every_rank_at_one_step_and_resumes_bitwise(tmp_path):
    from tcoupled.app.cli import main

    flags = ("--grid", "65", "65", "--steps", "100", "--check-every", "10", "--quiet")
    out = tmp_path / "run"
    proc = tcoupled("wave", *flags, "--out", str(out), ranks=2, timeout=60, all_exit=True,
                    env={"TCOUPLED_FAULT": "sigterm:sim:step=30:rank=0"})
    assert proc.returncode == 143, proc.stderr
    assert _one_line(proc.stderr) == (f"tcoupled wave: stopped by SIGTERM after step 41; "
                                      f"resume with --resume {out}")
    stopped = _summary(out)
    assert stopped["stopped"] == "SIGTERM" and stopped["steps_done"] == 41  # 1 + 4 chunks
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == [
        "rank-0000.npz", "rank-0001.npz"]
    assert not (out / "results.h5").exists()
    check(tcoupled("wave", "--resume", str(out), ranks=2, timeout=60))
    assert main(["wave", *flags, "--out", str(tmp_path / "ref")]) == 0  # one rank, no stop
    with h5py.File(out / "results.h5") as got, h5py.File(tmp_path / "ref/results.h5") as ref:
        assert np.array_equal(got["wave/u"][()], ref["wave/u"][()])
    assert "stopped" not in _summary(out) and _summary(out)["steps"] == 100


def test_screen_stops_on_sigterm_keeps_the_journal_and_resumes(tmp_path):
    from tcoupled.screening.loop import Journal

    space, out = tmp_path / "space.smi", tmp_path / "run"
    space.write_text("\n".join(SMALL) + "\n")
    cmd = tcoupled_cmd("screen", "--space", str(space), "--budget", "8", "--initial", "2",
                       "--fp-cache", str(tmp_path), "--out", str(out), ranks=3)
    log = out / "run.log"
    status, _, err, seconds = _signal_group(
        cmd, signal.SIGTERM, lambda: log.exists() and "[1/8]" in log.read_text())
    assert status == 143 and seconds < 15, err
    assert _one_line(err).startswith("tcoupled screen: stopped by SIGTERM after ")
    done = [r.smiles for r in Journal(out).load()]
    stopped = _summary(out)
    assert stopped["stopped"] == "SIGTERM" and stopped["simulated"] == len(done) < 8
    assert all(r.status == "ok" for r in Journal(out).load())  # none killed mid-calculation
    check(tcoupled("screen", "--resume", str(out), ranks=3, timeout=120))
    after = [r.smiles for r in Journal(out).load()]
    assert after[:len(done)] == done and len(after) == 8 == len(set(after))
    assert _summary(out)["simulated"] == 8 and "stopped" not in _summary(out)


def test_ie_stops_on_sigint_with_what_it_computed(tmp_path):
    out = tmp_path / "ie"
    proc = tcoupled("ie", *SMALL, "--out", str(out), ranks=3, timeout=90, all_exit=True,
                    env={"TCOUPLED_FAULT": "sigint:ie:result=2"})  # Ctrl-C after 2 results
    assert proc.returncode == 130, proc.stderr
    summary = _summary(out)
    statuses = [r["status"] for r in summary["results"]]
    assert summary["stopped"] == "SIGINT" and len(statuses) == len(SMALL)
    # each of the 2 workers finishes the molecule it runs (a worker starts its queued
    # next one the moment it sends a result); the queued ones are cancelled, unrun
    assert 2 <= statuses.count("ok") <= 2 + 2 and statuses.count("not run") == len(SMALL) - \
        statuses.count("ok")


def test_couple_signal_during_the_last_cycle_stops_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    flags = ("--grid", "33", "33", "--init", "gaussian", "--seed", "5", "--sim-steps", "6",
             "--train-iters", "10", "--rollout", "2", "--no-report", "--quiet",
             "--cycles", "4", "--train-ranks", "1", "--out", str(out))
    proc = tcoupled("couple", *flags, ranks=2, timeout=90, all_exit=True,
                    env={"TCOUPLED_FAULT": "sigint:sim:cycle=4:rank=0"})
    assert proc.returncode == 130, proc.stderr
    assert _one_line(proc.stderr).startswith("tcoupled couple: stopped by SIGINT after cycle 4")
    stopped = _summary(out)
    assert stopped["stopped"] == "SIGINT" and stopped["stopped_after_cycle"] == 4
    assert stopped["checkpoints"] == [4] and not (out / "results.h5").exists()
    check(tcoupled("couple", "--resume", str(out), ranks=2, timeout=90))
    summary = _summary(out)
    assert "stopped" not in summary and summary["resumed_from_cycle"] == 4
    assert (out / "results.h5").exists()
