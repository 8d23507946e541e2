"""``report DIR``: PNG plots and ``report.md`` from a finished run directory.

Everything is read from the run's files (``results.h5``, ``summary.json``,
``farm/results.h5``); no MPI, no torch. Plots use matplotlib's Agg backend.
For a ``couple`` run: field snapshots (solver, each surrogate, difference),
training loss and rollout error per member, time per role, and the farm's
best ionization energy against simulations. Other runs get the plots their
files support and a ``report.md`` of their summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tcoupled.report.figures import pyplot as _pyplot
from tcoupled.report.figures import save_figure
from tcoupled.report.figures import save_tight as _save
from tcoupled.runtime.errors import TcoupledError

REPORT_FILE = "report.md"


def read_run(out: str | Path) -> tuple[str, dict, dict]:
    """Return (command, summary, members) of a run; members: index -> arrays."""
    from tcoupled.runtime.inputs import open_h5_input, read_json_input
    from tcoupled.runtime.store import RESULTS_FILE, SUMMARY_FILE

    out = Path(out)
    if not (out / RESULTS_FILE).exists() or not (out / SUMMARY_FILE).exists():
        raise TcoupledError(f"{str(out)!r} holds no finished run (no {RESULTS_FILE} and "
                            f"{SUMMARY_FILE})")
    summary = read_json_input(out / SUMMARY_FILE, "", root=out)
    with open_h5_input(out / RESULTS_FILE, "", root=out) as h5:
        command = str(h5.attrs.get("command", ""))
        members = {int(name): {key: group[key][()] for key in group}
                   for name, group in h5.get("members", {}).items()}
        fields = {key: h5["fields"][key][()] for key in h5.get("fields", {})}
    return command, summary, {"members": members, "fields": fields}


def plot_fields(out: Path, data: dict) -> Path | None:
    """Solver field, each member's surrogate prediction and their difference."""
    truth, members = data["fields"].get("truth"), data["members"]
    shown = [(m, v["prediction"]) for m, v in sorted(members.items()) if "prediction" in v]
    if truth is None or not shown:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(shown), 3, figsize=(10, 3.2 * len(shown)), squeeze=False)
    scale = float(np.max(np.abs(truth))) or 1.0
    for row, (member, predicted) in zip(axes, shown, strict=True):
        panels = ((truth, "solver"), (predicted, f"surrogate member {member}"),
                  (predicted - truth, f"surrogate {member} - solver"))
        for ax, (field, title) in zip(row, panels, strict=True):
            image = ax.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), cmap="RdBu_r",
                              vmin=-scale, vmax=scale)
            ax.set_title(title)
            ax.set_xlabel("x")
            ax.set_ylabel("y")
        fig.colorbar(image, ax=list(row), shrink=0.8, label="u")
    fig.suptitle("held-out field after the rollout: solver vs surrogate")
    save_figure(fig, out / "fields.png", dpi=90)
    plt.close(fig)
    return out / "fields.png"


def plot_members(out: Path, data: dict, key: str, title: str, xlabel: str,
                 ylabel: str, name: str) -> Path | None:
    """One line per member of ``members/N/key`` on a log scale."""
    members = {m: v[key] for m, v in sorted(data["members"].items()) if len(v.get(key, ()))}
    if not members:
        return None
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    for member, values in members.items():
        ax.semilogy(np.arange(1, len(values) + 1), values, label=f"member {member}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return _save(fig, out / name)


def plot_time(out: Path, summary: dict) -> Path | None:
    """Stacked bar of the mean seconds per phase, one bar per role."""
    breakdown = summary.get("time_breakdown")
    if not breakdown:
        return None
    roles = list(breakdown)
    phases = sorted({p for r in roles for p in breakdown[r] if p not in ("ranks", "wall")},
                    key=lambda p: (_phase_kind(p)[0], p))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4))
    bottom = np.zeros(len(roles))
    for index, phase in enumerate(phases):
        values = np.array([breakdown[r].get(phase, 0.0) for r in roles])
        order, kind = _phase_kind(phase)
        ax.bar(roles, values, bottom=bottom, label=phase if order == 3 else f"{kind}: {phase}",
               color=plt.cm.tab20(index % 20), hatch="//" if order == 2 else None)
        bottom += values
    ax.set_title("time per role (mean over the role's ranks)")
    ax.set_xlabel("role")
    ax.set_ylabel("seconds")
    # outside the axes: a bar must never hide behind the legend
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), title="phase")
    fig.tight_layout()
    return _save(fig, out / "time_breakdown.png")


