"""``couple`` with all three roles in one launch: report, progress, checkpoint and resume."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tcoupled.runtime.errors import ConfigError

import mpitools
from mpitools import check, mpiexec_path, tcoupled

SMALL = ["C", "CC", "CCC", "CO", "CCO", "CN", "CCN", "C=O", "CC=O", "C#N", "CC#N", "O",
         "N", "C=C", "C#C", "CC(C)C"]
BUDGET = 12
FLAGS = ("--grid", "33", "33", "--init", "gaussian", "--seed", "5", "--cycles", "10",
         "--sim-steps", "6", "--train-iters", "20", "--rollout", "3", "--sim-ranks", "1",
         "--train-ranks", "1", "--farm-ranks", "2", "--farm-budget", str(BUDGET),
         "--farm-initial", "2", "--checkpoint-every", "2", "--verify")
PLOTS = ("fields.png", "training_loss.png", "rollout_vrmse.png", "rollout_error.png",
         "time_breakdown.png", "best_ie_vs_simulations.png")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.smi"
    path.write_text("\n".join(SMALL) + "\n")
    return path


@pytest.fixture(scope="module")
def space_run(tmp_path_factory, space_file):
    """The uninterrupted space-division run (also the reference of the resume test)."""
    out = tmp_path_factory.mktemp("space-run")
    proc = check(tcoupled("couple", *FLAGS, "--division", "space", "--farm-space",
                          str(space_file), "--out", str(out), ranks=4, timeout=150))
    return out, proc


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def _check_run_directory(out) -> dict:
    summary = _summary(out)
    assert {"sim", "train", "farm"} <= set(summary["time_breakdown"])
    assert summary["time_breakdown"]["farm"]["ranks"] == 2
    assert summary["time_breakdown"]["farm"]["xtb"] > 0
    assert summary["farm"]["simulated"] == BUDGET and summary["farm"]["failed"] == 0
    assert summary["farm"]["best_smiles"] in SMALL
    assert summary["handoffs"] == summary["cycles"] == 10
    assert summary["checkpoints"] == [2, 4, 6, 8, 10]
    report = (out / "report.md").read_text()
    for name in PLOTS:
        assert (out / name).stat().st_size > 10_000, name
        assert f"({name})" in report
    with h5py.File(out / "results.h5", "r") as h5:
        config = json.loads(h5.attrs["config_json"])
        assert config["farm_ranks"] == 2 and config["farm"]["budget"] == BUDGET
        assert h5["fields/truth"].shape == (33, 33)
        assert h5["members/0/prediction"].shape == (33, 33)
    assert (out / "run.log").exists() and (out / "farm" / "journal.jsonl").exists()
    return summary


@pytest.mark.timeout(200)
@pytest.mark.mpi
def test_three_roles_space_division_report_and_progress(space_run):
    out, proc = space_run
    summary = _check_run_directory(out)
    assert summary["division"] == "space" and summary["channel"] == "mpi"
    lines = proc.stdout.splitlines()
    assert "couple: resolved configuration" in lines
    for start in ("sim: cycle 10/10", "train m0: cycle 10/10, loss ",
                  f"farm: molecule {BUDGET}/{BUDGET} "):
        assert any(line.startswith(start) for line in lines), start
    assert all("ETA" in line for line in lines if line.startswith(("sim:", "train m0:")))
    assert any("best IE so far" in line for line in lines)
    assert lines[-1] == f"report: {out / 'report.md'}"


@pytest.mark.timeout(200)
@pytest.mark.mpi
def test_three_roles_time_division_from_a_config_file(tmp_path, space_file):
    config = tmp_path / "run.yaml"
    config.write_text("division: time\nfarm-space: " + str(space_file) + "\nquiet: true\n")
    out = tmp_path / "run"
    proc = check(tcoupled("couple", *FLAGS, "--config", str(config), "--out", str(out),
                          ranks=4, timeout=150))
    assert proc.stdout == ""
    summary = _check_run_directory(out)
    assert summary["division"] == "time" and summary["channel"] == "shm"


def _kill_after_first_checkpoint(out, flags) -> list[str]:
    cmd = [mpiexec_path(), "-n", "4", sys.executable, "-m", "tcoupled", "couple", *flags,
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env=mpitools.job_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "farm" / "journal.jsonl"
    first = out / "checkpoints" / "cycle-000002"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (first / "rank-0000.pt").exists() and (first / "rank-0001.pt").exists() \
                and journal.exists() and journal.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the run ended before it was killed"
    return [json.loads(line)["smiles"] for line in journal.read_text().splitlines()]


@pytest.mark.faults
@pytest.mark.timeout(300)
@pytest.mark.mpi
def test_killed_run_resumes_to_identical_results(tmp_path, space_run, space_file):
    reference, _ = space_run
    out = tmp_path / "killed"
    flags = (*FLAGS, "--division", "space", "--farm-space", str(space_file), "--quiet")
    before = _kill_after_first_checkpoint(out, flags)
    check(tcoupled("couple", "--resume", str(out), ranks=4, timeout=150))
    summary = _summary(out)
    assert summary["resumed_from_cycle"] >= 2 and summary["farm"]["resumed_records"] == \
        len(before)
    assert summary["data_digest"] == _summary(reference)["data_digest"]
    with h5py.File(reference / "results.h5") as ref, h5py.File(out / "results.h5") as got:
        for name in ("fields/start", "fields/truth", "members/0/prediction"):
            assert np.array_equal(ref[name][()], got[name][()]), name  # bitwise, float64
        np.testing.assert_allclose(got["members/0/parameters"][()],
                                   ref["members/0/parameters"][()], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(got["members/0/loss"][()], ref["members/0/loss"][()])
        # the replay buffer came back bitwise: the same draws, the same rollout
        np.testing.assert_array_equal(got["members/0/rollout_vrmse"][()],
                                      ref["members/0/rollout_vrmse"][()])
    journal = (out / "farm" / "journal.jsonl").read_text().splitlines()
    smiles = [json.loads(line)["smiles"] for line in journal]
    assert smiles[:len(before)] == before
    assert len(smiles) == BUDGET == len(set(smiles))  # no molecule simulated twice


def _make(*flags: str, world: int = 2):
    from tcoupled.app import couple

    parser = argparse.ArgumentParser()
    couple.add_arguments(parser)
    return couple.make_config(parser.parse_args(list(flags)), world)


@pytest.mark.faults
def test_resume_refuses_missing_dir_and_changed_physics(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        _make("--resume", str(tmp_path / "nowhere"))
    out = tmp_path / "run"
    first = _make("--train-ranks", "1", "--cycles", "3", "--out", str(out))
    assert first.resume_cycle == 0 and (out / "args.json").exists()
    with pytest.raises(ConfigError, match="--cycles 5 differs from the run"):
        _make("--resume", str(out), "--cycles", "5")
    resumed = _make("--resume", str(out), "--quiet")
    assert resumed.cycles == 3 and resumed.quiet and resumed.train_ranks == 1


@pytest.mark.faults
def test_corrupt_or_incomplete_checkpoints(tmp_path):
    from tcoupled.coupling.checkpoint import latest_complete, rank_file, save_rank_state

    for cycle in (2, 4):
        save_rank_state(tmp_path, cycle, 0, {"cycle": cycle})
    save_rank_state(tmp_path, 2, 1, {"cycle": 2})
    assert latest_complete(tmp_path, 2) == 2  # cycle 4 lacks rank 1
    rank_file(tmp_path, 2, 1).write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="rank-0001.pt is unreadable"):
        latest_complete(tmp_path, 2)


def test_dry_run_and_report_errors(tmp_path):
    out = tmp_path / "dry"
    proc = check(tcoupled("couple", "--dry-run", "--out", str(out), timeout=60))
    assert "couple: resolved configuration" in proc.stdout and "1 sim, 0 train" in proc.stdout
    assert not (out / "args.json").exists()
    proc = tcoupled("report", str(tmp_path / "none"), timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "holds no finished run" in proc.stderr
