"""The cost model's arithmetic (serial), its fit to bench rows, and ``--division auto``."""

import json

import pytest

from tcoupled.coupling.channels import default_channel
from tcoupled.coupling.costmodel import (
    HandoffCost,
    UnitCosts,
    Workload,
    choose_division,
    handoff_costs_from_bench,
    predict,
)
from tcoupled.runtime.errors import ConfigError

from mpitools import check, tcoupled

COSTS = UnitCosts(sim_s=0.3, iter_s=0.05, allreduce_s=0.01, slot_bytes=1000, feeds=1,
                  sources=2, warmup_s=0.4)
LINK = HandoffCost(0.001, 1e-6)      # 1 ms + 1 us per byte: 2 ms per slot


def test_time_division_adds_the_phases():
    parts = predict(COSTS, LINK, "time", train_iters=4, cycles=4)
    # sim + handoff * max(feeds, sources) + turn back + M * (iter + allreduce) + warmup / C
    assert parts["cycle_s"] == pytest.approx(0.3 + 2 * 0.002 + 0.001 + 4 * 0.06 + 0.1)
    assert parts["steady_s"] == pytest.approx(parts["cycle_s"] - 0.4 / 4)  # no first iter
    assert parts["train_s"] == pytest.approx(0.24)


def test_space_division_runs_at_the_slower_side():
    parts = predict(COSTS, LINK, "space", train_iters=4, cycles=4)
    produce, consume = 0.3 + 0.002, 2 * 0.002 + 0.24
    assert parts["produce_s"] == pytest.approx(produce)
    assert parts["consume_s"] == pytest.approx(consume)
    assert parts["cycle_s"] == pytest.approx(produce + (consume + 0.4) / 4)
    assert parts["steady_s"] == pytest.approx(produce)  # no fill, no first iteration
    slow_train = predict(COSTS, LINK, "space", train_iters=40, cycles=4)
    assert slow_train["cycle_s"] == pytest.approx(0.004 + 2.4 + (0.302 + 0.4) / 4)


def test_digest_is_paid_per_source_on_the_training_side():
    from dataclasses import replace

    hashed = replace(COSTS, digest_s=0.01)
    assert predict(hashed, LINK, "time", 4, 4)["cycle_s"] == pytest.approx(
        predict(COSTS, LINK, "time", 4, 4)["cycle_s"] + 2 * 0.01)
    space = predict(hashed, LINK, "space", 4, 4)
    assert space["consume_s"] == pytest.approx(2 * 0.002 + 0.24 + 0.02)


def test_time_division_measured_in_turns_adds_only_the_channel_bytes():
    from dataclasses import replace

    turns = replace(COSTS, turn_cycle_s=0.5, sim_turn_s=0.3, train_turn_s=0.15, digest_s=0.01,
                    turn_link_s=0.0004)
    parts = predict(turns, LINK, "time", train_iters=4, cycles=4, channel="mpi")
    # the turns ran over shm (a 0.4 ms signal a slot): another channel's handoff takes its
    # place for each of the 2 sources, and the --verify hash of each slot is added
    assert parts["measured"] and parts["steady_s"] == pytest.approx(
        0.5 + 2 * (0.002 - 0.0004) + 2 * 0.01)
    assert parts["cycle_s"] == pytest.approx(parts["steady_s"] + 0.4 / 4)
    # the analytic sum beside it: sim + 2 slots + the turn back + the measured training
    assert parts["analytic_s"] == pytest.approx(0.3 + 2 * 0.002 + 0.001 + 0.15 + 0.02)
    # on the channel the turns ran on, the measured cycle as it is
    shm = predict(turns, HandoffCost(0.001), "time", 4, 4, channel="shm")
    assert shm["steady_s"] == pytest.approx(0.5 + 0.02)


