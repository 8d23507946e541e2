"""The multi-process GPU checks of ``run/device_check.sh``: real MPI jobs on one GPU.

Each check launches ``python -m tcoupled`` under ``mpiexec`` twice -- on the GPU and on
the CPU with the NumPy kernel (the CUDA kernel is compiled without FMA contraction, so it
rounds exactly as NumPy does) -- and compares what both wrote:

* ``halo``: ``wave`` in float64 on 4 ranks (a 2x2 process grid, every block with real
  neighbours) -- the device halo exchange against the NumPy run, max difference relative
  to the largest value (<= 1e-12);
* ``couple_time_shm_cuda_ipc``: ``couple`` in time division over ``shm`` (CUDA IPC between
  the sim and the train process) -- the same ``data_digest`` as the CPU run, every tensor
  at the solver's bytes with no copy but those of :data:`NOT_HANDOFF`, and the handoff time
  measured by the run itself;
* ``couple_space_mpi``: ``couple`` in space division over ``mpi`` on 2 sim + 2 train ranks,
  two members of one rank each -- the same ``data_digest`` as the CPU run;
* ``couple_space_ddp_shared_gpu``: one member of 2 train ranks on the one GPU. NCCL refuses
  two ranks on one GPU, so DDP all-reduces over gloo on CUDA tensors
  (:func:`tcoupled.training.ensemble.member_backend`); NCCL itself needs a machine with two
  GPUs -- the same ``data_digest`` as the CPU run, and the backend the run printed;
* ``ipc_handoff_1025``: the CUDA IPC handoff on a 1025^2 grid, against 129^2 above (a
  zero-copy handoff costs the same at both sizes);
* ``couple_space_ddp_nccl``, only on a machine with two GPUs or more: one member of 2 train
  ranks on 2 GPUs, DDP over NCCL -- the same ``data_digest`` as the CPU run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tcoupled.bench.launch import local_env, mpiexec
from tcoupled.runtime.jobs import run_group
from tcoupled.runtime.mpienv import env

WAVE = ("wave", "--grid", "1025", "1025", "--steps", "200", "--dtype", "float64",
        "--init", "gaussian", "--pulses", "3", "--seed", "5", "--quiet")
COUPLE = ("couple", "--grid", "129", "129", "--dtype", "float32", "--sim-steps", "8",
          "--train-iters", "5", "--cycles", "4", "--rollout", "2", "--no-report", "--quiet")
TIME_IPC = ("--sim-ranks", "1", "--train-ranks", "1", "--division", "time", "--channel", "shm")
SPACE_MPI = ("--sim-ranks", "2", "--train-ranks", "2", "--ensemble", "2", "--division", "space",
             "--channel", "mpi")
SPACE_DDP = ("--sim-ranks", "1", "--train-ranks", "2", "--division", "space", "--channel", "mpi")
GPU = ("--device", "cuda", "--kernel", "cupy")
#: the one-GPU checks' environment: on a machine with more GPUs ``plan`` would give a
#: 1+1 ``shm`` pair (or a 2-rank member) two GPUs, which CUDA IPC cannot span
ONE_GPU = {"CUDA_VISIBLE_DEVICES": "0"}
CPU = ("--device", "cpu", "--kernel", "numpy")


def _time_left(timeout: float) -> float:
    """``timeout``, cut to what is left before ``TCOUPLED_DEVICE_DEADLINE`` (epoch seconds).

    So the device script's whole run stays within its budget and still writes its report.
    """
    import time

    deadline = float(env("DEVICE_DEADLINE") or "inf")
    return max(5.0, min(timeout, deadline - time.time()))


def launch(ranks: int, args: tuple[str, ...], out: Path, timeout: float = 180,
           env: dict[str, str] | None = None) -> dict:
    """Run ``python -m tcoupled ARGS --out OUT`` on ``ranks`` ranks; return what happened."""
    timeout = _time_left(timeout)
    cmd = [mpiexec(), "-n", str(ranks), sys.executable, "-m", "tcoupled", *args,
           "--out", str(out)]
    try:  # in a session of its own: a timeout kills every rank, not only mpiexec
        proc = run_group(cmd, timeout, local_env(env))
    except TimeoutError:
        return {"ok": False, "detail": f"timed out after {timeout:g} s: {' '.join(cmd)}"}
    if proc.returncode != 0:
        return {"ok": False, "detail": f"exit {proc.returncode}: {' '.join(cmd)}\n"
                                       f"{proc.stderr.strip()[-1500:]}"}
    return {"ok": True, "summary": json.loads((out / "summary.json").read_text())}


def _field(out: Path) -> Any:
    import h5py

    with h5py.File(out / "results.h5", "r") as f:
        return f["wave/u"][...]


def check_halo(work: Path) -> dict:
    """Device halo on 4 ranks against the NumPy run of the same flags."""
    import numpy as np

    runs = {name: launch(4, (*WAVE, "--kernel", kernel), work / f"wave-{name}")
            for name, kernel in (("gpu", "cupy"), ("cpu", "numpy"))}
    bad = [r["detail"] for r in runs.values() if not r["ok"]]
    if bad:
        return {"ok": False, "detail": bad[0]}
    gpu, cpu = _field(work / "wave-gpu"), _field(work / "wave-cpu")
    diff = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
    log = (work / "wave-gpu" / "run.log").read_text().splitlines()
    aware = next((line.split("wave: ", 1)[-1] for line in log if "CUDA-aware" in line), "")
    return {"ok": diff <= 1e-12, "figure": diff, "unit": "max |gpu - numpy| / max |u|",
            "dims": runs["gpu"]["summary"].get("dims"), "bitwise": bool((gpu == cpu).all()),
            "cuda_aware_mpi": aware}


def check_couple(work: Path, name: str, layout: tuple[str, ...], ranks: int,
                 env: dict[str, str] | None = None) -> dict:
    """``couple`` on the GPU and on the CPU: both succeed with the same data digest."""
    gpu = launch(ranks, (*COUPLE, *layout, *GPU, "--verify"), work / f"{name}-gpu", env=env)
    cpu = launch(ranks, (*COUPLE, *layout, *CPU, "--verify"), work / f"{name}-cpu")
    for run in (gpu, cpu):
        if not run["ok"]:
            return {"ok": False, "detail": run["detail"]}
    g, c = gpu["summary"], cpu["summary"]
    same = g["data_digest"] == c["data_digest"]
    result = {"ok": same and g.get("member_digests_agree", True), "verify": True,
              "data_digest_gpu": g["data_digest"], "data_digest_cpu": c["data_digest"],
              "handoff_s_per_handoff": g["handoff_s_per_handoff"],
              "handoff_bytes_copied": g["handoff_bytes_copied"]}
    log = (work / f"{name}-gpu" / "run.log").read_text().splitlines()
    ddp = [line.split(": ", 2)[-1] for line in log if "DDP gradients" in line]
    if ddp:
        result["ddp"] = ddp[0]
    if "shm" in layout:
        result["ok"] = result["ok"] and _zero_copy(g)
        result.update(figure=g["handoff_s_per_handoff"] * 1e6, unit="us per IPC handoff",
                      steady_us=_steady_us(g), handoff_copies=g["handoff_copies"])
    return result


#: copies a zero-copy handoff still counts: the trainer's float32 cast, the carried
#: frame of a device slot (GPU slots are not ring windows) and --verify's digest reads
NOT_HANDOFF = ("cast", "carry", "digest")


def _zero_copy(summary: dict) -> bool:
    """Every tensor read the solver's bytes in place, and no other copy was counted."""
    moved = sum(n for kind, n in summary["handoff_copies"].items() if kind not in NOT_HANDOFF)
    return bool(summary["zero_copy_verified"]) and moved == 0


