"""Fingerprints, their cache, the fast Jaccard kNN and search-space loading."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tcoupled.runtime.errors import ConfigError
from tcoupled.screening.learner import (
    Learner,
    cached_fingerprints,
    compute_fingerprints,
    pick_best,
    unpack,
)
from tcoupled.screening.space import load_qm9, load_smiles_file


@pytest.fixture(scope="module")
def qm9_sample():
    """5000 QM9 molecules and their fingerprints."""
    smiles = load_qm9().smiles[::26][:5000]
    return smiles, compute_fingerprints(smiles, 4, 256)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("k, n_train", [(4, 24), (3, 100)])
def test_fast_knn_equals_sklearn(qm9_sample, k, n_train):
    from sklearn.neighbors import KNeighborsRegressor

    _, fingerprints = qm9_sample
    rng = np.random.default_rng(k)
    train = rng.choice(len(fingerprints), n_train, replace=False)
    y = rng.normal(10.0, 1.0, n_train)
    learner = Learner(fingerprints, k=k)
    for index, value in zip(train, y):
        learner.add(int(index), float(value))
    bits = unpack(fingerprints, 256)
    reference = KNeighborsRegressor(n_neighbors=k, weights="distance", metric="jaccard")
    expected = reference.fit(bits[train], y).predict(bits)
    np.testing.assert_allclose(learner.predict(), expected, rtol=0, atol=1e-12)


def test_fingerprints_cached_once(tmp_path, qm9_sample):
    smiles, fingerprints = qm9_sample
    first, cached_first = cached_fingerprints(smiles[:500], 4, 256, tmp_path)
    start = time.perf_counter()
    second, cached_second = cached_fingerprints(smiles[:500], 4, 256, tmp_path)
    assert (cached_first, cached_second) == (False, True)
    assert time.perf_counter() - start < 0.5
    np.testing.assert_array_equal(first, fingerprints[:500])
    np.testing.assert_array_equal(second, first)
    other, cached_other = cached_fingerprints(smiles[:500], 2, 128, tmp_path)
    assert not cached_other and other.shape == (500, 2)
    assert len(list(tmp_path.glob("morgan-*.npy"))) == 2


def test_invalid_smiles_get_empty_fingerprint():
    fingerprints = compute_fingerprints(["CCO", "C1CC(", "c1ccccc1"], 2, 64)
    assert fingerprints.any(axis=1).tolist() == [True, False, True]


def test_ucb_spread_and_policies(qm9_sample):
    _, fingerprints = qm9_sample
    learner = Learner(fingerprints[:2000], k=4, ensemble=6, seed=1)
    for index in range(0, 300, 10):
        learner.add(index, float(index % 7))
    score, mean = learner.scores("ucb", kappa=2.0)
    assert np.all(score >= mean - 1e-12) and np.any(score > mean)
    greedy, _ = learner.scores("greedy")
    available = np.ones(2000, dtype=bool)
    available[np.argmax(greedy)] = False
    best = pick_best(greedy, available, 3)
    assert len(best) == 3 and greedy[best[0]] == greedy[available].max()


def test_space_files(tmp_path):
    plain = tmp_path / "plain.smi"
    plain.write_text("CCO\n\nc1ccccc1\n")
    assert load_smiles_file(plain).smiles == ["CCO", "c1ccccc1"]
    table = tmp_path / "table.csv"
    table.write_text("name,smiles\nethanol,CCO\nwater,O\n")
    assert load_smiles_file(table).smiles == ["CCO", "O"]
    (tmp_path / "empty.smi").write_text("\n")
    with pytest.raises(ConfigError, match="holds no SMILES"):
        load_smiles_file(tmp_path / "empty.smi")
    with pytest.raises(ConfigError, match="missing.smi"):
        load_smiles_file(tmp_path / "missing.smi")
