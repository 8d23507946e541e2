"""The Tanimoto GP, the policies, the replay, the ranked-queue loop and ``bench al``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tcoupled.screening.gp import TanimotoGP, count_fingerprints
from tcoupled.screening.learner import compute_fingerprints, unpack
from tcoupled.screening.policies import make_policy, valid_mask
from tcoupled.screening.replay import best_in_top, found_curve, replay, top_set
from tcoupled.screening.space import load_qm9


@pytest.fixture(scope="module")
def molecules():
    """600 QM9 molecules, both fingerprints and a smooth synthetic property."""
    smiles = load_qm9().smiles[::211][:600]
    counts = count_fingerprints(smiles, 2)
    values = np.asarray(counts[:, : counts.shape[1] // 3].sum(axis=1), dtype=float).ravel()
    values += 0.1 * np.random.default_rng(0).normal(size=len(values))
    return {"smiles": smiles, "count": counts, "morgan": compute_fingerprints(smiles, 4, 256),
            "values": values, "seconds": np.random.default_rng(1).uniform(0.1, 1.0, 600)}


def test_count_tanimoto_is_sum_min_over_sum_max(molecules):
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    from tcoupled.screening.gp import TanimotoColumns

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2)
    counts = [generator.GetSparseCountFingerprint(Chem.MolFromSmiles(s)).GetNonzeroElements()
              for s in molecules["smiles"][:80]]
    columns = TanimotoColumns(molecules["count"][:80])
    for j in (0, 7, 41):
        expected = []
        for other in counts:
            keys = set(other) | set(counts[j])
            low = sum(min(other.get(k, 0), counts[j].get(k, 0)) for k in keys)
            high = sum(max(other.get(k, 0), counts[j].get(k, 0)) for k in keys)
            expected.append(low / high)
        np.testing.assert_allclose(columns.column(j), expected, rtol=1e-6)


def test_incremental_gp_equals_the_exact_posterior(molecules):
    bits, values = molecules["count"], molecules["values"]
    train = np.random.default_rng(3).choice(len(values), 40, replace=False)
    gp = TanimotoGP(bits, capacity=16, noise=0.05, bias=1.0)  # grows past its capacity
    for index in train:
        gp.add(int(index), float(values[index]))
    gp.update_mean()
    dense = bits.toarray().astype(float)
    inter = dense @ dense.T
    size = dense.sum(axis=1)
    kernel = inter / (size[:, None] + size[None, :] - inter) + 1.0
    k_train = kernel[np.ix_(train, train)] + 0.05 * np.eye(len(train))
    resid = values[train] - values[train].mean()
    alpha = np.linalg.solve(k_train, resid)
    mean = values[train].mean() + kernel[:, train] @ alpha
    var = 2.0 - np.einsum("ij,ji->i", kernel[:, train],
                          np.linalg.solve(k_train, kernel[:, train].T))
    np.testing.assert_allclose(gp.mean, mean, atol=1e-5)
    np.testing.assert_allclose(gp.var, var, atol=1e-5)
    assert gp.amplitude == pytest.approx(resid @ alpha / len(train), rel=1e-6)


def test_a_running_molecule_is_a_believer(molecules):
    bits, values = molecules["count"], molecules["values"]
    policy = make_policy("gp-ucb", valid_mask(bits), bits, initial=0, seed=0, capacity=50)
    for index in range(0, 200, 10):
        policy.start(index)
        policy.observe(index, float(values[index]))
    policy.update()
    mean, var = policy.gp.mean.copy(), policy.gp.var.copy()
    running = policy.queue[0]
    assert policy.next() == running
    policy.start(running)
    policy.update()
    np.testing.assert_allclose(policy.gp.mean, mean, atol=1e-9)  # believed: mean unchanged
    assert policy.gp.var[running] < 0.1 * var[running]
    assert running not in policy.queue
    policy.observe(running, float(mean[running] + 5.0))
    policy.update()
    assert policy.gp.mean[running] > mean[running] + 4.0


def test_seed_greedy_replays_the_exercise_with_sklearn(molecules):
    from sklearn.neighbors import KNeighborsRegressor

    fingerprints, values = molecules["morgan"], molecules["values"]
    policy = make_policy("seed-greedy", valid_mask(fingerprints), fingerprints, initial=8,
                         seed=5, capacity=24)
    run = replay(policy, values, molecules["seconds"], workers=2, budget=24)
    order = list(run.order)
    bits = unpack(fingerprints, 256)
    for done in (8, 12, 16, 20):
        model = KNeighborsRegressor(n_neighbors=4, weights="distance", metric="jaccard")
        model.fit(bits[order[:done]], values[order[:done]])
        prediction = model.predict(bits)
        prediction[order[:done]] = -np.inf
        assert set(order[done:done + 4]) == set(np.argsort(-prediction)[:4].tolist())


def test_replay_metrics_on_a_hand_made_table():
    values = np.array([1.0, 5.0, np.nan, 3.0, 9.0, 2.0, 8.0, 0.0, 4.0, 7.0, 6.0])
    top = top_set(values, fraction=0.2)
    assert sorted(top.tolist()) == [4, 6]
    order = np.array([0, 6, 3, 4])
    assert found_curve(order, top).tolist() == [0, 1, 1, 2]
    assert best_in_top(order, values, top) and not best_in_top(np.array([1, 3]), values, top)


def test_replay_keeps_every_worker_busy_until_the_budget(molecules):
    bits, values, seconds = molecules["count"], molecules["values"], molecules["seconds"]
    policy = make_policy("gp-ucb", valid_mask(bits), bits, initial=4, seed=2, capacity=30)
    run = replay(policy, values, seconds, workers=3, budget=30)
    assert len(set(run.order.tolist())) == 30
    busy = seconds[run.order].sum()
    assert busy / (3 * run.end[-1]) > 0.8  # only the tail of the last tasks idles
    assert np.isnan(run.predicted).sum() == 4  # the random start; then the model chose


class FakeManager:
    """A farm of ``workers`` whose tasks finish in submission order; logs every call."""

    def __init__(self, values: np.ndarray, smiles: list[str], log: list[str], workers=2):
        from tcoupled.farm.manager import FarmStats

        self.values, self.smiles, self.log = values, smiles, log
        self.index = {s: i for i, s in enumerate(smiles)}
        self.running: list[tuple[int, dict]] = []
        self.workers = workers
        self.stats = FarmStats(workers)

    @property
    def n_free(self) -> int:
        return self.workers - len(self.running)

    n_idle = n_free  # one task per worker

    def submit(self, task_id: int, payload: dict) -> int:
        self.log.append("submit")
        self.running.append((task_id, payload))
        return 1

    def next_result(self):
        from tcoupled.farm.manager import TaskResult

        self.log.append("result")
        task_id, payload = self.running.pop(0)
        value = float(self.values[self.index[payload["smiles"]]])
        return TaskResult(task_id, "ok", {"ie_ev": value}, "", 1, 0.1, 0.0, 0.1)


@pytest.mark.parametrize("policy", ["gp-ucb", "greedy"])
def test_a_free_worker_is_served_before_the_model_refits(tmp_path, molecules, policy):
    from tcoupled.screening.loop import Journal, ScreenConfig, ScreenLoop
    from tcoupled.screening.space import SearchSpace

    log: list[str] = []
    config = ScreenConfig(policy=policy, budget=30, initial=4, task="noop", out=str(tmp_path))
    features = molecules["count" if policy == "gp-ucb" else "morgan"]
    loop = ScreenLoop(config, SearchSpace("test", molecules["smiles"]), features,
                      FakeManager(molecules["values"], molecules["smiles"], log),
                      Journal(tmp_path), [])
    refit = loop.policy.refit

    def logged_refit():
        log.append("refit")
        refit()

    loop.policy.refit = logged_refit
    loop.run()
    assert len(loop.records) == 30 and log.count("submit") == 30
    waits = [i for i in range(1, len(log)) if log[i] == "refit" and log[i - 1] == "result"]
    assert len(waits) <= 1  # only once, when the first model is fitted
    assert len(loop.snapshots) == len(loop.policy.refit_s) >= 20


def test_table_build_resumes_and_extends(tmp_path):
    from tcoupled.bench.al_table import build, read_table, sample_order

    path = tmp_path / "table.csv"
    first = build(None, 12, path=path, task="noop")
    second = build(None, 20, path=path, task="noop")
    assert (first["computed"], second["computed"]) == (12, 8)
    rows = read_table(path)
    order = sample_order(len(load_qm9()))
    assert [r["index"] for r in rows] == order[:20].tolist()
    assert all(r["status"] == "ok" and np.isfinite(r["ie_ev"]) for r in rows)


@pytest.mark.timeout(300)
def test_bench_al_quick_builds_its_table_and_writes_rows(tmp_path):
    from mpitools import check, tcoupled

    env = {"TCOUPLED_CACHE_DIR": str(tmp_path / "cache")}
    proc = check(tcoupled("bench", "al", "--quick", "--build-table", "40", "--out",
                          str(tmp_path), timeout=280, env=env))
    results = json.loads((tmp_path / "bench.json").read_text())["al"]
    assert results["build"]["computed"] == 40 and results["molecules"] == 40
    assert {r["policy"] for r in results["rows"]} == {"gp-ucb", "seed-greedy", "random"}
    for row in results["rows"]:
        assert row["ci95"][0] <= row["mean_top1_found"] <= row["ci95"][1]
        assert 0.0 <= row["p_best_in_top1"] <= 1.0
    assert results["headline"]["default_over_seed_greedy"] > 0
    assert len(results["scoring"]["refit_s"]) == 5
    assert (tmp_path / "bench_al.png").stat().st_size > 10_000
    assert "over seed-greedy" in proc.stdout


@pytest.mark.parametrize("policy", ["gp-ucb", "seed-greedy"])
def test_failed_first_results_keep_the_screen_going(molecules, policy):
    features = molecules["count" if policy == "gp-ucb" else "morgan"]
    values = np.full(600, np.nan)  # every calculation fails ...
    good = np.arange(0, 600, 20)
    values[good] = molecules["values"][good]  # ... but one in 20
    chosen = make_policy(policy, valid_mask(features), features, initial=2, seed=0,
                         capacity=40)
    run = replay(chosen, values, molecules["seconds"], workers=2, budget=40)
    assert np.isnan(values[run.order[:2]]).all()  # the random start found nothing
    assert len(run.order) == 40 and np.isfinite(values[run.order]).any()


def test_a_molecule_whose_task_cannot_be_built_is_a_recorded_failure(tmp_path, molecules):
    """A broken geometry in the space fails that molecule, not the screen."""
    from tcoupled.screening.loop import Journal, ScreenConfig, ScreenLoop
    from tcoupled.screening.space import SearchSpace

    class BrokenSpace(SearchSpace):
        def fallback_geometry(self, index):
            if index % 3 == 0:
                raise ValueError(f"malformed XYZ field of molecule {index}")
            return None

    config = ScreenConfig(policy="gp-ucb", budget=20, initial=4, task="ie", out=str(tmp_path))
    journal = Journal(tmp_path)
    loop = ScreenLoop(config, BrokenSpace("test", molecules["smiles"]), molecules["count"],
                      FakeManager(molecules["values"], molecules["smiles"], []), journal, [])
    loop.run()
    assert len(loop.records) == 20
    failed = [r for r in loop.records if r.status == "failed"]
    assert failed and all(r.index % 3 == 0 for r in failed)
    assert all("could not build its task: ValueError: malformed XYZ" in r.error for r in failed)
    assert all(r.status == "ok" for r in loop.records if r.index % 3)
    assert len(journal.load()) == 20  # every failure is journalled, so a resume skips it
