"""The flags of ``couple``: the solver's, the coupling's, the farm's and the run's.

Shared by the command (:mod:`tcoupled.app.couple`), ``--resume`` (which re-parses the
stored flags) and the cost-model benchmark (which builds workloads from the same flags).
"""

from __future__ import annotations

import argparse

from tcoupled.coupling.channels import CHANNELS
from tcoupled.coupling.schedule import DIVISIONS
from tcoupled.sim.config import add_wave_arguments
from tcoupled.training.ensemble import ACTIVATIONS
from tcoupled.training.schedule import SCHEDULES, WARMUP


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``couple``: the solver's, then the coupling's."""
    add_wave_arguments(parser, "float32", " (float32: the learner's dtype, so the trainer "
                       "reads the solver's frames with no cast; float64 casts each slot once, "
                       "counted as a copy)")
    g = parser.add_argument_group("coupling")
    g.add_argument("--sim-ranks", type=int, default=None,
                   help="sim ranks (default: the ranks left by --train-ranks)")
    g.add_argument("--train-ranks", type=int, default=0,
                   help="train ranks (0: the sim ranks train themselves, inproc)")
    g.add_argument("--division", default="time",
                   help=f"one of {', '.join(DIVISIONS)}, auto (the cost model's choice)")
    g.add_argument("--channel", default=None,
                   help=f"one of {', '.join(CHANNELS)} (default: inproc or shm for "
                        "time division, mpi for space division)")
    g.add_argument("--sim-steps", type=int, default=8, help="solver steps per cycle (K)")
    g.add_argument("--train-iters", type=int, default=10,
                   help="training iterations per cycle (M)")
    g.add_argument("--cycles", type=int, default=4, help="sim/train cycles (C)")
    g.add_argument("--ensemble", type=int, default=1, help="CNN ensemble members (E)")
    g.add_argument("--kernel-sizes", type=int, nargs="+", default=None,
                   help="CNN kernel size, one for all or one per member (default 3 5 7 ...)")
    g.add_argument("--lr", type=float, nargs="+", default=None,
                   help="Adam learning rate (the schedule's peak), one for all or one per "
                        "member (default with --lr-schedule cosine: 0.03/k for kernel size "
                        "k, i.e. 1e-2 for k = 3, times sqrt(160/steps) when the run has "
                        "more than 160 steps (cycles x train-iters); 3e-3 with constant)")
    g.add_argument("--lr-schedule", default=SCHEDULES[0],
                   help=f"one of {', '.join(SCHEDULES)}: cosine warms the rate up linearly "
                        "over the first --warmup of the run's cycles x train-iters steps, "
                        "then decays it to zero along a half cosine")
    g.add_argument("--warmup", type=float, default=WARMUP, metavar="FRACTION",
                   help="fraction of the steps in the warm-up of --lr-schedule cosine, "
                        "in [0, 1)")
    g.add_argument("--cnn-width", type=int, nargs="+", default=None,
                   help="CNN channels of the first layer, one or one per member (default 8)")
    g.add_argument("--activation", nargs="+", default=None,
                   help=f"CNN activation, {' or '.join(ACTIVATIONS)}, one or one per member "
                        f"(default {ACTIVATIONS[0]}: the network is odd, as the wave "
                        "equation's update)")
    g.add_argument("--batch-size", type=int, default=0,
                   help="pairs per iteration from each source (0: all pairs of the cycle)")
    g.add_argument("--replay", type=int, default=256, metavar="N",
                   help="replay buffer of each train rank: N samples (three consecutive "
                        "levels of its blocks, reservoir-sampled; 0: newest slot only)")
    g.add_argument("--rollout", type=int, default=10,
                   help="autoregressive rollout steps on the held-out field")
    g.add_argument("--placement", default="colocated", help="colocated or clustered")
    g.add_argument("--ppn", type=int, default=None,
                   help="ranks per node of the machine, to refuse layouts that cannot "
                        "share memory before starting (default: detected at run time)")
    g.add_argument("--out", default="runs/couple", help="output directory")
    g.add_argument("--quiet", action="store_true", help="print nothing but errors")
    g.add_argument("--check-every", type=int, default=50, metavar="N",
                   help="stop the run if NaN/Inf appears, checked every N steps (0: never)")
    g.add_argument("--verify", action="store_true",
                   help="hash every slot a trainer receives (summary.json data_digest); "
                        "off, nothing is hashed")
    add_run_arguments(parser)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the farm role's flags and checkpoint/resume/report flags."""
    g = parser.add_argument_group("farm (xTB screen beside the coupled run)")
    g.add_argument("--farm-ranks", type=int, default=0,
                   help="farm ranks: rank 0 of them learns, the others run xTB (0: no farm)")
    g.add_argument("--farm-space", default="qm9", help="'qm9' or a file of SMILES")
    g.add_argument("--farm-budget", type=int, default=8, help="molecules to simulate")
    g.add_argument("--farm-initial", type=int, default=4,
                   help="random molecules before the model steers")
    g.add_argument("--farm-policy", default="gp-ucb",
                   help="gp-ucb, gp-ei, greedy, ucb, seed-greedy or random (see screen)")
    g.add_argument("--farm-method", default="gfn2", choices=("gfn2", "ipea"), help="IE method")
    g.add_argument("--farm-task", default="ie", choices=("ie", "noop"),
                   help="'noop' replaces xTB by a no-op")
    g = parser.add_argument_group("run")
    g.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                   help="save solver, model and optimizer state every N cycles (0: never)")
    g.add_argument("--resume", default="", metavar="DIR",
                   help="continue the killed run in DIR from its last checkpoint")
    g.add_argument("--dry-run", action="store_true",
                   help="validate, print the configuration and layout, and stop")
    g.add_argument("--no-report", action="store_true",
                   help="do not write the report (plots, report.md) at the end")


def members_from_args(args: argparse.Namespace) -> tuple:
    """Every member's :class:`~tcoupled.training.ensemble.MemberParams` from the flags.

    Raises
    ------
    ConfigError
        A bad ``--lr-schedule`` or ``--warmup``, or a bad member flag.
    """
    from tcoupled.runtime.errors import ConfigError
    from tcoupled.training.ensemble import member_params
    from tcoupled.training.schedule import check_warmup

    if args.lr_schedule not in SCHEDULES:
        raise ConfigError(f"--lr-schedule must be one of {', '.join(SCHEDULES)}, "
                          f"got {args.lr_schedule!r}")
    check_warmup(args.warmup)
    return member_params(args.ensemble, args.kernel_sizes, args.lr, args.cnn_width,
                         args.activation, args.lr_schedule, args.cycles * args.train_iters)
