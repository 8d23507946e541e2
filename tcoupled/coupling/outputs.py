"""The summary of a coupled run: every rank's record becomes ``summary.json`` and ``results.h5``.

Runs on rank 0 after the roles have finished. The phase names of each kind of time are
defined here once: compute (:data:`SOLVING`, :data:`TRAINING`), the coupling layer's
own work (:data:`COUPLING`) and waiting for the other role (:data:`WAITING`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tcoupled.coupling.config import config_dict
from tcoupled.coupling.schedule import combine_digests

SOLVING = ("sim", "halo")
#: the optimizer steps, their exposed all-reduce, the replay draws and the block context
TRAINING = ("train", "allreduce", "replay", "context")
#: acquire/publish/receive/release and staging (``handoff``), the carried frame, the digest,
#: the float32 cast of each received slot (the handoff's one counted copy on shm)
COUPLING = ("handoff", "carry", "digest", "cast")
#: waiting for the other role's compute (time division does it by design)
WAITING = ("idle",)
#: compute phases of each role
COMPUTE = {"sim": SOLVING, "train": TRAINING}


def _seconds(record: dict, names: tuple[str, ...]) -> float:
    return sum(record["phases"].get(name, 0.0) for name in names)


def _role_ranks(records: list[dict], role: str) -> list[dict]:
    """Ranks doing ``role``'s compute (an in-process trainer is a sim rank that trains)."""
    if role == "train":
        return [r for r in records if r["trains"]]
    return [r for r in records if r["role"] == "sim"]


def coupling_costs(records: list[dict]) -> dict:
    """``coupling_overhead`` and, per role, its overhead, ``idle_fraction`` and utilisation.

    The overhead is time in the coupling layer (:data:`COUPLING`) over compute
    (:data:`SOLVING` + :data:`TRAINING`), each role counted at its slowest rank (the
    one with the most compute); a rank that is both roles (``inproc``) counts its
    coupling time once. Per role: ``coupling_overhead_by_role`` (its slowest rank's
    coupling time / its compute), and over the role's ranks the mean ``idle_fraction``
    (:data:`WAITING` / wall) and ``rank_utilization`` (compute of every role it does / wall).
    """
    records = [r for r in records if r["role"] != "farm"]
    by_role, idle, used, slowest = {}, {}, {}, {}
    for role, names in COMPUTE.items():
        ranks = _role_ranks(records, role)
        if not ranks:
            continue
        slow = max(ranks, key=lambda r, names=names: _seconds(r, names))
        slowest[role] = (slow, _seconds(slow, names))
        by_role[role] = _ratio(_seconds(slow, COUPLING), slowest[role][1])
        idle[role] = float(np.mean([_ratio(_seconds(r, WAITING), r["wall_s"]) for r in ranks]))
        used[role] = float(np.mean([_ratio(_seconds(r, SOLVING + TRAINING), r["wall_s"])
                                    for r in ranks]))
    distinct = {id(slow): slow for slow, _ in slowest.values()}.values()
    coupling = sum(_seconds(r, COUPLING) for r in distinct)
    compute = sum(seconds for _, seconds in slowest.values())
    return {"coupling_overhead": _ratio(coupling, compute),
            "coupling_overhead_by_role": by_role, "idle_fraction": idle,
            "rank_utilization": used}


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else 0.0


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