def test_space_division_measured_as_a_pipeline_swaps_only_the_channel():
    from dataclasses import replace

    pipe = replace(COSTS, pipe_cycle_s=0.4, pipe_link_s=0.0015, sim_ranks=2, train_ranks=1,
                   cores=2)    # three busy ranks on two cores: the pipeline as measured
    assert predict(pipe, LINK, "space", 4, 4, "mpi")["steady_s"] == pytest.approx(0.4)
    # a core per rank: the analytic cycle stands, the measured one is not used
    free = predict(replace(pipe, cores=3), LINK, "space", 4, 4, "mpi")
    assert not free["measured"] and free["steady_s"] == free["analytic_s"]
    # another channel: its handoff instead of the measured mpi one, for 2 sources
    other = predict(pipe, LINK, "space", 4, 4, "file")
    assert other["steady_s"] == pytest.approx(0.4 + 2 * (0.002 - 0.0015))
    analytic = predict(replace(pipe, pipe_cycle_s=0.0), LINK, "space", 4, 4)
    assert other["analytic_s"] == pytest.approx(analytic["steady_s"])
    # paid once per run, on top: the fill (the faster side's cycle) and the first iteration
    assert other["cycle_s"] - other["steady_s"] == pytest.approx(
        analytic["cycle_s"] - analytic["steady_s"])


def test_space_division_trains_whole_measured_cycles():
    from dataclasses import replace

    # a cycle of training measured whole (context, iterations, replay): not M * iter;
    # side by side the trainer goes 1.5 times slower, the sim not at all
    whole = replace(COSTS, train_turn_s=0.2, train_cycle_s=0.18, train_together_s=0.27,
                    sim_together_s=0.3)
    parts = predict(whole, LINK, "space", train_iters=4, cycles=4)
    produce, consume = 0.3 + 0.002, 2 * 0.002 + 0.2
    assert parts["consume_s"] == pytest.approx(consume)
    # both run until the sim is done (0.302 s, the trainer 0.302 / 1.5 into its cycle)
    assert parts["steady_s"] == pytest.approx(produce + consume - produce / 1.5)


def test_replay_offer_is_paid_per_copied_sample_of_a_steady_cycle():
    from dataclasses import replace

    from tcoupled.training.replay import steady_copies

    assert steady_copies(10, 0, 6) == 0.0 and steady_copies(10, 100, 6) == 10.0  # filling
    # 100 samples a cycle into 256: cycle 2 copies 100, cycle 3 56 + 44 kept of 201..300
    third = 56 + sum(256 / s for s in range(257, 301))
    assert steady_copies(100, 256, 3) == pytest.approx((100 + third) / 2)
    replaying = replace(COSTS, replay_sample_s=1e-4, replay_samples=10, replay_capacity=256)
    for division in ("time", "space"):
        assert predict(replaying, LINK, division, 4, 4)["train_s"] == pytest.approx(
            predict(COSTS, LINK, division, 4, 4)["train_s"] + 10 * 1e-4)


def test_unknown_division_is_refused():
    with pytest.raises(ConfigError, match="'diagonal'"):
        predict(COSTS, LINK, "diagonal", 1, 1)


def test_handoff_fit_is_flat_for_zero_copy_and_linear_for_copies():
    rows = [{"method": "mpi", "bytes": 1000, "seconds": 2e-5},
            {"method": "mpi", "bytes": 101000, "seconds": 1.2e-4},
            {"method": "shm", "bytes": 1000, "seconds": 1e-5},
            {"method": "shm", "bytes": 101000, "seconds": 3e-5}]
    fitted = handoff_costs_from_bench({"rows": rows})
    assert fitted["mpi"].s_per_byte == pytest.approx(1e-9)
    assert fitted["mpi"].seconds(1000) == pytest.approx(2e-5)
    assert fitted["shm"].s_per_byte == 0 and fitted["shm"].latency_s == pytest.approx(1e-5)
    assert set(fitted) == {"mpi", "shm"}  # no rows, no fit: the in-run measurement stays


def test_handoff_fit_reads_rows_timed_end_to_end():
    rows = [{"channel": "mpi", "bytes": 1000, "handoff_us": 25.0, "touch_us": 5.0},
            {"channel": "mpi", "bytes": 101000, "handoff_us": 140.0, "touch_us": 20.0}]
    fitted = handoff_costs_from_bench({"rows": rows})
    assert fitted["mpi"].s_per_byte == pytest.approx(1e-9)
    assert fitted["mpi"].seconds(1000) == pytest.approx(2e-5)


