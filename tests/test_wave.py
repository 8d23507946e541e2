"""The wave solver against the exact solution, energy conservation, bad input (serial)."""

import json

import numpy as np
import pytest

from tcoupled.runtime.errors import ConfigError
from tcoupled.sim.config import WaveConfig, stable_dt
from tcoupled.sim.initial import exact_mode
from tcoupled.sim.solver import WaveSolver

from mpitools import check, tcoupled


def standing_mode_error(comm, n, t_final=0.5, kernel="c"):
    dt = stable_dt(1.0, (n, n), 0.5)  # Courant 0.5: dt = dx / 2
    steps = round(t_final / dt)
    cfg = WaveConfig(grid=(n, n), steps=steps, dt=dt, kernel=kernel)
    with WaveSolver(cfg, comm) as solver:
        solver.step(steps)
        u = solver.gather()
    exact = exact_mode(cfg, steps * dt)
    return np.linalg.norm(u - exact) / np.linalg.norm(exact)


def test_standing_mode_is_second_order(comm_self):
    errors = [standing_mode_error(comm_self, n) for n in (65, 129, 257)]
    assert errors[1] < 1e-3
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.6 < r < 4.4 for r in ratios), (errors, ratios)


@pytest.mark.parametrize("kernel", ["numpy", "c"])
def test_discrete_energy_is_conserved_over_1000_steps(comm_self, kernel):
    cfg = WaveConfig(grid=(48, 41), steps=1000, dt=stable_dt(1.0, (48, 41), 0.6),
                     init="gaussian", pulses=2, width=0.08, seed=3, kernel=kernel)
    with WaveSolver(cfg, comm_self) as solver:
        solver.step(1)
        first = solver.energy()
        solver.step(999)
        last = solver.energy()
    assert first > 0
    assert abs(last - first) / first < 1e-6


@pytest.mark.faults
@pytest.mark.parametrize("kwargs,message", [
    (dict(dt=0.01), "--dt 0.01 violates the CFL condition: c*dt/dx = 1.2800 > 1/sqrt(2)"),
    (dict(grid=(2, 64)), "--grid needs two integers >= 3, got 2 64"),
    (dict(steps=-5), "--steps must be a non-negative integer, got -5"),
    (dict(dtype="float16"), "--dtype must be one of float32, float64, got 'float16'"),
    (dict(init="square"), "--init must be one of mode, gaussian, got 'square'"),
])
def test_config_refuses_bad_values(kwargs, message):
    base = dict(grid=(129, 129), dt=0.001)
    base.update(kwargs)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*").replace("+", r"\+")):
        WaveConfig(**base)


@pytest.mark.faults
@pytest.mark.parametrize("args,fragment", [
    (["--dt", "0.5"], "--dt 0.5 violates the CFL condition"),
    (["--grid", "-4", "16"], "--grid needs two integers >= 3, got -4 16"),
    (["--steps", "-1"], "--steps must be a non-negative integer, got -1"),
    (["--kernel", "fortran"], "--kernel must be one of auto, numpy, c, cupy, got 'fortran'"),
    (["--dtype", "int8"], "--dtype must be one of float32, float64, got 'int8'"),
    (["--kernel", "cupy"], "--kernel cupy needs"),
    (["--out", "/proc/forbidden/run"], "--out '/proc/forbidden/run' is not writable"),
    (["--grid", "64"], "argument --grid: expected 2 arguments"),
])
def test_cli_bad_input_is_one_line_and_nonzero(tmp_path, args, fragment):
    proc = tcoupled("wave", "--steps", "2", "--out", str(tmp_path / "o"), *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


def test_cli_run_writes_results_and_summary(tmp_path):
    import h5py

    out = tmp_path / "run"
    proc = check(tcoupled("wave", "--grid", "65", "33", "--steps", "40", "--init", "gaussian",
                          "--pulses", "2", "--out", str(out)))
    assert "energy drift" in proc.stdout and "Mcells/s" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("ranks", "grid", "steps", "dt", "t_final", "kernel", "l2_rel_error",
                "energy_drift", "cells_per_s", "wall_s"):
        assert key in summary
    assert summary["l2_rel_error"] is None and summary["grid"] == [65, 33]
    with h5py.File(out / "results.h5") as h5:
        u = h5["wave/u"]
        assert u.shape == (65, 33)  # first axis is x
        assert u.attrs["t_final"] == pytest.approx(summary["t_final"])
        assert json.loads(h5.attrs["config_json"])["wave"]["grid"] == [65, 33]
    assert (out / "run.log").read_text().count("wave:") >= 2


def test_config_file_sets_flags_and_flags_win(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("grid: [33, 41]\nsteps: 40\ninit: gaussian\n")
    out = tmp_path / "o"
    check(tcoupled("wave", "--config", str(cfg), "--steps", "7", "--out", str(out), "--quiet"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid"] == [33, 41] and summary["steps"] == 7 and summary["init"] == "gaussian"
    toml = tmp_path / "run.toml"
    toml.write_text('grid = [17, 17]\ndtype = "float32"\n')
    check(tcoupled("wave", "--config", str(toml), "--out", str(out), "--quiet"))
    assert json.loads((out / "summary.json").read_text())["dtype"] == "float32"


@pytest.mark.faults
@pytest.mark.parametrize("text,fragment", [
    ("bogus: 1\n", "unknown key 'bogus' in --config"),
    ("steps: abc\n", "steps: bad value 'abc'"),
    ("grid: [1, 2, 3]\n", "grid: expected 2 values"),
    ("- just\n- a list\n", "must hold a mapping"),
    ("grid: [1,\n", "is not valid"),
])
def test_bad_config_file_is_one_line(tmp_path, text, fragment):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    proc = tcoupled("wave", "--config", str(cfg), "--out", str(tmp_path / "o"), timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


@pytest.mark.parametrize("text", ["out: ../elsewhere\n", "out: /tmp/evil\n",
                                  "out: runs/../../x\n", "out: ~/x\n"])
def test_config_file_cannot_write_outside_the_run_directory(tmp_path, text):
    cfg = tmp_path / "shared.yaml"
    cfg.write_text(text)
    proc = tcoupled("wave", "--config", str(cfg), timeout=30)
    assert proc.returncode == 2
    assert "points outside the run's directory" in proc.stderr
    assert not (tmp_path.parent / "elsewhere").exists()


def test_results_follow_the_umask(tmp_path):
    import os

    out = tmp_path / "o"
    old = os.umask(0o027)  # inherited by the launched process
    try:
        proc = tcoupled("wave", "--steps", "2", "--grid", "9", "9", "--quiet",
                        "--out", str(out), timeout=30)
    finally:
        os.umask(old)
    assert proc.returncode == 0
    for name in ("results.h5", "summary.json", "run.log"):
        assert (out / name).stat().st_mode & 0o777 == 0o640, name
    assert out.stat().st_mode & 0o777 == 0o750
