"""Active learning: Morgan fingerprints (cached), a fast Jaccard kNN and policies.

Fingerprints are packed into ``uint64`` words, so a Jaccard distance is a few
AND/popcount operations. The distance from every molecule of the search space
to each training molecule is computed once, when that molecule joins the
training set; a prediction is then an ``argpartition`` over the columns. The
kNN reproduces scikit-learn's ``KNeighborsRegressor(metric="jaccard",
weights="distance")`` (same distance formula, neighbour selection and
zero-distance rule).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tcoupled.runtime.telemetry import get_logger


def default_cache_dir() -> Path:
    """Return the user cache folder (``TCOUPLED_CACHE_DIR`` or ``~/.cache/tcoupled``)."""
    from tcoupled.runtime.mpienv import env

    folder = env("CACHE_DIR")
    if folder:
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tcoupled"


def compute_fingerprints(smiles: list[str], radius: int = 4, n_bits: int = 256) -> np.ndarray:
    """Return packed Morgan fingerprints, shape ``(len(smiles), n_bits // 64)``, uint64.

    An unparsable SMILES gets an all-zero row.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    bits = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for row, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        if mol is not None:
            bits[row] = generator.GetFingerprintAsNumPy(mol)
    return np.packbits(bits, axis=1).view(np.uint64).copy()


def unpack(fingerprints: np.ndarray, n_bits: int) -> np.ndarray:
    """Return the fingerprints as a boolean ``(n, n_bits)`` array."""
    return np.unpackbits(fingerprints.view(np.uint8), axis=1)[:, :n_bits].astype(bool)


def cache_key(smiles: list[str], radius: int, n_bits: int) -> str:
    """Return a key identifying the fingerprints of these SMILES with these settings."""
    from rdkit import __version__ as rdkit_version

    digest = hashlib.sha256()
    digest.update(f"{radius}|{n_bits}|{rdkit_version}|".encode())
    digest.update("\n".join(smiles).encode())
    return digest.hexdigest()[:20]


def cached_fingerprints(smiles: list[str], radius: int, n_bits: int,
                        cache_dir: str | Path) -> tuple[np.ndarray, bool]:
    """Return the fingerprints, from ``cache_dir`` if computed before; and whether cached."""
    from tcoupled.runtime.store import atomic_path

    path = Path(cache_dir) / f"morgan-r{radius}-b{n_bits}-{cache_key(smiles, radius, n_bits)}.npy"
    if path.exists():
        try:  # plain .npy only (allow_pickle=False); a damaged file is recomputed
            fingerprints = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            fingerprints = None
        if (fingerprints is not None and fingerprints.dtype == np.uint64
                and fingerprints.shape == (len(smiles), n_bits // 64)):
            return fingerprints, True
    fingerprints = compute_fingerprints(smiles, radius, n_bits)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, fingerprints)
    get_logger().info("fingerprints of %d molecules cached in %s", len(smiles), path)
    return fingerprints, False


def popcount(fingerprints: np.ndarray) -> np.ndarray:
    """Return the number of set bits per row."""
    return np.bitwise_count(fingerprints).sum(axis=1, dtype=np.int64)


class JaccardColumns:
    """Jaccard distances from the whole search space to a growing training set."""

    def __init__(self, space_fp: np.ndarray, capacity: int = 64) -> None:
        self.space_fp = space_fp
        self.space_counts = popcount(space_fp)
        self.columns = np.empty((len(space_fp), capacity))
        self.size = 0

    def add(self, index: int) -> None:
        """Append the distances to search-space molecule ``index``."""
        if self.size == self.columns.shape[1]:
            grown = np.empty((self.columns.shape[0], 2 * self.size))
            grown[:, :self.size] = self.columns
            self.columns = grown
        self.columns[:, self.size] = self.distances_to(self.space_fp[index])
        self.size += 1

    def distances_to(self, fingerprint: np.ndarray) -> np.ndarray:
        """Return Jaccard distances of every space molecule to one fingerprint."""
        inter = np.bitwise_count(self.space_fp & fingerprint).sum(axis=1, dtype=np.int64)
        union = self.space_counts + int(np.bitwise_count(fingerprint).sum()) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = (union - inter) / union
        dist[union == 0] = 0.0  # two empty fingerprints: scipy's convention
        return dist

    def view(self) -> np.ndarray:
        """Return the ``(n_space, n_train)`` distance matrix (a view)."""
        return self.columns[:, :self.size]


def knn_predict(distances: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Distance-weighted kNN prediction from a ``(n_query, n_train)`` distance matrix.

    Matches ``KNeighborsRegressor(weights="distance")``: neighbours at distance
    zero, when present, share all the weight equally.
    """
    k = min(k, distances.shape[1])
    rows = np.arange(distances.shape[0])[:, None]
    neighbours = np.argpartition(distances, k - 1, axis=1)[:, :k]
    dist = distances[rows, neighbours]
    with np.errstate(divide="ignore"):
        weights = 1.0 / dist
    exact = np.isinf(weights)
    exact_rows = exact.any(axis=1)
    weights[exact_rows] = exact[exact_rows]
    return (y[neighbours] * weights).sum(axis=1) / weights.sum(axis=1)


class Learner:
    """kNN surrogate over a search space, retrained as results arrive."""

    def __init__(self, space_fp: np.ndarray, k: int = 4, ensemble: int = 8,
                 seed: int = 0) -> None:
        self.columns = JaccardColumns(space_fp)
        self.k, self.ensemble = k, ensemble
        self.train_index: list[int] = []
        self.train_y: list[float] = []
        self.rng = np.random.default_rng(seed)

    def add(self, index: int, value: float) -> None:
        """Add one simulated molecule to the training set."""
        self.columns.add(index)
        self.train_index.append(index)
        self.train_y.append(value)

    def predict(self) -> np.ndarray:
        """Return the kNN prediction for the whole search space."""
        return knn_predict(self.columns.view(), np.asarray(self.train_y), self.k)

    def predict_ensemble(self) -> tuple[np.ndarray, np.ndarray]:
        """Return mean and spread of a bootstrap ensemble of kNNs over the space."""
        distances, y = self.columns.view(), np.asarray(self.train_y)
        members = []
        for _ in range(self.ensemble):
            sample = self.rng.integers(0, len(y), len(y))
            members.append(knn_predict(distances[:, sample], y[sample], self.k))
        stack = np.stack(members)
        return stack.mean(axis=0), stack.std(axis=0)

    def scores(self, policy: str, kappa: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(acquisition score, predicted value)`` for every molecule."""
        if policy == "random" or not self.train_y:
            noise = self.rng.random(self.columns.space_fp.shape[0])
            return noise, np.full_like(noise, np.nan)
        if policy == "ucb":
            mean, spread = self.predict_ensemble()
            return mean + kappa * spread, mean
        prediction = self.predict()
        return prediction, prediction


def pick_best(scores: np.ndarray, available: np.ndarray, count: int) -> np.ndarray:
    """Return up to ``count`` indices of the highest scores among ``available``."""
    candidates = np.flatnonzero(available)
    count = min(count, len(candidates))
    if count == 0:
        return candidates
    values = scores[candidates]
    top = np.argpartition(-values, count - 1)[:count]
    return candidates[top[np.argsort(-values[top], kind="stable")]]
