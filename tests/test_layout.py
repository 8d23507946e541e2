"""Rank layout arithmetic and the `plan` command (no MPI)."""

import time

import pytest

from tcoupled.placement.plan import RoleCounts, plan_ranks
from tcoupled.runtime.errors import LayoutError

from mpitools import check, tcoupled


@pytest.mark.faults
def test_world_size_mismatch_shows_the_arithmetic():
    with pytest.raises(LayoutError, match=r"--sim-ranks 2 \+ --train-ranks 1 \+ --farm-ranks 0 "
                                          r"= 3, but mpiexec started 4 ranks"):
        RoleCounts(2, 1, 0).check_world(4)


def test_colocated_pairs_share_node_and_gpu():
    # 2 nodes x 8 ranks, 4 GPUs per node: each sim/train pair shares one GPU
    plan = plan_ranks(RoleCounts(8, 8, 0), ppn=8, gpus_per_node=4, placement="colocated")
    roles = [r.role for r in plan.ranks]
    assert roles == ["sim", "train"] * 8
    for sim in plan.of_role("sim"):
        (target,) = sim.feeds
        train = plan.ranks[target]
        assert train.sources == (sim.rank,)
        assert (train.node, train.gpu) == (sim.node, sim.gpu)


def test_clustered_puts_roles_in_blocks_and_farm_has_no_gpu():
    plan = plan_ranks(RoleCounts(4, 2, 2), ppn=4, gpus_per_node=4, placement="clustered")
    assert [r.role for r in plan.ranks] == ["sim"] * 4 + ["train"] * 2 + ["farm"] * 2
    assert [r.node for r in plan.ranks] == [0] * 4 + [1] * 4
    assert all(r.gpu is None for r in plan.of_role("farm"))
    # 4 sims over 2 train ranks of one member: two sims each
    assert [len(t.sources) for t in plan.of_role("train")] == [2, 2]


def test_ensemble_members_each_receive_every_sim_rank():
    plan = plan_ranks(RoleCounts(2, 4, 0), ensemble=2)
    for member in (0, 1):
        sources = sorted(s for t in plan.of_role("train") if t.member == member
                         for s in t.sources)
        assert sources == sorted(r.rank for r in plan.of_role("sim"))
    with pytest.raises(LayoutError, match="--ensemble 3 is larger than --train-ranks 2"):
        plan_ranks(RoleCounts(1, 2, 0), ensemble=3)


def test_polaris_scale_plan_is_fast():
    start = time.perf_counter()
    plan = plan_ranks(RoleCounts(1120, 1120, 0), ppn=4, gpus_per_node=4, ensemble=4)
    assert time.perf_counter() - start < 1.0
    assert plan.nodes == 560 and len(plan.ranks) == 2240
    assert {r.gpu for r in plan.ranks} == {0, 1, 2, 3}


@pytest.mark.faults
def test_plan_command_prints_layout_and_refuses_misfit():
    proc = check(tcoupled("plan", "--nodes", "2", "--ppn", "4", "--gpus-per-node", "4",
                          "--sim-ranks", "2", "--train-ranks", "2", "--farm-ranks", "4"))
    assert "2 node(s) x 4 ranks/node = 8 ranks: 2 sim, 2 train, 4 farm" in proc.stdout
    assert proc.stdout.count(" farm ") == 4
    bad = tcoupled("plan", "--nodes", "1", "--ppn", "4", "--sim-ranks", "3",
                   "--train-ranks", "3")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "tcoupled plan: error: layout does not fit the machine: --sim-ranks 3 + --train-ranks 3"
        " + --farm-ranks 0 = 6, but --nodes 1 x --ppn 4 = 4"]


def test_farm_ranks_on_a_gpu_node_do_not_take_gpu_slots():
    # one Polaris node, 16 ranks: 4 sim + 4 train share the 4 GPUs pairwise, 8 farm ranks;
    # the lowest local ranks take GPU 3, the one nearest cores 0-7 (ALCF's table)
    plan = plan_ranks(RoleCounts(4, 4, 8), ppn=16, gpus_per_node=4)
    assert [r.gpu for r in plan.ranks[:8]] == [3, 3, 2, 2, 1, 1, 0, 0]
    assert all(r.gpu is None for r in plan.ranks[8:])
