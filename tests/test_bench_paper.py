"""The Polaris projection's arithmetic and the README paragraphs rendered from bench.json."""

import pytest

from tcoupled.bench import projection, readme


def test_projection_unit_costs_follow_the_stated_assumptions():
    case = projection.Case("t", block=1000, steps=10, iters=2, batch=3)
    time_costs = projection.unit_costs(case, "time", nodes=1)
    step = 12 * 1000 ** 2 / (1.5e12 * 0.62)
    halo = 10e-6 + 4 * 1000 / 100e9
    assert time_costs.sim_s == pytest.approx(10 * (step + halo))
    assert time_costs.iter_s == pytest.approx(3 * 1000 ** 2 * 14688 / (19.5e12 * 0.25))
    assert time_costs.slot_bytes == 11 * 1000 ** 2 * 4
    space = projection.unit_costs(case, "space", nodes=64)
    assert space.slot_bytes == 2 * time_costs.slot_bytes  # half the GPUs, twice the block
    assert space.iter_s == pytest.approx(2 * time_costs.iter_s)
    assert space.allreduce_s == 100e-6 and (space.sim_ranks, space.train_ranks) == (128, 128)


def test_projection_rows_carry_both_divisions_and_the_choice():
    rows = projection.project()
    assert len(rows) == len(projection.CASES) * len(projection.MACHINES)
    for row in rows:
        margin = row["time"]["cycle_s"] / row["space"]["cycle_s"] - 1
        assert row["margin"] == pytest.approx(margin)
        assert row["auto"] == ("space" if margin >= 0.2 else "time")
    text = projection.markdown()
    assert text.count("\n| ") == len(rows) + 1 and "`hbm_bytes_per_s` = 1.5e+12" in text


def test_readme_paragraphs_show_every_spread():
    q = {"median": 10.0, "q1": 9.0, "q3": 12.0, "iqr": 3.0, "n": 5}
    farm = {"sizes": {"repeats": 5, "window_s": 1.0},
            "headline": {"workers": 2, "tasks_per_s": {"farm": q}, "overhead_ms_per_task":
                         {"farm": q}, "farm_over_parsl": 12.5, "isolation_cost_ms_per_task": 0.05}}
    text = "\n".join(readme.farm(farm))
    assert "| farm | 10 (IQR 9-12) | 10.000 (IQR 9.000-12.000) |" in text
    assert "12.5x Parsl HTEX with chunked apps" in text and "0.050 ms per task" in text
    ddp = {"headline": {"n": 256, "launches": 7, "efficiency_2": 0.9, "ci95": [0.8, 0.95],
                        "ci95_coverage": 0.984, "samples_per_s_1": 10.0,
                        "samples_per_s_2": 18.0, "allreduce_share_2": 0.03}}
    assert "efficiency at 2 ranks 0.90, 98% interval [0.80, 0.95]" in readme.ddp(ddp)[0]
    row = {"case": "w, time", "channel": "shm", "solver_to_training": 1.0, "predicted_s": 0.1,
           "measured_s": 0.11, "measured_q1": 0.1, "measured_q3": 0.12, "ratio": 0.91}
    model = {"cycles": 6, "rows": [row], "headline": {
        "launches_per_case": 3, "within_25pct": 1, "cases": 1, "within_25pct_fraction": 1.0,
        "worst_error": 0.09, "auto_correct": 1, "auto_judged": 1, "handoff_source": "in-run"}}
    assert "| w, time | shm | 1.00 | 0.1000 | 0.1100 (0.1000-0.1200) | 0.91 | - |" in readme.model(
        model)