def build_summary(config: Any, records: list[dict], farm: dict | None = None) -> dict:
    """Return the key figures of a coupled run (stable key names; see the README).

    ``records`` holds every rank's record, farm ranks included (they count in the time
    breakdown); ``farm`` is the farm role's own summary, ``None`` without farm ranks.
    """
    everyone, records = records, [r for r in records if r["role"] != "farm"]
    digests = _member_digests(records) if config.verify else {0: None}
    copies: dict[str, int] = {}
    for record in records:
        for kind, nbytes in record["copies"].items():
            copies[kind] = copies.get(kind, 0) + nbytes
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
        "handoff_copies": copies,
        "zero_copy_verified": all(r["zero_copy_verified"] for r in records),
        "handoff_s_per_handoff": handoff_s / handoffs if handoffs else 0.0,
        "handoff_s_per_handoff_steady": steady_handoff(records),
        "samples_per_handoff": config.sim_steps,
        "data_digest": digests[0], "member_digests_agree": len(set(digests.values())) == 1,
        "members": _members(config, records),
        "rollout_vrmse": [r["rollout_vrmse"] for r in leaders],
        "rollout_rel_l2": [r["rollout_rel_l2"] for r in leaders],
        "replay": config.replay,
        "cast_bytes": int(sum(r.get("cast_bytes", 0) for r in records)),
        "time_breakdown": time_breakdown(everyone),
        **coupling_costs(records),
        "oversubscribed": any(r.get("oversubscribed", False) for r in everyone),
        "wall_s": max(r["wall_s"] for r in everyone),
        "steady_cycle_s": steady_cycle(records),
        "farm_ranks": config.farm_ranks, "farm": farm,
        "resumed_from_cycle": config.resume_cycle,
        "checkpoints": _checkpoints(config),
    }


def steady_handoff(records: list[dict]) -> float | None:
    """Handoff seconds per handoff in cycles 2 to C: without the first cycle's set-up.

    The first handoff opens what later ones reuse (a CUDA IPC handle, a shared window,
    the first slot's pages), so ``handoff_s_per_handoff`` mixes that one-time cost into
    the rate. ``None`` with fewer than 2 cycles.
    """
    cycles = max((len(r.get("cycle_ends_s", ())) for r in records), default=0)
    handoffs = sum(r["handoffs"] for r in records) * (cycles - 1) / cycles if cycles else 0
    if cycles < 2 or not handoffs:
        return None
    return sum(r["phases"].get("handoff", 0.0) - r.get("first_handoff_s", 0.0)
               for r in records) / handoffs


def steady_cycle(records: list[dict]) -> float | None:
    """Seconds per cycle once running: the slowest rank's median of cycles 2 to C.

    The first cycle carries the start-up (first allocations, the first backward) and a
    space-division pipeline's fill; a cost model predicts the cycles after it. ``None``
    with fewer than 3 cycles.
    """
    medians = [float(np.median(np.diff(r["cycle_ends_s"]))) for r in records
               if len(r.get("cycle_ends_s", ())) >= 3]
    return max(medians) if medians else None


def _checkpoints(config: Any) -> list[int]:
    from tcoupled.coupling.checkpoint import complete_cycles

    return complete_cycles(config.out, config.sim_ranks + config.train_ranks)


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


def write_outputs(config: Any, records: list[dict], log: Any,
                  farm: dict | None = None) -> dict:
    """Write ``summary.json`` and ``results.h5``; log the key figures."""
    from tcoupled.runtime.store import open_results, write_summary

    summary = build_summary(config, records, farm)
    with open_results(config.out, config_dict(config), "couple") as h5:
        for member, errors in zip(summary["members"], summary["rollout_rel_l2"], strict=True):
            group = h5.create_group(f"members/{member['member']}")
            group.attrs.update({k: v for k, v in member.items() if v is not None})
            group["rollout_rel_l2"] = np.asarray(errors)
            group["rollout_vrmse"] = np.asarray(summary["rollout_vrmse"][member["member"]])
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
    for member, errors in zip(summary["members"], summary["rollout_vrmse"], strict=True):
        log.info(f"  member {member['member']} (k={member['kernel_size']}): loss "
                 f"{member['first_loss']:.3e} -> {member['last_loss']:.3e}, held-out rollout "
                 f"VRMSE {' '.join(f'{e:.4f}' for e in errors)}")
    idle = ", ".join(f"{role} {value:.1%}" for role, value in summary["idle_fraction"].items())
    log.info(f"  wall {summary['wall_s']:.3f} s, coupling overhead "
             f"{summary['coupling_overhead']:.2%} of compute, idle {idle}"
             f"{' (oversubscribed node)' if summary['oversubscribed'] else ''}; "
             f"results in {config.out}")
    return summary
