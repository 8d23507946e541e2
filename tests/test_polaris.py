"""The Polaris PBS scripts, run end to end on a fake Polaris (no PBS, no GPU, no network).

Each script runs under ``bash -l`` as PBS would run it, with fake ``module``/``conda``
shell functions that -- like conda's activation scripts -- read unset variables (so they
fail under ``set -u``), a fake node file, and a fake ``mpiexec`` that applies the
``--ppn``/``--depth``/``--cpu-bind`` binding it is given, runs the GPU wrapper for every
rank and records what each rank would get. Rank by rank: the GPU is the one nearest the
rank's cores by ALCF's table (GPU 0 by cores 24-31, GPU 3 by cores 0-7), it is what
``plan`` prints, and every ``shm`` pair shares a GPU.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tcoupled.placement.affinity import nearest_gpu
from tcoupled.placement.plan import RoleCounts, plan_ranks

REPO = Path(__file__).resolve().parents[1]
PBS = sorted(REPO.glob("run/polaris/*.pbs"))

FAKE_MPIEXEC = '''#!{python}
import json, os, subprocess, sys
args, opts = sys.argv[1:], {{}}
while args and args[0].startswith("-"):
    key = args.pop(0)
    opts[key] = args.pop(0)
log = open(os.environ["FAKE_LOG"], "a")
if any(a.endswith("mps.sh") for a in args):
    log.write(json.dumps({{"mps": args[-1], "n": int(opts["-n"])}}) + "\\n")
    sys.exit(0)
n, ppn, bind = int(opts["-n"]), int(opts["--ppn"]), opts["--cpu-bind"]
ranks = []
for rank in range(n):
    local = rank % ppn
    if bind == "depth":
        depth = int(opts["--depth"])
        cores = list(range(local * depth, (local + 1) * depth))
    else:
        cores = []
        for part in bind.split(":")[1:][local].split(","):
            lo, _, hi = part.partition("-")
            cores += list(range(int(lo), int(hi or lo) + 1))
    env = dict(os.environ, PALS_RANKID=str(rank), PALS_LOCAL_RANKID=str(local))
    gpu = subprocess.run([args[0], "printenv", "CUDA_VISIBLE_DEVICES"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    ranks.append({{"rank": rank, "node": rank // ppn, "cores": cores, "gpu": gpu}})
keep = ("TMPDIR", "NCCL_NET", "NCCL_NET_GDR_LEVEL", "NCCL_CROSS_NIC", "NCCL_COLLNET_ENABLE",
        "FI_CXI_DISABLE_HOST_REGISTER", "MPICH_GPU_SUPPORT_ENABLED", "MASTER_ADDR")
log.write(json.dumps({{"launch": args, "ranks": ranks,
                      "env": {{k: os.environ.get(k) for k in keep}}}}) + "\\n")
'''

# like the real ones, these are shell functions of the login shell that read variables
# nobody set (conda's activate reads e.g. CONDA_PS1_BACKUP): they fail under `set -u`
PROFILE = '''
export PATH="{bin_dir}:$PATH"
module() {{ : "${{LMOD_SH_DBG_ON}}"; echo "module $*" >> "{calls}"; }}
conda() {{ : "${{CONDA_PS1_BACKUP}}"; echo "conda $*" >> "{calls}"; }}
'''


def _fake_polaris(tmp: Path, nodes: int) -> dict:
    """A home with the fake shell functions, a venv, a node file and a fake mpiexec."""
    home, bin_dir, venv = tmp / "home", tmp / "bin", tmp / "venv"
    for folder in (home, bin_dir, venv / "bin"):
        folder.mkdir(parents=True)
    calls = tmp / "calls"
    (home / ".bash_profile").write_text(PROFILE.format(calls=calls, bin_dir=bin_dir))
    real = Path(sys.executable)
    (venv / "bin" / "activate").write_text(f'export PATH="{venv / "bin"}:$PATH"\n')
    (venv / "bin" / "python").write_text(f'#!/bin/bash\nexec "{real}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)      # python, but not the mpiexec beside it
    mpiexec = bin_dir / "mpiexec"
    mpiexec.write_text(FAKE_MPIEXEC.format(python=real))
    mpiexec.chmod(0o755)
    nodefile = tmp / "nodefile"
    nodefile.write_text("".join(f"x3004c0s{i}b0n0.hsn.cm.polaris.alcf.anl.gov\n"
                                for i in range(nodes)))
    return {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PBS_NODEFILE": str(nodefile), "PBS_JOBID": "123456.polaris-pbs-01",
            "TCOUPLED_VENV": str(venv), "TCOUPLED_RUNS": str(tmp / "runs"),
            "PYTHONPATH": str(REPO), "FAKE_LOG": str(tmp / "log.jsonl"), "LANG": "C.UTF-8"}


def _run_script(pbs: Path, tmp: Path, extra: dict | None = None, script: Path | None = None
                ) -> tuple[list[dict], subprocess.CompletedProcess]:
    nodes = int(re.search(r"select=(\d+)", pbs.read_text()).group(1))
    env = {**_fake_polaris(tmp, nodes), **(extra or {})}
    proc = subprocess.run(["bash", "-l", str(script or pbs)], env=env, cwd=tmp,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{pbs.name}\n{proc.stdout}\n{proc.stderr}"
    log = tmp / "log.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()], proc


def _plan_of(launch: list[str], nodes: int, ppn: int):
    """The plan of the flags the script passed to ``couple``."""
    flags = {arg: value for arg, value in zip(launch, launch[1:]) if arg.startswith("--")}
    counts = RoleCounts(int(flags["--sim-ranks"]), int(flags["--train-ranks"]),
                        int(flags["--farm-ranks"]))
    assert counts.total == nodes * ppn
    return plan_ranks(counts, ppn, 4, flags["--placement"], int(flags["--ensemble"]), 32)


@pytest.mark.parametrize("pbs", PBS, ids=lambda p: p.name)
def test_pbs_script_binds_every_rank_to_the_gpu_nearest_its_cores(pbs, tmp_path):
    records, proc = _run_script(pbs, tmp_path)
    (launch,) = [r for r in records if "launch" in r]
    ranks = launch["ranks"]
    ppn = int(re.search(r"^ppn=(\d+)", pbs.read_text(), re.M).group(1))
    nodes = int(re.search(r"select=(\d+)", pbs.read_text()).group(1))
    plan = _plan_of(launch["launch"], nodes, ppn)
    assert len(ranks) == len(plan.ranks) == nodes * ppn
    cores_seen: dict[int, set] = {}
    for got, info in zip(ranks, plan.ranks, strict=True):
        where = f"{pbs.name} rank {info.rank} ({info.role})"
        assert got["gpu"] == ("" if info.gpu is None else str(info.gpu)), where
        assert tuple(got["cores"]) == info.cores, where            # plan prints the binding
        assert len(got["cores"]) == 32 // ppn, where
        assert not cores_seen.setdefault(got["node"], set()) & set(got["cores"]), where
        cores_seen[got["node"]] |= set(got["cores"])
        if info.gpu is not None:                                   # nearest by ALCF's table
            assert {nearest_gpu(c, 4, 32) for c in got["cores"]} == {info.gpu}, where
    gpus_used = {r["gpu"] for r in ranks if r["gpu"]}
    assert gpus_used == {"0", "1", "2", "3"}, f"{pbs.name} leaves GPUs idle: {gpus_used}"
    if "shm" in launch["launch"]:
        gpu_of = {r["rank"]: (r["node"], r["gpu"]) for r in ranks}
        for train in plan.of_role("train"):
            for sim in train.sources:
                assert gpu_of[sim] == gpu_of[train.rank], f"{pbs.name}: {sim} -> {train.rank}"
    assert "mpiexec" in proc.stdout and "rank role" in proc.stdout     # plan in the job log
    env = launch["env"]
    assert env["TMPDIR"] == "/tmp" and env["NCCL_NET"] == "AWS Libfabric"
    assert env["MASTER_ADDR"] is None
    mps = [r["mps"] for r in records if "mps" in r]
    assert mps == (["start", "stop"] if "--division time" in " ".join(launch["launch"])
                   else [])
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[1].startswith("module load conda/") and calls[2] == "conda activate base"


def test_set_u_is_restored_after_the_environment_and_the_fallback_drops_the_plugin(tmp_path):
    env = _fake_polaris(tmp_path, 1)
    script = ("set -euo pipefail; source run/polaris/env.sh; echo \"flags=$-\"; "
              "echo \"net=${NCCL_NET:-none} gdr=$NCCL_NET_GDR_LEVEL\"")
    for nccl, net in (("plugin", "AWS Libfabric"), ("fallback", "none")):
        proc = subprocess.run(["bash", "-l", "-c", script], cwd=REPO, capture_output=True,
                              text=True, env={**env, "TCOUPLED_NCCL": nccl}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "u" in proc.stdout.split("flags=")[1].split()[0]
        assert f"net={net} gdr=PHB" in proc.stdout
    # the fakes do fail under set -u: the relaxation is what lets env.sh through
    bare = subprocess.run(["bash", "-l", "-c", "set -u; conda activate base"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert bare.returncode != 0 and "CONDA_PS1_BACKUP" in bare.stderr


def test_pbs_script_runs_from_a_copy_in_another_directory(tmp_path):
    """PBS runs a copy of the script elsewhere: the repository is found from the venv."""
    pbs = REPO / "run" / "polaris" / "space_1node.pbs"
    spool = tmp_path / "spool"
    spool.mkdir()
    copy = spool / "123456.polaris-pbs-01.SC"
    shutil.copy(pbs, copy)
    records, _ = _run_script(pbs, tmp_path, script=copy)
    (launch,) = [r for r in records if "launch" in r]
    assert launch["launch"][0] == str(REPO / "run" / "polaris" / "gpu_affinity.sh")


def test_no_script_sets_master_addr():
    for path in REPO.glob("run/polaris/*"):
        assert "MASTER_ADDR" not in path.read_text(), path.name


def test_plan_prints_the_cpu_bind_the_scripts_use():
    from tcoupled.placement.affinity import cpu_bind_option

    plan = plan_ranks(RoleCounts(4, 8, 4), 16, 4, "colocated", 2, 32)
    assert cpu_bind_option(plan) == ("list:0-1:2-3:4-5:8-9:10-11:12-13:16-17:18-19:20-21:"
                                     "24-25:26-27:28-29:6-7:14-15:22-23:30-31")
    # a node of GPU ranks only is bound exactly as --depth --cpu-bind depth binds it,
    # and local rank r gets GPU 3 - r mod 4 as in ALCF's set_affinity_gpu_polaris.sh
    plan = plan_ranks(RoleCounts(2, 2, 4), 4, 4, "colocated", 1, 32)
    assert cpu_bind_option(plan) == "depth"
    assert [r.gpu for r in plan.ranks[:4]] == [3 - r % 4 for r in range(4)]
    # a pair on two GPUs is named
    from tcoupled.placement.affinity import gpu_split_pairs

    assert gpu_split_pairs(plan_ranks(RoleCounts(4, 4, 8), 16, 4, "colocated", 2))


class _MemberComm:
    """One rank's view of a member communicator whose ranks sit on ``hosts``."""

    def __init__(self, rank, hosts, shared):
        self.rank, self.hosts, self.shared = rank, hosts, shared

    def Get_rank(self):  # noqa: N802 - mpi4py's name
        return self.rank

    def allgather(self, value):
        return list(self.hosts)          # every rank's hostname, in rank order

    def bcast(self, value, root=0):
        if self.rank == root:
            self.shared["value"] = value
        return self.shared["value"]


