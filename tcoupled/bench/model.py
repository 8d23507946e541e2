"""Cost-model benchmark: predicted against measured cycle time of real ``couple`` runs.

Each workload (grid, sim steps, train iterations, CNN, rank counts, channel) is
calibrated once as ``couple --division auto`` calibrates
(:func:`tcoupled.coupling.costmodel.run_calibration`: a short job at the workload's
rank counts, which also runs each division's cycles on its default channel), with the
handoff costs fitted to the ``channels`` result of the same ``bench.json`` when there
is one (else the calibration's in-run measurement). Then it is run for real in *both*
divisions, ``launches`` times each (the divisions in turn), and the prediction
(``steady_s``: a cycle once running) is set against the median of the run's
``steady_cycle_s`` (the slowest rank's median of cycles 2 to C). Each row also carries
the analytic sum of the unit costs alone (``analytic_ratio``). The workloads span
solver-to-training cost ratios from about 0.1 to 10, the ``shm``, ``mpi`` and ``file``
channels and 1-2 sim and train ranks. For each workload ``auto``'s choice (space only
when predicted >= 20% faster) counts as correct when its measured cycle is the faster
one's or within 10% of it.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from tcoupled.bench.model_report import plot, table  # noqa: F401 - the bench's interface

NAME = "model"
COMMON = ("--init", "gaussian", "--dtype", "float32", "--kernel-sizes", "3", "--rollout", "1",
          "--quiet")
SLACK = 0.10     # auto is correct when within this of the measured faster division

#: one-pair iterations of a width-1 CNN: the training side's smallest real step. A replay
#: buffer of 32 fills in the first cycle or two, so cycles 2 to C are steady: with the
#: default 256 and 13-300 samples a cycle it filled over up to 20 cycles, and a 12-cycle
#: run's median was a cycle of the fill (16-18 ms against 10-11 after, on 129^2)
SMALL_CNN = ("--cnn-width", "1", "--batch-size", "1", "--replay", "32")
MAX_SLOT_BYTES = 64 << 20
#: name -> (sim ranks, train ranks, channel or None for each division's default, target
#: solver-to-training ratio, flags). The sim steps per cycle ``K`` are picked by
#: :func:`steps_for` to reach the target on this machine. A C-kernel step is so much
#: cheaper than a CNN step on a CPU core that only the NumPy kernel reaches
#: solver-heavy cycles with slots that fit in memory; the first workload keeps the C
#: kernel (training-dominated, as every C-kernel run on this machine is).
WORKLOADS = {
    "C kernel 1+1 129^2 M=2": (1, 1, None, 0.03, ("--grid", "129", "129", "--kernel", "c",
                                                  "--train-iters", "2", *SMALL_CNN)),
    "numpy 1+1 129^2 M=2": (1, 1, None, 0.1, ("--grid", "129", "129", "--kernel", "numpy",
                                              "--train-iters", "2", *SMALL_CNN)),
    "numpy 1+1 129^2 file": (1, 1, "file", 1.0, ("--grid", "129", "129", "--kernel", "numpy",
                                                 "--train-iters", "1", *SMALL_CNN)),
    "numpy 1+1 129^2 mpi": (1, 1, "mpi", 3.0, ("--grid", "129", "129", "--kernel", "numpy",
                                               "--train-iters", "1", *SMALL_CNN)),
    "numpy 1+1 65^2": (1, 1, None, 10.0, ("--grid", "65", "65", "--kernel", "numpy",
                                          "--train-iters", "1", *SMALL_CNN)),
    "numpy 2+1 129^2": (2, 1, None, 1.0, ("--grid", "129", "129", "--kernel", "numpy",
                                          "--train-iters", "1", *SMALL_CNN)),
    "numpy 1+2 (DDP) 129^2 M=2": (1, 2, None, 0.3, ("--grid", "129", "129", "--kernel",
                                                    "numpy", "--train-iters", "2",
                                                    *SMALL_CNN)),
}
QUICK = {"quick 1+1 33^2": (1, 1, None, 0.0, ("--grid", "33", "33", "--sim-steps", "8",
                                              "--train-iters", "2", *SMALL_CNN))}


def steps_for(sim: int, train: int, target: float, flags: tuple[str, ...]) -> int:
    """Sim steps per cycle that make the solver ``target`` times the training (a probe).

    A second's probe in this process: solver steps on the run's largest block, alone,
    and one-pair training iterations on it. Only the sizes come from it; the cost model
    is calibrated afterwards on the chosen sizes, at the run's rank counts.
    """
    import statistics
    import time

    import numpy as np
    import torch

    from tcoupled.runtime.mpienv import init_mpi
    from tcoupled.sim.solver import WaveSolver
    from tcoupled.training.model import build_model
    from tcoupled.training.samples import samples_from_frames
    from tcoupled.training.trainer import Trainer

    workload = workload_of(sim, train, (*flags, "--sim-steps", "1"), 1)
    dims = init_mpi().Compute_dims(sim, 2)
    block = tuple(-(-n // d) for n, d in zip(workload.wave.grid, dims))
    from dataclasses import replace

    with WaveSolver(replace(workload.wave, grid=block), init_mpi().COMM_SELF) as solver:
        solver.step(5)
        steps = []
        for _ in range(7):
            start = time.perf_counter()
            solver.step(10)
            steps.append((time.perf_counter() - start) / 10)
    step = statistics.median(steps)
    torch.set_num_threads(1)
    member = workload.members[0]
    trainer = Trainer(build_model(member), member.lr, batch_size=1)  # float32, as couple
    groups = [samples_from_frames(torch.randn((3, *block)))]  # one sample: two levels in
    trainer.train(groups, 2)
    times = []
    for _ in range(7):
        start = time.perf_counter()
        trainer.train(groups, 1)
        times.append(time.perf_counter() - start)
    cycle_train = workload.train_iters * statistics.median(times)
    return clip_steps(target * cycle_train / step, int(np.prod(block)) * 4)


def clip_steps(steps: float, frame_bytes: int) -> int:
    """``steps`` rounded, at least 4 and at most what a slot of ``MAX_SLOT_BYTES`` holds."""
    return int(min(max(4, round(steps)), MAX_SLOT_BYTES // frame_bytes - 1))


def sizes(quick: bool) -> dict:
    """Cycles per launch and launches per case.

    40 cycles: a run's first 5 to 15 cycles are slower than the rest (see
    :func:`~tcoupled.coupling.calibration_train.calibration_cycles`), and with 12 the
    median of cycles 2 to C fell among them or past them from one launch to the next
    (11.6, 9.0 and 10.7 ms a cycle in three 12-cycle launches of one case).
    """
    return {"cycles": 3, "launches": 1} if quick else {"cycles": 40, "launches": 3}


def couple_flags(sim: int, train: int, channel: str | None, flags: tuple[str, ...],
                 division: str, cycles: int) -> list[str]:
    """The ``couple`` flags of one case."""
    return [*COMMON, *flags, "--sim-ranks", str(sim), "--train-ranks", str(train),
            "--division", division, *(["--channel", channel] if channel else []),
            "--cycles", str(cycles)]


def workload_of(sim: int, train: int, flags: tuple[str, ...], cycles: int,
                channel: str | None = None) -> Any:
    """The cost-model workload that ``couple`` flags describe (``--channel channel``)."""
    import argparse

    from tcoupled.coupling.costmodel import Workload
    from tcoupled.sim.config import wave_config_from_args
    from tcoupled.workflow.couple_flags import add_arguments, members_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([*couple_flags(sim, train, None, flags, "time", cycles)])
    members = members_from_args(args)
    return Workload(wave_config_from_args(args), sim, train, members, args.sim_steps,
                    args.train_iters, cycles, args.batch_size, args.placement, args.replay,
                    args.verify, channel)


def measure(args: list[str], ranks: int) -> float:
    """Launch ``couple`` and return its seconds per cycle once running (``steady_cycle_s``)."""
    import sys

    from tcoupled.bench.launch import mpiexec, run_job

    cycles = int(args[args.index("--cycles") + 1])
    with tempfile.TemporaryDirectory() as out:
        cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "tcoupled", "couple",
               *args, "--out", out]
        run_job(cmd, timeout=600)
        summary = json.loads((Path(out) / "summary.json").read_text())
        return summary["steady_cycle_s"] or summary["wall_s"] / cycles


def measured_spreads(runs: dict[str, tuple[list[str], int]], launches: int) -> dict:
    """Median and quartiles of ``launches`` launches of each run, the runs taken in turn.

    ``runs``: name -> (``couple`` flags, ranks). Taking them in turn (time, space, time,
    ...) puts a drift of the machine's load on both. One retry per run for a failed launch;
    a run with no launch is ``None``.
    """
    from tcoupled.bench.timing import spread
    from tcoupled.runtime.errors import TcoupledError

    times: dict[str, list[float]] = {name: [] for name in runs}
    failures = dict.fromkeys(runs, 0)
    while any(len(times[n]) < launches and failures[n] < 2 for n in runs):
        for name, (args, ranks) in runs.items():
            if len(times[name]) >= launches or failures[name] >= 2:
                continue
            try:
                times[name].append(measure(args, ranks))
            except TcoupledError as error:
                failures[name] += 1
                print(f"bench model: launch failed ({failures[name]}): {str(error)[:300]}",
                      flush=True)
    return {name: spread(found) if found else None for name, found in times.items()}


def bench_handoff(out: Path) -> tuple[dict, str]:
    """Handoff costs fitted to this run's ``bench channels`` result, if any."""
    from tcoupled.coupling.costmodel import handoff_from_bench_json

    return handoff_from_bench_json(str(out / "bench.json"))


