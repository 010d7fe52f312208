"""samples/events runs as shipped (a copy): its timer, its cron entry, its file monitor
that makes every worker reload lua/greeting.lua; samples/pgnotify (with the test's
PostgreSQL server): its listener (SPEC sections 7, 9, 10)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import psycopg
import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DSN = 'dsn = "postgresql:///postgres"'


def copy_samples(tmp_path: Path) -> Path:
    """The repo's samples, lua/ and python_handlers/, as a user would have them."""
    for name in ("samples", "lua", "python_handlers"):
        shutil.copytree(REPO / name, tmp_path / "repo" / name)
    return tmp_path / "repo"


def lines(inst, text: str) -> list[str]:
    return [line for line in inst.stdout.splitlines() if text in line]


@pytest.fixture
def events(make_instance, tmp_path):
    repo = copy_samples(tmp_path)
    inst = make_instance.existing(repo / "samples" / "events" / "switchboard.toml")
    inst.repo = repo
    return inst


@pytest.fixture
def pgnotify(make_instance, tmp_path, postgres):
    repo = copy_samples(tmp_path)
    config = repo / "samples" / "pgnotify" / "switchboard.toml"
    text = config.read_text()
    assert text.count(SHIPPED_DSN) == 1, "the sample's dsn line changed: update this test"
    config.write_text(text.replace(SHIPPED_DSN, f'dsn = "{postgres}"'))
    return make_instance.existing(config)


def test_the_events_sample_runs_its_timer_and_cron(events):
    inst = events
    wait_for(lambda: len(lines(inst, "timer: worker")) >= 2, 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-3000:]}")
    timer = lines(inst, "timer: worker")
    assert timer[:2] == ["timer: worker 1 counted 4 ticks of 0.25 s",
                         "timer: worker 1 counted 8 ticks of 0.25 s"]
    crons = lines(inst, "cron: signal")
    assert 1 <= len(crons) <= 2, inst.stdout      # at start-up; at most one more minute
    assert re.fullmatch(r"cron: signal \d+ on worker [12]", crons[0]), crons
    assert "Traceback" not in inst.log and " ERROR " not in inst.log, inst.log[-3000:]
    assert inst.stop() == 0


def test_editing_greeting_lua_makes_both_workers_reload_it(events):
    inst = events
    greeting = inst.repo / "lua" / "greeting.lua"
    inst.signal(50)         # `ready` came after the sources helper placed its monitors
    wait_for(lambda: len(lines(inst, "says: hello from greeting.lua")) == 2, 15,
             message=lambda: inst.stdout)

    greeting.write_text('return { text = "edited in place" }\n')
    for worker in (1, 2):
        wait_for(lambda w=worker: lines(inst, f"lua: worker {w} reloaded greeting.lua: "
                                              "edited in place"), 15,
                 message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-3000:]}")
    inst.signal(50)
    wait_for(lambda: len(lines(inst, "says: edited in place")) == 2, 15,
             message=lambda: inst.stdout)

    # An editor that saves by writing a new file and renaming it over the old one.
    fresh = greeting.with_name(".greeting.lua.swp")
    fresh.write_text('return { text = "saved by rename" }\n')
    os.replace(fresh, greeting)
    for worker in (1, 2):
        wait_for(lambda w=worker: lines(inst, f"lua: worker {w} reloaded greeting.lua: "
                                              "saved by rename"), 15,
                 message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-3000:]}")
    # and the file that replaced it is watched in turn
    greeting.write_text('return { text = "third edit" }\n')
    for worker in (1, 2):
        wait_for(lambda w=worker: lines(inst, f"lua: worker {w} reloaded greeting.lua: "
                                              "third edit"), 15,
                 message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-3000:]}")
    assert "Traceback" not in inst.log and " ERROR " not in inst.log, inst.log[-3000:]


def test_a_notify_on_switchboard_jobs_runs_on_job(pgnotify, postgres):
    inst = pgnotify
    wait_for(lambda: "pgnotify switchboard_jobs: listening" in inst.log, 20,
             message=lambda: inst.log[-3000:])
    assert lines(inst, "pgnotify:") == []
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("NOTIFY switchboard_jobs, 'job 1'")
    wait_for(lambda: lines(inst, "pgnotify: a NOTIFY on channel switchboard_jobs reached "
                                 "worker"), 15,
             message=lambda: f"stdout:\n{inst.stdout}\nlog:\n{inst.log[-3000:]}")
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("NOTIFY switchboard_jobs")
        conn.execute("NOTIFY some_other_channel")
    wait_for(lambda: len(lines(inst, "pgnotify:")) == 2, 15, message=lambda: inst.stdout)
    assert inst.stop() == 0
    assert len(lines(inst, "pgnotify:")) == 2
