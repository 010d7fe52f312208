"""The alarm (a timerfd): readable at its deadline, never before; disarmed by None."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator

import pytest

from switchboard.alarm import Alarm


@pytest.fixture
def alarm() -> Iterator[Alarm]:
    made = Alarm()
    yield made
    made.close()


def rings(alarm: Alarm, within: float) -> bool:
    poll = select.poll()
    poll.register(alarm.fd, select.POLLIN)
    return bool(poll.poll(within * 1000))


def test_it_rings_at_its_deadline_and_not_before(alarm):
    deadline = time.monotonic() + 0.02
    alarm.set(deadline)
    assert rings(alarm, 5.0)
    assert time.monotonic() >= deadline
    alarm.clear()
    assert not rings(alarm, 0.0), "a cleared alarm is quiet until set again"


def test_a_passed_deadline_rings_at_once(alarm):
    alarm.set(time.monotonic() - 1.0)
    assert rings(alarm, 0.5)


def test_none_disarms_and_a_new_deadline_replaces_the_old(alarm):
    alarm.set(time.monotonic() + 0.01)
    alarm.set(None)
    assert not rings(alarm, 0.05)
    alarm.set(time.monotonic() + 60)
    later = time.monotonic() + 0.01
    alarm.set(later)
    assert rings(alarm, 5.0)
    assert time.monotonic() >= later
