"""Cost model: predicted time per cycle of time and space division, and the choice.

One cycle of ``couple`` is ``K`` solver steps that fill a slot of ``K + 1`` fields, the
slot's handoff, and ``M`` training iterations. With per-unit costs

* ``sim`` -- the sim ranks' ``K`` steps (halo exchanges included) plus the slot copies;
* ``h`` -- one slot through the channel, ``latency + bytes * s_per_byte``
  (zero-copy channels have ``s_per_byte = 0``);
* ``iter`` -- one optimizer step on a train rank's batch, plus ``allreduce`` (DDP, only
  for members over several train ranks);
* ``warmup`` -- the extra time of the first iteration, paid once per run;
* ``digest`` -- with ``--verify``, the trainer's hash of each received slot; ``M * iter``
  below includes ``s * digest`` and the replay buffer's copies of a steady cycle,

and ``f`` receivers per sim rank (one per member), ``s`` sources per train rank:

* time division (turns): ``cycle = sim + h * max(f, s) + latency + M * iter + warmup / C``
  (the latency of handing the turn back to the sim ranks);
* space division (concurrent, double buffered): ``produce = sim + f * h``,
  ``consume = s * h + M * iter``; the pipeline runs at the slower side and pays one
  cycle of the faster side to fill, ``cycle = max + (min + warmup) / C``; once running
  (``steady_s``) a cycle is ``max(produce, consume)``, and time division's drops ``/ C``.

In space division both sides compute at once. The calibration measures ``sim`` and
``iter + allreduce`` a second time with the two sides running together: sharing of
cores (more busy ranks, or threads, than cores), of memory bandwidth and of the
trainer's communication threads is then measured, not modelled. Each side runs at
that side-by-side speed while the other runs too, and at its own speed once the other
is done with its cycle (the faster side then waits for its slot to be released).
Without those figures (costs given by hand) oversubscription is modelled: with ``P``
cores a cycle also takes at least the busy core-seconds over the cores, ``(min(S, P)
produce + min(T, P) consume) / P`` (waiting ranks sleep; in time division only one
side computes at a time, and the calibration ran that side at its rank count).

Every input is measured on the run's own shapes by :func:`calibrate`: a short job
(:mod:`tcoupled.coupling.calibration`) at the run's rank counts times a decomposed
cycle of the solver (halo included), each member's DDP training (allreduce and first
iteration included) and the handoff mechanisms; handoff costs from a ``bench
channels`` result replace the in-run measurement when given. The job also measures
what the sums above miss, and then they give way to it:

* a training cycle whole (``train_cycle_s``: the sources' blocks put in context, ``M``
  iterations, the replay buffer offered the new samples) stands for ``M * iter`` and
  the replay copies, and the trainer's first ``C`` cycles in a fresh process
  (``train_turn_s``, its replay buffer filling memory it never used) for both;
* time division's cycle measured in ``C`` turns over the zero-copy ``shm`` channel
  (``turn_cycle_s``: waits, wake-ups and the slot read across cores included) stands
  for ``sim + latency + train``; a channel that moves bytes adds ``h - latency`` per slot.

Pure arithmetic lives in :func:`predict`; :func:`choose_division` picks space only when
its steady cycle is predicted at least ``SPACE_MARGIN`` faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tcoupled.coupling.channels import default_channel as _default_channel
from tcoupled.coupling.handoff import (  # noqa: F401 - part of this module's interface
    HandoffCost,
    handoff_costs_from_bench,
    handoff_from_bench_json,
)
from tcoupled.runtime.errors import ConfigError

#: space division must be predicted at least this much faster to be chosen by ``auto``
SPACE_MARGIN = 0.20
CALIBRATION_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Workload:
    """Sizes and layout of one coupled run (what ``couple`` flags describe)."""

    wave: Any                  # WaveConfig of the global grid
    sim_ranks: int
    train_ranks: int
    members: tuple             # MemberParams, one per ensemble member
    sim_steps: int
    train_iters: int
    cycles: int
    batch_size: int = 0        # pairs per iteration and source (0: all K pairs)
    placement: str = "colocated"
    replay: int = 0            # samples in each train rank's replay buffer (--replay)
    verify: bool = False       # --verify: the trainer hashes every slot


def workload_to_json(workload: Workload) -> str:
    """``workload`` as JSON (plain data: read back without running code)."""
    import json
    from dataclasses import asdict

    return json.dumps(asdict(workload))


def workload_from_json(text: str) -> Workload:
    """The :class:`Workload` that :func:`workload_to_json` wrote."""
    import json

    from tcoupled.sim.config import WaveConfig
    from tcoupled.training.ensemble import MemberParams

    data = json.loads(text)
    wave = data.pop("wave")
    wave.update(grid=tuple(wave["grid"]), mode=tuple(wave["mode"]),
                centers=tuple(tuple(c) for c in wave["centers"]))
    members = tuple(MemberParams(**m) for m in data.pop("members"))
    return Workload(wave=WaveConfig(**wave), members=members, **data)


@dataclass(frozen=True)
class UnitCosts:
    """Measured per-unit costs of a workload (see the module docstring)."""

    sim_s: float               # K steps + slot copies, decomposed (halo included)
    iter_s: float              # one optimizer step of the slowest train rank, no allreduce
    allreduce_s: float         # per iteration, measured in the member's DDP group
    slot_bytes: int
    feeds: int                 # receivers per sim rank
    sources: int               # slots per train rank per cycle
    warmup_s: float = 0.0      # extra time of the very first iteration (once per run)
    digest_s: float = 0.0      # the trainer's hash of one received slot (data provenance)
    sim_ranks: int = 1
    train_ranks: int = 0
    cores: int = 0             # cores the ranks share (0: one core per rank)
    halo_s: float = 0.0        # of sim_s: decomposed minus one block alone (reported only)
    sim_together_s: float = 0.0    # sim_s while the trainers train (0: not measured)
    iter_together_s: float = 0.0   # iter_s + allreduce_s while the sim ranks step
    replay_sample_s: float = 0.0   # copying one sample into the replay buffer
    replay_samples: int = 0        # samples a train rank offers its buffer per cycle
    replay_capacity: int = 0       # the buffer's size (--replay)
    train_cycle_s: float = 0.0     # a whole steady training cycle (0: from iter_s and replay)
    train_together_s: float = 0.0  # that cycle while the sim ranks step
    turn_cycle_s: float = 0.0      # time division's cycle measured in turns, zero copy
    sim_turn_s: float = 0.0        # of it: the sim side's part (reported)
    train_turn_s: float = 0.0      # of it: the training side's part (reported)


def predict(costs: UnitCosts, handoff: HandoffCost, division: str, train_iters: int,
            cycles: int) -> dict:
    """Seconds per cycle of ``division`` and its parts: ``cycle_s`` and ``steady_s``."""
    from tcoupled.training.replay import steady_copies

    h = handoff.seconds(costs.slot_bytes)
    digest = costs.sources * costs.digest_s
    if costs.train_turn_s > 0 or costs.train_cycle_s > 0:  # measured whole, replay included
        train = (costs.train_turn_s or costs.train_cycle_s) + digest
    else:
        train = train_iters * (costs.iter_s + costs.allreduce_s) + digest + (
            costs.replay_sample_s * steady_copies(costs.replay_samples, costs.replay_capacity,
                                                  cycles))
    warmup = costs.warmup_s / max(cycles, 1)
    if division == "time":
        if costs.turn_cycle_s > 0:   # measured in turns: add what the channel's bytes cost
            moved = (h - handoff.latency_s) * max(costs.feeds, costs.sources)
            steady = costs.turn_cycle_s + moved + digest
            return {"cycle_s": steady + warmup, "steady_s": steady,
                    "sim_s": costs.sim_turn_s, "train_s": costs.train_turn_s + digest,
                    "handoff_s": steady - costs.sim_turn_s - costs.train_turn_s - digest}
        # the slots, then the signal that hands the turn back to the sim ranks
        handoffs = h * max(costs.feeds, costs.sources) + handoff.latency_s
        steady = costs.sim_s + handoffs + train
        return {"cycle_s": steady + warmup, "steady_s": steady, "sim_s": costs.sim_s,
                "handoff_s": handoffs, "train_s": train}
    if division != "space":
        raise ConfigError(f"division must be time or space, got {division!r}")
    together = costs.sim_together_s > 0 and (costs.iter_together_s > 0
                                              or costs.train_together_s > 0)
    produce = costs.sim_s + costs.feeds * h
    consume = costs.sources * h + train
    steady = max(produce, consume)
    if together:   # measured side by side: sharing of cores and bandwidth included
        train_slowdown = (costs.train_together_s / costs.train_cycle_s
                          if costs.train_together_s > 0 and costs.train_cycle_s > 0 else
                          costs.iter_together_s / max(costs.iter_s + costs.allreduce_s, 1e-12))
        steady = _overlapped(produce, consume, costs.sim_together_s / max(costs.sim_s, 1e-12),
                             train_slowdown)
    busy = 0.0
    if costs.cores and not together:
        busy = (min(costs.sim_ranks, costs.cores) * produce
                + min(costs.train_ranks, costs.cores) * consume) / costs.cores
    cycle = max(steady, busy) + min(produce, consume) / max(cycles, 1) + warmup
    return {"cycle_s": cycle, "steady_s": max(steady, busy), "sim_s": costs.sim_s,
            "handoff_s": costs.sources * h,
            "train_s": train, "produce_s": produce, "consume_s": consume,
            "oversubscribed": busy > steady}


def _overlapped(produce: float, consume: float, sim_slowdown: float,
                train_slowdown: float) -> float:
    """A steady space-division cycle whose sides slow each other down while both run.

    Both sides start a cycle together (the slower one's release lets the faster one
    go on). While both run, each goes at its measured side-by-side speed (the
    slowdown: side-by-side time over time alone); once one side is done, the other
    has the machine to itself for the rest of its work.
    """
    sim_slowdown, train_slowdown = max(sim_slowdown, 1.0), max(train_slowdown, 1.0)
    produce_both, consume_both = produce * sim_slowdown, consume * train_slowdown
    if produce_both <= consume_both:
        return produce_both + consume - produce_both / train_slowdown
    return consume_both + produce - consume_both / sim_slowdown


def fan_out(workload: Workload) -> tuple[int, int, int]:
    """Receivers per sim rank, sources per train rank, and ranks per member's DDP group."""
    if workload.train_ranks == 0:
        return 1, 1, workload.sim_ranks
    from tcoupled.placement.plan import RoleCounts, plan_ranks

    plan = plan_ranks(RoleCounts(sim=workload.sim_ranks, train=workload.train_ranks), None, 0,
                      workload.placement, len(workload.members))
    feeds = max(len(info.feeds) for info in plan.of_role("sim"))
    sources = max(len(info.sources) for info in plan.of_role("train"))
    return feeds, sources, workload.train_ranks // len(workload.members)


