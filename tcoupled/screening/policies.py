"""Acquisition policies behind one small interface, shared by the live screen and its replay.

A policy keeps a *ranked queue* of the next molecules. :meth:`Policy.next` is cheap (it
pops the queue), so a free worker gets its task at once; :meth:`Policy.refit` is the
expensive part (retrain, score the space, rebuild the queue) and is called by the loop
while every worker is busy. :meth:`Policy.start` and :meth:`Policy.observe` tell it
what was submitted and what came back. ``next`` returns ``None`` when the policy wants
to wait (a batch still running, or an empty queue that a refit would fill).

Policies: ``gp-ucb`` and ``gp-ei`` (exact Tanimoto GP on count fingerprints, running
molecules as kriging believers), ``greedy`` and ``ucb`` (the Jaccard kNN on Morgan bits,
the ensemble spread for ``ucb``), ``seed-greedy`` (the original exercise: 8 random,
then synchronous batches of 4 top-predicted, refit after each batch) and ``random``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from tcoupled.screening.learner import Learner, pick_best

#: policy name -> the features it needs ("morgan": packed bits, "count": sparse counts)
FEATURES = {"gp-ucb": "count", "gp-ei": "count", "greedy": "morgan", "ucb": "morgan",
            "seed-greedy": "morgan", "random": "count"}
POLICIES = tuple(FEATURES)
DEFAULT_POLICY = "gp-ucb"
#: kappa when none is given: gp-ucb's was tuned by ``bench al`` on molecules 0-1999 of
#: its table with seeds 100-119; the kNN ucb keeps the value it always had
DEFAULT_KAPPA = {"gp-ucb": 6.0, "ucb": 1.0}
QUEUE = 32
SEED_BATCH = 4


def valid_mask(features: Any) -> np.ndarray:
    """Which molecules have a fingerprint (packed bits or sparse counts; empty: invalid)."""
    if hasattr(features, "indptr"):
        return np.diff(features.indptr) > 0
    return np.asarray(features).any(axis=1)


class Policy:
    """Random choice among the molecules not yet submitted; base of the others.

    Parameters
    ----------
    valid : numpy.ndarray of bool
        Which molecules may be chosen (a parsable SMILES).
    initial : int
        Random molecules before the model steers.
    seed : int
        Seed of the random choices.
    """

    def __init__(self, valid: np.ndarray, initial: int, seed: int) -> None:
        self.available = np.asarray(valid, dtype=bool).copy()
        self.initial = initial
        self.rng = np.random.default_rng(seed)
        self.started = 0
        self.observed: list[tuple[int, float]] = []
        self.queue: list[int] = []
        self.stale = False
        self.mean: np.ndarray | None = None  # the model's prediction over the space
        self.refit_s: list[float] = []  # seconds of each refit (see :meth:`update`)

    def _random(self) -> int | None:
        candidates = np.flatnonzero(self.available)
        return int(self.rng.choice(candidates)) if len(candidates) else None

    def next(self) -> int | None:
        """Return the next molecule to submit, or ``None`` to wait."""
        if self.started < self.initial or not self.model_ready():
            return self._random()
        while self.queue:
            index = self.queue.pop(0)
            if self.available[index]:
                return index
        return None

    def model_ready(self) -> bool:
        """Whether the model steers yet (random policy: never)."""
        return False

    def start(self, index: int) -> None:
        """Record that ``index`` was submitted."""
        self.available[index] = False
        self.started += 1

    def observe(self, index: int, value: float) -> None:
        """Record the result of ``index`` (``nan``: the calculation failed)."""
        self.observed.append((index, value))

    def predicted(self, index: int) -> float:
        """The model's current prediction for ``index`` (``nan`` without a model)."""
        return float(self.mean[index]) if self.mean is not None else float("nan")

    def refit(self) -> None:
        """Retrain and rebuild the queue (nothing for the random policy)."""
        self.stale = False

    def update(self) -> float:
        """Call :meth:`refit`, record and return its seconds."""
        start = time.perf_counter()
        self.refit()
        self.refit_s.append(time.perf_counter() - start)
        return self.refit_s[-1]

    def _rank(self, scores: np.ndarray, count: int = QUEUE) -> None:
        self.queue = [int(i) for i in pick_best(scores, self.available, count)]
        self.stale = False


class KnnPolicy(Policy):
    """The Jaccard kNN: ``greedy`` (prediction) or ``ucb`` (bootstrap mean + kappa spread)."""

    def __init__(self, valid: np.ndarray, initial: int, seed: int, fingerprints: np.ndarray,
                 kind: str, k: int = 4, kappa: float = 1.0, ensemble: int = 8) -> None:
        super().__init__(valid, initial, seed)
        self.learner = Learner(fingerprints, k, ensemble, seed)
        self.kind, self.kappa = kind, kappa

    def model_ready(self) -> bool:
        """Steer once a result is in."""
        return bool(self.learner.train_y)

    def observe(self, index: int, value: float) -> None:
        """Add a successful result to the training set."""
        if math.isfinite(value):
            self.learner.add(index, value)
            self.stale = True
        super().observe(index, value)

    def refit(self) -> None:
        """Predict the whole space and rank the molecules by the acquisition score."""
        if not self.learner.train_y:
            self.stale = False
            return
        scores, self.mean = self.learner.scores(self.kind, self.kappa)
        self._rank(scores)


