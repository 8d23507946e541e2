"""One rank of a coupled run (sim or train), and the run's summary.

:class:`CoupledRank` composes the solver, a channel and a trainer according to
the rank's role; :func:`write_outputs` turns every rank's record into
``summary.json`` and ``results.h5`` on rank 0. torch is imported lazily.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from tcoupled.channels import ChannelContext, SlotSpec, open_channel
from tcoupled.faults import inject
from tcoupled.schedule import (
    DigestLog,
    Schedule,
    combine_digests,
    run_inproc_cycles,
    run_sim_cycles,
    run_train_cycles,
)
from tcoupled.stopping import StopRequested, StopVote
from tcoupled.telemetry import PhaseTimer

SOLVING = ("sim", "halo")
TRAINING = ("train", "allreduce")


class CoupledRank:
    """Everything one rank does in ``couple``; :meth:`run` returns its record."""

    def __init__(self, config: Any, layout: Any, log: Any) -> None:
        self.config, self.layout, self.log = config, layout, log
        self.world = layout.world
        self.timer = PhaseTimer()
        self.inproc = config.train_ranks == 0
        self.trains = layout.role == "train" or self.inproc
        self.solver: Any = None
        self.trainer: Any = None
        self.endpoints: list[Any] = []
        self.digests = DigestLog(self.timer)

    # -- set-up --------------------------------------------------------------------
    def _setup(self) -> Any:
        import torch

        torch.set_num_threads(1)
        spec = None
        if self.layout.role == "sim":
            from tcoupled.solver import WaveSolver

            self.solver = WaveSolver(self.config.wave, self.layout.role_comm,
                                     check_every=self.config.check_every)
            spec = SlotSpec(self.config.sim_steps + 1, tuple(self.solver.local_shape),
                            self.config.wave.dtype)
        self.specs = self.world.allgather(spec)
        xp_name = self.world.bcast(self.solver.xp.__name__ if self.solver else None, root=0)
        self.xp = __import__(xp_name)
        ctx = ChannelContext(world=self.world, node_comm=self.layout.node_comm,
                             staging_dir=Path(self.config.out) / "staging", timer=self.timer,
                             xp=self.xp)
        channel = open_channel(self.config.channel, ctx, spec)
        if self.trains:
            self.trainer = self._build_trainer()
        if self.config.resume_cycle:
            self._restore(self.config.resume_cycle)
        self.vote = StopVote(self.world)
        return channel

    def _restore(self, cycle: int) -> None:
        """Continue from this rank's part of the checkpoint after ``cycle`` cycles."""
        from tcoupled.checkpoint import load_rank_state, restore_solver, restore_trainer

        state = load_rank_state(self.config.out, cycle, self.world.Get_rank())
        if self.solver is not None:
            restore_solver(self.solver, state["solver"])
        if self.trainer is not None:
            self.digests.entries = restore_trainer(self.trainer, state["trainer"])

    @property
    def member(self) -> int:
        """Ensemble member this rank trains (0 for in-process training)."""
        return 0 if self.inproc else self.layout.info.member

    @property
    def member_comm(self) -> Any:
        """MPI ranks training the same member (DDP group)."""
        return self.layout.role_comm if self.inproc else self.layout.member_comm

    def _build_trainer(self) -> Any:
        import torch

        from tcoupled.training.ensemble import init_member_group
        from tcoupled.training.model import build_model
        from tcoupled.training.trainer import Trainer

        gpu = self.xp.__name__ == "cupy"
        device = torch.device("cuda", torch.cuda.current_device()) if gpu else torch.device("cpu")
        group = init_member_group(self.member_comm, "nccl" if gpu else "gloo", self.config.out)
        params = self.config.members[self.member]
        model = build_model(params, self.config.wave.dtype, device,
                            seed=self.config.wave.seed * 1000 + self.member)
        return Trainer(model, params.lr, device, group, self.timer,
                       self.config.batch_size or None)

    def _train(self, tensors: list[Any]) -> None:
        from tcoupled.training.trainer import pairs_from_frames

        self.trainer.train([pairs_from_frames(t) for t in tensors], self.config.train_iters)

    # -- the coupled loop -------------------------------------------------------------
    def _loop(self, channel: Any) -> None:
        config, info = self.config, self.layout.info
        first = config.resume_cycle
        schedule = Schedule(config.division, config.cycles, config.sim_steps, first)
        left = config.cycles - first
        hook = CycleProgress(self, first)
        if self.inproc:
            sender = channel.sender(())
            receiver = channel.receiver(info.rank, self.specs[info.rank], left)
            self.endpoints = [sender, receiver]
            run_inproc_cycles(self.solver, sender, receiver, schedule, info.role_index,
                              self._train, self.digests, self.timer, hook)
        elif self.layout.role == "sim":
            sender = channel.sender(info.feeds)
            self.endpoints = [sender]
            run_sim_cycles(self.solver, sender, schedule, self.timer, hook)
        else:
            receivers = [channel.receiver(s, self.specs[s], left) for s in info.sources]
            self.endpoints = receivers
            sim_indices = [self.layout.plan.ranks[s].role_index for s in info.sources]
            run_train_cycles(receivers, sim_indices, config.cycles, self._train, self.digests,
                             first, hook)

    def checkpoint(self, done: int) -> None:
        """Save this rank's state after ``done`` cycles (see :mod:`tcoupled.checkpoint`)."""
        from tcoupled.checkpoint import save_rank_state, solver_state, trainer_state

        state: dict = {"cycle": done}
        with self.timer.phase("checkpoint"):
            if self.solver is not None:
                state["solver"] = solver_state(self.solver)
            if self.trainer is not None:
                state["trainer"] = trainer_state(self.trainer, self.digests.entries)
            save_rank_state(self.config.out, done, self.world.Get_rank(), state)

    @property
    def leads(self) -> bool:
        """Whether this rank prints progress: rank 0 of the sim ranks or of a member."""
        if self.trains:
            return self.member_comm.Get_rank() == 0
        return self.layout.role_comm.Get_rank() == 0

    def run(self) -> dict:
        """Set up, run the cycles, roll out, and return this rank's record.

        A run stopped by SIGTERM returns ``{"stopped": cycle, ...}`` right after
        the checkpoint of that cycle (every sim/train rank stops at the same cycle).
        """
        channel = self._setup()
        self.world.Barrier()
        start = time.perf_counter()
        try:
            self._loop(channel)
        except StopRequested as stop:
            self._close_training()
            return {"rank": self.layout.info.rank, "role": self.layout.role,
                    "stopped": stop.cycle}
        self.vote.close()
        wall = time.perf_counter() - start
        channel.close()
        record = self._record(wall)
        record.update(self._evaluate())
        self._close_training()
        if self.solver is not None:
            self.solver.close()
        return record

    def _close_training(self) -> None:
        """Tear down the member's process group together (no rank leaves gloo early)."""
        if self.trainer is None:
            return
        from tcoupled.training.ensemble import close_member_group

        self.trainer = None  # DDP holds the process group: release it before tearing down
        close_member_group(self.member_comm)

    # -- after training ---------------------------------------------------------------
    def _held_out(self) -> tuple[Any, list[Any]] | None:
        """Sim ranks: step past the training data and gather the held-out trajectory."""
        if self.solver is None:
            return None
        self.solver.step()
        start = self.solver.gather(root=0)
        truth = []
        for _ in range(self.config.rollout):
            self.solver.step()
            truth.append(self.solver.gather(root=0))
        return start, truth

    def _evaluate(self) -> dict:
        """Rollout errors, member-averaged losses and the DDP parameter spread."""
        held_out = self._held_out()
        sim0 = self.layout.plan.of_role("sim")[0].rank
        start, truth = self.world.bcast(held_out, root=sim0)
        fields = {"start": start, "truth": truth[-1] if truth else None}
        if self.trainer is None:
            return {"fields": fields} if self.world.Get_rank() == 0 else {}
        from tcoupled.mpienv import init_mpi
        from tcoupled.training.trainer import relative_l2, rollout

        MPI = init_mpi()
        comm = self.member_comm
        losses = np.array(self.trainer.losses, dtype=float)
        comm.Allreduce(MPI.IN_PLACE, losses, op=MPI.SUM)
        flat = np.concatenate([p.detach().cpu().numpy().ravel().astype(float)
                               for p in self.trainer.module.parameters()])
        high, low = flat.copy(), flat.copy()
        comm.Allreduce(MPI.IN_PLACE, high, op=MPI.MAX)
        comm.Allreduce(MPI.IN_PLACE, low, op=MPI.MIN)
        if comm.Get_rank() != 0:
            return {"fields": fields} if self.world.Get_rank() == 0 else {}
        predicted = rollout(self.trainer.model, start, self.config.rollout,
                            self.trainer.device)
        return {"leader": True, "losses": (losses / comm.Get_size()).tolist(),
                "param_spread": float(np.max(high - low)), "parameters": flat,
                "prediction": predicted[-1] if predicted else None,
                "rollout_rel_l2": relative_l2(predicted, truth),
                **({"fields": fields} if self.world.Get_rank() == 0 else {})}

    def _record(self, wall: float) -> dict:
        phases = dict(self.timer.as_dict())
        if self.solver is not None:
            for name, seconds in self.solver.timers.as_dict().items():
                phases[name] = phases.get(name, 0.0) + seconds
        receivers = [e for e in self.endpoints if hasattr(e, "received")]
        return {"rank": self.layout.info.rank, "role": self.layout.role,
                "trains": self.trains, "member": self.member if self.trains else None,
                "wall_s": wall, "phases": phases,
                "bytes_copied": sum(e.bytes_copied for e in self.endpoints),
                "handoffs": sum(r.received for r in receivers),
                "digests": self.digests.entries}