def slot_bytes(workload: Workload, local: tuple[int, ...]) -> int:
    """Bytes of one slot: ``K + 1`` fields of the block ``local``."""
    import numpy as np

    return (workload.sim_steps + 1) * math.prod(local) * np.dtype(workload.wave.dtype).itemsize


def cores_available() -> int:
    """Cores this process may run on (its CPU affinity)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _clean_env() -> dict[str, str]:
    """The environment without the launcher's variables, so a nested ``mpiexec`` works."""
    import os

    launcher = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "SLURM_", "PALS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def run_calibration(workload: Workload, timeout: float = CALIBRATION_TIMEOUT_S) -> dict:
    """Launch :mod:`tcoupled.coupling.calibration` at the run's rank counts; its result.

    The job gets its own process group and is killed whole on timeout.
    """
    import json
    import sys
    import tempfile
    from pathlib import Path

    from tcoupled.runtime.jobs import run_group

    ranks = workload.sim_ranks + workload.train_ranks
    local = Path(sys.executable).parent / "mpiexec"
    with tempfile.TemporaryDirectory(prefix="tcoupled-costmodel-") as tmp:
        spec, out = Path(tmp, "workload.json"), Path(tmp, "calibration.json")
        spec.write_text(workload_to_json(workload))
        cmd = [str(local) if local.exists() else "mpiexec", "-n", str(ranks), sys.executable,
               "-m", "mpi4py", "-m", "tcoupled.coupling.calibration", str(spec), str(out)]
        try:
            job = run_group(cmd, timeout, _clean_env())
        except TimeoutError:
            raise ConfigError(f"cost-model calibration timed out after {timeout:g} s on "
                              f"{ranks} ranks") from None
        if job.returncode != 0 or not out.exists():
            raise ConfigError(f"cost-model calibration failed on {ranks} ranks (exit "
                              f"{job.returncode}): {job.stderr.strip()[-800:]}")
        return json.loads(out.read_text())


