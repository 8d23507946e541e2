"""``tcoupled plan``: print the rank/node/GPU layout for a machine size, without MPI."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from tcoupled.placement.plan import PLACEMENTS, RoleCounts, format_plan, plan_ranks
from tcoupled.runtime.errors import ConfigError

HELP = "print which rank runs which role on which node and GPU (no MPI needed)"
USES_MPI = False


@dataclass(frozen=True)
class PlanRequest:
    """What to lay out."""

    nodes: int
    ppn: int
    gpus_per_node: int
    counts: RoleCounts
    placement: str
    ensemble: int
    rows: int
    json: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``plan``."""
    parser.add_argument("--nodes", type=int, default=1, help="nodes in the job")
    parser.add_argument("--ppn", type=int, default=4, help="MPI ranks per node")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (Polaris: 4)")
    parser.add_argument("--sim-ranks", type=int, default=None,
                        help="sim ranks (default: half of the ranks left by train and farm)")
    parser.add_argument("--train-ranks", type=int, default=None, help="train ranks")
    parser.add_argument("--farm-ranks", type=int, default=0, help="xTB farm ranks")
    parser.add_argument("--placement", default="colocated", help=f"one of {', '.join(PLACEMENTS)}")
    parser.add_argument("--ensemble", type=int, default=1, help="CNN ensemble members")
    parser.add_argument("--rows", type=int, default=32,
                        help="rank rows to print (head and tail; 0 prints all)")
    parser.add_argument("--json", action="store_true", help="print the full plan as JSON")


def make_config(args: argparse.Namespace, world_size: int) -> PlanRequest:
    """Check the machine size and resolve default role counts."""
    for flag in ("nodes", "ppn"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    world = args.nodes * args.ppn
    sim, train = args.sim_ranks, args.train_ranks
    left = world - args.farm_ranks
    if sim is None and train is None:
        sim = left - left // 2
        train = left // 2
    elif sim is None:
        sim = left - train
    elif train is None:
        train = left - sim
    counts = RoleCounts(sim, train, args.farm_ranks)
    if counts.total != world:
        raise ConfigError(
            f"layout does not fit the machine: --sim-ranks {sim} + --train-ranks {train} + "
            f"--farm-ranks {args.farm_ranks} = {counts.total}, but --nodes {args.nodes} x "
            f"--ppn {args.ppn} = {world}")
    return PlanRequest(args.nodes, args.ppn, args.gpus_per_node, counts, args.placement,
                       args.ensemble, args.rows, args.json)


def run(config: PlanRequest, comm: object = None) -> int:
    """Print the plan."""
    plan = plan_ranks(config.counts, config.ppn, config.gpus_per_node, config.placement,
                      config.ensemble)
    if config.json:
        print(json.dumps({"nodes": plan.nodes, "ppn": plan.ppn,
                          "gpus_per_node": plan.gpus_per_node, "placement": plan.placement,
                          "ensemble": plan.ensemble, "ranks": [asdict(r) for r in plan.ranks]}))
        return 0
    print("\n".join(format_plan(plan, config.rows)))
    return 0
