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


def test_model_table_gives_each_case_its_cycles_when_launches_were_sized():
    row = {"case": "C kernel 1+1 129^2 M=2, time", "channel": "shm", "cycles": 61,
           "solver_to_training": 0.03, "predicted_s": 0.0099, "measured_s": 0.0101,
           "measured_q1": 0.01, "measured_q3": 0.0102, "ratio": 0.98, "analytic_ratio": 0.8,
           "parts": {"measured": True}}
    results = {"cycles": 12, "steady_s": 0.6, "rows": [row],
               "headline": {"launches_per_case": 3, "within_25pct": 1, "cases": 1,
                            "within_25pct_fraction": 1.0, "worst_error": 0.02,
                            "analytic_within_25pct": 1, "auto_correct": 0, "auto_judged": 0,
                            "handoff_source": "bench channels (shm)"}}
    lines = readme.model(results)
    assert "at least 12 and enough for 0.6 s past the first" in lines[0]
    assert any(line.startswith("| C kernel 1+1 129^2 M=2, time (C=61) | shm |")
               for line in lines)
