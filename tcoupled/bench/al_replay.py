"""The replayed screens of ``bench al``: its table with fingerprints, rows and intervals."""

from __future__ import annotations

from typing import Any

import numpy as np


def policy_settings(name: str) -> dict[str, Any]:
    """The settings a policy runs with: the ``screen`` defaults (one home for them)."""
    from tcoupled.screening.loop import ScreenConfig

    config = ScreenConfig(policy=name)
    settings = {"initial": config.initial, "k": config.k, "ensemble": config.ensemble}
    if name in ("gp-ucb", "gp-ei"):
        settings["noise"] = config.noise
    if name in ("gp-ucb", "ucb"):
        from tcoupled.screening.policies import DEFAULT_KAPPA

        settings["kappa"] = DEFAULT_KAPPA[name] if config.kappa is None else config.kappa
    return settings


class Table:
    """The benchmark's table with both kinds of fingerprints of its molecules."""

    def __init__(self, rows: list[dict]) -> None:
        from tcoupled.screening.gp import count_fingerprints
        from tcoupled.screening.learner import compute_fingerprints
        from tcoupled.screening.loop import ScreenConfig
        from tcoupled.screening.replay import top_set

        config = ScreenConfig()
        self.smiles = [r["smiles"] for r in rows]
        self.values = np.array([r["ie_ev"] for r in rows], dtype=float)
        self.seconds = np.array([r["seconds"] for r in rows], dtype=float)
        self.features = {
            "morgan": compute_fingerprints(self.smiles, config.fp_radius, config.fp_bits),
            "count": count_fingerprints(self.smiles, config.count_radius)}
        self.top = top_set(self.values)

    def screens(self, policy: str, budget: int, workers: int, repeats: int,
                refit_first: bool = False, values: np.ndarray | None = None) -> dict:
        """Replay ``repeats`` screens; return the found counts, best-in-top and curve."""
        from tcoupled.screening.policies import FEATURES, make_policy, valid_mask
        from tcoupled.screening.replay import best_in_top, found_curve, replay

        observed = self.values if values is None else values
        features = self.features[FEATURES[policy]]
        settings = policy_settings(policy)
        found, best, curves = [], [], []
        for seed in range(repeats):
            chosen = make_policy(policy, valid_mask(features), features, seed=seed,
                                 capacity=budget, **settings)
            run = replay(chosen, observed, self.seconds, workers, budget, refit_first)
            curve = found_curve(run.order, self.top)
            curves.append(np.pad(curve, (0, budget - len(curve)), mode="edge"))
            found.append(int(curve[-1]))
            best.append(best_in_top(run.order, self.values, self.top))
        return {"found": found, "best_in_top": best, "curve": np.mean(curves, axis=0)}


def interval(samples: list[float]) -> tuple[float, list[float]]:
    """Mean and 95% Student-t interval of the mean."""
    from scipy import stats

    data = np.asarray(samples, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, [mean, mean]
    half = float(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / np.sqrt(len(data)))
    return mean, [mean - half, mean + half]


def row(policy: str, budget: int, workers: int, outcome: dict, **extra: Any) -> dict:
    """One ``al.rows`` entry."""
    mean, ci95 = interval(outcome["found"])
    sd = float(np.std(outcome["found"], ddof=1)) if len(outcome["found"]) > 1 else 0.0
    return {"policy": policy, "budget": budget, "workers": workers, "repeats":
            len(outcome["found"]), "mean_top1_found": mean, "ci95": ci95, "sd": sd,
            "p_best_in_top1": float(np.mean(outcome["best_in_top"])), **extra}
