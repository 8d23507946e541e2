"""Search spaces for screening: QM9 (from the ``qm9pack`` package) or a SMILES file.

``import qm9pack`` needs setuptools' ``pkg_resources``, so its CSV files are
read directly from the installed package's ``data/`` folder.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tcoupled.chemistry.qm9 import PARTS as QM9_PARTS
from tcoupled.chemistry.qm9 import parse_geometry
from tcoupled.runtime.errors import ConfigError


@dataclass
class SearchSpace:
    """Candidate molecules: SMILES, plus QM9's DFT geometries when available."""

    name: str
    smiles: list[str]
    source: list[Path] | None = None  # QM9 CSV parts, for start geometries
    _geometries: tuple[list[str], list[str]] | None = None  # read on first use

    def __len__(self) -> int:
        return len(self.smiles)

    def fallback_geometry(self, index: int) -> tuple[list[str], list] | None:
        """Return QM9's (symbols, positions in Angstrom) for molecule ``index``, if any."""
        if self.source is None:
            return None
        if self._geometries is None:
            self._geometries = _read_geometries(self.source)
        elements, xyz = self._geometries[0][index], self._geometries[1][index]
        return parse_geometry(elements, xyz)


def qm9_data_dir() -> Path:
    """Return the ``data`` folder of the installed ``qm9pack`` package."""
    from tcoupled.chemistry.qm9 import data_dir

    folder = data_dir()
    if folder is None:
        raise ConfigError("--space qm9 needs the qm9pack package (pip install qm9pack)")
    return folder


def _qm9_paths() -> list[Path]:
    folder = qm9_data_dir()
    paths = [folder / name for name in QM9_PARTS]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"--space qm9: qm9pack data files missing: {missing[0]}")
    return paths


def _read_column(path: Path, column: str) -> list[str]:
    with open(path, newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def _read_geometries(paths: list[Path]) -> tuple[list[str], list[str]]:
    """Return QM9's element lists and positions (as JSON text) for all molecules."""
    elements = [e for path in paths for e in _read_column(path, "Elements")]
    xyz = [x for path in paths for x in _read_column(path, "XYZ_Ang")]
    return elements, xyz


def load_qm9() -> SearchSpace:
    """Return QM9 (about 131k molecules)."""
    paths = _qm9_paths()
    smiles = [s for path in paths for s in _read_column(path, "SMILES")]
    return SearchSpace("qm9", smiles, paths)


def load_smiles_file(path: str | Path) -> SearchSpace:
    """Read SMILES, one per line, or a CSV with a ``smiles`` column.

    Raises
    ------
    ConfigError
        If the file is missing, not a text file (see :mod:`tcoupled.runtime.inputs`) or
        holds no SMILES. Invalid SMILES in it are kept: they become recorded failures.
    """
    from tcoupled.runtime.inputs import read_text_input

    path = Path(path)
    lines = read_text_input(path, "--space").splitlines()
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if lines and "," in lines[0]:
        header = [h.strip().lower() for h in lines[0].split(",")]
        if "smiles" not in header:
            raise ConfigError(f"--space {str(path)!r}: CSV has no 'smiles' column")
        column = header.index("smiles")
        lines = [row[column].strip() for row in csv.reader(lines[1:]) if len(row) > column]
    elif lines and lines[0].lower() == "smiles":
        lines = lines[1:]
    if not lines:
        raise ConfigError(f"--space {str(path)!r} holds no SMILES")
    return SearchSpace(path.name, lines)


def load_space(spec: str) -> SearchSpace:
    """Return the search space named by ``--space`` (``qm9`` or a file path)."""
    return load_qm9() if spec == "qm9" else load_smiles_file(spec)


def valid_mask(fingerprints: np.ndarray) -> np.ndarray:
    """Return which molecules have a fingerprint (an all-zero row marks invalid SMILES)."""
    return fingerprints.any(axis=1)
