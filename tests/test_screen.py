"""The ``ie`` and ``screen`` commands, launched for real under mpiexec."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import mpitools
from mpitools import check, mpiexec_path, tcoupled

SMALL = ["C", "CC", "CCC", "CO", "CCO", "CN", "CCN", "C=O", "CC=O", "C#N", "CC#N", "O",
         "N", "C=C", "C#C", "CC(C)C"]
BAD = {"C1CC(": "invalid SMILES", "[NH4+]": "charged input", "[CH3]": "radical input",
       "[U]": "element U"}
CAGE = "C1C2C=CC3=C2N1C=C3"  # ETKDG fails; the SMILES-file screen takes QM9's geometry


def _summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.mark.timeout(240)
@pytest.mark.mpi
def test_qm9_screen_on_three_ranks(tmp_path):
    cache, baseline, out = tmp_path / "fp", tmp_path / "random", tmp_path / "greedy"
    common = ["--fp-cache", str(cache), "--budget", "24"]
    check(tcoupled("screen", *common, "--policy", "random", "--task", "noop",
                   "--out", str(baseline), ranks=3, timeout=120))
    first = _summary(baseline)
    proc = check(tcoupled("screen", *common, "--baseline", str(baseline), "--out", str(out),
                          ranks=3, timeout=150))
    summary = _summary(out)
    assert "read from cache" in proc.stdout and summary["fingerprint_s"] < 1.0
    assert summary["simulated"] == 24 and summary["failed"] == 0
    assert set(summary["worker_utilization"]) == {"1", "2"}
    assert 0 < summary["worker_utilization"]["1"] <= 1 and summary["tasks_per_s"] > 0
    assert summary["predict_s_max"] < 1.0 and summary["retrainings"] >= 1
    assert (out / "best_ie.png").stat().st_size > 10_000
    with h5py.File(out / "results.h5", "r") as h5:
        ie = h5["molecules/ie_ev"][()]
        assert len(ie) == 24 and np.nanmax(ie) == pytest.approx(summary["best_ie_ev"])
        assert len(set(h5["molecules/smiles"].asstr()[()])) == 24
        assert set(h5["molecules/worker"][()]) == {1.0, 2.0}
        assert len(h5["iterations/best_predicted_ie"]) == summary["retrainings"]
    print(f"24-simulation QM9 screen: {summary['wall_s']:.1f} s farm wall, "
          f"{summary['tasks_per_s']:.2f} tasks/s, predict {summary['predict_s_mean']:.3f} s "
          f"mean; random no-op fingerprints {first['fingerprint_s']:.1f} s")


@pytest.mark.faults
@pytest.mark.timeout(120)
@pytest.mark.mpi
def test_bad_molecules_are_recorded_failures(tmp_path):
    space = tmp_path / "space.smi"
    space.write_text("\n".join(list(BAD) + ["CCO", "CC", CAGE]) + "\n")
    out = tmp_path / "out"
    check(tcoupled("screen", "--space", str(space), "--budget", "20", "--initial", "2",
                   "--fp-cache", str(tmp_path), "--out", str(out), ranks=2, timeout=100))
    summary = _summary(out)
    with h5py.File(out / "results.h5", "r") as h5:
        errors = dict(zip(h5["molecules/smiles"].asstr()[()], h5["molecules/error"].asstr()))
    # 'C1CC(' is never a candidate: a recorded failure that spends no budget
    assert summary["simulated"] == 6 and summary["failed"] == 3
    assert summary["invalid_smiles"] == 1
    for smiles, reason in BAD.items():
        assert reason in errors[smiles]
    assert errors["CCO"] == errors[CAGE] == ""
    assert summary["best_smiles"] in ("CCO", "CC", CAGE)


@pytest.mark.faults
@pytest.mark.timeout(60)
@pytest.mark.parametrize("content, message", [(None, "no such file"), ("\n", "no SMILES")])
def test_missing_or_empty_space_is_one_line_error(tmp_path, content, message):
    space = tmp_path / "space.smi"
    if content is not None:
        space.write_text(content)
    proc = tcoupled("screen", "--space", str(space), "--out", str(tmp_path / "o"), timeout=50)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


@pytest.mark.faults
@pytest.mark.timeout(180)
@pytest.mark.mpi
def test_resume_after_kill_runs_nothing_twice(tmp_path):
    space, out = tmp_path / "space.smi", tmp_path / "run"
    space.write_text("\n".join(SMALL) + "\n")
    cmd = [mpiexec_path(), "-n", "2", sys.executable, "-m", "tcoupled", "screen", "--space",
           str(space), "--budget", "12", "--initial", "3", "--fp-cache", str(tmp_path),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, env=mpitools.job_env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = [json.loads(line)["smiles"] for line in journal.read_text().splitlines()]
    assert 4 <= len(before) < 12 and not (out / "summary.json").exists()
    check(tcoupled("screen", "--resume", str(out), ranks=2, timeout=120))
    summary = _summary(out)
    with h5py.File(out / "results.h5", "r") as h5:
        smiles = list(h5["molecules/smiles"].asstr()[()])
    assert summary["simulated"] == 12 and summary["resumed_records"] == len(before)
    assert smiles[:len(before)] == before and len(set(smiles)) == 12


@pytest.mark.timeout(120)
@pytest.mark.mpi
def test_ie_command_under_mpi(tmp_path):
    proc = check(tcoupled("ie", "CCO", "O", "C1CC(", "[Na+]", "--method", "ipea",
                          "--out", str(tmp_path), ranks=2, timeout=100))
    results = _summary(tmp_path)["results"]
    assert [r["status"] for r in results] == ["ok", "ok", "failed", "failed"]
    assert results[0]["ie_ev"] == pytest.approx(10.3846, abs=2e-3)  # xtb --vip, ETKDG seed 42
    assert "invalid SMILES" in results[2]["error"] and "charged" in results[3]["error"]
    assert "CCO" in proc.stdout and "failed" in proc.stdout
    with h5py.File(tmp_path / "results.h5", "r") as h5:
        assert np.isnan(h5["molecules/ie_ev"][2]) and h5.attrs["command"] == "ie"


def test_qm9_geometry_fields_parse_including_linear_molecules():
    """QM9's XYZ fields are Python literals: ``0.`` appears (linear molecules), JSON refuses it."""
    from tcoupled.chemistry.qm9 import parse_geometry

    symbols, positions = parse_geometry("['C', 'C', 'H', 'H']",
                                        "[[0.5995394918,0.,1.],[-0.5995394918,0.,1.],"
                                        "[-1.6616385861,0.,1.],[1.6616385861,0.,1.]]")
    assert symbols == ["C", "C", "H", "H"]
    assert positions[1] == [-0.5995394918, 0.0, 1.0]
    with pytest.raises(json.JSONDecodeError):
        json.loads("[[0.5,0.,1.]]")           # why the fields are not read as JSON


@pytest.mark.slow
def test_every_qm9_molecule_has_a_readable_geometry():
    from tcoupled.chemistry.qm9 import data_dir
    from tcoupled.screening.space import load_qm9

    if data_dir() is None:
        pytest.skip("qm9pack is not installed")
    space = load_qm9()
    for index in range(len(space)):
        symbols, positions = space.fallback_geometry(index)
        assert len(symbols) == len(positions) > 0, index
