"""A handler that writes junk to an inherited descriptor (its own channel to the master)
costs its own process, nothing more (issue 15): the master logs which process sent a
malformed record, kills it, counts it (`malformed_records`) and respawns it with its id;
the other worker, the signal table and the stats go on as before.

Before the check, the master skipped unknown records two bytes at a time and read the
rest of the stream shifted, and a MESSAGE header claiming 4 GB made it buffer everything
that worker sent afterwards, forever.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(90)

JUNK = """
import os

import sbtest
import uwsgi
from switchboard import api


def spill(num):
    data = bytes.fromhex(open(os.path.join(sbtest.DIR, "junk.hex")).read())
    sbtest.record("spilling", uwsgi.worker_id(), os.getpid())   # the master may kill us now
    os.write(api._context().sock.fileno(), data)


def seen(num):
    sbtest.record("seen", num, uwsgi.worker_id())
"""

CASES = {
    "unknown-type": b"\xfe\x01" + b"\x00\x1f" * 3,
    "stray-byte": b"\xff\x01\x00\x00\x1f",
    "huge-length": b"\x06\x00\xff\xff\xff\xff",
    "not-json": b"\x06\x00\x00\x00\x00\x03{{{",
}


@pytest.mark.parametrize("junk", CASES.values(), ids=CASES.keys())
def test_a_child_writing_junk_to_the_master_costs_only_that_child(make_instance, junk):
    inst = make_instance({"workers": 2},
                         [{"num": 30, "target": "worker1", "handler": "python:junk:spill"},
                          {"num": 31, "target": "workers", "handler": "python:junk:seen"}],
                         modules={"junk": JUNK})
    (inst.dir / "junk.hex").write_text(junk.hex())
    before = inst.worker_pids()
    inst.signal(30)
    inst.wait_results(1)
    stats = inst.stats_when(lambda s: inst.worker(1, s)["pid"] not in (0, before[1])
                            and inst.worker(1, s)["status"] == "idle", timeout=20)
    assert inst.worker(1, stats)["malformed_records"] == 1
    assert inst.worker(2, stats)["pid"] == before[2]
    assert inst.worker(2, stats)["malformed_records"] == 0
    assert "worker 1" in inst.log and "sent a malformed record" in inst.log
    assert stats["signals"].get("31", {}).get("raised", 0) == 0     # no junk became a raise
    inst.signal(31)
    results = inst.wait_results(3)
    assert sorted(r[2] for r in results if r[0] == "seen") == ["1", "2"]
    assert inst.stop() == 0
