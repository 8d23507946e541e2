"""``tcoupled plan``: print the rank/node/GPU layout for a machine size, without MPI."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

from tcoupled.placement.affinity import cpu_bind_option
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
    cores_per_node: int = 0
    cpu_bind: bool = False


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
    parser.add_argument("--cores-per-node", type=int, default=0,
                        help="cores per node (Polaris: 32): plan each rank's cores too")
    parser.add_argument("--cpu-bind", action="store_true",
                        help="print only the mpiexec --cpu-bind value of the plan")


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
    if args.cores_per_node < 0 or (args.cpu_bind and not args.cores_per_node):
        raise ConfigError(f"--cpu-bind needs --cores-per-node > 0, got {args.cores_per_node}")
    return PlanRequest(args.nodes, args.ppn, args.gpus_per_node, counts, args.placement,
                       args.ensemble, args.rows, args.json, args.cores_per_node,
                       args.cpu_bind)


def run(config: PlanRequest, comm: object = None) -> int:
    """Print the plan."""
    plan = plan_ranks(config.counts, config.ppn, config.gpus_per_node, config.placement,
                      config.ensemble, config.cores_per_node)
    if config.cpu_bind:
        print(cpu_bind_option(plan))
        return 0
    if config.json:
        print(json.dumps({"nodes": plan.nodes, "ppn": plan.ppn,
                          "gpus_per_node": plan.gpus_per_node, "placement": plan.placement,
                          "ensemble": plan.ensemble, "ranks": [asdict(r) for r in plan.ranks]}))
        return 0
    print("\n".join(format_plan(plan, config.rows)))
    return 0
