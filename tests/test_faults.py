"""Failure behaviour: injected faults end the job cleanly, no rank hangs (marker: faults)."""

import pytest

from tcoupled.errors import ConfigError
from tcoupled.faults import Fault, parse

from mpitools import tcoupled

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]


def test_fault_spec_parsing():
    assert parse("nan:sim:step=4;raise:train:cycle=1:rank=0") == (
        Fault("nan", "sim", "step", 4), Fault("raise", "train", "cycle", 1, 0))
    with pytest.raises(ConfigError, match="TCOUPLED_FAULT action must be one of"):
        parse("explode:sim:step=1")
    with pytest.raises(ConfigError, match="is not ACTION:ROLE:POINT=N"):
        parse("nan:sim")


@pytest.mark.mpi
def test_nan_in_the_field_stops_every_rank_with_step_and_rank(tmp_path):
    proc = tcoupled("wave", "--steps", "100", "--check-every", "10", "--out", str(tmp_path),
                    "--quiet", ranks=2, timeout=60,
                    env={"TCOUPLED_FAULT": "nan:sim:step=25:rank=1"})
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "non-finite value (NaN or Inf) in the field at step 30 on sim rank(s) 1" in lines[0]


@pytest.mark.mpi
def test_exception_on_one_sim_rank_aborts_the_job(tmp_path):
    proc = tcoupled("wave", "--steps", "100", "--out", str(tmp_path), "--quiet", ranks=3,
                    timeout=60, env={"TCOUPLED_FAULT": "raise:sim:step=20:rank=2"})
    assert proc.returncode != 0
    assert "tcoupled: error on rank 2: RuntimeError: injected fault: sim rank 2 at step 20" \
        in proc.stderr
