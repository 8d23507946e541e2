"""The active-learning screen on the task farm (manager side).

A worker never waits for the model: when one frees up it gets the head of the
policy's ranked queue at once (:mod:`.policies`), and only then, while every worker
is busy, is the model refitted on the new result and the queue rebuilt. Every
finished calculation is appended to a journal
(``journal.jsonl``, flushed and synced), which is what ``--resume`` reads back.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.runtime.telemetry import get_logger

#: the farm's task functions, by ``--task`` name
TASKS = {"ie": "tcoupled.chemistry.ie:ie_task", "noop": "tcoupled.farm.manager:noop_task"}


@dataclass(frozen=True)
class ScreenConfig:
    """Options of a screen: the ``screen`` command's, and the farm role's of ``couple``."""

    space: str = "qm9"
    budget: int = 24
    initial: int = 8
    policy: str = "gp-ucb"
    k: int = 4
    kappa: float | None = None  # None: the policy's default
    ensemble: int = 8
    noise: float = 0.02
    fp_radius: int = 4
    fp_bits: int = 256
    count_radius: int = 2
    fp_cache: str = ""
    method: str = "gfn2"
    engine: str = "tblite"
    fmax: float = 0.05
    seed: int = 0
    embed_seed: int = 0
    task: str = "ie"
    task_timeout: float = 300.0
    baseline: str = ""
    out: str = "runs/screen"
    resume: bool = False


JOURNAL_FILE = "journal.jsonl"


@dataclass
class Record:
    """One finished calculation."""

    index: int
    smiles: str
    ie_ev: float
    status: str
    error: str
    worker: int
    start: float
    end: float
    seconds: float
    predicted: float  # the model's prediction when submitted (nan: random pick)


@dataclass
class Snapshot:
    """The model after one retraining."""

    n_train: int
    n_done: int
    elapsed: float
    best_predicted_ie: float
    best_predicted_smiles: str
    mean_abs_error_new: float  # |prediction - result| over results since the last snapshot
    predict_s: float


class Journal:
    """Append-only record of finished calculations, safe against a killed run."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / JOURNAL_FILE

    def load(self) -> list[Record]:
        """Return the records written so far (a torn last line, left by a kill, is dropped)."""
        if not self.path.exists():
            return []
        text = self.path.read_text()
        if text and not text.endswith("\n"):  # cut the torn tail so appends stay whole
            from tcoupled.runtime.store import atomic_path

            text = text[:text.rfind("\n") + 1]
            with atomic_path(self.path) as tmp:
                tmp.write_text(text)
        records = []
        for line in text.splitlines():
            try:
                records.append(Record(**json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                continue
        return records

    def check(self) -> int:
        """Check the journal before a resume; return its whole records (none if absent).

        Raises
        ------
        InputError
            If it is not a text file of records (a torn last line, left by a kill, is fine).
        """
        from tcoupled.runtime.inputs import InputError, read_text_input

        if not self.path.exists() and not self.path.is_symlink():
            return 0
        text = read_text_input(self.path, "--resume: journal", root=self.path.parent,
                               allow_empty=True)
        lines = text.splitlines(keepends=True)
        for number, line in enumerate(lines, 1):
            if not line.endswith("\n"):
                break  # the torn last line
            try:
                Record(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                raise InputError(f"--resume: journal {str(self.path)!r}: line {number} is "
                                 f"not a finished calculation ({type(exc).__name__})") from None
        return sum(line.endswith("\n") for line in lines)

    def append(self, record: Record) -> None:
        """Write one record durably; a failed write (full disk) names the journal."""
        from tcoupled.runtime.store import write_failed

        try:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(asdict(record)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise write_failed(self.path, exc) from None


def _value(result_value: Any) -> float:
    """Return the IE from a task's value (a dict with ``ie_ev`` or a number)."""
    if isinstance(result_value, dict):
        return float(result_value["ie_ev"])
    return float(result_value)


class ScreenLoop:
    """Drive the farm's manager through one active-learning screen."""

    def __init__(self, config: Any, space: Any, features: Any, manager: Any,
                 journal: Journal, done: list[Record]) -> None:
        from tcoupled.screening.policies import make_policy, valid_mask

        self.config, self.space, self.manager, self.journal = config, space, manager, journal
        valid = valid_mask(features)
        self.policy = make_policy(config.policy, valid, features,
                                  initial=config.initial, seed=config.seed,
                                  capacity=config.budget, k=config.k, kappa=config.kappa,
                                  ensemble=config.ensemble, noise=config.noise)
        #: molecules RDKit cannot parse: recorded failures that spend no budget
        self.rejected = [Record(int(i), space.smiles[i], float("nan"), "failed",
                                "invalid SMILES (RDKit cannot parse it)", 0, 0.0, 0.0, 0.0,
                                float("nan")) for i in np.flatnonzero(~valid)]
        self.records: list[Record] = []
        self.snapshots: list[Snapshot] = []
        self.time_offset = max((r.end for r in done), default=0.0)
        self.in_flight: dict[int, tuple[int, float]] = {}  # task id -> (index, predicted)
        self.unscored: list[Record] = []
        self.next_task_id = 0
        for record in done:
            self.policy.start(record.index)
            self._learn(record)

    def _learn(self, record: Record) -> None:
        self.records.append(record)
        self.policy.observe(record.index, record.ie_ev if record.status == "ok" else np.nan)
        if record.status == "ok":
            self.unscored.append(record)

    def _snapshot(self) -> None:
        """Record the model after each refit (done by the policy since the last call)."""
        policy = self.policy
        for seconds in policy.refit_s[len(self.snapshots):]:
            best, best_ie = -1, np.nan
            if policy.mean is not None:
                masked = np.where(policy.available, policy.mean, -np.inf)
                best = int(np.argmax(masked))
                best_ie = float(masked[best]) if np.isfinite(masked[best]) else np.nan
            errors = [abs(r.predicted - r.ie_ev) for r in self.unscored
                      if np.isfinite(r.predicted)]
            self.snapshots.append(Snapshot(
                sum(r.status == "ok" for r in self.records), len(self.records),
                self._elapsed(), best_ie, self.space.smiles[best] if best >= 0 else "",
                float(np.mean(errors)) if errors else np.nan, seconds))
            self.unscored = []

    def _elapsed(self) -> float:
        return self.time_offset + self.manager.stats.elapsed()

    def _refit_if_stale(self) -> None:
        """Refit while every worker is busy (after the submissions, before the wait)."""
        if self.policy.stale:
            self.policy.update()
        self._snapshot()

    def _payload(self, index: int) -> dict:
        config = self.config
        payload = {"smiles": self.space.smiles[index], "method": config.method,
                   "engine": config.engine, "fmax": config.fmax,
                   "seed": config.embed_seed}
        if config.task == "ie":
            payload["fallback"] = self.space.fallback_geometry(index)
        return payload

    def _submit_while_idle(self) -> None:
        """Give every free worker its next molecule at once, from the policy's queue.

        A molecule whose task cannot be built is recorded as failed and the slot goes
        to the next one in the queue.
        """
        from tcoupled.screening.policies import take

        while True:
            slots = max(min(self.manager.n_free,
                            self.config.budget - len(self.records) - len(self.in_flight)), 0)
            picks = take(self.policy, slots, max(slots - self.manager.n_idle, 0))
            refused = 0
            for index, predicted in picks:
                try:
                    payload = self._payload(index)
                except (ValueError, TypeError, KeyError, SyntaxError, MemoryError) as exc:
                    self._unsubmittable(index, predicted, exc)  # a bad molecule: recorded
                    refused += 1
                    continue
                task_id, self.next_task_id = self.next_task_id, self.next_task_id + 1
                self.in_flight[task_id] = (index, predicted)
                self.manager.submit(task_id, payload)
            if not refused:
                return

    def _unsubmittable(self, index: int, predicted: float, exc: Exception) -> None:
        """Record a molecule whose task could not be built as failed (it spends budget)."""
        now = self._elapsed()
        record = Record(int(index), self.space.smiles[index], float("nan"), "failed",
                        f"could not build its task: {type(exc).__name__}: {exc}"[:300], 0,
                        now, now, 0.0, predicted)
        self.journal.append(record)
        self._learn(record)
        get_logger().warning("[%d/%d] %s: %s", len(self.records), self.config.budget,
                             record.smiles, record.error)

    def _collect(self) -> Record | None:
        from tcoupled.farm.manager import CANCELLED

        result = self.manager.next_result()
        index, predicted = self.in_flight.pop(result.task_id)
        if result.status == CANCELLED:  # queued when the run was stopped: never ran
            return None
        ok = result.status == "ok"
        record = Record(index, self.space.smiles[index],
                        _value(result.value) if ok else float("nan"), result.status,
                        result.error, result.worker, self.time_offset + result.start,
                        self.time_offset + result.end, result.seconds, predicted)
        self.journal.append(record)
        self._learn(record)
        return record

    def run(self) -> None:
        """Screen until the budget is spent or the space is exhausted."""
        from tcoupled.runtime import stopping

        log = get_logger()
        while len(self.records) < self.config.budget:
            if not stopping.requested():  # on SIGTERM/SIGINT: collect what runs, then stop
                self._submit_while_idle()
            else:
                self.manager.cancel_queued()  # the queued molecules do not start
            self._refit_if_stale()
            if not self.in_flight:
                log.info("%s after %d molecules", "stopped by a signal" if stopping.requested()
                         else "search space exhausted", len(self.records))
                break
            record = self._collect()
            if record is None:
                continue
            shown = f"{record.ie_ev:.3f} eV" if record.status == "ok" else record.error
            log.info("[%d/%d] %s on rank %d: %s", len(self.records), self.config.budget,
                     record.smiles, record.worker, shown)

    def best(self) -> Record | None:
        """Return the record with the highest IE, if any succeeded."""
        good = [r for r in self.records if r.status == "ok"]
        return max(good, key=lambda r: r.ie_ev) if good else None