def check_ipc_size(work: Path, small: dict) -> dict:
    """The IPC handoff on a 1025^2 grid, the GPU run alone; ``small`` is the 129^2 check."""
    args = [*COUPLE, *TIME_IPC, *GPU]
    args[args.index("--grid") + 1:args.index("--grid") + 3] = ["1025", "1025"]
    run = launch(2, tuple(args), work / "ipc-1025", env=ONE_GPU)
    if not run["ok"]:
        return {"ok": False, "detail": run["detail"]}
    s = run["summary"]
    return {"ok": _zero_copy(s), "figure": s["handoff_s_per_handoff"] * 1e6,
            "unit": "us per IPC handoff at 1025^2", "at_129_us": small.get("figure"),
            "steady_us": _steady_us(s), "at_129_steady_us": small.get("steady_us"),
            "handoff_copies": s["handoff_copies"]}


def _steady_us(summary: dict) -> float | None:
    """Microseconds per handoff after the first cycle (``None`` if the run had one)."""
    steady = summary.get("handoff_s_per_handoff_steady")
    return None if steady is None else steady * 1e6


def run_all(work: Path) -> dict[str, dict]:
    """Every multi-process check, by name."""
    work.mkdir(parents=True, exist_ok=True)
    checks = {"halo_4ranks_float64": check_halo(work),
              "couple_time_shm_cuda_ipc": check_couple(work, "time-ipc", TIME_IPC, 2,
                                                       env=ONE_GPU)}
    checks["ipc_handoff_1025"] = check_ipc_size(work, checks["couple_time_shm_cuda_ipc"])
    checks["couple_space_mpi"] = check_couple(work, "space-mpi", SPACE_MPI, 4)
    ddp = check_couple(work, "space-ddp", SPACE_DDP, 3, env=ONE_GPU)
    ddp["ok"] = ddp["ok"] and "over gloo" in ddp.get("ddp", "")
    checks["couple_space_ddp_shared_gpu"] = ddp
    checks.update(check_nccl(work))
    return checks


def check_nccl(work: Path) -> dict[str, dict]:
    """DDP over NCCL: one member of 2 train ranks on 2 GPUs (2 sim ranks beside them).

    ``plan``'s rule puts the two train ranks on different GPUs; nothing is checked on a
    machine with one GPU (NCCL refuses two ranks on one GPU).
    """
    from tcoupled.runtime.gpu import cuda_device_count

    if cuda_device_count() < 2:
        return {}
    layout = ("--sim-ranks", "2", "--train-ranks", "2", "--division", "space",
              "--channel", "mpi")
    nccl = check_couple(work, "space-nccl", layout, 4)
    nccl["ok"] = nccl["ok"] and "over nccl" in nccl.get("ddp", "")
    return {"couple_space_ddp_nccl": nccl}