class CycleProgress:
    """Called after each finished cycle: checkpoint when due, one progress line if leader."""

    def __init__(self, rank: CoupledRank, first: int) -> None:
        self.rank, self.first = rank, first
        self.start = time.perf_counter()

    def __call__(self, done: int) -> None:
        """Run after cycle ``done - 1`` finished on this rank.

        Raises
        ------
        StopRequested
            When the ranks agreed to stop on SIGTERM (after this cycle's checkpoint).
        """
        config, layout = self.rank.config, self.rank.layout
        inject(layout.role, "cycle", done, layout.role_comm.Get_rank())
        stop = self.rank.vote(done, last=done == config.cycles)
        if self.rank.solver is not None and config.check_every:
            self.rank.solver.check_finite()  # never checkpoint a field holding NaN
        if stop or (config.checkpoint_every and done % config.checkpoint_every == 0):
            self.rank.checkpoint(done)
        if stop:
            raise StopRequested(done)
        if not self.rank.leads:
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (done - self.first) * (config.cycles - done)
        if self.rank.trains:
            loss = self.rank.trainer.losses[-1] if self.rank.trainer.losses else float("nan")
            who, what = f"train m{self.rank.member}", f"loss {loss:.3e}"
        else:
            who, what = "sim", f"step {self.rank.solver.steps_done}"
        self.rank.log.info(f"{who}: cycle {done}/{config.cycles}, {what}, "
                           f"elapsed {elapsed:.1f} s, ETA {eta:.1f} s")