def test_handoff_fit_skips_rows_of_another_layout():
    rows = [{"method": "mpi", "size": 10, "time": 1.0}, "not a row",
            {"method": "file", "bytes": 100, "seconds": 1e-3}]
    assert handoff_costs_from_bench({"rows": rows}) == {}
    assert handoff_costs_from_bench({}) == {}


def test_space_is_chosen_only_with_the_margin():
    from dataclasses import replace

    workload = Workload(wave=None, sim_ranks=1, train_ranks=1, members=(), sim_steps=8,
                        train_iters=4, cycles=1000)
    free = HandoffCost(0.0)
    # time: sim + train; space: max(sim, train) (+ the fill): saves about sim / train
    for sim_s, expected in ((0.01, "time"), (0.018, "time"), (0.03, "space")):
        costs = replace(COSTS, sim_s=sim_s, iter_s=0.025, allreduce_s=0.0, warmup_s=0.0,
                        sources=1)
        division, why = choose_division(workload, None, {"shm": free, "mpi": free}, costs)
        margin = (sim_s + 0.1) / (0.1 + min(sim_s, 0.1) / 1000) - 1
        assert division == expected, (sim_s, why)
        assert f"space {margin:+.0%} faster (needs +20%)" in why


def test_oversubscribed_space_division_shares_the_cores():
    from dataclasses import replace

    shared = replace(COSTS, sim_ranks=1, train_ranks=1, cores=1)
    alone = predict(replace(shared, cores=2), LINK, "space", train_iters=4, cycles=4)
    parts = predict(shared, LINK, "space", train_iters=4, cycles=4)
    produce, consume = 0.3 + 0.002, 2 * 0.002 + 0.24
    assert not alone["oversubscribed"] and alone["cycle_s"] == pytest.approx(
        produce + (consume + 0.4) / 4)
    assert parts["oversubscribed"]
    assert parts["cycle_s"] == pytest.approx(produce + consume + (consume + 0.4) / 4)
    # two sim and two train ranks on two cores: the busy core-seconds over the cores
    four = predict(replace(shared, sim_ranks=2, train_ranks=2, cores=2), LINK, "space", 4, 4)
    assert four["cycle_s"] == pytest.approx(produce + consume + (consume + 0.4) / 4)


def test_space_division_uses_the_costs_measured_side_by_side():
    from dataclasses import replace

    together = replace(COSTS, sim_together_s=0.5, iter_together_s=0.08, cores=1,
                       sim_ranks=1, train_ranks=1)
    parts = predict(together, LINK, "space", train_iters=4, cycles=4)
    produce, consume = 0.3 + 0.002, 2 * 0.002 + 4 * 0.06      # each side alone
    assert parts["produce_s"] == pytest.approx(produce)
    assert parts["consume_s"] == pytest.approx(consume)
    # side by side the sim goes 5/3 and the trainer 4/3 times slower; the trainer is done
    # first, then the sim has the cores to itself for the rest of its cycle
    trained = consume * 0.08 / 0.06
    steady = trained + produce - trained / (0.5 / 0.3)
    assert parts["steady_s"] == pytest.approx(steady)
    # measured together: no core-sharing term on top
    assert parts["cycle_s"] == pytest.approx(steady + (consume + 0.4) / 4)
    assert predict(together, LINK, "time", 4, 4) == predict(COSTS, LINK, "time", 4, 4)
    # the slower side alone would bound the cycle from below; both slowed, from above
    assert max(produce, consume) < steady < max(produce * 0.5 / 0.3, consume * 0.08 / 0.06)
    faster_sim = replace(together, sim_s=0.01, sim_together_s=0.02)
    sim_done = 2 * (0.01 + 0.002)  # the sim is done first: the trainer then goes alone
    assert predict(faster_sim, LINK, "space", 4, 4)["steady_s"] == pytest.approx(
        sim_done + consume - sim_done / (0.08 / 0.06))


