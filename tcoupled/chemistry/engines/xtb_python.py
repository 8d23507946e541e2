"""The ``xtb-python`` engine (optional extra): the ``xtb`` package's API."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from tcoupled.runtime.errors import BackendUnavailable

#: our Hamiltonian names -> xtb-python's method names.
_METHODS = {"GFN2-xTB": "GFN2-xTB", "IPEA1-xTB": "IPEA-xTB"}


#: where xtb's parameter files usually live (IPEA-xTB is read from a file).
_PARAM_DIRS = (Path(sys.prefix) / "share" / "xtb", Path("/usr/local/share/xtb"),
               Path("/usr/share/xtb"))


def _ensure_param_path() -> None:
    """Point ``XTBPATH`` at a directory holding ``param_ipea-xtb.txt`` (xtb reads it)."""
    from tcoupled.runtime.sysprog import find_file

    folders = [Path(os.environ["XTBPATH"])] if os.environ.get("XTBPATH") else _PARAM_DIRS
    found = find_file("param_ipea-xtb.txt", folders)
    if found is not None:
        os.environ["XTBPATH"] = str(found.parent)
        return
    raise BackendUnavailable("engine 'xtb-python' needs param_ipea-xtb.txt for IPEA-xTB; "
                             "install the xtb program or set XTBPATH")


class XtbPythonEngine:
    """GFN2-xTB and IPEA1-xTB through :class:`xtb.interface.Calculator`."""

    name = "xtb-python"

    def __init__(self) -> None:
        try:
            from xtb.interface import Calculator
            from xtb.libxtb import VERBOSITY_MUTED
            from xtb.utils import get_method
        except ImportError as exc:
            raise BackendUnavailable("engine 'xtb-python' is not installed "
                                     f"(pip install xtb typing_extensions): {exc}") from None
        self._calculator, self._get_method = Calculator, get_method
        self._muted = VERBOSITY_MUTED

    def compute(self, hamiltonian: str, numbers: np.ndarray, positions_bohr: np.ndarray,
                charge: int = 0, uhf: int = 0) -> tuple[float, np.ndarray]:
        """Return energy (Eh) and gradient (Eh/Bohr); raise on SCF failure."""
        if hamiltonian == "IPEA1-xTB":
            _ensure_param_path()
        method = self._get_method(_METHODS[hamiltonian])
        calc = self._calculator(method, np.asarray(numbers), np.asarray(positions_bohr),
                                charge=float(charge), uhf=int(uhf))
        calc.set_verbosity(self._muted)
        result = calc.singlepoint()
        return float(result.get_energy()), np.array(result.get_gradient())


def make_engine() -> XtbPythonEngine:
    """Return the engine (the registry's entry point)."""
    return XtbPythonEngine()
