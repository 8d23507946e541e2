"""The coupling overhead's definition, checked on constructed timelines of rank records.

design.md "How we measure": coupling overhead = time in the coupling layer (acquire,
publish, receive, release, staging, copies: phases ``handoff``, ``carry``, ``digest``)
over the solver's and the trainer's compute (``sim`` + ``halo``, ``train`` +
``allreduce``), each role at its slowest rank; waiting for the other role (``idle``) is
reported apart and never counts. No run is launched: the records are what
:func:`tcoupled.coupling.rank.CoupledRank.run` returns.
"""

import pytest

from tcoupled.coupling import outputs

pytestmark = pytest.mark.skipif(not hasattr(outputs, "coupling_costs"),
                                reason="coupling_costs (the overhead as defined in "
                                       "design.md) arrives with the coupling-overhead branch")


def _rank(role, trains, wall, **phases):
    return {"role": role, "trains": trains, "wall_s": wall, "phases": phases}


def test_overhead_is_coupling_time_over_compute_on_one_inproc_rank():
    # time division on one rank: it solves, hands over in process, trains, in turn
    record = _rank("sim", True, 8.0, sim=2.0, halo=0.5, train=3.0, allreduce=0.5,
                   handoff=0.3, carry=0.1, digest=0.1, idle=1.0)
    costs = outputs.coupling_costs([record])
    assert costs["coupling_overhead"] == pytest.approx(0.5 / 6.0)  # counted once
    assert costs["coupling_overhead_by_role"] == pytest.approx({"sim": 0.5 / 2.5,
                                                                "train": 0.5 / 3.5})
    assert costs["idle_fraction"] == pytest.approx({"sim": 1 / 8, "train": 1 / 8})
    assert costs["rank_utilization"] == pytest.approx({"sim": 6 / 8, "train": 6 / 8})


def test_waiting_and_farm_ranks_never_count_and_slowest_rank_decides():
    sims = [_rank("sim", False, 6.0, sim=4.0, halo=1.0, handoff=0.5, idle=0.2),
            _rank("sim", False, 6.0, sim=3.0, halo=0.5, handoff=0.9, idle=1.5)]
    train = _rank("train", True, 6.0, train=3.0, allreduce=0.5, handoff=0.25, digest=0.25,
                  idle=2.0)
    farm = {"role": "farm", "farm_rank": 0, "wall_s": 6.0, "phases": {"xtb": 5.0}}
    costs = outputs.coupling_costs([*sims, train, farm])
    # slowest sim rank (5 s of compute) and the train rank: (0.5 + 0.5) / (5 + 3.5)
    assert costs["coupling_overhead"] == pytest.approx(1.0 / 8.5)
    waited = [dict(r, phases=dict(r["phases"], idle=r["phases"]["idle"] + 9.0),
                   wall_s=r["wall_s"] + 9.0) for r in (*sims, train)]
    assert outputs.coupling_costs(waited)["coupling_overhead"] == pytest.approx(1.0 / 8.5)
    assert outputs.coupling_costs([*sims, train])["coupling_overhead"] == \
        costs["coupling_overhead"]  # the farm is not coupled


def test_no_coupling_work_is_zero_overhead():
    record = _rank("sim", True, 5.0, sim=2.0, train=3.0)
    assert outputs.coupling_costs([record])["coupling_overhead"] == 0.0


def test_steady_handoff_leaves_the_first_cycles_set_up_out():
    from tcoupled.coupling.outputs import steady_handoff

    # 4 cycles, one handoff each: the sender spent 0.5 s in cycle 1 (opening the slot),
    # then 0.1 s a cycle; the receiver 0.2 s in cycle 1, then 0.05 s a cycle
    ends = [1.0, 2.0, 3.0, 4.0]
    sender = {"handoffs": 0, "phases": {"handoff": 0.8}, "first_handoff_s": 0.5,
              "cycle_ends_s": ends}
    receiver = {"handoffs": 4, "phases": {"handoff": 0.35}, "first_handoff_s": 0.2,
                "cycle_ends_s": ends}
    assert steady_handoff([sender, receiver]) == pytest.approx(0.15)  # (0.3 + 0.15) / 3
    assert steady_handoff([{**receiver, "cycle_ends_s": [1.0]}]) is None


def test_steady_cycle_is_the_slowest_ranks_median_after_the_first_cycle():
    from tcoupled.coupling.outputs import steady_cycle

    sim = {"cycle_ends_s": [5.0, 6.0, 7.0, 8.5, 9.5]}   # start-up in cycle 1; then 1, 1, 1.5, 1
    train = {"cycle_ends_s": [5.2, 6.4, 7.6, 8.8, 10.0]}  # 1.2 each
    assert steady_cycle([sim, train]) == pytest.approx(1.2)
    assert steady_cycle([sim]) == pytest.approx(1.0)
    assert steady_cycle([{"cycle_ends_s": [1.0, 2.0]}, {}]) is None  # too few cycles
