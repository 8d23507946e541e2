"""Failure behaviour: injected faults end the job cleanly, no rank hangs (marker: faults)."""

import pytest

from tcoupled.runtime.errors import BackendUnavailable, ConfigError
from tcoupled.runtime.faults import Fault, parse
from tcoupled.sim.backends import cuda_device_count, resolve_device

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
    assert "tcoupled: error on rank 2 (sim): RuntimeError: injected fault: sim rank 2 at step 20" \
        in proc.stderr


def _one_line_refusal(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args, fragment", [
    (("wave", "--bogus", "1"), "unrecognized arguments: --bogus 1"),
    (("wave", "--steps", "ten"), "argument --steps: invalid int value: 'ten'"),
    (("couple", "--device", "tpu"), "--device must be one of auto, cpu, cuda, got 'tpu'"),
    (("couple", "--resume", "/nonexistent/run"), "no such directory"),
])
def test_bad_flags_are_one_line_before_any_work(tmp_path, args, fragment):
    out = tmp_path / "o"
    extra = () if "--resume" in args else ("--out", str(out))
    line = _one_line_refusal(tcoupled(*args, *extra, timeout=50))
    assert fragment in line and not (out / "args.json").exists()


@pytest.mark.timeout(60)
@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a CUDA GPU")
def test_device_cuda_without_a_gpu_is_refused(tmp_path):
    line = _one_line_refusal(tcoupled("wave", "--device", "cuda", "--out", str(tmp_path / "o"),
                                      timeout=50))
    assert line == "tcoupled wave: error: --device cuda needs a CUDA GPU; none found"
    with pytest.raises(BackendUnavailable, match="--device cuda needs a CUDA GPU; none found"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu" and resolve_device("cpu", "c") == "cpu"
    with pytest.raises(ConfigError, match="--kernel cupy runs on a GPU"):
        resolve_device("cpu", "cupy")
