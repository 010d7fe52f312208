"""The shipped samples run as they are, and do what their comments say."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

pytestmark = pytest.mark.timeout(60)


def _lines(inst, text):
    return [line for line in inst.stdout.splitlines() if text in line]


def test_quickstart_runs_each_kind_of_target(make_instance, wait_for):
    inst = make_instance.existing(SAMPLES / "quickstart" / "switchboard.toml")
    # Worker 1 raises 30, 22 and 17 once at start: 30 on one worker, 22 on both,
    # 17 on worker 2 only.
    wait_for(lambda: len(inst.stdout.splitlines()) >= 4, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    assert len(_lines(inst, "signal 30 (worker): handled by worker")) == 1
    assert sorted(_lines(inst, "signal 22 (workers)")) == [
        "signal 22 (workers): handled by worker 1", "signal 22 (workers): handled by worker 2"]
    assert _lines(inst, "signal 17") == ["signal 17 (worker2): handled by worker 2"]

    inst.signal(30)
    inst.signal(17)
    wait_for(lambda: len(inst.stdout.splitlines()) >= 6, 15,
             message=lambda: f"stdout:\n{inst.stdout}")
    assert len(_lines(inst, "signal 30 (worker): handled by worker")) == 2
    assert _lines(inst, "signal 17") == ["signal 17 (worker2): handled by worker 2"] * 2

    stats = inst.stats()
    sig = stats["signals"]
    assert (sig["30"]["raised"], sig["30"]["handled"]) == (2, 2)
    assert (sig["22"]["raised"], sig["22"]["handled"]) == (1, 2)
    assert (sig["17"]["raised"], sig["17"]["handled"]) == (2, 2)
    assert sig["30"]["target"] == "worker" and sig["17"]["target"] == "worker2"
    assert sig["22"]["handler"] == "python:python_handlers.quickstart:everyone"
    assert [w["id"] for w in stats["workers"]] == [1, 2]
    assert sum(w["signals"] for w in stats["workers"]) == 6
    assert inst.stop() == 0
    assert len(inst.stdout.splitlines()) == 6


def test_seed_registers_in_the_master_and_runs_unchanged(make_instance, wait_for):
    inst = make_instance.existing(SAMPLES / "seed" / "switchboard.toml")
    # one-shot timers raise 30, 22 and 1 once, 1 s after start
    wait_for(lambda: len(inst.stdout.splitlines()) == 4, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    inst.signal(30)
    wait_for(lambda: len(_lines(inst, "i am the signal 30")) == 2, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    inst.signal(22)
    wait_for(lambda: len(_lines(inst, "Hi, i am the signal 22")) == 4, 15,
             message=lambda: f"stdout:\n{inst.stdout}")
    inst.signal(1)                    # registered by lua/seed.lua with a Lua function
    wait_for(lambda: len(_lines(inst, "i am Lua, received signal 1")) == 2, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    sig = inst.stats()["signals"]
    assert sig["30"]["target"] == "worker" and sig["22"]["target"] == "workers"
    assert sig["1"]["target"] == "worker"
    assert sig["30"]["handler"] == "python:python_handlers.seed:hello_signal"
    assert (sig["30"]["raised"], sig["30"]["handled"]) == (2, 2)
    assert (sig["22"]["raised"], sig["22"]["handled"]) == (2, 4)
    assert (sig["1"]["raised"], sig["1"]["handled"]) == (2, 2)
    assert inst.stop() == 0
    assert sorted(inst.stdout.splitlines()) == sorted(
        ["Hi, i am the signal 22"] * 4 + ["i am Lua, received signal 1"] * 2
        + ["i am the signal 30"] * 2)


def test_mixed_sample_passes_signals_between_python_and_lua(make_instance, wait_for):
    inst = make_instance.existing(SAMPLES / "mixed" / "switchboard.toml")
    # a one-shot timer raises 10 after 1 s: Python ping raises 11 -> Lua pong raises 12
    # -> Python, on every worker
    wait_for(lambda: len(_lines(inst, "from Lua")) == 2, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    assert len(_lines(inst, "got 10, raising 11 for Lua")) == 1
    assert len(_lines(inst, "got 11, raising 12 for Python")) == 1
    assert sorted(_lines(inst, "from Lua")) == [
        "python: worker 1 got 12 from Lua", "python: worker 2 got 12 from Lua"]
    inst.signal(10)       # the same chain, by hand
    wait_for(lambda: len(_lines(inst, "from Lua")) == 4, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log}")
    inst.signal(13)       # a Lua closure registered for worker 2
    wait_for(lambda: _lines(inst, "(a Lua closure)"), 15, message=lambda: inst.stdout)
    assert _lines(inst, "(a Lua closure)") == ["lua: worker 2 got 13 (a Lua closure)"]
    sig = inst.stats()["signals"]
    assert [sig[n]["handled"] for n in ("10", "11", "12", "13")] == [2, 2, 4, 1]
    assert inst.stop() == 0


def test_check_prints_the_quickstart_table(cli):
    res = cli("check", str(SAMPLES / "quickstart" / "switchboard.toml"))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "workers: 2" in out
    assert "signal table: 3 entries" in out
    for num, target, func in [(17, "worker2", "only_two"), (22, "workers", "everyone"),
                              (30, "worker", "hello")]:
        assert any(str(num) in line and target in line and func in line
                   for line in out.splitlines()), out


@pytest.mark.parametrize("sample", ["quickstart", "seed", "mixed", "mules", "events"])
def test_each_sample_shows_something_by_itself_within_5_seconds(make_instance, wait_for,
                                                                 sample):
    """A new user who runs a sample sees it work before typing anything else (seed and
    mixed used to sit silent until the right signal was raised by hand)."""
    inst = make_instance.existing(SAMPLES / sample / "switchboard.toml")
    wait_for(lambda: inst.stdout.strip(), 5,
             message=lambda: f"{sample}: nothing on stdout within 5 s of ready; log:\n"
                             f"{inst.log[-3000:]}")
    assert " ERROR " not in inst.log and "Traceback" not in inst.log, inst.log[-3000:]
