"""Chemistry: RDKit geometries, xTB engines and ionization energies (no MPI here)."""

from __future__ import annotations


class MoleculeError(Exception):
    """A molecule cannot be handled; the message is recorded as the task's failure."""
