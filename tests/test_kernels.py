"""Every kernel backend computes the NumPy reference update (serial)."""

import numpy as np
import pytest

from tcoupled.runtime.errors import BackendUnavailable, ConfigError
from tcoupled.sim.backends import load_backend, resolve_backend

from conftest import backends_here

TOL = {"float32": 1e-6, "float64": 1e-14}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", backends_here())
def test_backend_matches_numpy_reference_in_place(name, dtype):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((21, 34)).astype(dtype)
    prev = rng.standard_normal((21, 34)).astype(dtype)
    box = (2, 19, 1, 30)
    expected = prev.copy()
    load_backend("numpy").step(u, prev, expected, box, 0.21, 0.17)
    got = prev.copy()
    load_backend(name).step(u, got, got, box, 0.21, 0.17)  # in place, as the solver does
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= TOL[dtype] * scale
    untouched = np.ones_like(got, bool)
    untouched[2:19, 1:30] = False
    assert (got[untouched] == prev[untouched]).all()


def test_c_kernel_is_built_here():
    # CI builds the package with CMake; a missing library would silently fall back.
    assert "c" in backends_here()
    assert resolve_backend("auto").name == "c"


def test_unknown_and_unavailable_kernels_are_refused():
    message = "--kernel must be one of auto, numpy, c, cupy, got 'fortran'"
    with pytest.raises(ConfigError, match=message):
        load_backend("fortran")
    try:
        import cupy  # noqa: F401
        has_gpu = load_backend("cupy") is not None
    except Exception:  # noqa: BLE001
        has_gpu = False
    if not has_gpu:
        with pytest.raises(BackendUnavailable, match="--kernel cupy needs"):
            load_backend("cupy")