def solver_to_training(workload: Any, costs: Any) -> float:
    """The solver's cycle over the training iterations' (the calibrated costs).

    The digest of a slot and the replay buffer's copies are coupling costs that grow
    with the slot: counted in the prediction, not here.
    """
    return costs.sim_s / max(workload.train_iters * (costs.iter_s + costs.allreduce_s), 1e-12)


def sized(sim: int, train: int, target: float, flags: tuple[str, ...], cycles: int,
          channel: str | None = None) -> tuple[tuple[str, ...], Any, Any, dict]:
    """Flags and workload with ``K`` sim steps that reach ``target``, and its calibration.

    :func:`steps_for` guesses ``K`` from a probe in this process; the calibration at
    the run's rank counts (the replay buffer, DDP, the slot of ``K + 1`` frames) then
    gives the ratio that counts, and ``K`` is rescaled from it, at most twice.
    """
    from tcoupled.coupling.costmodel import calibrate

    steps = steps_for(sim, train, target, flags) if target else 0
    for attempt in range(3):
        sized_flags = (*flags, "--sim-steps", str(steps)) if steps else flags
        workload = workload_of(sim, train, sized_flags, cycles, channel)
        costs, links = calibrate(workload)
        if not target or attempt == 2:
            break
        ratio = solver_to_training(workload, costs)
        frame = costs.slot_bytes // (workload.sim_steps + 1)  # one field of a sim rank
        rescaled = clip_steps(steps * target / ratio, frame)
        if abs(math.log(ratio / target)) < math.log(1.3) or rescaled == steps:
            break
        steps = rescaled
    return sized_flags, workload, costs, links


