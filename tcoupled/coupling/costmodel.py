"""Cost model: predicted time per cycle of time and space division, and the choice.

The arithmetic -- per-unit costs and what they add up to per cycle -- is
:mod:`tcoupled.coupling.prediction`. Here: the workload a ``couple`` run describes,
its calibration and :func:`choose_division`.

Every input is measured on the run's own shapes by :func:`calibrate`: a short job
(:mod:`tcoupled.coupling.calibration`) at the run's rank counts times a decomposed
cycle of the solver (halo included), each member's DDP training (allreduce and first
iteration included), the handoff mechanisms, and each division's cycle measured whole
(:mod:`tcoupled.coupling.calibration_turns`); handoff costs from a ``bench channels``
result replace the in-run measurement when given. :func:`choose_division` picks space
only when its steady cycle is predicted at least ``SPACE_MARGIN`` faster.
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
from tcoupled.coupling.prediction import (  # noqa: F401 - part of this module's interface
    MEASURED_ON,
    UnitCosts,
    predict,
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
    channel: str | None = None  # --channel (None: each division's default)


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
    handoff = {name: HandoffCost(*pair) for name, pair in found.get("handoff", {}).items()}
    turn, pipe = (workload.channel or MEASURED_ON[d] for d in ("time", "space"))
    nothing = HandoffCost(0.0)
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
        pipe_link_s=handoff.get(pipe, nothing).seconds(slot_bytes(workload, local)),
        turn_link_s=handoff.get(turn, nothing).seconds(slot_bytes(workload, local)),
        turn_channel=turn, pipe_channel=pipe,
        **{key: found.get(key, 0.0) for key in ("train_cycle_s", "train_together_s",
                                                "turn_cycle_s", "sim_turn_s", "train_turn_s",
                                                "pipe_cycle_s")})
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
    busy = workload.sim_ranks + workload.train_ranks
    cores = costs.cores if costs is not None else cores_available()
    if cores and busy > cores:
        raise ConfigError(
            f"--division auto needs a core per rank, got {busy} ranks on {cores} cores: on an "
            "oversubscribed node a cycle depends on how the scheduler shares the cores (two "
            "sim ranks and a train rank on the 2-core development VM: calibrations put time "
            "division at "
            "0.97-1.56x space division where the runs gave 1.23-1.51x), more than the "
            f"{SPACE_MARGIN:.0%} auto decides on; give --division time or space")
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
                                  workload.train_iters, workload.cycles,
                                  channels[division])["steady_s"]
    margin = cycle["time"] / cycle["space"] - 1
    best = "space" if margin >= SPACE_MARGIN else "time"
    train = (costs.train_turn_s or costs.train_cycle_s
             or workload.train_iters * (costs.iter_s + costs.allreduce_s))
    why = (f"predicted {cycle['time']:.4f} s/cycle for time ({channels['time']}) vs "
           f"{cycle['space']:.4f} s/cycle for space ({channels['space']}) once running: space "
           f"{margin:+.0%} faster (needs {SPACE_MARGIN:+.0%}); per cycle sim "
           f"{costs.sim_s:.4f} s (halo {costs.halo_s:.4f} s), train {train:.4f} s "
           f"(allreduce {workload.train_iters * costs.allreduce_s:.4f} s), slot "
           f"{costs.slot_bytes / 1e6:.2f} MB, handoff costs {source}")
    return best, why
