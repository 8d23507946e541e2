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

from tcoupled.coupling.channels import ChannelContext, SlotSpec, open_channel, slots_for
from tcoupled.coupling.channels.copies import CopyLedger
from tcoupled.coupling.schedule import (
    DigestLog,
    Schedule,
    run_inproc_cycles,
    run_sim_cycles,
    run_train_cycles,
)
from tcoupled.runtime.faults import inject
from tcoupled.runtime.stopping import StopRequested, StopVote
from tcoupled.runtime.telemetry import PhaseTimer


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
        self.ledger = CopyLedger()  # every copy of field data this rank makes
        self.digests = DigestLog(self.timer, self.ledger, getattr(config, "verify", False))
        self.cast_bytes = 0  # of those, the float32 casts for training (kind "cast")
        self.cycle_ends: list[float] = []  # seconds from the loop's start to each cycle's end
        self.first_handoff_s = 0.0  # the handoff phase's seconds up to the first cycle's end

    # -- set-up --------------------------------------------------------------------
    def _setup(self) -> Any:
        import torch

        torch.set_num_threads(1)
        spec = None
        if self.layout.role == "sim":
            from tcoupled.sim.solver import WaveSolver

            self.solver = WaveSolver(self.config.wave, self.layout.role_comm,
                                     check_every=self.config.check_every)
            spec = SlotSpec(self.config.sim_steps + 1, tuple(self.solver.local_shape),
                            self.config.wave.dtype, pad=1, carried=1)  # the solver steps in it
        self.specs = self.world.allgather(spec)
        self.offsets = self.world.allgather(self.solver.offset if self.solver else None)
        xp_name = self.world.bcast(self.solver.xp.__name__ if self.solver else None, root=0)
        self.xp = __import__(xp_name)
        ctx = ChannelContext(world=self.world, node_comm=self.layout.node_comm,
                             staging_dir=Path(self.config.out) / "staging", timer=self.timer,
                             xp=self.xp, ledger=self.ledger,
                             slots=slots_for(self.config.division))
        channel = open_channel(self.config.channel, ctx, spec)
        if self.trains:
            self.trainer = self._build_trainer()
        if self.config.resume_cycle:
            self._restore(self.config.resume_cycle)
        self.vote = StopVote(self.world)
        return channel

    def _restore(self, cycle: int) -> None:
        """Continue from this rank's part of the checkpoint after ``cycle`` cycles."""
        from tcoupled.coupling.checkpoint import load_rank_state, restore_solver, restore_trainer

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

        from tcoupled.training.model import build_model
        from tcoupled.training.replay import ReplayBuffer
        from tcoupled.training.schedule import make_schedule
        from tcoupled.training.trainer import Trainer

        gpu = self.xp.__name__ == "cupy"
        device = torch.device("cpu")
        if gpu:  # the GPU Layout.bind_gpu chose (plan's rule), for torch too
            device = torch.device("cuda", self.layout.gpu or 0)
            torch.cuda.set_device(device)
        group = self._member_group(gpu)
        params = self.config.members[self.member]
        seed = self.config.wave.seed
        model = build_model(params, device=device, seed=seed * 1000 + self.member)
        replay = ReplayBuffer(self.config.replay,
                              (seed, self.member, self.member_comm.Get_rank()))
        schedule = make_schedule(self.config.lr_schedule,
                                 self.config.cycles * self.config.train_iters, self.config.warmup)
        return Trainer(model, params.lr, device, group, self.timer,
                       self.config.batch_size or None, replay, schedule=schedule)

    def _member_group(self, gpu: bool) -> Any:
        """The member's DDP group (``None`` for a one-rank member), over NCCL or gloo.

        The backend is :func:`~tcoupled.training.ensemble.member_backend`'s choice,
        printed by the member's first rank when the member has several.
        """
        from tcoupled.runtime.gpu import current_gpu_identity
        from tcoupled.training.ensemble import init_member_group, member_backend

        identity = (self.layout.gpu_identity or current_gpu_identity()) if gpu else None
        backend, why = member_backend(self.member_comm, identity)
        if self.member_comm.Get_size() > 1 and self.member_comm.Get_rank() == 0:
            self.log.info(f"member {self.member}: DDP gradients all-reduced over {backend} "
                          f"({why})")
        return init_member_group(self.member_comm, backend, self.config.out)

    def _train(self, tensors: list[Any]) -> None:
        """Cast each slot once to float32 (a counted copy), add context, train."""
        from tcoupled.training.samples import as_training_dtype, member_windows

        sources = self.layout.info.sources if not self.inproc else [self.world.Get_rank()]
        blocks = []
        with self.timer.phase("cast"):
            for source, tensor in zip(sources, tensors, strict=True):
                cast, copied = as_training_dtype(tensor)
                self.ledger.count(copied, "cast")  # counted where it is made
                self.cast_bytes += copied
                blocks.append((self.offsets[source], cast))
        with self.timer.phase("context"):
            samples = member_windows(self.member_comm, blocks, self.config.wave.grid,
                                     self.trainer.module.radius)
        self.trainer.train(samples, self.config.train_iters)

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
        """Save this rank's state after ``done`` cycles (see :mod:`..checkpoint`)."""
        from tcoupled.coupling.checkpoint import save_rank_state, solver_state, trainer_state

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
                    "stopped": stop.cycle, "signal": stop.signum}
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
    def _held_out(self) -> tuple[Any, Any, list[Any]] | None:
        """Sim ranks: solve the held-out initial condition (:mod:`..evaluate`)."""
        if self.solver is None:
            return None
        from tcoupled.coupling.evaluate import held_out_trajectory

        return held_out_trajectory(self.config, self.layout.role_comm)

    def _evaluate(self) -> dict:
        """Rollout errors, member-averaged losses and the DDP parameter spread."""
        held_out = self._held_out()
        sim0 = self.layout.plan.of_role("sim")[0].rank
        held_out = self.world.bcast(held_out, root=sim0)
        fields = {"start": held_out[1], "truth": held_out[2][-1] if held_out[2] else None}
        if self.trainer is None:
            return {"fields": fields} if self.world.Get_rank() == 0 else {}
        from tcoupled.coupling.evaluate import rollout_errors
        from tcoupled.runtime.mpienv import init_mpi

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
        return {"leader": True, "losses": (losses / comm.Get_size()).tolist(),
                "param_spread": float(np.max(high - low)), "parameters": flat,
                **rollout_errors(self.trainer.model, held_out, self.trainer.device),
                **({"fields": fields} if self.world.Get_rank() == 0 else {})}

    def _record(self, wall: float) -> dict:
        phases = dict(self.timer.as_dict())
        if self.solver is not None:
            for name, seconds in self.solver.timers.as_dict().items():
                phases[name] = phases.get(name, 0.0) + seconds
        receivers = [e for e in self.endpoints if hasattr(e, "received")]
        senders = [e for e in self.endpoints if hasattr(e, "in_place")]
        in_place = all(s.in_place and s.zero_copy for s in senders)
        return {"rank": self.layout.info.rank, "role": self.layout.role,
                "trains": self.trains, "member": self.member if self.trains else None,
                "wall_s": wall, "phases": phases, "cycle_ends_s": self.cycle_ends,
                "bytes_copied": self.ledger.bytes, "copies": self.ledger.as_dict(),
                "first_handoff_s": self.first_handoff_s,
                "zero_copy_verified": in_place and all(r.verified for r in receivers),
                "handoffs": sum(r.received for r in receivers),
                "digests": self.digests.entries, **self._trainer_record()}

    def _trainer_record(self) -> dict:
        """Training side: bytes of the float32 casts and of the replay buffer."""
        if self.trainer is None:
            return {}
        replay = self.trainer.replay
        return {"cast_bytes": self.cast_bytes, "replay_samples": len(replay),
                "replay_bytes": replay.nbytes, "replay_bytes_copied": replay.bytes_copied}


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
        self.rank.cycle_ends.append(time.perf_counter() - self.start)
        if len(self.rank.cycle_ends) == 1:  # the first cycle's set-up, apart from the rest
            self.rank.first_handoff_s = self.rank.timer.totals.get("handoff", 0.0)
        inject(layout.role, "cycle", done, layout.role_comm.Get_rank())
        stop = self.rank.vote(done, last=done == config.cycles)
        if self.rank.solver is not None and config.check_every:
            self.rank.solver.check_finite()  # never checkpoint a field holding NaN
        if stop or (config.checkpoint_every and done % config.checkpoint_every == 0):
            self.rank.checkpoint(done)
        if stop:
            raise StopRequested(done, self.rank.vote.signum)
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


