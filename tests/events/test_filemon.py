"""File monitors in a running instance (SPEC sections 5, 7, 9, 10, 14).

What a user sees: a change (create, modify, delete, move, attributes) raises the signal;
a burst of changes raises it at most twice (once at once, once when the 50 ms window
closes); a path that does not exist yet, even several folders deep, is watched until it
appears; a deleted file that comes back is watched again; trees with `recursive`;
`iterations`; `del_file_monitor`; and no cap on how many.

"Later" is measured by a clock timer the instance runs on worker 2 (`settle`); the
watched files live in a folder of their own, away from the results file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(60)

EV = """
import os
import time

import uwsgi

import sbtest


def changed(num):
    sbtest.record("changed", num, uwsgi.worker_id())


def clock(num):
    sbtest.record("clock", num)


def delete_30(num):
    uwsgi.del_file_monitor(30)
    sbtest.record("deleted")


def add_from_worker(num):
    uwsgi.add_file_monitor(32, os.path.join(sbtest.DIR, "w", "dyn_py"))
    sbtest.record("added")


def many():
    for i in range(80):
        uwsgi.register_signal(100 + i, "worker", changed)
"""

CLOCK = '[[timer]]\nhandler = "python:ev:clock"\ntarget = "worker2"\nseconds = 0.02\n'


def instance(make_instance, monitors: str, signals=(), settings=None, files=(), dirs=(),
             modules=None, start=True):
    """Two workers (worker 2 runs the clock), the `ev` handlers, `monitors` (TOML with
    paths relative to the config's folder) appended to the config; `files` and `dirs`
    (relative to the watched folder w/) are created first."""
    sigs = [{"target": "worker1", "handler": "python:ev:changed", **s} for s in signals]
    inst = make_instance({"workers": 2, **(settings or {})}, sigs,
                         modules={"ev": EV, **(modules or {})}, start=False)
    watched = inst.dir / "w"
    watched.mkdir()
    for d in dirs:
        (watched / d).mkdir(parents=True)
    for f in files:
        (watched / f).parent.mkdir(parents=True, exist_ok=True)
        (watched / f).write_text("initial\n")
    with open(inst.config_path, "a") as f:
        f.write("\n" + monitors + "\n" + CLOCK)
    return inst.start() if start else inst


def monitor(num: int, path: str, **extra: object) -> str:
    text = f'[[file_monitor]]\nsignal = {num}\npath = "w/{path}"\n'
    for key, value in extra.items():
        text += f"{key} = {str(value).lower() if isinstance(value, bool) else value}\n"
    return text


def count(inst, num: int) -> int:
    return sum(1 for r in inst.results() if r[0] == "changed" and r[1] == str(num))


def settle(inst, ticks: int = 10, timeout: float = 15.0) -> None:
    """Wait until the clock timer ticked `ticks` more times (20 ms each)."""
    def clocks() -> int:
        return sum(1 for r in inst.results() if r[0] == "clock")
    before = clocks()
    wait_for(lambda: clocks() >= before + ticks, timeout,
             message=lambda: f"the clock timer stopped; log:\n{inst.log[-3000:]}")


def wait_count(inst, num: int, at_least: int, timeout: float = 10.0) -> int:
    return wait_for(lambda: count(inst, num) >= at_least and count(inst, num), timeout,
                    message=lambda: f"signal {num}: {count(inst, num)} of {at_least} changes "
                                    f"seen; log:\n{inst.log[-3000:]}")


def quiet_count(inst, num: int) -> int:
    """The count once the monitor's burst window has surely closed (0.2 s of clock)."""
    settle(inst, 10)
    return count(inst, num)


def append(path: Path, text: str = "x\n") -> None:
    with open(path, "a") as f:
        f.write(text)


def arm(inst, num: int, path: Path, timeout: float = 15.0) -> None:
    """Change `path` until its monitor reports (for monitors added at run time, whose
    watch is placed some time after the call that adds them returns)."""
    def seen() -> bool:
        append(path)
        return count(inst, num) > 0
    wait_for(seen, timeout, interval=0.1, message=lambda: f"monitor {num} on {path} never fired; "
                                                    f"log:\n{inst.log[-3000:]}")


# -- one change, a burst ------------------------------------------------------------------------

def test_a_change_right_after_ready_is_seen(make_instance):
    """Config monitors are watching once the instance says `ready` (here with 30 other
    monitors placed before this one)."""
    others = "".join(monitor(40 + i, f"o{i}") for i in range(30))
    inst = instance(make_instance, others + monitor(10, "f.txt"), [{"num": 10}],
                    files=["f.txt"] + [f"o{i}" for i in range(30)], start=False)
    inst.start(wait_ready=False)
    deadline = time.monotonic() + 20
    while "ready:" not in inst.log:              # as soon as it says so (no polling gap)
        assert time.monotonic() < deadline and inst.proc.poll() is None, inst.log
    append(inst.dir / "w" / "f.txt")
    wait_count(inst, 10, 1, timeout=5)
    assert 1 <= quiet_count(inst, 10) <= 2
    assert inst.stop() == 0


def test_a_burst_of_writes_raises_at_most_twice(make_instance):
    inst = instance(make_instance, monitor(11, "f.txt"), [{"num": 11}], files=["f.txt"])
    path = inst.dir / "w" / "f.txt"
    arm(inst, 11, path)
    for _ in range(3):
        before = quiet_count(inst, 11)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            for i in range(100):                       # 100 writes within a few ms
                os.write(fd, b"%d\n" % i)
        finally:
            os.close(fd)
        wait_count(inst, 11, before + 1)
        after = quiet_count(inst, 11)
        assert 1 <= after - before <= 2, f"a burst raised {after - before} signals"
    stats = inst.signal_stats(11)
    assert stats["raised"] == stats["handled"] + stats["coalesced"]


def test_a_burst_spread_over_time_raises_again_after_each_window(make_instance):
    """Changes every ~10 ms for ~0.5 s: more than 2 signals (the window is 50 ms), but
    far fewer than the changes."""
    inst = instance(make_instance, monitor(12, "f.txt"), [{"num": 12}], files=["f.txt"])
    path = inst.dir / "w" / "f.txt"
    arm(inst, 12, path)
    before = quiet_count(inst, 12)
    clock_lines = lambda: sum(1 for r in inst.results() if r[0] == "clock")  # noqa: E731
    start, writes = clock_lines(), 0
    while clock_lines() < start + 25:                  # ~0.5 s of instance time
        append(path)
        writes += 1
        time.sleep(0.01)                               # pacing, not waiting for a result
    after = quiet_count(inst, 12)
    assert 3 <= after - before < writes, (after - before, writes)


# -- kinds of change ---------------------------------------------------------------------------

def test_create_modify_delete_move_and_attrib_each_raise(make_instance):
    inst = instance(make_instance,
                    monitor(19, "probe")
                    + monitor(20, "d_create") + monitor(21, "f_modify")
                    + monitor(22, "f_delete") + monitor(23, "f_move")
                    + monitor(24, "f_attrib") + monitor(25, "d_move_in")
                    + monitor(26, "d_quiet"),
                    [{"num": n} for n in range(19, 27)],
                    files=["probe", "f_modify", "f_delete", "f_move", "f_attrib", "elsewhere"],
                    dirs=["d_create", "d_move_in", "d_quiet"])
    w = inst.dir / "w"
    arm(inst, 19, w / "probe")                 # every watch is placed by now
    assert all(count(inst, n) == 0 for n in range(20, 27))

    (w / "d_create" / "new").write_text("")
    wait_count(inst, 20, 1)
    append(w / "f_modify")
    wait_count(inst, 21, 1)
    (w / "f_delete").unlink()
    wait_count(inst, 22, 1)
    (w / "f_move").rename(w / "f_moved")
    wait_count(inst, 23, 1)
    os.chmod(w / "f_attrib", 0o600)
    wait_count(inst, 24, 1)
    (w / "elsewhere").rename(w / "d_move_in" / "arrived")
    wait_count(inst, 25, 1)
    settle(inst, 10)
    assert count(inst, 26) == 0                # an untouched folder stayed quiet
    for num in range(20, 26):
        assert 1 <= count(inst, num) <= 2, (num, count(inst, num))


def test_a_deleted_file_that_comes_back_is_watched_again(make_instance):
    inst = instance(make_instance, monitor(13, "f.txt"), [{"num": 13}], files=["f.txt"])
    path = inst.dir / "w" / "f.txt"
    arm(inst, 13, path)
    n = quiet_count(inst, 13)
    path.unlink()
    wait_count(inst, 13, n + 1)
    n = quiet_count(inst, 13)
    path.write_text("again\n")                 # re-created
    wait_count(inst, 13, n + 1)
    n = quiet_count(inst, 13)
    append(path)                               # and the new file is the one watched
    wait_count(inst, 13, n + 1)
    n = quiet_count(inst, 13)
    for _ in range(2):                          # over and over
        path.unlink()
        wait_count(inst, 13, n + 1)
        n = quiet_count(inst, 13)
        path.write_text("again\n")
        wait_count(inst, 13, n + 1)
        n = quiet_count(inst, 13)


def test_a_path_that_does_not_exist_yet_is_watched_until_it_appears(make_instance):
    inst = instance(make_instance,
                    monitor(19, "probe") + monitor(14, "later/a/b/c.txt")
                    + monitor(15, "soon.txt"),
                    [{"num": 14}, {"num": 15}, {"num": 19}], files=["probe"])
    w = inst.dir / "w"
    arm(inst, 19, w / "probe")
    (w / "other.txt").write_text("not it\n")          # a sibling of soon.txt
    (w / "later").mkdir()
    (w / "later" / "a").mkdir()
    (w / "later" / "a" / "b").mkdir()                 # folders on the way: not the path
    (w / "later" / "a" / "elsewhere.txt").write_text("")
    settle(inst, 10)
    assert count(inst, 14) == 0 and count(inst, 15) == 0
    (w / "later" / "a" / "b" / "c.txt").write_text("here\n")
    wait_count(inst, 14, 1)
    (w / "soon.txt").write_text("here\n")
    wait_count(inst, 15, 1)
    n = quiet_count(inst, 14)
    append(w / "later" / "a" / "b" / "c.txt")         # now the file itself is watched
    wait_count(inst, 14, n + 1)


def test_a_missing_tree_appearing_at_once_is_seen(make_instance):
    """`mkdir -p` and the file in one go (os.makedirs then a write): still seen."""
    inst = instance(make_instance, monitor(19, "probe") + monitor(16, "x/y/z/f.txt"),
                    [{"num": 16}, {"num": 19}], files=["probe"])
    w = inst.dir / "w"
    arm(inst, 19, w / "probe")
    os.makedirs(w / "x" / "y" / "z")
    (w / "x" / "y" / "z" / "f.txt").write_text("here\n")
    wait_count(inst, 16, 1)


def test_a_recursive_monitor_sees_changes_deep_in_a_tree(make_instance):
    inst = instance(make_instance,
                    monitor(17, "tree", recursive=True) + monitor(18, "tree"),
                    [{"num": 17}, {"num": 18}], files=["tree/a/b/deep.txt"])
    w = inst.dir / "w"
    arm(inst, 17, w / "tree" / "a" / "b" / "deep.txt")
    n17, n18 = quiet_count(inst, 17), count(inst, 18)
    assert n18 == 0                                   # the plain monitor saw nothing deep
    append(w / "tree" / "a" / "b" / "deep.txt")
    wait_count(inst, 17, n17 + 1)
    n17 = quiet_count(inst, 17)
    os.makedirs(w / "tree" / "new" / "sub")           # new folders are watched too
    n17 = wait_count(inst, 17, n17 + 1)
    n17 = quiet_count(inst, 17)

    def deep_seen() -> bool:
        append(w / "tree" / "new" / "sub" / "f.txt")
        return count(inst, 17) > n17
    wait_for(deep_seen, 10, interval=0.2, message="a file in a new subfolder was not seen")
    assert count(inst, 18) >= 1                       # `tree/new` is a direct child: seen
    settle(inst, 5)


def test_iterations_stop_the_monitor(make_instance):
    inst = instance(make_instance, monitor(27, "f.txt", iterations=2), [{"num": 27}],
                    files=["f.txt"])
    path = inst.dir / "w" / "f.txt"
    arm(inst, 27, path)
    n = quiet_count(inst, 27)
    if n < 2:
        append(path)
        wait_count(inst, 27, 2)
    assert quiet_count(inst, 27) == 2
    for _ in range(3):
        append(path)
        assert quiet_count(inst, 27) == 2


# -- from code ---------------------------------------------------------------------------------

def test_del_file_monitor_from_a_handler_stops_it(make_instance):
    inst = instance(make_instance, monitor(30, "f.txt") + monitor(30, "g.txt"),
                    [{"num": 30}, {"num": 31, "handler": "python:ev:delete_30"}],
                    files=["f.txt", "g.txt"])
    w = inst.dir / "w"
    arm(inst, 30, w / "f.txt")
    inst.signal(31)
    inst.wait_results(1, where=lambda r: r[0] == "deleted")
    wait_for(lambda: "signal 30: 2 file monitors removed" in inst.log, 10,
             message=lambda: inst.log[-2000:])
    settle(inst, 5)
    n = count(inst, 30)

    def stays() -> bool:
        append(w / "f.txt")
        append(w / "g.txt")
        settle(inst, 10)
        return True
    for _ in range(3):
        stays()
    assert count(inst, 30) == n


LUA = """
function add(sig)
    uwsgi.add_file_monitor(33, DIR .. "/w/dyn_lua")
    print("lua: added")
end

function bad(sig)
    local ok, err = pcall(uwsgi.add_file_monitor, 34, 5)
    print("lua: bad path: " .. tostring(err))
end

function changed(sig)
    print("lua: changed " .. sig)
end
"""


def dynamic(make_instance, monitors: str = ""):
    inst = make_instance({"workers": 2, "lua": ["m.lua"]},
                         [{"num": 35, "handler": "python:ev:add_from_worker", "target": "worker2"},
                          {"num": 32, "handler": "python:ev:changed"},
                          {"num": 19, "handler": "python:ev:changed"},
                          {"num": 36, "handler": "lua:m.lua:add", "target": "worker2"},
                          {"num": 37, "handler": "lua:m.lua:bad"},
                          {"num": 33, "handler": "lua:m.lua:changed"}],
                         modules={"ev": EV}, start=False)
    (inst.dir / "m.lua").write_text(f'DIR = "{inst.dir}"\n' + LUA)
    (inst.dir / "w").mkdir()
    (inst.dir / "w" / "probe").write_text("")
    if monitors:
        with open(inst.config_path, "a") as f:
            f.write("\n" + monitors)
    return inst.start()


def test_add_file_monitor_from_a_worker_starts_watching(make_instance):
    inst = dynamic(make_instance)                # no monitor yet: none is running
    inst.signal(35)
    inst.wait_results(1, where=lambda r: r[0] == "added")
    arm(inst, 32, inst.dir / "w" / "dyn_py")     # a path that did not exist either
    inst.signal(37)
    wait_for(lambda: "lua: bad path" in inst.stdout, 10, message=lambda: inst.stdout)
    bad = next(line for line in inst.stdout.splitlines() if "bad path" in line)
    assert "path" in bad


def test_monitors_added_while_others_run_fire_too(make_instance):
    """A config monitor is running; one added from Python, one from Lua, later."""
    inst = dynamic(make_instance, monitor(19, "probe"))
    arm(inst, 19, inst.dir / "w" / "probe")
    inst.signal(35)
    inst.signal(36)
    inst.wait_results(1, where=lambda r: r[0] == "added")
    wait_for(lambda: "lua: added" in inst.stdout, 10, message=lambda: inst.stdout)
    arm(inst, 32, inst.dir / "w" / "dyn_py", timeout=8)

    def lua_seen() -> bool:
        append(inst.dir / "w" / "dyn_lua")
        return "lua: changed 33" in inst.stdout
    wait_for(lua_seen, 8, interval=0.1, message=lambda: inst.stdout + inst.log[-2000:])


def test_eighty_file_monitors_in_one_instance_all_fire(make_instance):
    """No fixed cap (uWSGI: 64 file monitors)."""
    monitors = "".join(monitor(100 + i, f"m{i}") for i in range(80))
    inst = instance(make_instance, monitor(19, "probe") + monitors, [{"num": 19}],
                    settings={"import": ["many80"]}, files=["probe"] + [f"m{i}" for i in range(80)],
                    modules={"many80": "import ev\nev.many()\n"})
    w = inst.dir / "w"
    arm(inst, 19, w / "probe")
    for i in range(80):
        append(w / f"m{i}")
    want = set(range(100, 180))
    wait_for(lambda: want <= {int(r[1]) for r in inst.results() if r[0] == "changed"}, 20,
             message=lambda: "never fired: " + str(sorted(
                 want - {int(r[1]) for r in inst.results() if r[0] == "changed"}))
             + f"\nlog:\n{inst.log[-3000:]}")
