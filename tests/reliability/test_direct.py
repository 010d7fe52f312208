"""The direct path (docs/design.md, "Two paths"): a raiser writes a signal straight into
its target's channel when every guarantee of the master's path holds there, and goes
through the master otherwise.  What a user must not be able to tell, except by the
latency: order, the queue bound, and that nothing is lost or run twice when a raiser or
a target is killed in the middle of a write.
"""

from __future__ import annotations

import os
import random
import signal as unix
import textwrap
import time

import pytest

pytestmark = pytest.mark.timeout(120)

# Raisers keep, per (raiser, signal), how many of their signal() calls returned, in a
# file every process maps: a kill cannot lose a count that was written.
RAISERS = """
import mmap
import os
import random
import time

import uwsgi

import sbtest

STOP = os.path.join(sbtest.DIR, "stop")
NUMS = {nums!r}


def counts():
    path = os.path.join(sbtest.DIR, "returned")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 8 * 16 * 256)
    return memoryview(mmap.mmap(fd, 8 * 16 * 256)).cast("Q")


def handle(num):
    time.sleep(random.uniform(0, {handler_s}))


def raise_forever():
    returned, me = counts(), uwsgi.mule_id()
    while not os.path.exists(STOP):
        for _ in range(random.randint(1, {burst})):
            num = random.choice(NUMS)
            uwsgi.signal(num)
            returned[me * 256 + num] += 1
        time.sleep(random.uniform(0, {pause_s}))
    sbtest.touch("stopped-%d" % me)
"""


def _config(inst, *, workers, mules, raisers, signals, handler_s, burst, pause_s):
    """Mules `raisers` raise `signals` in bursts of 1..`burst`, `pause_s` apart at most;
    each handler sleeps up to `handler_s`."""
    inst.write_module("raisers", RAISERS.format(nums=list(signals), handler_s=handler_s,
                                                burst=burst, pause_s=pause_s))
    text = textwrap.dedent(f"""\
        [switchboard]
        workers = {workers}
        mules = {mules}
        import = ["raisers"]
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]
        """)
    for mid in raisers:
        text += f'\n[[mule]]\nid = {mid}\nprogram = "python:raisers:raise_forever"\n'
    for num, target in signals.items():
        text += (f'\n[[signal]]\nnum = {num}\ntarget = "{target}"\n'
                 'handler = "python:raisers:handle"\n')
    inst.write_config(text=text)


def _returned(inst, raisers, num):
    data = (inst.dir / "returned").read_bytes()
    return sum(int.from_bytes(data[(m * 256 + num) * 8:][:8], "little") for m in raisers)


def _pid(inst, group, ident):
    return next(p["pid"] for p in inst.socket_stats()[group] if p["id"] == ident)


def _stop_raisers(inst, raisers, wait_for):
    inst.touch("stop")
    for mid in raisers:
        wait_for(lambda m=mid: (inst.dir / f"stopped-{m}").exists(), 20,
                 message=lambda: inst.log[-4000:])


def _settled(inst, signals, copies, wait_for):
    """The stats once every raised signal's copies are handled or dropped."""
    def done():
        stats = inst.socket_stats()
        sig = stats["signals"]
        for num in signals:
            s = sig[str(num)]
            if s["raised"] * copies[num] != s["handled"] + sum(s["dropped"].values()):
                return None
        return stats
    return wait_for(done, 30, interval=0.05, message=lambda: (
        {n: inst.socket_stats()["signals"][str(n)] for n in signals}, inst.log[-4000:]))


