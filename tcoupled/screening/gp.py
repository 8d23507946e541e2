"""A Gaussian process with a Tanimoto kernel on count fingerprints, updated in O(N n).

Count fingerprints (Morgan, unfolded, counts) are stored as sparse binary rows in
which feature ``f`` seen ``c`` times sets the bits ``(f, 1) ... (f, c)``. The
Tanimoto similarity of counts, ``sum(min) / sum(max)``, is then the Jaccard index
of those bit sets, so one column of the kernel between the whole search space and
a molecule is one sparse matrix-vector product.

The GP is exact: kernel ``a (T(x, x') + c0)`` (the constant ``c0`` absorbs the
unknown mean), Gaussian noise ``a * noise``. Each training point costs one new
kernel column, one grown Cholesky row and one rank-1 downdate of the posterior
variance over the space (``O(N n)``); the posterior mean is ``K_*n alpha``, one
matrix-vector product. The amplitude ``a`` is its maximum-likelihood value given
the other settings. A molecule still running is added as a *believer*: a point
whose value is the current prediction, so it lowers the variance around it
(kriging believer) without moving the mean until its result replaces the value.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from scipy.linalg import cho_solve, solve_triangular

from tcoupled.runtime.telemetry import get_logger


def count_fingerprints(smiles: list[str], radius: int = 2):
    """Return the expanded count fingerprints as a CSR matrix (rows: molecules).

    An unparsable SMILES gets an empty row.
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator
    from scipy import sparse

    RDLogger.DisableLog("rdApp.*")
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius)
    columns: dict[tuple[int, int], int] = {}
    indptr, indices = [0], []
    for text in smiles:
        mol = Chem.MolFromSmiles(text)
        if mol is not None:
            counts = generator.GetSparseCountFingerprint(mol).GetNonzeroElements()
            for feature, count in counts.items():
                for level in range(1, count + 1):
                    indices.append(columns.setdefault((feature, level), len(columns)))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    return sparse.csr_matrix((data, np.array(indices, dtype=np.int32), np.array(indptr)),
                             shape=(len(smiles), max(len(columns), 1)))


def cached_count_fingerprints(smiles: list[str], radius: int, cache_dir: str | Path):
    """Return :func:`count_fingerprints` and whether they came from ``cache_dir``."""
    from rdkit import __version__ as rdkit_version
    from scipy import sparse

    from tcoupled.runtime.store import atomic_path

    digest = hashlib.sha256(f"count|{radius}|{rdkit_version}|".encode())
    digest.update("\n".join(smiles).encode())
    path = Path(cache_dir) / f"morgan-count-r{radius}-{digest.hexdigest()[:20]}.npz"
    if path.exists():
        try:
            matrix = sparse.load_npz(path).tocsr()
            if matrix.shape[0] == len(smiles):
                return matrix, True
        except (OSError, ValueError):
            pass
    matrix = count_fingerprints(smiles, radius)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            sparse.save_npz(handle, matrix)
    get_logger().info("count fingerprints of %d molecules cached in %s", len(smiles), path)
    return matrix, False


class TanimotoColumns:
    """Tanimoto similarity of every search-space molecule to chosen molecules."""

    def __init__(self, bits) -> None:
        self.bits = bits.tocsr().astype(np.float32)
        self.sizes = np.asarray(self.bits.sum(axis=1), dtype=np.float32).ravel()

    def column(self, index: int) -> np.ndarray:
        """Return ``T(x, x_index)`` for every space molecule ``x`` (float32)."""
        row = self.bits[index]
        query = np.zeros(self.bits.shape[1], dtype=np.float32)
        query[row.indices] = 1.0
        inter = self.bits @ query
        union = self.sizes + self.sizes[index] - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            sim = np.where(union > 0, inter / union, 0.0)
        return sim.astype(np.float32)


class TanimotoGP:
    """Exact GP posterior over a search space, grown one point at a time.

    Parameters
    ----------
    bits : scipy.sparse matrix
        Expanded count fingerprints of the space (:func:`count_fingerprints`).
    capacity : int
        Most training points expected (the kernel columns are allocated once).
    noise : float
        Noise variance relative to the kernel amplitude.
    bias : float
        Constant added to the kernel (prior variance of the mean level).
    """

    def __init__(self, bits, capacity: int, noise: float = 0.02, bias: float = 1.0) -> None:
        self.kernel = TanimotoColumns(bits)
        self.n_space = bits.shape[0]
        self.noise, self.bias = noise, bias
        self.cross = np.empty((self.n_space, max(capacity, 1)), dtype=np.float32)
        self.chol = np.zeros((max(capacity, 1), max(capacity, 1)))
        self.index: list[int] = []
        self.y: list[float] = []
        self.offset: float | None = None
        self.var = np.full(self.n_space, 1.0 + bias)  # unit-amplitude posterior variance
        self.mean = np.zeros(self.n_space)
        self.amplitude = 1.0

    @property
    def size(self) -> int:
        """Training points so far (believers included)."""
        return len(self.index)

    def _grow(self) -> None:
        grown = np.empty((self.n_space, 2 * self.cross.shape[1]), dtype=np.float32)
        grown[:, :self.size] = self.cross[:, :self.size]
        self.cross = grown
        chol = np.zeros((2 * len(self.chol), 2 * len(self.chol)))
        chol[:self.size, :self.size] = self.chol[:self.size, :self.size]
        self.chol = chol

    def add(self, index: int, value: float) -> None:
        """Add one point; ``value`` is its result (or, for a believer, the prediction)."""
        n = self.size
        if n == self.cross.shape[1]:
            self._grow()
        column = self.kernel.column(index)
        k_train = column[self.index].astype(float) + self.bias
        if n:
            low = solve_triangular(self.chol[:n, :n], k_train, lower=True)
            weights = solve_triangular(self.chol[:n, :n], low, lower=True, trans="T")
            cov = column + self.bias - (self.cross[:, :n] @ weights.astype(np.float32)
                                        + self.bias * weights.sum())
        else:
            low = np.zeros(0)
            cov = column + self.bias
        self.var -= cov.astype(float) ** 2 / (self.var[index] + self.noise)
        np.maximum(self.var, 1e-12, out=self.var)
        diag = 1.0 + self.bias + self.noise - low @ low
        self.chol[n, :n] = low
        self.chol[n, n] = np.sqrt(max(diag, 1e-12))
        self.cross[:, n] = column
        self.index.append(index)
        self.y.append(value)

    def set_value(self, position: int, value: float) -> None:
        """Replace the value of training point ``position`` (a believer's result)."""
        self.y[position] = value

    def update_mean(self) -> None:
        """Recompute the posterior mean and the amplitude from the current values."""
        n = self.size
        if n == 0:
            return
        y = np.asarray(self.y)
        if self.offset is None:
            self.offset = float(y.mean())
        resid = y - self.offset
        alpha = cho_solve((self.chol[:n, :n], True), resid)
        self.amplitude = max(float(resid @ alpha) / n, 1e-12)
        self.mean = self.offset + self.cross[:, :n] @ alpha.astype(np.float32) \
            + self.bias * alpha.sum()

    def std(self) -> np.ndarray:
        """Posterior standard deviation (amplitude included) over the space."""
        return np.sqrt(self.amplitude * self.var)