def _phase_kind(phase: str) -> tuple[int, str]:
    """Where a phase of a sim/train rank belongs: compute, coupling, waiting, or neither (3)."""
    from tcoupled.coupling.outputs import COUPLING, SOLVING, TRAINING, WAITING

    if phase in SOLVING + TRAINING:
        return 0, "compute"
    if phase in COUPLING:
        return 1, "coupling"
    if phase in WAITING:
        return 2, "waiting for the other role"
    return 3, "other"


def plot_best_ie(out: Path, farm_dir: Path) -> Path | None:
    """Best IE found so far against the number of simulations."""
    from tcoupled.runtime.store import RESULTS_FILE
    from tcoupled.screening.outputs import best_so_far, read_records

    if not (farm_dir / RESULTS_FILE).exists():
        return None
    count, _, best = best_so_far(read_records(farm_dir))
    if not len(count):
        return None
    fig, ax = _pyplot().subplots(figsize=(6, 4))
    ax.step(count, best, where="post", marker="o")
    ax.set_title("farm: best ionization energy found vs simulations")
    ax.set_xlabel("simulations")
    ax.set_ylabel("best IE found / eV")
    return _save(fig, out / "best_ie_vs_simulations.png")


def _key_numbers(summary: dict) -> list[str]:
    lines = ["| key | value |", "| --- | --- |"]
    skip = {"members", "time_breakdown", "rollout_rel_l2", "rollout_vrmse", "farm",
            "worker_utilization", "worker_busy_s", "results"}
    for key in sorted(summary):
        if key not in skip:
            lines.append(f"| `{key}` | {summary[key]} |")
    return lines


def _member_lines(summary: dict) -> list[str]:
    lines = ["| member | kernel | first loss | last loss | VRMSE step 1 | VRMSE last step "
             "| rel. L2 last step |", "| --- | --- | --- | --- | --- | --- | --- |"]
    errors = summary.get("rollout_rel_l2") or []
    vrmse = summary.get("rollout_vrmse") or []
    for member, errs, vr in zip(summary.get("members", []), errors + [[]] * 99,
                                vrmse + [[]] * 99, strict=False):
        last = f"{errs[-1]:.3g}" if errs else "-"
        first_v, last_v = (f"{vr[0]:.3g}", f"{vr[-1]:.3g}") if vr else ("-", "-")
        lines.append(f"| {member['member']} | {member.get('kernel_size')} | "
                     f"{member['first_loss']:.3g} | {member['last_loss']:.3g} | {first_v} | "
                     f"{last_v} | {last} |")
    return lines


def write_markdown(out: Path, command: str, summary: dict, plots: dict) -> Path:
    """``report.md``: the key numbers, per-member and farm tables, and the figures."""
    from tcoupled.runtime.store import atomic_path

    lines = [f"# tcoupled {command} run: {out.name}", "", "## Key numbers", ""]
    lines += _key_numbers(summary)
    if summary.get("members"):
        lines += ["", "## Ensemble members", ""] + _member_lines(summary)
    farm = summary.get("farm")
    if farm:
        lines += ["", "## Farm", "", f"{farm['simulated']} molecules simulated "
                  f"({farm['failed']} failed) on {farm['ranks']} farm ranks; best IE "
                  f"{farm['best_ie_ev']} eV ({farm['best_smiles']}); "
                  f"{farm['tasks_per_s']:.3f} tasks/s."]
    lines += ["", "## Figures", ""]
    for title, path in plots.items():
        if path is not None:
            lines += [f"### {title}", "", f"![{title}]({path.name})", ""]
    with atomic_path(out / REPORT_FILE) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out / REPORT_FILE


def write_report(out: str | Path) -> Path:
    """Write the plots and ``report.md`` of the run in ``out``; return the report's path."""
    out = Path(out)
    command, summary, data = read_run(out)
    plots = {
        "Field snapshots: solver vs surrogates": plot_fields(out, data),
        "Training loss per member": plot_members(
            out, data, "loss", "training loss per member", "iteration", "MSE loss",
            "training_loss.png"),
        "Rollout VRMSE per member (held-out initial condition)": plot_members(
            out, data, "rollout_vrmse", "held-out rollout: VRMSE per step",
            "rollout step", "VRMSE (RMSE / std of the true field)", "rollout_vrmse.png"),
        "Rollout error per member": plot_members(
            out, data, "rollout_rel_l2", "autoregressive rollout error per member",
            "rollout step", "relative L2 error vs solver", "rollout_error.png"),
        "Time per role": plot_time(out, summary),
        "Best IE found vs simulations": plot_best_ie(
            out, out / "farm" if command == "couple" else out),
    }
    return write_markdown(out, command, summary, plots)
