"""Checks beside the ``bench al`` table: scoring time, the async-greedy gap, IE noise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

TIMED_REFITS = 5
OTHER_EMBED = 42  # the ETKDG seed of the ie command; the screen's default is 0


def scoring_time(n_train: int, values: np.ndarray, seed: int = 0, space: int = 0) -> dict:
    """Time the default policy's refit over all of QM9 at ``n_train`` results, one core.

    The policy is fed ``n_train`` random QM9 molecules with IEs drawn from the table,
    then each timed refit follows one more result, as in a live screen: one believer
    added, its value set, the posterior mean and the queue rebuilt. The old kNN's
    prediction of the whole space at the same training size is timed once beside it.
    """
    from threadpoolctl import threadpool_limits

    from tcoupled.screening.learner import (
        Learner,
        cached_fingerprints,
        default_cache_dir,
    )
    from tcoupled.screening.loop import ScreenConfig
    from tcoupled.screening.policies import DEFAULT_POLICY, make_policy, valid_mask
    from tcoupled.screening.run import policy_features
    from tcoupled.screening.space import load_qm9

    config = ScreenConfig()
    smiles = load_qm9().smiles
    smiles = smiles[:space] if space else smiles
    features, _ = policy_features(DEFAULT_POLICY, smiles, config)
    valid = valid_mask(features)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.flatnonzero(valid), n_train + TIMED_REFITS, replace=False)
    results = rng.choice(values[np.isfinite(values)], len(chosen))
    with threadpool_limits(limits=1):
        policy = make_policy(DEFAULT_POLICY, valid, features, initial=0, seed=seed,
                             capacity=len(chosen), kappa=config.kappa, noise=config.noise)
        start = time.perf_counter()
        for index, value in zip(chosen[:n_train], results):
            policy.start(int(index))
            policy.observe(int(index), float(value))
        policy.update()
        build_s = time.perf_counter() - start
        refits = []
        for index, value in zip(chosen[n_train:], results[n_train:]):
            policy.start(int(index))
            policy.observe(int(index), float(value))
            refits.append(policy.update())
        bits, _ = cached_fingerprints(smiles, config.fp_radius, config.fp_bits,
                                      default_cache_dir())
        knn = Learner(bits, config.k)
        for index, value in zip(chosen[:n_train], results):
            knn.add(int(index), float(value))
        start = time.perf_counter()
        knn.predict()
        knn_s = time.perf_counter() - start
    return {"policy": DEFAULT_POLICY, "space": len(smiles), "n_train": n_train,
            "refit_s": refits, "refit_s_median": float(np.median(refits)),
            "build_s": build_s, "knn_predict_s": knn_s, "threads": 1}


def gap_diagnosis(table: Any, size: dict, row: Callable[..., dict]) -> dict:
    """Replay the kNN greedy under each difference between the live screen and the exercise.

    Budget 100, on the whole table: the exercise (``seed-greedy``: batches of 4, a refit
    after each batch), the same kNN refitted after every result with one worker, with 2
    workers as the old manager ran it (refit before the free worker is served) and as the
    ranked queue runs it (served first, refit after). Then, on the molecules that also have
    an IE from another ETKDG seed (:data:`OTHER_EMBED`, the ``ie`` command's default), the
    old greedy learning from those IEs but judged on this table's, against the same
    screens learning from this table's own IEs.
    """
    from tcoupled.bench.al_replay import Table
    from tcoupled.bench.al_table import read_table, table_path

    budget, repeats = 100, size.get("gap_repeats", size["repeats"])
    cases = {"seed-greedy, batches of 4": ("seed-greedy", 2, False),
             "greedy, 1 worker": ("greedy", 1, False),
             "greedy, 2 workers, refit before serving (old manager)": ("greedy", 2, True),
             "greedy, 2 workers, ranked queue (new manager)": ("greedy", 2, False)}
    out = {}
    for label, (policy, workers, refit_first) in cases.items():
        outcome = table.screens(policy, budget, workers, repeats, refit_first)
        out[label] = row(policy, budget, workers, outcome)
    other = table_path(OTHER_EMBED)
    if other.exists():
        noisy_all = _matched(table.smiles, read_table(other))
        keep = np.isfinite(noisy_all) & np.isfinite(table.values)
        if keep.sum() >= 1000:
            rows = [{"smiles": s, "ie_ev": v, "seconds": t} for s, v, t, k in
                    zip(table.smiles, table.values, table.seconds, keep) if k]
            sub = Table(rows)
            label = f"{len(rows)} molecules with both IEs"
            for name, values in (("own IEs", None), (f"ETKDG-seed-{OTHER_EMBED} IEs",
                                                      noisy_all[keep])):
                outcome = sub.screens("greedy", budget, 2, repeats, True, values)
                out[f"greedy, old manager, {label}, learning from {name}"] = row(
                    "greedy", budget, 2, outcome, top1_count=len(sub.top))
    return out


def _matched(smiles: list[str], rows: list[dict]) -> np.ndarray:
    by_smiles = {r["smiles"]: r["ie_ev"] for r in rows}
    return np.array([by_smiles.get(s, np.nan) for s in smiles], dtype=float)


def ie_noise(rows: list[dict]) -> dict:
    """Compare the table with tables of the same molecules computed another way.

    Another ETKDG seed (:data:`OTHER_EMBED`) and a tighter relaxation (``fmax 0.01``):
    the spread of the IE differences and how many of the top 1% stay in the top 1%.
    """
    from tcoupled.bench.al_table import read_table, table_path
    from tcoupled.screening.replay import top_set

    out: dict[str, Any] = {}
    notes = []
    for label, path in ((f"embed_seed_{OTHER_EMBED}", table_path(OTHER_EMBED)),
                        ("fmax_0.01", table_path(fmax=0.01))):
        if not path.exists():
            continue
        base = np.array([r["ie_ev"] for r in rows], dtype=float)
        other = _matched([r["smiles"] for r in rows], read_table(path))
        both = np.isfinite(base) & np.isfinite(other)
        if both.sum() < 100:
            continue
        diff = other[both] - base[both]
        top_a, top_b = top_set(base[both]), top_set(other[both])
        kept = len(set(top_a.tolist()) & set(top_b.tolist())) / len(top_a)
        out[label] = {"molecules": int(both.sum()), "diff_std_ev": float(diff.std()),
                      "diff_abs_max_ev": float(np.abs(diff).max()),
                      "changed_over_0.01_ev": float(np.mean(np.abs(diff) > 0.01)),
                      "top1_kept": kept}
        notes.append(f"{label}: {both.sum()} molecules, std {diff.std():.3f} eV, "
                     f"{100 * np.mean(np.abs(diff) > 0.01):.0f}% move > 0.01 eV, "
                     f"{100 * kept:.0f}% of the top 1% stay")
    if notes:
        out["note"] = "; ".join(notes)
    return out
