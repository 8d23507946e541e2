"""The decomposed solver under real mpiexec launches at 2, 3 and 4 ranks."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from mpitools import check, python_mpi, tcoupled

SCRIPTS = Path(__file__).parent / "scripts"
pytestmark = [pytest.mark.mpi, pytest.mark.timeout(180)]


@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_decomposed_field_equals_one_rank_field(ranks):
    proc = check(python_mpi(SCRIPTS / "invariance.py", ranks=ranks, timeout=120))
    assert f"invariance ok: 8 cases at {ranks} ranks" in proc.stdout


def test_cli_at_four_ranks_matches_one_rank(tmp_path):
    args = ["wave", "--grid", "129", "129", "--steps", "128", "--quiet"]
    check(tcoupled(*args, "--out", str(tmp_path / "one")))
    check(tcoupled(*args, "--out", str(tmp_path / "four"), ranks=4))
    one = h5py.File(tmp_path / "one" / "results.h5")["wave/u"][()]
    four = h5py.File(tmp_path / "four" / "results.h5")["wave/u"][()]
    assert np.abs(one - four).max() <= 1e-12 * np.abs(one).max()
    summary = json.loads((tmp_path / "four" / "summary.json").read_text())
    assert summary["ranks"] == 4 and summary["dims"] == [2, 2]
    assert summary["l2_rel_error"] < 1e-3 and summary["t_final"] == pytest.approx(0.5)


def test_grid_smaller_than_rank_grid_is_refused_on_every_rank(tmp_path):
    proc = tcoupled("wave", "--grid", "3", "40", "--out", str(tmp_path), ranks=5, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tcoupled wave: error: --grid 3 40 is smaller than the 5x1 rank grid along x (3 < 5)"]


def test_error_on_one_rank_ends_the_job():
    proc = python_mpi(SCRIPTS / "fail_one_rank.py", ranks=3, timeout=60)
    assert proc.returncode != 0
    assert "tcoupled: error on rank 1: RuntimeError: injected failure" in proc.stderr


def test_layout_splits_world_into_roles():
    proc = check(python_mpi(SCRIPTS / "layout_check.py", ranks=4, timeout=60))
    assert "layout ok" in proc.stdout