class SeedGreedyPolicy(KnnPolicy):
    """The original exercise: synchronous batches of 4 top-predicted molecules."""

    def __init__(self, valid: np.ndarray, initial: int, seed: int,
                 fingerprints: np.ndarray, k: int = 4) -> None:
        super().__init__(valid, initial, seed, fingerprints, "greedy", k)
        self.running = 0

    def next(self) -> int | None:
        """Random until ``initial`` are out (and one succeeded); then one batch at a time."""
        if self.started < self.initial or not self.learner.train_y:
            return self._random()
        return self.queue.pop(0) if self.queue else None

    def start(self, index: int) -> None:
        """Count the batch's running molecules."""
        super().start(index)
        self.running += 1

    def observe(self, index: int, value: float) -> None:
        """A batch is complete when nothing it started is running and its queue is empty."""
        self.running -= 1
        super().observe(index, value)
        self.stale = (self.running == 0 and not self.queue and self.started >= self.initial
                      and bool(self.learner.train_y))

    def refit(self) -> None:
        """Fit the kNN on every result and queue the next batch of 4."""
        scores, self.mean = self.learner.scores("greedy")
        self._rank(scores, SEED_BATCH)


class GPPolicy(Policy):
    """Tanimoto GP on count fingerprints with UCB or expected improvement.

    Running molecules are believers (their value is the prediction until the result
    comes), so the queue spreads over molecules the running ones do not already cover.
    """

    def __init__(self, valid: np.ndarray, initial: int, seed: int, bits: Any, kind: str,
                 capacity: int, kappa: float = 6.0, noise: float = 0.02) -> None:
        from scipy.special import ndtr

        from tcoupled.screening.gp import TanimotoGP

        super().__init__(valid, initial, seed)
        self.ndtr = ndtr
        self.gp = TanimotoGP(bits, capacity, noise)
        self.kind, self.kappa = kind, kappa
        self.position: dict[int, int] = {}  # molecule -> its row in the GP
        self.pending: list[int] = []  # started since the last refit
        self.results: list[tuple[int, float]] = []  # arrived since the last refit

    def model_ready(self) -> bool:
        """Steer once a calculation has succeeded (until then: random molecules)."""
        return bool(self.results) or self.gp.offset is not None

    def start(self, index: int) -> None:
        """Queue the molecule as a believer for the next refit."""
        super().start(index)
        self.pending.append(index)
        self.stale = self.stale or self.model_ready()

    def observe(self, index: int, value: float) -> None:
        """Queue the result for the next refit (a failure keeps its believer value)."""
        super().observe(index, value)
        if math.isfinite(value):
            self.results.append((index, value))
        self.stale = True

    def refit(self) -> None:
        """Add believers and results, update the posterior and rebuild the queue."""
        gp = self.gp
        for index in self.pending:
            self.position[index] = gp.size
            believed = float(gp.mean[index]) if gp.offset is not None else float("nan")
            gp.add(index, believed)
        self.pending = []
        for index, value in self.results:
            gp.set_value(self.position[index], value)
        self.results = []
        known = [v for _, v in self.observed if math.isfinite(v)]
        if not known:
            self.stale = False
            return
        if gp.offset is None:  # believers before the first result: use the mean so far
            gp.y = [v if math.isfinite(v) else float(np.mean(known)) for v in gp.y]
        gp.update_mean()
        self.mean = gp.mean
        self._rank(self.scores(max(known)))

    def scores(self, best: float) -> np.ndarray:
        """Acquisition over the space: ``mean + kappa std`` or expected improvement."""
        std = self.gp.std()
        if self.kind == "gp-ucb":
            return self.gp.mean + self.kappa * std
        z = (self.gp.mean - best) / np.maximum(std, 1e-12)
        density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return (self.gp.mean - best) * self.ndtr(z) + std * density


def make_policy(name: str, valid: np.ndarray, features: Any, *, initial: int, seed: int,
                capacity: int, k: int = 4, kappa: float | None = None, ensemble: int = 8,
                noise: float = 0.02) -> Policy:
    """Return the policy ``name`` over a space with these features (see :data:`FEATURES`).

    ``kappa=None`` takes the policy's default (:data:`DEFAULT_KAPPA`).
    """
    kappa = DEFAULT_KAPPA.get(name, 1.0) if kappa is None else kappa
    if name == "random":
        return Policy(valid, initial, seed)
    if name == "seed-greedy":
        return SeedGreedyPolicy(valid, initial, seed, features, k)
    if name in ("greedy", "ucb"):
        return KnnPolicy(valid, initial, seed, features, name, k, kappa, ensemble)
    if name in ("gp-ucb", "gp-ei"):
        return GPPolicy(valid, initial, seed, features, name, capacity, kappa, noise)
    raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")


def take(policy: Policy, slots: int, ahead: int = 0) -> list[tuple[int, float]]:
    """Start up to ``slots`` molecules: ``(index, prediction when chosen)`` each.

    Pops the policy's queue; only when it is empty and a refit would fill it is the
    refit done here, while a worker waits (the loops refit after submitting instead).
    The last ``ahead`` slots only queue behind a running task (the farm keeps the next
    task at each worker): they take the random start or the model's choices, never a
    random pick made before the model steers, which only an idle worker justifies.
    """
    picks: list[tuple[int, float]] = []
    while len(picks) < slots:
        if (len(picks) >= slots - ahead and policy.started >= policy.initial
                and not policy.model_ready()):
            break
        index = policy.next()
        if index is None and policy.stale:
            policy.update()
            index = policy.next()
        if index is None:
            break
        picks.append((index, policy.predicted(index)))
        policy.start(index)
    return picks