def one_workload(name: str, spec: tuple, size: dict, override: dict,
                 source: str) -> tuple[list, dict]:
    """Calibrate, predict and measure both divisions of one workload; its rows and choice."""
    from dataclasses import asdict

    from tcoupled.coupling.costmodel import choose_division, predict
    from tcoupled.runtime.errors import TcoupledError

    sim, train, channel, target, flags = spec
    flags, workload, costs, links = sized(sim, train, target, flags, size["cycles"], channel)
    links.update(override)
    try:
        chosen, why = choose_division(workload, channel, links, costs, source)
    except TcoupledError as refused:   # more ranks than cores: predicted, not chosen
        chosen, why = "refused", str(refused)
    links_of = {d: channel or ("shm" if d == "time" else "mpi") for d in ("time", "space")}
    cycles = size["cycles"]
    parts_of = {d: predict(costs, links[link], d, workload.train_iters, cycles, link)
                for d, link in links_of.items()}
    found_of = measured_spreads({d: (couple_flags(sim, train, channel, flags, d, cycles),
                                     sim + train) for d in parts_of}, size["launches"])
    rows = []
    for division, parts in parts_of.items():
        found = found_of[division]
        row = {"case": f"{name}, {division}", "workload": name, "division": division,
               "channel": links_of[division], "ranks": sim + train, "sim_ranks": sim,
               "train_ranks": train, "sim_steps": workload.sim_steps,
               "target_ratio": target, "predicted_s": parts["steady_s"], "parts": parts,
               "solver_to_training": solver_to_training(workload, costs)}
        if found is None:
            row["failed"] = True
        else:
            row.update(measured_s=found["median"], measured_q1=found["q1"],
                       measured_q3=found["q3"], launches=found["values"],
                       ratio=parts["steady_s"] / found["median"],
                       analytic_ratio=parts["analytic_s"] / found["median"])
        print(f"bench model: {row['case']} (K={workload.sim_steps}): predicted "
              f"{row['predicted_s']:.4f} s/cycle, measured {row.get('measured_s', 'failed')}",
              flush=True)
        rows.append(row)
    choice = {"workload": name, "auto": chosen, "why": why, "costs": asdict(costs)}
    done = {r["division"]: r["measured_s"] for r in rows if not r.get("failed")}
    if len(done) == 2:   # a refused choice is not judged
        choice["measured_s"] = done
        choice["measured_faster"] = min(done, key=done.get)
        if chosen in done:
            choice["correct"] = done[chosen] <= (1 + SLACK) * min(done.values())
    return rows, choice