NODE0, NODE1 = "x3004c0s7b0n0.cm.polaris.alcf.anl.gov", "x3004c0s13b0n0.cm.polaris.alcf.anl.gov"
HSN = {"x3004c0s7b0n0.hsn.cm.polaris.alcf.anl.gov", "x3004c0s13b0n0.hsn.cm.polaris.alcf.anl.gov"}


@pytest.mark.parametrize("hosts,expected", [
    ((NODE0, NODE1), "x3004c0s7b0n0.hsn.cm.polaris.alcf.anl.gov"),
    ((NODE1, NODE0, NODE1), "x3004c0s13b0n0.hsn.cm.polaris.alcf.anl.gov"),  # rank 0 on node 1
])
def test_each_member_rendezvouses_at_its_own_rank_0_on_the_high_speed_network(hosts, expected):
    from tcoupled.training.ensemble import rendezvous_host

    shared = {}
    answers = [rendezvous_host(_MemberComm(rank, hosts, shared), HSN.__contains__)
               for rank in range(len(hosts))]             # rank 0 first, as bcast needs
    assert answers == [(False, expected)] * len(hosts)


def test_one_host_member_and_a_network_without_hsn_names():
    from tcoupled.training.ensemble import high_speed_name, rendezvous_host

    assert rendezvous_host(_MemberComm(0, (NODE1, NODE1), {}), HSN.__contains__) == (True, NODE1)
    assert high_speed_name("node7.cluster", lambda name: False) == "node7.cluster"
    assert high_speed_name("x3004c0s7b0n0.hsn.cm.polaris.alcf.anl.gov", HSN.__contains__) == \
        "x3004c0s7b0n0.hsn.cm.polaris.alcf.anl.gov"
