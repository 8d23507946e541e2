"""Molecular geometries from SMILES with RDKit (add H, ETKDG, MMFF).

The chemistry is checked before any geometry is made, so that an invalid
SMILES, an ion, a radical or an element xTB does not parametrise fails with a
reason rather than deep inside an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tcoupled.chemistry import MoleculeError

#: GFN2-xTB and IPEA1-xTB are parametrised for H (1) to Rn (86).
MAX_ATOMIC_NUMBER = 86


@dataclass(frozen=True)
class Geometry:
    """A neutral closed-shell molecule: atomic numbers and positions in Angstrom."""

    numbers: np.ndarray
    positions: np.ndarray
    #: how the start geometry was made: "etkdg", "qm9" (given), "qm9 row N" (looked up),
    #: "etkdg random coordinates, seed S"
    source: str = "etkdg"

    def to_xyz(self, comment: str = "") -> str:
        """Return the geometry as XYZ text."""
        from rdkit.Chem import GetPeriodicTable

        table = GetPeriodicTable()
        lines = [str(len(self.numbers)), comment]
        for z, (x, y, w) in zip(self.numbers, self.positions):
            lines.append(f"{table.GetElementSymbol(int(z)):2s} {x:16.10f} {y:16.10f} {w:16.10f}")
        return "\n".join(lines) + "\n"


def parse_smiles(smiles: str):
    """Return the RDKit molecule (with explicit H) for a neutral closed-shell SMILES.

    Raises
    ------
    MoleculeError
        For an unparsable SMILES, a charged or radical species, or an element
        beyond Rn.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles) if smiles and smiles.strip() else None
    if mol is None:
        raise MoleculeError(f"invalid SMILES {smiles!r}")
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        raise MoleculeError(f"charged input {smiles!r} (formal charge {charge:+d}); "
                            "only neutral molecules are supported")
    radicals = sum(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms())
    if radicals:
        raise MoleculeError(f"radical input {smiles!r} ({radicals} unpaired electrons); "
                            "only closed-shell molecules are supported")
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() > MAX_ATOMIC_NUMBER or atom.GetAtomicNum() < 1:
            raise MoleculeError(f"element {atom.GetSymbol()} in {smiles!r} is not "
                                "parametrised in xTB (H-Rn only)")
    return Chem.AddHs(mol)


#: extra seeds tried with random starting coordinates when ETKDG fails outside QM9
HARD_SEEDS = 5


def embed(smiles: str, seed: int = 42, harder: bool = False) -> Geometry:
    """Return a 3D geometry: ETKDG embedding with a fixed seed, MMFF pre-optimised.

    With ``harder``, a failed embedding is retried from random starting coordinates
    with :data:`HARD_SEEDS` more seeds (smoothing failures ignored); the geometry's
    ``source`` says which attempt made it.

    Raises
    ------
    MoleculeError
        If the SMILES is rejected by :func:`parse_smiles` or RDKit cannot embed it.
    """
    from rdkit.Chem import AllChem

    mol = parse_smiles(smiles)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    source = "etkdg"
    if AllChem.EmbedMolecule(mol, params) != 0:
        params.useRandomCoords, params.ignoreSmoothingFailures = True, True
        for attempt in range(1, HARD_SEEDS + 1 if harder else 0):
            params.randomSeed = seed + attempt
            if AllChem.EmbedMolecule(mol, params) == 0:
                source = f"etkdg random coordinates, seed {seed + attempt}"
                break
        else:
            tried = f" (ETKDG and {HARD_SEEDS} random-coordinate seeds)" if harder else ""
            raise MoleculeError(f"RDKit could not embed {smiles!r} in 3D{tried}")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=500)
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()], dtype=np.int64)
    positions = np.array(mol.GetConformer().GetPositions(), dtype=np.float64)
    return Geometry(numbers, positions, source)


def from_symbols(symbols: list[str], positions: np.ndarray, source: str = "qm9") -> Geometry:
    """Return a geometry from element symbols and Cartesian positions in Angstrom."""
    from rdkit.Chem import GetPeriodicTable

    table = GetPeriodicTable()
    numbers = np.array([table.GetAtomicNumber(s) for s in symbols], dtype=np.int64)
    return Geometry(numbers, np.asarray(positions, dtype=np.float64).reshape(-1, 3), source)


def make_geometry(smiles: str, seed: int = 42,
                  fallback: tuple[list[str], np.ndarray] | None = None,
                  qm9: bool = True) -> Geometry:
    """Embed ``smiles``: ETKDG, else QM9's geometry, else harder ETKDG attempts.

    QM9 ships DFT geometries for molecules whose strained cages defeat ETKDG: the
    ``fallback`` (symbols, xyz) given by a QM9 screen, or (``qm9``) the one found by
    canonical SMILES (:mod:`tcoupled.chemistry.qm9`). Outside QM9, random starting
    coordinates and more seeds are tried. The SMILES' chemistry is checked first;
    ``Geometry.source`` says which way the geometry was made.
    """
    try:
        return embed(smiles, seed)
    except MoleculeError as exc:
        if "could not embed" not in str(exc):
            raise
    if fallback is not None:
        return from_symbols(*fallback)
    if qm9:
        from tcoupled.chemistry.qm9 import lookup

        found = lookup(smiles)
        if found is not None:
            return from_symbols(*found[1], source=f"qm9 row {found[0]}")
    return embed(smiles, seed, harder=True)
