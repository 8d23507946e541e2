"""The cost model's arithmetic: a cycle of time and space division from per-unit costs.

One cycle of ``couple`` is ``K`` solver steps that fill a slot of ``K + 1`` fields, the
slot's handoff, and ``M`` training iterations. With per-unit costs

* ``sim`` -- the sim ranks' ``K`` steps (halo exchanges included) plus the slot copies;
* ``h`` -- one slot through the channel, ``latency + bytes * s_per_byte``
  (zero-copy channels have ``s_per_byte = 0``);
* ``train`` -- a train rank's cycle: ``M`` optimizer steps (``iter``, plus ``allreduce``
  for members over several train ranks) and the replay buffer's copies of a steady
  cycle -- or that cycle measured whole (context, iterations, replay);
* ``warmup`` -- the extra time of the first iteration, paid once per run;
* ``digest`` -- with ``--verify``, the trainer's hash of each received slot, in ``train``,

and ``f`` receivers per sim rank (one per member), ``s`` sources per train rank, the
*analytic* cycles are

* time division (turns): ``sim + h * max(f, s) + latency + train`` (the latency of
  handing the turn back to the sim ranks);
* space division (concurrent, double buffered): ``produce = sim + f * h``,
  ``consume = s * h + train``; the pipeline runs at the slower side, ``max(produce,
  consume)``. In space division both sides compute at once: the calibration measures
  ``sim`` and ``train`` a second time with the two sides running together, and each
  side runs at that side-by-side speed while the other runs too, then alone
  (:func:`_overlapped`). Without those figures (costs given by hand) oversubscription
  is modelled: with ``P`` cores a cycle also takes at least the busy core-seconds over
  the cores, ``(min(S, P) produce + min(T, P) consume) / P``.

Those sums miss what only shows when a division runs. A trainer's first cycles fill
its replay buffer with memory the process never touched, so the trainer's cycle is
measured whole over the run's first ``C`` cycles (``train_turn_s``). In time division
the trainer reads the slot the sim rank has just written on another core, a core that
slept through the other side's turn comes back slower, and on an oversubscribed node
each wake-up of a waiting rank takes a core from the working ones; with more busy
ranks than cores, space division's sides share the cores in ways no side-by-side
speed says. So the calibration also runs each division ``C`` cycles on the run's own
loops and default channel (:mod:`tcoupled.coupling.calibration_turns`; ``shm`` for
time, ``mpi`` for space), and the measured cycle is the prediction (``steady_s``) of
time division always and of space division on an oversubscribed node; a run on
another channel adds the difference of the two channels' handoffs, a ``--verify`` run
the digests. With a core per rank space division's analytic cycle stands: it places
each side's handoff on its own side, and in the runs of ``bench model`` it was as
close as the short pipeline the calibration ran. The analytic cycle stays in the
parts (``analytic_s``), so how far the sums alone are off is on record. A cycle of the
whole run adds what it pays once, spread over the ``C`` cycles (``cycle_s``): the first
iteration, and space division's fill (one cycle of its faster side).
"""

from __future__ import annotations

from dataclasses import dataclass

from tcoupled.coupling.handoff import HandoffCost
from tcoupled.runtime.errors import ConfigError

#: the channel each division's cycle is measured on unless the run names one (its default)
MEASURED_ON = {"time": "shm", "space": "mpi"}


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
    turn_cycle_s: float = 0.0      # time division's cycle measured in turns over shm
    sim_turn_s: float = 0.0        # of it: the sim side's busy part (reported)
    train_turn_s: float = 0.0      # of it: the training side's busy part
    pipe_cycle_s: float = 0.0      # space division's cycle measured, two slots over mpi
    pipe_link_s: float = 0.0       # one slot through pipe_channel as the calibration timed it
    turn_link_s: float = 0.0       # one slot through turn_channel as it timed it
    turn_channel: str = "shm"      # the channel of the measured turns
    pipe_channel: str = "mpi"      # the channel of the measured pipeline


def predict(costs: UnitCosts, handoff: HandoffCost, division: str, train_iters: int,
            cycles: int, channel: str | None = None) -> dict:
    """Seconds per cycle of ``division`` on ``channel`` (``handoff``'s) and its parts.

    ``steady_s`` is a cycle once running, ``cycle_s`` one of the whole run;
    ``analytic_s`` is the analytic steady cycle, ``measured`` says whether ``steady_s``
    is a cycle the calibration ran. ``channel=None`` is the division's default.
    """
    if division not in MEASURED_ON:
        raise ConfigError(f"division must be time or space, got {division!r}")
    parts = _analytic(costs, handoff, division, train_iters, cycles)
    h, digest = handoff.seconds(costs.slot_bytes), costs.sources * costs.digest_s
    fan = max(costs.feeds, costs.sources)
    same = channel in (None, costs.turn_channel if division == "time" else costs.pipe_channel)
    measured = 0.0
    if division == "time" and costs.turn_cycle_s > 0:   # over shm: swap in the channel
        measured = costs.turn_cycle_s + (0.0 if same else (h - costs.turn_link_s) * fan)
    elif division == "space" and costs.pipe_cycle_s > 0 and oversubscribed(costs):
        measured = costs.pipe_cycle_s + (0.0 if same else (h - costs.pipe_link_s) * fan)
    parts["analytic_s"], parts["measured"] = parts["steady_s"], measured > 0
    if measured > 0:
        once = parts["cycle_s"] - parts["steady_s"]
        parts["steady_s"] = measured + digest
        parts["cycle_s"] = parts["steady_s"] + once
    return parts


def oversubscribed(costs: UnitCosts) -> bool:
    """Whether the sim and train ranks outnumber the cores (known only when measured)."""
    return bool(costs.cores) and costs.sim_ranks + costs.train_ranks > costs.cores


def _train(costs: UnitCosts, train_iters: int, cycles: int) -> float:
    """A train rank's steady cycle: measured whole where the calibration ran it."""
    from tcoupled.training.replay import steady_copies

    digest = costs.sources * costs.digest_s
    if costs.train_turn_s > 0 or costs.train_cycle_s > 0:  # context, iterations, replay
        return (costs.train_turn_s or costs.train_cycle_s) + digest
    return train_iters * (costs.iter_s + costs.allreduce_s) + digest + (
        costs.replay_sample_s * steady_copies(costs.replay_samples, costs.replay_capacity,
                                              cycles))


def _analytic(costs: UnitCosts, handoff: HandoffCost, division: str, train_iters: int,
              cycles: int) -> dict:
    """The analytic cycle of ``division`` (module docstring) and its parts."""
    h = handoff.seconds(costs.slot_bytes)
    train = _train(costs, train_iters, cycles)
    warmup = costs.warmup_s / max(cycles, 1)
    if division == "time":
        # the slots, then the signal that hands the turn back to the sim ranks
        handoffs = h * max(costs.feeds, costs.sources) + handoff.latency_s
        steady = costs.sim_s + handoffs + train
        return {"cycle_s": steady + warmup, "steady_s": steady, "sim_s": costs.sim_s,
                "handoff_s": handoffs, "train_s": train}
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
