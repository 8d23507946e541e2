"""xTB engines keyed by name; one interface, a new engine is one new file.

An engine computes the energy (Hartree) and gradient (Hartree/Bohr) of a
molecule for a Hamiltonian (``"GFN2-xTB"`` or ``"IPEA1-xTB"``), a total
charge and a number of unpaired electrons.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from tcoupled.runtime.errors import BackendUnavailable

#: engine name -> module defining ``make_engine()``.
ENGINES = {
    "tblite": "tcoupled.chemistry.engines.tblite",
    "xtb-python": "tcoupled.chemistry.engines.xtb_python",
}

#: Hamiltonians every engine must provide.
HAMILTONIANS = ("GFN2-xTB", "IPEA1-xTB")


class Engine(Protocol):
    """What an xTB engine provides."""

    name: str

    def compute(self, hamiltonian: str, numbers: np.ndarray, positions_bohr: np.ndarray,
                charge: int = 0, uhf: int = 0) -> tuple[float, np.ndarray]:
        """Return ``(energy_Eh, gradient_Eh_per_bohr)``; raise on SCF failure."""


def get_engine(name: str) -> Engine:
    """Return the engine called ``name``.

    Raises
    ------
    BackendUnavailable
        If the name is unknown or the engine's Python package is not installed.
    """
    if name not in ENGINES:
        raise BackendUnavailable(f"unknown engine {name!r}; choose from {sorted(ENGINES)}")
    module = importlib.import_module(ENGINES[name])
    return module.make_engine()