# -- summary on rank 0 ---------------------------------------------------------------
def time_breakdown(records: list[dict]) -> dict:
    """Mean seconds per phase for each role, with ``other`` = wall minus the phases."""
    roles: dict[str, list[dict]] = {}
    for record in records:
        roles.setdefault(record["role"], []).append(record)
    breakdown = {}
    for role, members in roles.items():
        names = sorted({name for r in members for name in r["phases"]})
        mean = {name: float(np.mean([r["phases"].get(name, 0.0) for r in members]))
                for name in names}
        mean["wall"] = float(np.mean([r["wall_s"] for r in members]))
        mean["other"] = max(0.0, mean["wall"] - sum(mean[n] for n in names))
        breakdown[role] = {"ranks": len(members), **mean}
    return breakdown


def coupling_overhead(records: list[dict]) -> float:
    """Fraction of the sim and train ranks' wall time spent neither solving nor training."""
    records = [r for r in records if r["role"] != "farm"]
    wall = sum(r["wall_s"] for r in records)
    useful = sum(r["phases"].get(name, 0.0) for r in records for name in SOLVING + TRAINING)
    return max(0.0, 1.0 - useful / wall) if wall > 0 else 0.0


def _member_digests(records: list[dict]) -> dict[int, str]:
    entries: dict[int, list] = {}
    for record in records:
        if record["trains"]:
            entries.setdefault(record["member"], []).extend(map(tuple, record["digests"]))
    return {member: combine_digests(items) for member, items in sorted(entries.items())}


def _members(config: Any, records: list[dict]) -> list[dict]:
    leaders = {r["member"]: r for r in records if r.get("leader")}
    members = []
    for index, params in enumerate(config.members):
        losses = leaders[index]["losses"]
        members.append({"member": index, **params.as_dict(),
                        "ranks": sum(1 for r in records if r["trains"] and r["member"] == index),
                        "first_loss": losses[0], "last_loss": losses[-1],
                        "loss_ratio": losses[-1] / losses[0] if losses[0] else None,
                        "param_spread": leaders[index]["param_spread"]})
    return members


