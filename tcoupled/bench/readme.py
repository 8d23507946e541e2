"""README paragraphs of ``bench farm``, ``ddp`` and ``model`` from a ``bench.json``.

``python -m tcoupled.bench.readme runs/bench/bench.json`` prints the Markdown that the
README's performance section carries for these three benchmarks, every figure with its
spread, so the section is redone from one run without copying numbers by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _q(q: dict, fmt: str = ",.0f") -> str:
    return f"{q['median']:{fmt}} (IQR {q['q1']:{fmt}}-{q['q3']:{fmt}})"


def farm(results: dict) -> list[str]:
    """Tasks/s and overhead per runner at the headline's worker count, then the ratios."""
    head = results["headline"]
    lines = [f"**Farm** (`bench farm`, {head['workers']} workers, no-op tasks, "
             f"{results['sizes']['repeats']} windows of >= {results['sizes']['window_s']:g} s "
             "each, median and interquartile range):", "",
             "| runner | tasks/s | overhead ms/task |", "| --- | --- | --- |"]
    for runner, q in head["tasks_per_s"].items():
        lines.append(f"| {runner} | {_q(q)} | "
                     f"{_q(head['overhead_ms_per_task'][runner], '.3f')} |")
    def ratios(pairs: tuple) -> str:
        return " and ".join(f"{head[key]:.3g}x {what}" for key, what in pairs if key in head)

    chunked = ratios((("farm_over_parsl", "Parsl HTEX with chunked apps"),
                      ("farm_over_mpi4py_futures_tuned", "`mpi4py.futures` tuned")))
    single = ratios((("farm_over_parsl_per_task", "Parsl HTEX with an app per task"),
                     ("farm_over_mpi4py_futures", "`mpi4py.futures` at its defaults")))
    lines += ["", f"In the same chunks (four per worker) the farm's throughput is {chunked}; "
              f"one task per message (`farm-per-task`, as the active learner submits) it is "
              f"{single}, with an overhead of "
              f"{head.get('farm_overhead_ms_per_task', float('nan')):.3f} ms per task. Its "
              f"crash and timeout isolation costs "
              f"{head.get('isolation_cost_ms_per_task', float('nan')):.3f} ms per task "
              "(chunked farm with and without its helper process)."]
    return lines


def ddp(results: dict) -> list[str]:
    """Efficiency at two ranks with its interval."""
    head = results["headline"]
    low, high = head["ci95"]
    return [f"**DDP training** (CNN 1->8->16->8->1, k=5, 4 x {head['n']}^2 float32 per rank, "
            f"gloo; {head['launches']} rounds, each two concurrent one-rank runs then one "
            f"two-rank run): efficiency at 2 ranks {head['efficiency_2']:.2f}, "
            f"{head['ci95_coverage']:.0%} interval [{low:.2f}, {high:.2f}]; one rank "
            f"{head['samples_per_s_1']:.1f} samples/s, two ranks {head['samples_per_s_2']:.1f} "
            f"samples/s, allreduce {head['allreduce_share_2']:.1%} of the time at 2 ranks."]


def model(results: dict) -> list[str]:
    """Predicted against measured cycles, then the headline fractions."""
    head = results["headline"]
    lines = [f"**Cost model** (`bench model`, {results['cycles']} cycles per launch, "
             f"{head['launches_per_case']} launches per case, measured = median (IQR); "
             "\"sums\": the analytic cycle alone over the measured one):", "",
             "| case | channel | solver/training | predicted s/cycle | measured s/cycle | "
             "ratio | sums |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results["rows"]:
        how = " (run)" if r.get("parts", {}).get("measured") else ""
        sums = f"{r['analytic_ratio']:.2f}" if "analytic_ratio" in r else "-"
        if r.get("failed"):
            lines.append(f"| {r['case']} | {r['channel']} | - | {r['predicted_s']:.4f}{how} | "
                         "failed | - | - |")
            continue
        lines.append(f"| {r['case']} | {r['channel']} | {r['solver_to_training']:.2f} | "
                     f"{r['predicted_s']:.4f}{how} | {r['measured_s']:.4f} "
                     f"({r['measured_q1']:.4f}-{r['measured_q3']:.4f}) | {r['ratio']:.2f} | "
                     f"{sums} |")
    lines += ["", f"{head['within_25pct']} of {head['cases']} cases within 25% "
              f"({head['within_25pct_fraction']:.0%}, worst {head['worst_error']:.0%}; the "
              f"analytic sums alone {head.get('analytic_within_25pct', '-')}); "
              f"`--division auto` chose the measured faster division (or one within 10% of "
              f"it) for {head['auto_correct']} of {head['auto_judged']} workloads; handoff "
              f"costs from {head['handoff_source']}. (run): the cycle the calibration ran."]
    return lines


def main(argv: list[str] | None = None) -> None:
    """Print the paragraphs for the benchmarks present in the given ``bench.json``."""
    import json

    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0] if args else "runs/bench/bench.json")
    everything = json.loads(path.read_text())
    for name, render in (("farm", farm), ("ddp", ddp), ("model", model)):
        if name in everything:
            print("\n".join(render(everything[name])) + "\n")
            if everything[name].get("quick"):
                print(f"(`{name}` ran with --quick: not for the README)\n")


if __name__ == "__main__":
    main()
