"""Waits for a partner: how long they probe before sleeping depends on the node's load."""

import time

import pytest

from tcoupled.runtime import waiting


class LateComm:
    """A communicator whose message arrives ``after`` seconds from now."""

    def __init__(self, after: float) -> None:
        self.ready_at = time.perf_counter() + after
        self.probes = 0

    def Iprobe(self, source=None, tag=None, status=None):  # noqa: N802 (mpi4py's name)
        self.probes += 1
        return time.perf_counter() >= self.ready_at


@pytest.fixture(autouse=True)
def restore_spin():
    yield
    waiting.adapt_to({"oversubscribed": True})


def test_adapt_to_spins_only_when_every_rank_has_a_core():
    assert waiting.adapt_to({"oversubscribed": False}) == waiting.SPIN_FREE_S
    assert waiting.adapt_to({"oversubscribed": True}) == waiting.SPIN_S
    assert waiting.adapt_to({}) == waiting.SPIN_S  # unknown load: leave the core


def test_free_node_sees_a_late_partner_at_once(monkeypatch):
    slept = []
    monkeypatch.setattr(waiting.time, "sleep", lambda s: slept.append(s))
    waiting.adapt_to({"oversubscribed": False})
    comm = LateComm(after=0.01)
    waiting.wait_for_message(comm, 0, 1, None)
    assert slept == []  # probed (yielding) the whole 10 ms: no sleep to overshoot
    assert time.perf_counter() - comm.ready_at < 5e-3


def test_oversubscribed_node_sleeps_with_backoff(monkeypatch):
    slept = []
    real_sleep = time.sleep
    monkeypatch.setattr(waiting.time, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    comm = LateComm(after=0.01)
    waiting.wait_for_message(comm, 0, 1, None)
    assert slept and slept[0] == waiting.FIRST_SLEEP_S
    assert max(slept) <= waiting.POLL_S
    assert all(b >= a for a, b in zip(slept, slept[1:]))  # it only grows


class LateRecvComm(LateComm):
    """A :class:`LateComm` that can also be received from (``recv_polling``)."""

    def recv(self, source=None, tag=None):
        return "message"


def test_time_division_naps_through_most_of_a_repeated_wait(monkeypatch):
    slept = []
    real_sleep = time.sleep
    monkeypatch.setattr(waiting.time, "sleep", lambda s: (slept.append(s), real_sleep(s)))
    waiting.adapt_to({"oversubscribed": True}, naps=True)
    comm = LateRecvComm(after=0.02)
    assert waiting.recv_polling(comm, 0, 5) == "message"
    assert max(slept) <= waiting.POLL_S  # the first wait: only the backoff
    first_wakeups = len(slept)
    for _ in range(2):     # the same message again, as every cycle of time division
        slept.clear()
        comm.ready_at = time.perf_counter() + 0.02
        waiting.recv_polling(comm, 0, 5)
    # one nap of most of the shortest wait so far (a loaded machine makes the waits
    # longer, never shorter), then the backoff for the rest: fewer wake-ups than the
    # first wait's. (Probes are no measure: the spin's yields probe hundreds of times.)
    assert 0.5 * waiting.NAP_FRACTION * 0.02 <= slept[0] <= waiting.NAP_FRACTION * 0.04
    assert len(slept) < first_wakeups, (slept, first_wakeups)
    assert time.perf_counter() - comm.ready_at < 0.01


def test_no_naps_in_space_division_or_on_a_free_node(monkeypatch):
    for load, naps in (({"oversubscribed": True}, False), ({"oversubscribed": False}, True)):
        waiting.adapt_to(load, naps=naps)
        for _ in range(3):
            slept = []
            monkeypatch.setattr(waiting.time, "sleep", lambda s, slept=slept: slept.append(s))
            comm = LateRecvComm(after=0.01)
            waiting.recv_polling(comm, 0, 5)
            assert not slept or max(slept) <= waiting.POLL_S, (load, naps)


def test_a_run_of_short_waits_is_spun_through_a_long_one_sleeps(monkeypatch):
    from types import SimpleNamespace

    clock, spins = {"now": 0.0}, []
    waits = iter([0.0, 0.0, 0.0, 1e-3, 6e-3, 1e-3])  # how long each wait lasts

    def backoff(done, sleep=True, spin=None):
        spins.append(spin)   # how long this wait may spin
        clock["now"] += next(waits)

    monkeypatch.setattr(waiting, "time", SimpleNamespace(perf_counter=lambda: clock["now"]))
    monkeypatch.setattr(waiting, "_backoff", backoff)
    waiting.adapt_to({"oversubscribed": True})
    comm = object()
    for _ in range(6):
        waiting.wait_for_message(comm, 0, 1, None)
    # three quick replies (a farm's chunks of no-ops), then the long spin while the
    # last three waits stay under SHORT_WAIT_S; after a 6 ms wait, the short spin again
    short, long = waiting.SPIN_S, waiting.SHORT_WAIT_S
    assert spins == pytest.approx([short, short, short, long, long, short])