def test_calibration_result_becomes_unit_costs():
    from dataclasses import replace

    from tcoupled.coupling.costmodel import calibrate
    from tcoupled.sim.config import WaveConfig

    workload = Workload(wave=WaveConfig(grid=(33, 33), dt=0.01, dtype="float32"), sim_ranks=2,
                        train_ranks=1, members=(), sim_steps=4, train_iters=3, cycles=2)
    measured = {"sim_s": 0.02, "sim_serial_s": 0.015, "local_shape": [17, 33],
                "iter_s": 0.05, "allreduce_s": 0.01, "first_iter_s": 0.2, "digest_s": 1e-4,
                "feeds": 1, "sources": 2, "handoff": {"mpi": [1e-5, 1e-9], "shm": [2e-5, 0]},
                "sim_together_s": 0.03, "iter_together_s": 0.07, "replay_sample_s": 2e-4,
                "replay_samples": 6}
    turns = {"turn_cycle_s": 0.3, "sim_turn_s": 0.03, "train_turn_s": 0.25,
             "first_turn_s": 0.45, "train_cycle_s": 0.2, "train_together_s": 0.22,
             "pipe_cycle_s": 0.26}
    costs = calibrate(workload, {**measured, **turns})[0]
    assert (costs.turn_cycle_s, costs.sim_turn_s, costs.train_turn_s, costs.train_cycle_s,
            costs.train_together_s, costs.pipe_cycle_s) == (0.3, 0.03, 0.25, 0.2, 0.22, 0.26)
    assert costs.pipe_link_s == pytest.approx(1e-5 + 1e-9 * 5 * 17 * 33 * 4)  # mpi, in-run
    assert costs.turn_link_s == pytest.approx(2e-5)  # shm, in-run: a signal
    # a run that names its channel: both divisions' cycles were measured on it
    named = calibrate(replace(workload, channel="mpi"), {**measured, **turns})[0]
    assert (named.turn_channel, named.pipe_channel) == ("mpi", "mpi")
    assert named.turn_link_s == pytest.approx(costs.pipe_link_s)
    assert predict(named, LINK, "time", 3, 2, "mpi")["steady_s"] == pytest.approx(0.3)
    assert costs.warmup_s == pytest.approx(0.2)  # the first turn's extra, when turns ran
    costs, links = calibrate(workload, measured)
    assert costs.digest_s == 0.0  # no --verify: nothing hashed
    assert (costs.replay_sample_s, costs.replay_samples, costs.replay_capacity) == (2e-4, 6, 0)
    assert calibrate(replace(workload, verify=True), measured)[0].digest_s == 1e-4
    assert costs.slot_bytes == 5 * 17 * 33 * 4
    assert costs.iter_s == pytest.approx(0.04) and costs.allreduce_s == 0.01
    assert costs.warmup_s == pytest.approx(0.15) and costs.halo_s == pytest.approx(0.005)
    assert (costs.feeds, costs.sources, costs.sim_ranks, costs.train_ranks) == (1, 2, 2, 1)
    assert costs.cores >= 1 and (costs.sim_together_s, costs.iter_together_s) == (0.03, 0.07)
    assert links == {"mpi": HandoffCost(1e-5, 1e-9), "shm": HandoffCost(2e-5, 0)}


@pytest.mark.mpi
@pytest.mark.timeout(150)
def test_calibration_job_runs_at_the_run_rank_counts():
    from tcoupled.coupling.costmodel import run_calibration
    from tcoupled.sim.config import WaveConfig
    from tcoupled.training.ensemble import member_params

    workload = Workload(wave=WaveConfig(grid=(33, 33), dt=0.01, dtype="float32", init="gaussian"),
                        sim_ranks=2, train_ranks=1, members=member_params(1, (3,), (1e-3,), (2,)),
                        sim_steps=4, train_iters=2, cycles=2, batch_size=2)
    found = run_calibration(workload, timeout=140)
    assert found["local_shape"] == [17, 33]  # the larger of the two blocks, as the run cuts
    assert found["sim_s"] > 0 and found["sim_serial_s"] > 0
    assert found["first_iter_s"] > 0 and found["iter_s"] > 0 and found["allreduce_s"] >= 0
    assert found["sim_together_s"] > 0 and found["train_together_s"] > 0
    assert found["train_cycle_s"] > 0 and found["first_turn_s"] > 0
    # the turns: each side's busy part of a cycle is in the (slowest rank's) cycle
    assert 0 < found["sim_turn_s"] <= found["turn_cycle_s"]
    assert 0 < found["train_turn_s"] <= found["turn_cycle_s"]
    assert 0 < found["sim_pipe_s"] <= found["pipe_cycle_s"]
    assert 0 < found["train_pipe_s"] <= found["pipe_cycle_s"]
    assert (found["feeds"], found["sources"]) == (1, 2)
    assert set(found["handoff"]) == {"inproc", "shm", "mpi", "file"}
    assert all(latency > 0 and per_byte >= 0 for latency, per_byte in found["handoff"].values())


