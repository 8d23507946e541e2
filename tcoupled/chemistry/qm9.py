"""QM9's own geometries, looked up by SMILES (``qm9pack``'s CSV files, read directly).

QM9 ships a DFT-relaxed geometry for each of its 130,831 molecules, including the
strained cages that RDKit's ETKDG cannot embed (about 1.4%). :func:`lookup` finds a
molecule by its canonical SMILES (RDKit, stereo ignored: QM9's SMILES carry none) among
the QM9 molecules of the same stoichiometry, so a miss costs one pass over the SMILES
column (about 0.5 s, once per process) and the canonicalisation of a few thousand
isomers at most.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

#: the three CSV files of ``qm9pack``'s ``data/`` folder
PARTS = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")
#: QM9's ``Stoichiometry`` column counts these elements, in this order
_ELEMENTS = ("H", "C", "N", "O", "F")


def data_dir() -> Path | None:
    """The ``data`` folder of the installed ``qm9pack`` package (``None`` if absent)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _paths() -> list[Path]:
    folder = data_dir()
    paths = [folder / name for name in PARTS] if folder is not None else []
    return paths if paths and all(p.exists() for p in paths) else []


def _rows() -> Iterator[tuple[str, str]]:
    """Each molecule's CSV line and its first fields' text, in QM9's order.

    A molecule is one line; only the short leading fields (file, index, SMILES, InChI,
    atoms, stoichiometry) are parsed, which is ten times faster than the whole row.
    """
    for path in _paths():
        with open(path, newline="") as handle:
            handle.readline()  # the header: XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry
            for line in handle:
                yield line, line[:line.find(',"[\'')]


@lru_cache(maxsize=1)
def _index() -> dict[str, list[tuple[int, str]]]:
    """Stoichiometry -> [(row in QM9, SMILES)] over all three parts."""
    index: dict[str, list[tuple[int, str]]] = {}
    for row, (_, head) in enumerate(_rows()):
        fields = next(csv.reader([head]))
        index.setdefault(fields[5].replace(" ", ""), []).append((row, fields[2]))
    return index


def _canonical(smiles: str) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol, isomericSmiles=False)


def _stoichiometry(smiles: str) -> str | None:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    mol = Chem.AddHs(mol)
    counts = dict.fromkeys(_ELEMENTS, 0)
    for atom in mol.GetAtoms():
        if atom.GetSymbol() not in counts:
            return None  # an element QM9 does not hold
        counts[atom.GetSymbol()] += 1
    return "[" + ",".join(str(counts[e]) for e in _ELEMENTS) + "]"


def find(smiles: str) -> int | None:
    """QM9's row of the molecule ``smiles`` (same constitution), or ``None``."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    key = _stoichiometry(smiles)
    candidates = _index().get(key, []) if key else []
    for row, text in candidates:  # QM9's own spelling first: no canonicalisation needed
        if text == smiles:
            return row
    wanted = _canonical(smiles)
    for row, text in candidates:
        if _canonical(text) == wanted:
            return row
    return None


def parse_geometry(elements: str, xyz: str) -> tuple[list[str], list]:
    """QM9's ``Elements`` and ``XYZ_Ang`` fields as (symbols, positions in Angstrom).

    The fields are Python literals, not JSON: a few hold numbers such as ``0.`` (linear
    molecules), which JSON refuses. ``ast.literal_eval`` reads literals only; no code runs.
    """
    import ast

    return list(ast.literal_eval(elements)), [list(map(float, atom))
                                              for atom in ast.literal_eval(xyz)]


def geometry(row: int) -> tuple[list[str], list]:
    """QM9's (element symbols, positions in Angstrom) of molecule ``row``."""
    for seen, (line, _) in enumerate(_rows()):
        if seen == row:
            fields = next(csv.reader([line]))
            return parse_geometry(fields[6], fields[7])
    raise IndexError(f"QM9 has no molecule {row}")


def lookup(smiles: str) -> tuple[int, tuple[list[str], list]] | None:
    """QM9's row and geometry of ``smiles``, or ``None`` (not in QM9, or no qm9pack)."""
    row = find(smiles)
    return None if row is None else (row, geometry(row))
