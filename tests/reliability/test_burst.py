"""Burst (SPEC 5): a mule program raises signals as fast as it can; nothing is lost,
nothing runs twice, and the raiser is never told "ok" for a signal that is then dropped.

The mule raises N signals for `worker` (numbers 30..37 in turn, so that a loss on one
number cannot hide behind a duplicate of another) and, every tenth raise, one signal
for `worker2` (numbers 40..47 in turn, to check the order from one raiser to one
process).  Handlers only count, in their own process's memory.  N = 1,000,000 when
SWITCHBOARD_FULL_BURST is set, else 100,000: the same code path either way.

Each worker's counts are read by a "report" signal sent to that worker (`worker1`,
`worker2`) once the stats say the burst has been handled.  The report cannot be sent by
the mule right after its burst: `worker` signals wait in the channel shared by both
workers, and a worker reads its own channel (where `workerN` signals go) first, so a
report raised after the burst could run before the last burst signals had been read.
"""

from __future__ import annotations

import os
import textwrap

import pytest

FULL = bool(os.environ.get("SWITCHBOARD_FULL_BURST"))
N = 1_000_000 if FULL else 100_000
GROUP = list(range(30, 38))       # `worker`
REPORT = {1: 250, 2: 251}         # worker id -> its `workerN` report signal
ORDERED = list(range(40, 48))     # `worker2`, checked for order

pytestmark = pytest.mark.timeout(900 if FULL else 120)

BURST = """
import os
import time

import uwsgi

import sbtest

N = {n}
COUNTS = [0] * 256
EXPECT = 40            # the next number the ordered stream should bring
OUT_OF_ORDER = 0


def count(num):
    COUNTS[num] += 1


def ordered(num):
    global EXPECT, OUT_OF_ORDER
    COUNTS[num] += 1
    if num != EXPECT:
        OUT_OF_ORDER += 1
    EXPECT = 40 + (num - 40 + 1) % 8


def report(num):
    sbtest.record("report", uwsgi.worker_id(), os.getpid(), OUT_OF_ORDER,
                  *["%d=%d" % (n, c) for n, c in enumerate(COUNTS) if c])


def raiser():
    sbtest.wait_file("go")
    signal = uwsgi.signal
    accepted = ordered = 0
    start = time.monotonic()
    try:
        for i in range(N):
            signal(30 + (i & 7))
            accepted += 1
            if i % 10 == 9:
                signal(40 + (ordered & 7))
                ordered += 1
    except OSError as exc:
        sbtest.record("raise-failed", accepted, ordered, repr(exc).replace(" ", "_"))
        return
    sbtest.record("raised", accepted, ordered, "%.3f" % (time.monotonic() - start))
"""


def _config(inst):
    entries = [(n, "worker", "python:burst:count") for n in GROUP]
    entries += [(n, "worker2", "python:burst:ordered") for n in ORDERED]
    entries += [(num, f"worker{wid}", "python:burst:report") for wid, num in REPORT.items()]
    signals = "".join(f'\n[[signal]]\nnum = {n}\ntarget = "{t}"\nhandler = "{h}"\n'
                      for n, t, h in entries)
    return textwrap.dedent(f"""\
        [switchboard]
        workers = 2
        mules = 1
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:burst:raiser"
        """) + signals


def test_a_burst_from_a_mule_is_handled_exactly_once_each(make_instance):
    inst = make_instance(start=False, modules={"burst": BURST.format(n=N)})
    inst.write_config(text=_config(inst))
    inst.start()
    inst.touch("go")
    lines = inst.wait_results(1, timeout=800 if FULL else 90,
                              where=lambda r: r[0] in ("raised", "raise-failed"))
    [done] = [r for r in lines if r[0] in ("raised", "raise-failed")]
    assert done[0] == "raised", f"uwsgi.signal() failed during the burst: {done}"
    ordered = N // 10
    assert done[1:3] == [str(N), str(ordered)], done

    numbers = GROUP + ORDERED
    expected = {n: N // len(GROUP) for n in GROUP} | {n: ordered // len(ORDERED)
                                                       for n in ORDERED}
    stats = inst.stats_when(lambda s: all(s["signals"][str(n)]["handled"] >= expected[n]
                                          for n in numbers), timeout=600 if FULL else 60)
    for n in numbers:
        sig = stats["signals"][str(n)]
        assert (sig["raised"], sig["routed"], sig["handled"], sig["failed"], sig["dropped"],
                sig["coalesced"]) == (expected[n],) * 3 + (0, {}, 0), (n, sig)
    assert stats["held"] == 0

    for num in REPORT.values():
        inst.raise_signal(num)
    lines = inst.wait_results(2, where=lambda r: r[0] == "report")
    reports = {int(r[1]): r for r in lines if r[0] == "report"}
    assert set(reports) == {1, 2}
    counted: dict[int, int] = {}
    for wid, r in reports.items():
        per_worker = dict(map(int, item.split("=")) for item in r[4:])
        for n, c in per_worker.items():
            counted[n] = counted.get(n, 0) + c
        # What each worker's handlers counted is what its stats record says it handled
        # (the report itself included once it has returned).
        stats = inst.stats_when(lambda s, wid=wid: s["signals"][str(REPORT[wid])]["handled"])
        worker = next(w for w in stats["workers"] if w["id"] == wid)
        assert int(r[2]) == worker["pid"] and worker["respawns"] == 0, worker
        assert worker["signals"] == sum(per_worker.values()) + 1, (worker, per_worker)
    assert counted == expected, {n: (counted.get(n), expected[n]) for n in numbers
                                 if counted.get(n) != expected[n]}
    assert reports[2][3] == "0", f"worker 2 saw {reports[2][3]} signals out of order"
    # worker 1 never ran a `worker2` signal
    assert not any(n in ORDERED for n in dict(map(int, i.split("=")) for i in reports[1][4:]))
    assert inst.stop() == 0