def test_calibration_turns_follow_the_run_routes():
    from tcoupled.coupling.calibration_turns import routes
    from tcoupled.training.ensemble import member_params

    def workload(sim, train, members=1):
        return Workload(wave=None, sim_ranks=sim, train_ranks=train, sim_steps=4,
                        members=member_params(members, (3,), (1e-3,), (2,)), train_iters=1,
                        cycles=2)

    # calibration ranks: sim ranks 0..S-1, then the train ranks
    assert routes(workload(2, 1)) == ({0: (2,), 1: (2,)}, {2: (0, 1)})
    assert routes(workload(1, 2)) == ({0: (1, 2)}, {1: (0,), 2: (0,)})  # a DDP pair
    feeds, sources = routes(workload(2, 2, members=2))   # two members, each fed by both
    assert feeds == {0: (2, 3), 1: (2, 3)} and sources == {2: (0, 1), 3: (0, 1)}


def test_auto_refuses_more_ranks_than_cores():
    from dataclasses import replace

    workload = Workload(wave=None, sim_ranks=2, train_ranks=1, members=(), sim_steps=8,
                        train_iters=4, cycles=4)
    costs = replace(COSTS, sim_ranks=2, train_ranks=1, cores=2)
    with pytest.raises(ConfigError, match="needs a core per rank, got 3 ranks on 2 cores"):
        choose_division(workload, None, {"shm": LINK, "mpi": LINK}, costs)
    assert choose_division(workload, None, {"shm": LINK, "mpi": LINK},
                           replace(costs, cores=3))[0] in ("time", "space")


def test_choice_names_the_faster_division_and_why():
    workload = Workload(wave=None, sim_ranks=1, train_ranks=1, members=(), sim_steps=8,
                        train_iters=4, cycles=4)
    division, why = choose_division(workload, None, {"shm": LINK, "mpi": LINK}, COSTS)
    assert division == "space"
    assert "time (shm)" in why and "space (mpi)" in why and "s/cycle" in why
    inproc = Workload(wave=None, sim_ranks=1, train_ranks=0, members=(), sim_steps=8,
                      train_iters=4, cycles=4)
    assert choose_division(inproc)[0] == "time"
    assert default_channel("time", 0) == "inproc" and default_channel("space", 2) == "mpi"


@pytest.mark.timeout(120)
@pytest.mark.mpi
def test_couple_division_auto_resolves_and_says_why(tmp_path):
    proc = check(tcoupled("couple", "--division", "auto", "--train-ranks", "1", "--grid",
                          "33", "33", "--init", "gaussian", "--cycles", "2", "--sim-steps",
                          "4", "--train-iters", "2", "--rollout", "1", "--out", str(tmp_path),
                          ranks=2, timeout=100))
    line = next(ln for ln in proc.stdout.splitlines() if "--division auto ->" in ln)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert f"-> {summary['division']}:" in line and "s/cycle" in line
    assert "faster (needs +20%)" in line and "allreduce" in line


