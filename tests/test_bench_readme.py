"""The README paragraphs printed from a ``bench.json`` (``python -m tcoupled.bench.readme``)."""

from tcoupled.bench import readme


def test_model_table_marks_the_calibrated_cycles_and_the_sums_alone():
    row = {"case": "numpy 2+1 129^2, space", "channel": "mpi", "solver_to_training": 0.88,
           "predicted_s": 0.0119, "measured_s": 0.0109, "measured_q1": 0.0105,
           "measured_q3": 0.011, "ratio": 1.09, "analytic_ratio": 0.78,
           "parts": {"measured": True}}
    analytic = {**row, "case": "numpy 1+1 65^2, space", "parts": {"measured": False}}
    results = {"cycles": 12, "rows": [row, analytic],
               "headline": {"launches_per_case": 3, "within_25pct": 2, "cases": 2,
                            "within_25pct_fraction": 1.0, "worst_error": 0.09,
                            "analytic_within_25pct": 1, "auto_correct": 1, "auto_judged": 1,
                            "handoff_source": "bench channels (mpi)"}}
    lines = readme.model(results)
    assert "| numpy 2+1 129^2, space | mpi | 0.88 | 0.0119 (run) | 0.0109 (0.0105-0.0110) " \
           "| 1.09 | 0.78 |" in lines
    assert any(line.startswith("| numpy 1+1 65^2, space | mpi | 0.88 | 0.0119 |")
               for line in lines)
    assert "the analytic sums alone 1" in lines[-1] and "2 of 2 cases" in lines[-1]

