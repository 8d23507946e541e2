"""Packaging contracts: side-effect-free imports, the NumPy fallback, the CLI's help."""

import subprocess
import sys

import pytest

from mpitools import check, tcoupled


def test_importing_library_modules_initialises_nothing():
    code = ("import sys, tcoupled, tcoupled.sim.solver, tcoupled.placement.layout, "
            "tcoupled.sim.halo, "
            "tcoupled.sim.backends, tcoupled.app.cli, tcoupled.runtime.store, "
            "tcoupled.app.wave, "
            "tcoupled.app.plan\n"
            "bad = [m for m in ('torch', 'mpi4py.MPI', 'cupy', 'h5py') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_missing_c_library_falls_back_to_numpy_once(monkeypatch, tmp_path, capsys):
    import tcoupled.sim.backends as backends
    from tcoupled.sim.backends import c_backend

    monkeypatch.setattr(c_backend, "_LIB_DIR", tmp_path)
    c_backend.library_path.cache_clear()
    c_backend._library.cache_clear()
    monkeypatch.setattr(backends, "_warned", set())
    try:
        assert backends.resolve_backend("auto").name == "numpy"
        assert backends.resolve_backend("auto").name == "numpy"
        err = capsys.readouterr().err
        assert err.count("the C kernel library is not built") == 1
        assert "using the numpy kernel" in err
    finally:
        c_backend.library_path.cache_clear()
        c_backend._library.cache_clear()


@pytest.mark.parametrize("command", ["wave", "plan"])
def test_every_command_has_help(command):
    top = check(tcoupled("--help"))
    assert command in top.stdout
    assert "usage: tcoupled " + command in check(tcoupled(command, "--help")).stdout