@pytest.mark.timeout(200)
@pytest.mark.mpi
def test_bench_model_quick_compares_prediction_with_real_runs(tmp_path):
    proc = check(tcoupled("bench", "model", "--quick", "--out", str(tmp_path), timeout=180))
    assert "predicted s" in proc.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["model"]
    assert {r["division"] for r in results["rows"]} == {"time", "space"}
    for row in results["rows"]:
        assert not row.get("failed"), row
        assert row["predicted_s"] > 0 and row["measured_s"] > 0
        assert row["ratio"] == pytest.approx(row["predicted_s"] / row["measured_s"])
    (choice,) = results["choices"]
    assert choice["auto"] in ("time", "space") and "correct" in choice
    fastest = min(results["rows"], key=lambda r: r["measured_s"])
    assert choice["measured_faster"] == fastest["division"]
    head = results["headline"]
    assert head["cases"] == 2 and head["auto_judged"] == 1
    assert head["within_25pct_fraction"] == sum(
        abs(r["ratio"] - 1) <= 0.25 for r in results["rows"]) / 2
    assert (tmp_path / "bench_model.png").stat().st_size > 10_000


def test_bench_json_handoff_costs_are_read_when_present(tmp_path, monkeypatch):
    from tcoupled.coupling.costmodel import handoff_from_bench_json

    rows = [{"method": "mpi", "bytes": 1000, "seconds": 2e-5},
            {"method": "mpi", "bytes": 101000, "seconds": 1.2e-4}]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"channels": {"rows": rows}}))
    fitted, source = handoff_from_bench_json(str(path))
    assert fitted["mpi"].s_per_byte == pytest.approx(1e-9) and source == "bench channels (mpi)"
    monkeypatch.setenv("TCOUPLED_BENCH_JSON", str(path))
    assert handoff_from_bench_json(None)[0] == fitted
    path.write_text("{not json")
    assert handoff_from_bench_json(None) == ({}, "in-run")
    monkeypatch.delenv("TCOUPLED_BENCH_JSON")
    assert handoff_from_bench_json(None) == ({}, "in-run")


def test_short_cycles_are_calibrated_over_more_of_the_run():
    from types import SimpleNamespace

    from tcoupled.coupling.calibration_train import (
        MAX_CYCLES,
        TURN_BUDGET_S,
        calibration_cycles,
    )

    run = SimpleNamespace(cycles=40)
    assert calibration_cycles(run) == MAX_CYCLES  # the first round
    assert calibration_cycles(run, 0.01) == 40  # 10 ms cycles: the run's 40 fit the budget
    assert calibration_cycles(run, TURN_BUDGET_S / 16) == 16
    assert calibration_cycles(run, 1.0) == MAX_CYCLES  # long cycles: no more than before
    assert calibration_cycles(SimpleNamespace(cycles=2), 0.01) == 4


def test_divisions_run_a_longer_second_round_where_the_cycles_are_short(monkeypatch):
    from types import SimpleNamespace

    from tcoupled.coupling import calibration_train
    from tcoupled.coupling import calibration_turns as turns

    calls, cycle_s = [], {"s": 0.01}

    def division(world, workload, sim_comm, scratch, name, cycles, *rest):
        calls.append((name, cycles))   # each call's cycle a little longer: which one counts
        kind = turns.KINDS[name]
        return {f"{kind}_cycle_s": cycle_s["s"] + 1e-4 * len(calls),
                f"first_{kind}_s": float(cycles)}

    class World:
        def allreduce(self, value, op=None):
            return value   # one rank: its own longest cycle

    monkeypatch.setattr(turns, "_division", division)
    monkeypatch.setattr(turns, "_max", lambda: None)
    monkeypatch.setattr(calibration_train, "sleep_barrier", lambda world: None)
    found = turns.divisions(World(), SimpleNamespace(cycles=40), None, "")
    # 10 ms cycles: the second round runs the run's 40 and alone gives the figures
    assert calls == [("time", 12), ("space", 12), ("time", 40), ("space", 40)]
    assert found["turn_cycle_s"] == pytest.approx(0.0103)
    assert found["first_turn_s"] == 12.0  # the warm-up is the first round's
    calls.clear()
    cycle_s["s"] = 0.1  # 100 ms cycles: two rounds of 12, their mean
    found = turns.divisions(World(), SimpleNamespace(cycles=40), None, "")
    assert calls == [("time", 12), ("space", 12)] * 2
    assert found["pipe_cycle_s"] == pytest.approx((0.1002 + 0.1004) / 2)