def run(options: dict) -> dict:
    """Predict and measure every workload; ``options['quick']`` runs one tiny one."""
    from tcoupled.runtime.errors import TcoupledError

    quick = options.get("quick", False)
    size = sizes(quick)
    override, source = bench_handoff(Path(options.get("out", ".")))
    rows, choices = [], []
    for name, spec in (QUICK if quick else WORKLOADS).items():
        try:
            found, choice = one_workload(name, spec, size, override, source)
        except TcoupledError as error:   # a failed calibration: say so, go on
            print(f"bench model: {name} failed: {str(error)[:500]}", flush=True)
            choices.append({"workload": name, "failed": str(error)[:2000]})
            continue
        rows.extend(found)
        choices.append(choice)
    done = [r for r in rows if not r.get("failed")]
    judged = [c for c in choices if "correct" in c]
    within = sum(abs(r["ratio"] - 1) <= 0.25 for r in done)
    analytic = sum(abs(r["analytic_ratio"] - 1) <= 0.25 for r in done)
    ratios = [r["solver_to_training"] for r in rows] or [float("nan")]
    head = {"cases": len(done), "launches_per_case": size["launches"],
            "within_25pct": within,
            "within_25pct_fraction": within / len(done) if done else float("nan"),
            "worst_error": max((abs(r["ratio"] - 1) for r in done), default=float("nan")),
            "analytic_within_25pct": analytic,  # the sums alone, without the measured cycles
            "auto_correct": sum(c["correct"] for c in judged), "auto_judged": len(judged),
            "auto_correct_fraction": (sum(c["correct"] for c in judged) / len(judged)
                                      if judged else float("nan")),
            "solver_to_training_range": [min(ratios), max(ratios)],
            "handoff_source": source}
    head["targets_met"] = (head["cases"] >= 12 and head["within_25pct_fraction"] >= 0.8
                           and head["auto_correct_fraction"] >= 0.9)
    return {**size, "handoff_source": source, "rows": rows, "choices": choices,
            "headline": head}