def calibrate(workload: Workload, measured: dict | None = None) -> tuple[UnitCosts, dict]:
    """Unit costs of ``workload`` and the handoff costs measured in the same job.

    ``measured`` is a result of :func:`run_calibration` (run it when ``None``).
    """
    found = measured or run_calibration(workload)
    local = tuple(found["local_shape"])
    costs = UnitCosts(
        sim_s=found["sim_s"], iter_s=max(found["iter_s"] - found["allreduce_s"], 0.0),
        allreduce_s=found["allreduce_s"], slot_bytes=slot_bytes(workload, local),
        feeds=found["feeds"], sources=found["sources"],
        warmup_s=max(found["first_turn_s"] - found["train_turn_s"] if "first_turn_s" in found
                     else found["first_iter_s"] - found["iter_s"], 0.0),
        digest_s=found.get("digest_s", 0.0) if workload.verify else 0.0,
        sim_ranks=workload.sim_ranks,
        train_ranks=workload.train_ranks, cores=cores_available(),
        halo_s=max(found["sim_s"] - found.get("sim_serial_s", found["sim_s"]), 0.0),
        sim_together_s=found.get("sim_together_s", 0.0),
        iter_together_s=found.get("iter_together_s", 0.0),
        replay_sample_s=found.get("replay_sample_s", 0.0),
        replay_samples=found.get("replay_samples", 0), replay_capacity=workload.replay,
        **{key: found.get(key, 0.0) for key in ("train_cycle_s", "train_together_s",
                                                "turn_cycle_s", "sim_turn_s", "train_turn_s")})
    handoff = {name: HandoffCost(*pair) for name, pair in found.get("handoff", {}).items()}
    return costs, handoff