def build_summary(config: Any, records: list[dict]) -> dict:
    """Return the key figures of a coupled run (stable key names; see the README)."""
    from tcoupled.farm_role import farm_phases, farm_summary

    farm_phases(records)
    everyone, records = records, [r for r in records if r["role"] != "farm"]
    digests = _member_digests(records)
    handoffs = sum(r["handoffs"] for r in records)
    handoff_s = sum(r["phases"].get("handoff", 0.0) for r in records)
    leaders = sorted((r for r in records if r.get("leader")), key=lambda r: r["member"])
    return {
        "command": "couple", "division": config.division, "channel": config.channel,
        "sim_ranks": config.sim_ranks, "train_ranks": config.train_ranks,
        "ensemble": config.ensemble, "cycles": config.cycles,
        "sim_steps": config.sim_steps, "train_iters": config.train_iters,
        "grid": list(config.wave.grid), "dtype": config.wave.dtype,
        "handoffs": handoffs,
        "handoff_bytes_copied": int(sum(r["bytes_copied"] for r in records)),
        "handoff_s_per_handoff": handoff_s / handoffs if handoffs else 0.0,
        "samples_per_handoff": config.sim_steps,
        "data_digest": digests[0], "member_digests_agree": len(set(digests.values())) == 1,
        "members": _members(config, records),
        "rollout_rel_l2": [r["rollout_rel_l2"] for r in leaders],
        "time_breakdown": time_breakdown(everyone),
        "coupling_overhead": coupling_overhead(records),
        "wall_s": max(r["wall_s"] for r in everyone),
        "farm_ranks": config.farm_ranks, "farm": farm_summary(everyone),
        "resumed_from_cycle": config.resume_cycle,
        "checkpoints": _checkpoints(config),
    }


def _checkpoints(config: Any) -> list[int]:
    from tcoupled.checkpoint import complete_cycles

    return complete_cycles(config.out, config.sim_ranks + config.train_ranks)


def config_dict(config: Any) -> dict:
    """Plain-data view of a ``couple`` configuration, for ``results.h5``."""
    from dataclasses import asdict

    data = asdict(config)
    data["members"] = [m.as_dict() for m in config.members]
    data["farm"] = asdict(config.farm) if config.farm is not None else None
    return data


def _write_fields(h5: Any, records: list[dict]) -> None:
    """Held-out fields: the solver's start and last rollout state, each member's prediction."""
    fields = next((r["fields"] for r in records if r.get("fields")), None)
    if fields is None:
        return
    group = h5.create_group("fields")
    group.attrs["description"] = ("held-out solver fields (global arrays): 'start' is where "
                                  "the rollout begins, 'truth' the solver after --rollout "
                                  "steps; members/N/prediction is the surrogate's")
    for name, value in fields.items():
        if value is not None:
            group[name] = np.asarray(value)


def write_outputs(config: Any, records: list[dict], log: Any) -> dict:
    """Write ``summary.json`` and ``results.h5``; log the key figures."""
    from tcoupled.store import open_results, write_summary

    summary = build_summary(config, records)
    with open_results(config.out, config_dict(config), "couple") as h5:
        for member, errors in zip(summary["members"], summary["rollout_rel_l2"], strict=True):
            group = h5.create_group(f"members/{member['member']}")
            group.attrs.update({k: v for k, v in member.items() if v is not None})
            group["rollout_rel_l2"] = np.asarray(errors)
            losses = next(r["losses"] for r in records
                          if r.get("leader") and r["member"] == member["member"])
            group["loss"] = np.asarray(losses)
            leader = next(r for r in records
                          if r.get("leader") and r["member"] == member["member"])
            group["parameters"] = np.asarray(leader["parameters"])
            if leader.get("prediction") is not None:
                group["prediction"] = np.asarray(leader["prediction"])
        _write_fields(h5, records)
    write_summary(config.out, summary)
    log.info(f"couple: {config.division} division, channel {config.channel}, "
             f"{config.sim_ranks} sim + {config.train_ranks} train rank(s), "
             f"{summary['handoffs']} handoffs, {summary['handoff_bytes_copied']} bytes copied")
    for member, errors in zip(summary["members"], summary["rollout_rel_l2"], strict=True):
        log.info(f"  member {member['member']} (k={member['kernel_size']}): loss "
                 f"{member['first_loss']:.3e} -> {member['last_loss']:.3e}, rollout rel L2 "
                 f"{' '.join(f'{e:.3f}' for e in errors)}")
    log.info(f"  wall {summary['wall_s']:.3f} s, coupling overhead "
             f"{summary['coupling_overhead']:.1%}; results in {config.out}")
    return summary
