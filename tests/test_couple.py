"""``tcoupled couple`` end to end: every channel, both divisions, 1 to 4 ranks."""

from __future__ import annotations

import argparse
import json

import pytest

from tcoupled.runtime.errors import ConfigError

from mpitools import check, tcoupled

GLOO = {"GLOO_SOCKET_IFNAME": "lo"}
BASE = ("--grid", "33", "33", "--init", "gaussian", "--seed", "3", "--cycles", "3",
        "--sim-steps", "6", "--train-iters", "10", "--rollout", "4", "--quiet", "--verify",
        "--dtype", "float64")  # float64: the trainer's float32 cast is a counted copy
REQUIRED = {"division", "channel", "sim_ranks", "train_ranks", "cycles", "handoffs",
            "handoff_bytes_copied", "data_digest", "members", "rollout_rel_l2",
            "time_breakdown", "coupling_overhead", "wall_s", "handoff_copies",
            "zero_copy_verified", "coupling_overhead_by_role", "idle_fraction",
            "rank_utilization", "oversubscribed", "rollout_vrmse", "cast_bytes", "replay",
            "steady_cycle_s", "handoff_s_per_handoff_steady"}

#: name -> (ranks, extra flags); one launch each
RUNS = {
    "time-inproc-1": (1, ()),
    "time-shm-2": (2, ("--train-ranks", "1")),
    "space-mpi-2": (2, ("--train-ranks", "1", "--division", "space")),
    "space-file-2": (2, ("--train-ranks", "1", "--division", "space", "--channel", "file")),
    "space-shm-3-ensemble": (3, ("--train-ranks", "2", "--ensemble", "2", "--division",
                                 "space", "--channel", "shm")),
    "time-inproc-2sims": (2, ("--sim-ranks", "2")),
    "time-mpi-4-ddp": (4, ("--sim-ranks", "2", "--train-ranks", "2", "--channel", "mpi")),
    "time-shm-2-float32": (2, ("--train-ranks", "1", "--dtype", "float32")),
}


@pytest.fixture(scope="module")
def summaries(tmp_path_factory):
    """Run every launch once; the tests below read the summaries."""
    out = {}
    for name, (ranks, flags) in RUNS.items():
        folder = tmp_path_factory.mktemp(name)
        check(tcoupled("couple", *BASE, *flags, "--out", str(folder), ranks=ranks,
                       timeout=90, env=GLOO))
        out[name] = json.loads((folder / "summary.json").read_text())
        assert (folder / "results.h5").exists()
    return out


pytestmark = pytest.mark.timeout(400)


@pytest.mark.mpi
def test_summary_carries_the_required_keys(summaries):
    for name, summary in summaries.items():
        assert REQUIRED <= set(summary), name
        assert summary["coupling_overhead"] > 0 and summary["wall_s"] > 0
        roles = {"sim", "train"}
        for key in ("coupling_overhead_by_role", "idle_fraction", "rank_utilization"):
            assert set(summary[key]) == roles, (name, key)
        for role in roles:
            busy = summary["idle_fraction"][role] + summary["rank_utilization"][role]
            assert 0 < busy <= 1 + 1e-9, (name, role)


@pytest.mark.mpi
def test_every_channel_and_division_delivers_the_same_data(summaries):
    one_sim = {n: s for n, s in summaries.items()
               if s["sim_ranks"] == 1 and not n.endswith("float32")}
    assert {s["channel"] for s in one_sim.values()} == {"inproc", "shm", "mpi", "file"}
    assert {s["division"] for s in one_sim.values()} == {"time", "space"}
    assert len({s["data_digest"] for s in one_sim.values()}) == 1
    two_sims = [summaries["time-inproc-2sims"], summaries["time-mpi-4-ddp"]]
    assert two_sims[0]["data_digest"] == two_sims[1]["data_digest"]
    assert summaries["space-shm-3-ensemble"]["member_digests_agree"]


@pytest.mark.mpi
def test_handoffs_and_copies_counted_by_channel(summaries):
    frame_bytes = 33 * 33 * 8        # one 33x33 float64 field
    slot_bytes = 7 * frame_bytes     # (sim steps + 1) frames
    summaries = dict(summaries)  # the fixture is shared: leave it whole
    float32 = summaries.pop("time-shm-2-float32")
    assert float32["handoff_bytes_copied"] == 0 and float32["cast_bytes"] == 0
    assert not any(float32["handoff_copies"].values()) and float32["zero_copy_verified"] is True
    for name, summary in summaries.items():
        assert summary["handoffs"] == (summary["cycles"] * summary["sim_ranks"]
                                       * summary["ensemble"])
        copies = summary["handoff_copies"]
        assert summary["handoff_bytes_copied"] == sum(copies.values())
        # the trainer's float32 cast is the one copy every channel makes, counted in the ledger
        assert copies["cast"] == summary["cast_bytes"] > 0, name
        zero_copy = summary["channel"] in ("inproc", "shm")
        assert summary["zero_copy_verified"] is zero_copy, name
        if zero_copy:                # ring windows: not one byte between step and tensor
            assert copies == {"cast": summary["cast_bytes"]}, name
            assert summary["handoff_bytes_copied"] == summary["cast_bytes"], name
        else:                        # separate slots: u^n carried into cycles 2 and 3
            assert copies["carry"] == 2 * frame_bytes, name
            moved = sum(v for k, v in copies.items() if k not in ("carry", "cast"))
            assert moved >= slot_bytes * summary["handoffs"] // summary["sim_ranks"], name
    cast = 3 * slot_bytes // 2       # 3 cycles of one member's float32 copies of the slot
    padded_slot_bytes = 7 * 35 * 35 * 8  # MPI sends the slot whole, its one-cell halo too
    assert summaries["space-mpi-2"]["handoff_copies"] == {"carry": 2 * frame_bytes,
                                                          "mpi": 3 * padded_slot_bytes,
                                                          "cast": cast}
    assert summaries["space-file-2"]["handoff_copies"] == {
        "carry": 2 * frame_bytes, "file write": 3 * slot_bytes, "file read": 3 * slot_bytes,
        "cast": cast}