def choose_division(workload: Workload, channel: str | None = None,
                    handoff: dict[str, HandoffCost] | None = None,
                    costs: UnitCosts | None = None,
                    source: str = "in-run") -> tuple[str, str]:
    """Pick space only when predicted ``SPACE_MARGIN`` faster; return it and a one-line why.

    The divisions are compared on their steady cycle (``steady_s``): the rate the
    division sets. What a run pays once (the first iteration, space division's
    pipeline fill) is left out of the choice, as ``steady_cycle_s`` leaves it out of
    what a run measures. ``handoff`` overrides the in-run measurement per channel
    (``None``: the ``bench channels`` result in ``TCOUPLED_BENCH_JSON``, if any),
    ``source`` says where given ones come from; ``costs`` skips the calibration job
    (both given: no job at all).
    """
    if workload.train_ranks == 0:
        return "time", "space division needs separate train ranks (--train-ranks 0)"
    measured_handoff: dict[str, HandoffCost] = {}
    if costs is None:
        costs, measured_handoff = calibrate(workload)
    if handoff is None:
        handoff, source = handoff_from_bench_json(None)
    links = {**measured_handoff, **handoff}
    cycle, channels = {}, {}
    for division in ("time", "space"):
        channels[division] = channel or _default_channel(division, workload.train_ranks)
        if channels[division] not in links:
            raise ConfigError(f"no handoff cost for channel {channels[division]!r}")
        cycle[division] = predict(costs, links[channels[division]], division,
                                  workload.train_iters, workload.cycles)["steady_s"]
    margin = cycle["time"] / cycle["space"] - 1
    best = "space" if margin >= SPACE_MARGIN else "time"
    train = (costs.train_turn_s or costs.train_cycle_s
             or workload.train_iters * (costs.iter_s + costs.allreduce_s))
    busy = costs.sim_ranks + costs.train_ranks
    why = (f"predicted {cycle['time']:.4f} s/cycle for time ({channels['time']}) vs "
           f"{cycle['space']:.4f} s/cycle for space ({channels['space']}) once running: space "
           f"{margin:+.0%} faster (needs {SPACE_MARGIN:+.0%}); per cycle sim "
           f"{costs.sim_s:.4f} s (halo {costs.halo_s:.4f} s), train {train:.4f} s "
           f"(allreduce {workload.train_iters * costs.allreduce_s:.4f} s), slot "
           f"{costs.slot_bytes / 1e6:.2f} MB, handoff costs {source}"
           + (f"; {busy} ranks on {costs.cores} cores (oversubscription modelled)"
              if costs.cores and busy > costs.cores else ""))
    return best, why
