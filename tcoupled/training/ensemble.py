"""Ensemble members' hyperparameters and their DDP process groups.

Nothing here imports torch at module level, so ``couple`` can validate the
ensemble flags before any rank pays for ``import torch``.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tcoupled.runtime.errors import ConfigError
from tcoupled.runtime.mpienv import env

#: ``--activation`` choices of the CNN (:mod:`.model`); the first is the default
ACTIVATIONS = ("tanh", "relu")
#: default peak learning rate of the cosine schedule is ``PEAK_LR_K / kernel_size`` ...
PEAK_LR_K = 0.03
#: ... for a run of at most this many optimizer steps (the main job's 8 x 20), less beyond
PEAK_STEPS = 160
#: default learning rate with ``--lr-schedule constant`` (the rate before the schedule)
CONSTANT_LR = 3e-3


def default_lr(kernel_size: int, schedule: str = "cosine", steps: int | None = None) -> float:
    """The default ``--lr`` of a member with ``kernel_size`` in a run of ``steps`` steps.

    With the cosine schedule the peak is ``0.03 / k`` (1e-2 for k = 3) for up to
    :data:`PEAK_STEPS` steps: a k x k kernel sums more weights per output cell, each
    moved by about ``lr`` per Adam step, so a larger kernel needs a smaller rate
    (measured on the main job's data: 1e-2 diverged at k = 5, ``0.03 / k`` trained
    k = 3, 5, 7 well). A longer run gets ``sqrt(PEAK_STEPS / steps)`` of that, the
    ``1 / sqrt(T)`` step size of a T-step budget in online convex optimisation:
    measured on 129^2 x 32 cycles x 40 iterations (1280 steps), 1e-2 blew up half-way
    (an Adam spike: the loss jumped from 1e-9 to 7e-3 and never recovered), 3.5e-3
    trained to a third of the earlier constant-rate error. A constant rate keeps 3e-3.
    """
    if schedule != "cosine":
        return CONSTANT_LR
    longer = math.sqrt(PEAK_STEPS / steps) if steps and steps > PEAK_STEPS else 1.0
    return PEAK_LR_K / max(kernel_size, 1) * longer


@dataclass(frozen=True)
class MemberParams:
    """Hyperparameters of one ensemble member (``lr`` ``None``: :func:`default_lr`)."""

    kernel_size: int = 3
    lr: float | None = None
    width: int = 8
    activation: str = ACTIVATIONS[0]

    def __post_init__(self) -> None:
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"--kernel-sizes needs odd positive sizes, got {self.kernel_size}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)}, "
                              f"got {self.activation!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.kernel_size))
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.width < 1:
            raise ConfigError(f"--width must be a positive integer, got {self.width}")

    def as_dict(self) -> dict:
        """Plain data for the summary."""
        return asdict(self)


def _pick(values: tuple | None, member: int, default: object, flag: str, ensemble: int
          ) -> object:
    if not values:
        return default
    if len(values) not in (1, ensemble):
        raise ConfigError(f"{flag} takes 1 or {ensemble} values (one per member), got "
                          f"{len(values)}: {' '.join(map(str, values))}")
    return values[member if len(values) > 1 else 0]


def member_params(ensemble: int, kernel_sizes: tuple[int, ...] | None = None,
                  lrs: tuple[float, ...] | None = None,
                  widths: tuple[int, ...] | None = None,
                  activations: tuple[str, ...] | None = None,
                  schedule: str = "cosine", steps: int | None = None
                  ) -> tuple[MemberParams, ...]:
    """Hyperparameters of every member: kernel sizes 3, 5, 7, ... unless given.

    Each of ``kernel_sizes``, ``lrs``, ``widths`` and ``activations`` holds one value
    for all members or one value per member; a member's default rate depends on its
    kernel size, the ``schedule`` and the run's optimizer ``steps`` (:func:`default_lr`).
    """
    members = []
    for i in range(ensemble):
        k = int(_pick(kernel_sizes, i, 3 + 2 * i, "--kernel-sizes", ensemble))
        members.append(MemberParams(
            kernel_size=k,
            lr=float(_pick(lrs, i, default_lr(k, schedule, steps), "--lr", ensemble)),
            width=int(_pick(widths, i, MemberParams.width, "--width", ensemble)),
            activation=str(_pick(activations, i, MemberParams.activation, "--activation",
                                 ensemble))))
    return tuple(members)


def _gloo_on_loopback() -> None:
    """Make gloo's pair sockets listen on the loopback interface for a one-host group.

    Without ``GLOO_SOCKET_IFNAME`` gloo binds to the address its hostname resolves
    to, usually the machine's external interface; a one-host job needs none of that.
    A value the user set is kept (gloo reads only this variable).
    """
    if "GLOO_SOCKET_IFNAME" in os.environ:
        return
    names = [name for _, name in socket.if_nameindex()]
    loopback = next((n for n in names if n == "lo" or n.startswith("lo")), None)
    if loopback is not None:
        os.environ["GLOO_SOCKET_IFNAME"] = loopback


def high_speed_name(hostname: str, resolves: Callable[[str], bool] | None = None) -> str:
    """The name of ``hostname`` on the high-speed network when there is one.

    On Polaris a node ``x3004c0s7b0n0`` is ``x3004c0s7b0n0.hsn.cm.polaris.alcf.anl.gov`` on
    Slingshot (ALCF's DDP example rendezvouses on the ``.hsn`` name); the first of
    ``SHORT.hsn.DOMAIN``, ``SHORT.hsn`` that resolves is used, else ``hostname``.
    """
    resolves = resolves or _resolves
    short, _, domain = hostname.partition(".")
    domain = domain.split(".", 1)[1] if domain.startswith("hsn.") else domain
    candidates = [f"{short}.hsn.{domain}" if domain else None, f"{short}.hsn"]
    return next((name for name in candidates if name and resolves(name)), hostname)


def _resolves(name: str) -> bool:
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        return False
    return True


def rendezvous_host(comm: Any, resolves: Callable[[str], bool] | None = None
                    ) -> tuple[bool, str]:
    """Whether the member's ranks share one host, and the host its store listens on.

    The host is that of the member's own rank 0 (not the job's first node: a member whose
    rank 0 is elsewhere rendezvouses there), on its high-speed name; rank 0 decides and
    broadcasts it over ``comm``, so every rank of the member uses the same name.
    """
    hosts = comm.allgather(socket.gethostname())
    one_host, name = len(set(hosts)) == 1, None
    if comm.Get_rank() == 0:
        name = hosts[0] if one_host else high_speed_name(_full_name(hosts[0]), resolves)
    return one_host, comm.bcast(name, root=0)


def _full_name(hostname: str) -> str:
    """``hostname`` with its domain (``socket.getfqdn`` of this host, asked only here)."""
    return hostname if "." in hostname else socket.getfqdn(hostname)


def member_backend(comm: Any, gpu: str | None) -> tuple[str, str]:
    """The DDP backend of one member, and why: NCCL only when each rank has its own GPU.

    ``gpu`` names this rank's physical GPU (:func:`tcoupled.runtime.gpu.current_gpu_identity`),
    ``None`` on the CPU. NCCL refuses two ranks of one communicator on one GPU ("Duplicate
    GPU detected"), which a one-GPU machine or more train ranks than GPUs gives; such a
    member all-reduces through gloo, which reads CUDA tensors too (staged through the
    host). Collective over ``comm`` (the member's ranks).
    """
    gpus = comm.allgather(gpu)
    if gpu is None:
        return "gloo", "training on the CPU"
    if len(set(gpus)) < len(gpus):
        return "gloo", (f"{len(gpus)} ranks share {len(set(gpus))} GPU(s) and NCCL needs "
                        "one GPU per rank")
    return "nccl", f"{len(gpus)} ranks on {len(gpus)} GPUs"


def init_member_group(comm: Any, backend: str, scratch: str | os.PathLike,
                      timeout_s: float = 120.0) -> Any:
    """Start the torch process group of one member over the MPI ranks of ``comm``.

    A one-rank member needs no group and no DDP: it returns ``None`` (the trainer
    then trains the bare model) and :func:`close_member_group` has nothing to do.
    The member's ranks are the whole torch world of this process. When they
    share a host, the rendezvous is a fresh :class:`FileStore` under ``scratch``
    (no listening socket); otherwise the member's rank 0 starts a :class:`TCPStore` on a
    free port of its own host's high-speed name (:func:`rendezvous_host`) and broadcasts
    the port: each member finds its own rendezvous, no script sets ``MASTER_ADDR``.
    ``TCOUPLED_RENDEZVOUS=file``
    uses the FileStore across nodes too (the run directory must then be on a
    file system all nodes share).
    """
    import datetime

    import torch.distributed as dist

    rank, size = comm.Get_rank(), comm.Get_size()
    if size == 1:
        return None
    timeout = datetime.timedelta(seconds=timeout_s)
    one_host, host = rendezvous_host(comm)
    if one_host:
        _gloo_on_loopback()
    if one_host or env("RENDEZVOUS") == "file":
        # a FileStore under the run directory: no listening socket at all (on a
        # shared file system it also works across nodes: TCOUPLED_RENDEZVOUS=file)
        name = comm.bcast(f".torch-store-{uuid.uuid4().hex}" if rank == 0 else None)
        store: Any = dist.FileStore(str(Path(scratch) / name), size)
    else:
        server = dist.TCPStore(host, 0, size, True, timeout=timeout) if rank == 0 else None
        port = comm.bcast(server.port if server is not None else None)
        store = server or dist.TCPStore(host, port, size, False, timeout=timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=size, timeout=timeout)
    comm.Barrier()
    if rank == 0 and (one_host or env("RENDEZVOUS") == "file"):
        Path(scratch, name).unlink(missing_ok=True)
    return dist.group.WORLD


def close_member_group(comm: Any) -> None:
    """Tear down the member's torch process group on every rank of ``comm`` together.

    Every object holding the group (the DDP model) must be released first: the
    group's gloo threads are then joined here, while the interpreter is alive,
    instead of at exit, where a late destructor aborts the process ("terminate
    called without an active exception"). The barriers keep a rank from tearing
    down gloo while a peer still talks to it.
    """
    import gc

    import torch.distributed as dist

    if comm.Get_size() == 1:
        return  # a one-rank member has no group (see init_member_group)
    gc.collect()
    comm.Barrier()
    dist.destroy_process_group()
    gc.collect()
    comm.Barrier()
