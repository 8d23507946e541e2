"""The ``tblite`` engine (default): tblite's Python API."""

from __future__ import annotations

import numpy as np

from tcoupled.runtime.errors import BackendUnavailable


class TbliteEngine:
    """GFN2-xTB and IPEA1-xTB through :class:`tblite.interface.Calculator`."""

    name = "tblite"

    def __init__(self) -> None:
        try:
            from tblite.interface import Calculator
        except ImportError as exc:
            raise BackendUnavailable(f"engine 'tblite' needs the tblite package ({exc})") \
                from None
        self._calculator = Calculator

    def compute(self, hamiltonian: str, numbers: np.ndarray, positions_bohr: np.ndarray,
                charge: int = 0, uhf: int = 0) -> tuple[float, np.ndarray]:
        """Return energy (Eh) and gradient (Eh/Bohr); raise RuntimeError on SCF failure."""
        calc = self._calculator(hamiltonian, np.asarray(numbers), np.asarray(positions_bohr),
                                charge=float(charge), uhf=int(uhf))
        calc.set("verbosity", 0)
        result = calc.singlepoint()
        return float(result.get("energy")), np.array(result.get("gradient"))


def make_engine() -> TbliteEngine:
    """Return the engine (the registry's entry point)."""
    return TbliteEngine()
