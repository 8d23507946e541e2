"""Vertical ionization energies with xTB.

SMILES -> RDKit geometry -> GFN2-xTB relaxation of the neutral (ASE optimizer)
-> single points of the neutral and the cation (charge +1, one unpaired
electron) at the relaxed geometry. ``gfn2`` reports the raw GFN2-xTB energy
difference; ``ipea`` uses IPEA1-xTB and subtracts the empirical shift that
``xtb --vip`` applies, so both give the same number for the same geometry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from tcoupled.chemistry import MoleculeError
from tcoupled.chemistry.engines import Engine, get_engine
from tcoupled.chemistry.geometry import Geometry, make_geometry

HARTREE_EV = 27.211386245988  # CODATA 2018, as used by ASE and tblite
BOHR_ANGSTROM = 0.529177210903
#: xtb's empirical IPEA shift (eV), subtracted from the IPEA1-xTB difference.
IPEA_SHIFT_EV = 4.8455
METHODS = {"gfn2": ("GFN2-xTB", 0.0), "ipea": ("IPEA1-xTB", IPEA_SHIFT_EV)}


@dataclass
class IEResult:
    """Outcome of one ionization-energy calculation."""

    smiles: str
    ie_ev: float
    e_neutral_eh: float
    e_cation_eh: float
    geometry: Geometry = field(repr=False)
    relax_steps: int = 0
    seconds: float = 0.0


def _ase_calculator(engine: Engine, hamiltonian: str):
    """Return an ASE calculator computing energy and forces with ``engine``."""
    from ase.calculators.calculator import Calculator, all_changes

    class EngineCalculator(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            energy, gradient = engine.compute(hamiltonian, self.atoms.numbers,
                                              self.atoms.positions / BOHR_ANGSTROM)
            self.results["energy"] = energy * HARTREE_EV
            self.results["forces"] = -gradient * HARTREE_EV / BOHR_ANGSTROM

    return EngineCalculator()


def relax(geometry: Geometry, engine: Engine, fmax: float = 0.05,
          steps: int = 300) -> tuple[Geometry, int]:
    """Relax the neutral molecule with GFN2-xTB and ASE's BFGS; return it and the steps.

    Raises
    ------
    MoleculeError
        If the optimizer does not reach ``fmax`` (eV/Angstrom) within ``steps``.
    """
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=geometry.numbers, positions=geometry.positions)
    atoms.calc = _ase_calculator(engine, "GFN2-xTB")
    optimizer = BFGS(atoms, logfile=None)
    if not optimizer.run(fmax=fmax, steps=steps):
        raise MoleculeError(f"relaxation did not converge to fmax={fmax} in {steps} steps")
    return Geometry(atoms.numbers.copy(), atoms.positions.copy()), optimizer.nsteps


def vertical_ie(geometry: Geometry, engine: Engine, method: str = "gfn2"
                ) -> tuple[float, float, float]:
    """Return ``(ie_ev, e_neutral_eh, e_cation_eh)`` at a fixed geometry."""
    if method not in METHODS:
        raise MoleculeError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    hamiltonian, shift = METHODS[method]
    bohr = geometry.positions / BOHR_ANGSTROM
    e_neutral, _ = engine.compute(hamiltonian, geometry.numbers, bohr, charge=0, uhf=0)
    e_cation, _ = engine.compute(hamiltonian, geometry.numbers, bohr, charge=1, uhf=1)
    return (e_cation - e_neutral) * HARTREE_EV - shift, e_neutral, e_cation


def ionization_energy(smiles: str, method: str = "gfn2", engine: str | Engine = "tblite",
                      fmax: float = 0.05, seed: int = 42,
                      fallback: tuple[list[str], np.ndarray] | None = None,
                      qm9: bool = True) -> IEResult:
    """Compute the vertical ionization energy of ``smiles`` (see module docstring).

    Parameters
    ----------
    smiles : str
        A neutral closed-shell molecule.
    method : {"gfn2", "ipea"}
        Hamiltonian of the single points.
    engine : str or Engine
        Engine name in the registry, or an engine object.
    fmax : float
        Force threshold of the relaxation (eV/Angstrom).
    seed : int
        ETKDG random seed.
    fallback : (symbols, positions), optional
        Start geometry used when RDKit cannot embed the molecule.
    qm9 : bool
        Without ``fallback``, look the molecule up in QM9 when RDKit cannot embed it
        (the relaxed geometry's ``source`` says which way the start was made).

    Raises
    ------
    MoleculeError
        For a molecule that cannot be handled (the reason is the message).
    """
    start = time.perf_counter()
    if isinstance(engine, str):
        engine = get_engine(engine)
    geometry = make_geometry(smiles, seed, fallback, qm9)
    relaxed, steps = relax(geometry, engine, fmax)
    relaxed = replace(relaxed, source=geometry.source)
    ie_ev, e_neutral, e_cation = vertical_ie(relaxed, engine, method)
    if not np.isfinite(ie_ev):
        raise MoleculeError(f"non-finite ionization energy for {smiles!r}")
    return IEResult(smiles, ie_ev, e_neutral, e_cation, relaxed, steps,
                    time.perf_counter() - start)


def warmup() -> None:
    """Import RDKit, tblite and ASE ahead of the first task (called by the farm)."""
    import ase.optimize  # noqa: F401
    import rdkit.Chem.AllChem  # noqa: F401
    import tblite.interface  # noqa: F401


def ie_task(payload: dict) -> dict:
    """Farm task: compute one ionization energy from a payload dict.

    ``payload`` holds ``smiles`` and optionally ``method``, ``engine``, ``fmax``,
    ``seed`` and ``fallback`` (symbols, positions). Returns ``ie_ev`` and
    ``seconds``; any failure is raised and recorded by the farm.
    """
    result = ionization_energy(payload["smiles"], payload.get("method", "gfn2"),
                               payload.get("engine", "tblite"), payload.get("fmax", 0.05),
                               payload.get("seed", 42), payload.get("fallback"),
                               payload.get("qm9", True))
    return {"ie_ev": result.ie_ev, "seconds": result.seconds,
            "geometry": result.geometry.source,
            "e_neutral_eh": result.e_neutral_eh, "e_cation_eh": result.e_cation_eh}