@pytest.mark.mpi
def test_training_works_and_ddp_members_agree(summaries):
    for name, summary in summaries.items():
        for member in summary["members"]:
            assert member["last_loss"] < member["first_loss"] / 3, (name, member)
            assert member["param_spread"] == 0.0, (name, member)
        assert len(summary["rollout_rel_l2"]) == summary["ensemble"]
        assert all(len(errors) == 4 for errors in summary["rollout_rel_l2"])
        assert all(len(errors) == 4 and 0 < errors[0] < 1 for errors in summary["rollout_vrmse"])
        # each member casts every cycle's field (7 frames of 33x33 float64) once to float32
        cast = 0 if name.endswith("float32") else 7 * 33 * 33 * 4
        assert summary["cast_bytes"] == summary["cycles"] * summary["ensemble"] * cast, name
    ensemble = summaries["space-shm-3-ensemble"]["members"]
    assert [m["kernel_size"] for m in ensemble] == [3, 5]
    assert summaries["time-mpi-4-ddp"]["members"][0]["ranks"] == 2


@pytest.mark.mpi
def test_time_breakdown_per_role(summaries):
    split = summaries["space-mpi-2"]["time_breakdown"]
    assert {"sim", "train"} <= set(split)
    assert split["sim"]["sim"] > 0 and split["train"]["train"] > 0
    assert "idle" in split["train"]
    # a one-rank member is not wrapped in DDP: no allreduce at all; two ranks: timed
    assert split["train"].get("allreduce", 0.0) == 0.0
    assert summaries["time-mpi-4-ddp"]["time_breakdown"]["train"]["allreduce"] > 0


def _config(*flags: str, world: int):
    from tcoupled.app import couple

    parser = argparse.ArgumentParser()
    couple.add_arguments(parser)
    return couple.make_config(parser.parse_args([*flags, "--out", "/tmp/tcoupled-unused"]),
                              world)


@pytest.mark.faults
@pytest.mark.parametrize("flags, world, reason", [
    (("--train-ranks", "1", "--channel", "mpi", "--ppn", "1"), 2,
     "--division time needs colocated"),
    (("--train-ranks", "1", "--division", "space", "--channel", "shm", "--ppn", "1"), 2,
     "--channel shm needs each sim rank and its train ranks on one node"),
    (("--train-ranks", "1", "--channel", "inproc"), 2, "--channel inproc needs sim and train"),
    (("--train-ranks", "1", "--ensemble", "2"), 2, "--ensemble 2 is larger than --train-ranks 1"),
    (("--ensemble", "2",), 1, "--ensemble 2 is larger than the train ranks"),
    (("--division", "space",), 1, "--division space needs separate train ranks"),
    (("--division", "diagonal",), 1, "'diagonal'"),
    (("--lr-schedule", "step",), 1, "--lr-schedule must be one of cosine, constant"),
    (("--warmup", "1",), 1, r"--warmup must be a fraction in \[0, 1\)"),
    (("--activation", "gelu",), 1, "--activation must be one of tanh, relu"),
])
def test_bad_input_is_refused_with_the_reason(flags, world, reason):
    with pytest.raises(ConfigError, match=reason):
        _config(*flags, world=world)


@pytest.mark.faults
@pytest.mark.timeout(60)
@pytest.mark.mpi
def test_refusal_is_one_line_before_work(tmp_path):
    proc = tcoupled("couple", "--train-ranks", "1", "--channel", "shm", "--division", "space",
                    "--ppn", "1", "--out", str(tmp_path / "x"), ranks=2, timeout=50)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--channel shm" in lines[0], proc.stderr
    assert not (tmp_path / "x" / "summary.json").exists()


def test_couple_solves_in_the_learners_dtype_by_default():
    """The main job hands float32 frames to a float32 learner: no cast, no copy."""
    assert _config(world=1).wave.dtype == "float32"
    assert _config("--dtype", "float64", world=1).wave.dtype == "float64"
