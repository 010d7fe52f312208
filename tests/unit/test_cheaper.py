"""Cheaper mode's policy, with the clock and the queue given: no process, no sleep."""

from __future__ import annotations

from switchboard.cheaper import Cheaper
from switchboard.shared import BUSY, IDLE, ProcRecord

WORKERS = [1, 2, 3, 4]


def records(**status: int) -> list[ProcRecord]:
    """Slot 0 (master) .. 4; every worker idle since t=0 unless told otherwise."""
    recs = [ProcRecord() for _ in range(5)]
    for rec in recs:
        rec.status, rec.last_active = IDLE, 0.0
    for name, value in status.items():
        recs[int(name[1:])].status = value
    return recs


def nothing_wanted(slot: int) -> bool:
    return False


def test_only_the_first_k_workers_start():
    assert Cheaper(2, 0.1, 30, WORKERS).cheap == {3, 4}


def test_a_queue_waiting_longer_than_cheaper_wait_spawns_one_worker_per_wait():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    recs = records()
    assert policy.decide(10.0, 5, nothing_wanted, recs).spawn == []     # the wait starts
    assert policy.wake_at() == 10.1
    assert policy.decide(10.05, 5, nothing_wanted, recs).spawn == []
    assert policy.decide(10.11, 5, nothing_wanted, recs).spawn == [2]   # lowest id first
    policy.spawned(2)
    assert policy.decide(10.15, 5, nothing_wanted, recs).spawn == []
    assert policy.decide(10.22, 5, nothing_wanted, recs).spawn == [3]


def test_an_empty_queue_resets_the_wait():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    recs = records()
    policy.decide(10.0, 5, nothing_wanted, recs)
    policy.decide(10.05, 0, nothing_wanted, recs)
    assert policy.wake_at() is None
    assert policy.decide(10.12, 5, nothing_wanted, recs).spawn == []


def test_no_spawn_when_every_worker_runs():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    for slot in (2, 3, 4):
        policy.spawned(slot)
    policy.decide(10.0, 5, nothing_wanted, records())
    assert policy.decide(11.0, 5, nothing_wanted, records()).spawn == []
    assert policy.wake_at() is None


def test_a_cheaped_worker_with_its_own_signals_comes_back_at_once():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    decision = policy.decide(10.0, 0, lambda slot: slot == 3, records())
    assert decision.spawn == [3]


def test_idle_workers_beyond_k_are_cheaped_one_per_decision_highest_first():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    for slot in (2, 3, 4):
        policy.spawned(slot)
    recs = records()
    decision = policy.decide(31.0, 0, nothing_wanted, recs)
    assert decision.cheap == [4]
    policy.stopping(4)
    assert policy.decide(31.0, 0, nothing_wanted, recs).cheap == [3]


def test_workers_1_to_k_are_never_cheaped_nor_busy_or_recently_active_ones():
    policy = Cheaper(2, 0.1, 30, WORKERS)
    policy.spawned(3)
    policy.spawned(4)
    recs = records(w3=BUSY)
    recs[4].last_active = 20.0
    assert policy.decide(31.0, 0, nothing_wanted, recs).cheap == []     # 3 busy, 4 recent
    assert policy.decide(50.0, 0, nothing_wanted, recs).cheap == [4]
    policy.stopping(4)
    recs[3].status = IDLE
    assert policy.decide(50.0, 0, nothing_wanted, recs).cheap == [3]
    policy.stopping(3)
    assert policy.decide(99.0, 0, nothing_wanted, recs).cheap == []     # 1 and 2 stay


def test_nothing_is_cheaped_while_signals_wait():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    policy.spawned(2)
    assert policy.decide(100.0, 3, nothing_wanted, records()).cheap == []


def test_an_exit_after_cheaping_is_not_a_death():
    policy = Cheaper(1, 0.1, 30, WORKERS)
    policy.spawned(2)
    policy.stopping(2)
    assert policy.gone(2) is True
    assert 2 in policy.cheap
    assert policy.gone(1) is False      # worker 1 was not being cheaped: respawn it

