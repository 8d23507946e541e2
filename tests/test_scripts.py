"""Launch scripts: shell syntax, shellcheck, and the Polaris GPU binding equals `plan`'s."""

import re
import subprocess
from pathlib import Path

import pytest

from tcoupled.placement.plan import RoleCounts, plan_ranks
from tcoupled.runtime.sysprog import find_program, missing_reason

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*REPO.glob("run/*.sh"), *REPO.glob("run/polaris/*"), REPO / ".ci" / "run"])
PBS = sorted(REPO.glob("run/polaris/*.pbs"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.system
@pytest.mark.skipif(find_program("shellcheck") is None,
                    reason=missing_reason("shellcheck"))
def test_shellcheck_passes():
    proc = subprocess.run(["shellcheck", "-x", *map(str, SCRIPTS)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _plan_flags(pbs: Path) -> dict:
    text = pbs.read_text()
    flags = dict(re.findall(r"--(nodes|ppn|sim-ranks|train-ranks|farm-ranks|placement) (\w+)",
                            text.split("set -euo")[0]))
    return flags


@pytest.mark.parametrize("pbs", PBS, ids=lambda p: p.name)
def test_gpu_affinity_wrapper_binds_like_plan(pbs):
    f = _plan_flags(pbs)
    counts = RoleCounts(int(f["sim-ranks"]), int(f["train-ranks"]), int(f["farm-ranks"]))
    ppn = int(f["ppn"])
    assert counts.total == int(f["nodes"]) * ppn
    plan = plan_ranks(counts, ppn, 4, f["placement"])
    body = pbs.read_text()
    assert f"TCOUPLED_PPN={ppn} " in body
    assert f"--sim-ranks {counts.sim} --train-ranks {counts.train} " in body
    env = {"TCOUPLED_PPN": str(ppn), "TCOUPLED_GPU_RANKS": str(counts.sim + counts.train),
           "PATH": "/usr/bin:/bin"}
    wrapper = REPO / "run" / "polaris" / "gpu_affinity.sh"
    for info in plan.ranks:
        got = subprocess.run([str(wrapper), "bash", "-c", "echo -n $CUDA_VISIBLE_DEVICES"],
                             env={**env, "PALS_RANKID": str(info.rank)}, check=True,
                             capture_output=True, text=True).stdout
        assert got == ("" if info.gpu is None else str(info.gpu)), (info, got)