def test_a_raisers_signals_keep_their_order_across_both_paths(make_instance, wait_for):
    """Mule 1 raises 3,000 signals in bursts at mule 2 and at the one worker; whenever
    a channel holds 8 or more, or what it sent the master is not acted on yet, it goes
    through the master, else straight in.  Each target sees them in the order raised."""
    inst = make_instance(start=False, modules={"order": textwrap.dedent("""\
        import os
        import random
        import time

        import uwsgi

        import sbtest

        def handle(num):
            sbtest.record("ran", num, uwsgi.mule_id() or "w")

        def program():
            rng = random.Random(7)
            sent = []
            for burst in range(300):
                for _ in range(rng.randint(1, 20)):
                    num = rng.choice((60, 61, 62, 63, 70, 71, 72, 73))
                    uwsgi.signal(num)
                    sent.append(num)
                time.sleep(rng.uniform(0, 0.003))
            sbtest.record("sent", *sent)
        """)})
    signals = "".join(f'\n[[signal]]\nnum = {n}\ntarget = "{"mule2" if n < 70 else "worker"}"'
                      f'\nhandler = "python:order:handle"\n' for n in (60, 61, 62, 63, 70,
                                                                         71, 72, 73))
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 1
        mules = 2
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[mule]]
        id = 1
        program = "python:order:program"
        """) + signals)
    inst.start()
    nums = [str(n) for n in (60, 61, 62, 63, 70, 71, 72, 73)]
    inst.wait_results(1, timeout=60, where=lambda r: r[0] == "sent")
    # Read the results once every raise has run: no handler is writing to them then.
    sig = inst.stats_when(lambda s: all(s["signals"][n]["handled"] == s["signals"][n]["raised"]
                                        for n in nums), timeout=30)["signals"]
    results = inst.results()
    sent = [int(n) for n in next(r for r in results if r[0] == "sent")[1:]]
    assert len(sent) == sum(sig[n]["raised"] for n in nums)
    for lo, who in ((60, "2"), (70, "w")):
        ran = [r for r in results if r[0] == "ran" and lo <= int(r[1]) < lo + 10]
        assert {r[2] for r in ran} == {who}
        assert [int(r[1]) for r in ran] == [n for n in sent if lo <= n < lo + 10]
    for lo in (60, 70):
        nums = [str(n) for n in range(lo, lo + 4)]
        direct = sum(sig[n]["direct"] for n in nums)
        raised = sum(sig[n]["raised"] for n in nums)
        assert 0 < direct < raised, (lo, direct, raised)    # both paths were taken


@pytest.mark.parametrize("kill", ["raisers", "targets"])
def test_kills_in_the_middle_of_direct_writes_lose_and_double_nothing(
        make_instance, wait_for, kill):
    """Three mules raise in short bursts at a mule, the `worker` group and every
    worker, mostly straight into their channels; the test kills the raisers (or the
    targets) with SIGKILL 40 times.  Then for every signal: each raise was routed to
    every copy, each copy was handled or dropped (`died`, the run a kill cut short),
    and the raisers' own count of signal() calls that returned is what was raised (a
    raiser killed inside signal() may or may not have raised that one: one per kill)."""
    raisers, signals = (1, 2, 3), {80: "mule4", 81: "worker", 82: "workers"}
    copies = {80: 1, 81: 1, 82: 2}
    inst = make_instance(start=False)
    # Paced so that the targets keep up: a channel that stays short is written
    # straight to (a backlog goes through the master).
    _config(inst, workers=2, mules=4, raisers=raisers, signals=signals,
            handler_s=0.0005 if kill == "targets" else 0, burst=4, pause_s=0.01)
    inst.start()
    wait_for(lambda: all(inst.socket_stats()["signals"][str(n)]["handled"] > 50
                         for n in signals), 20, message=lambda: inst.log[-4000:])
    rng = random.Random()
    victims = ([("mules", m) for m in raisers] if kill == "raisers"
               else [("mules", 4), ("workers", 1), ("workers", 2)])
    for _ in range(40):
        group, ident = rng.choice(victims)
        pid = wait_for(lambda g=group, i=ident: _pid(inst, g, i) or None, 10)
        os.kill(pid, unix.SIGKILL)
        wait_for(lambda g=group, i=ident, p=pid: _pid(inst, g, i) not in (0, p) or None, 10)
        time.sleep(rng.uniform(0.02, 0.1))
    _stop_raisers(inst, raisers, wait_for)
    stats = _settled(inst, signals, copies, wait_for)
    for num in signals:
        s = stats["signals"][str(num)]
        assert s["routed"] == s["raised"] * copies[num], (num, s)
        assert s["direct"] > 0, (num, s)
        returned = _returned(inst, raisers, num)
        kills = 40 if kill == "raisers" else 0
        assert returned <= s["raised"] <= returned + kills, (num, returned, s)
        assert set(s["dropped"]) <= {"died"}, (num, s)
        if kill == "raisers":
            assert not s["dropped"], (num, s)


def test_the_direct_path_keeps_the_signal_queue_bound(make_instance, wait_for):
    """signal-queue = 4: with mule 2 busy on the first signal, four more wait in its
    channel (written straight in) and the other five wait at the master, as they would
    without the direct path; then all ten run, in order."""
    inst = make_instance(start=False, modules={"bound": textwrap.dedent("""\
        import uwsgi

        import sbtest

        def block(num):
            sbtest.record("started", num)
            sbtest.wait_file("go")

        def flood(num):
            sbtest.wait_file("flood")
            for num in range(90, 100):
                uwsgi.signal(num)
            sbtest.record("raised")
        """)})
    signals = "".join(f'\n[[signal]]\nnum = {n}\ntarget = "mule2"\n'
                      f'handler = "python:bound:block"\n' for n in range(90, 100))
    inst.write_config(text=textwrap.dedent(f"""\
        [switchboard]
        workers = 1
        mules = 2
        signal-queue = 4
        control = "{inst.control_path}"
        python-path = ["{inst.dir}"]

        [[signal]]
        num = 89
        target = "worker1"
        handler = "python:bound:flood"
        """) + signals)
    inst.start()
    inst.signal(89)
    inst.touch("flood")
    inst.wait_results(1, where=lambda r: r[0] == "raised")
    stats = inst.stats_when(lambda s: s["mules"][1]["status"] == "sig90"
                            and sum(s["signals"][str(n)]["routed"] for n in range(90, 100)) == 5)
    assert stats["mules"][1]["signal_queue"] == 4, stats["mules"][1]
    assert stats["signals"]["90"]["direct"] == 1, stats["signals"]["90"]
    inst.touch("go")
    lines = inst.wait_results(10, where=lambda r: r[0] == "started")
    assert [int(r[1]) for r in lines if r[0] == "started"] == list(range(90, 100))
