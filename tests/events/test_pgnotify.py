"""[[pgnotify]]: LISTEN on a real PostgreSQL server, a signal per NOTIFY, reconnection."""

from __future__ import annotations

import os
import subprocess

import psycopg
import pytest
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(90)

MARK = "python:sbtest:mark"


def notify(dsn: str, channel: str, times: int = 1) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(times):
            conn.execute(f"NOTIFY {channel}, 'payload {i}'")


def test_each_notify_raises_the_signal(make_instance, postgres):
    inst = make_instance({"workers": 2}, [{"num": 40, "handler": MARK}],
                         text=None, start=False)
    inst.write_config({"workers": 2}, [{"num": 40, "handler": MARK}])
    with open(inst.config_path, "a") as f:
        f.write(f'\n[[pgnotify]]\nsignal = 40\ndsn = "{postgres}"\nchannel = "jobs"\n')
    inst.start()
    wait_for(lambda: "pgnotify jobs: listening" in inst.log, message=lambda: inst.log)
    notify(postgres, "jobs", 3)
    inst.wait_results(3, where=lambda r: r[0] == "40")
    stats = inst.stats()
    assert stats["signals"]["40"]["handled"] == 3
    assert inst.stop() == 0


def test_a_handler_entry_takes_a_free_number(make_instance, postgres):
    inst = make_instance({"workers": 1}, [{"num": 0, "handler": MARK}], start=False)
    with open(inst.config_path, "a") as f:
        f.write(f'\n[[pgnotify]]\nhandler = "{MARK}"\ndsn = "{postgres}"\nchannel = "auto"\n')
    inst.start()
    wait_for(lambda: "pgnotify auto: listening" in inst.log, message=lambda: inst.log)
    notify(postgres, "auto")
    inst.wait_results(1, where=lambda r: r[0] == "1")   # 0 is taken: the entry got 1


def test_a_lost_connection_is_logged_and_retried(make_instance, postgres):
    ctl = os.environ.get("SWITCHBOARD_TEST_PG_CTL")
    if not ctl:
        pytest.skip("the server is not ours to restart ($SWITCHBOARD_TEST_PG_DSN is set)")
    inst = make_instance({"workers": 1}, [{"num": 41, "handler": MARK}], start=False)
    with open(inst.config_path, "a") as f:
        f.write(f'\n[[pgnotify]]\nsignal = 41\ndsn = "{postgres}"\nchannel = "again"\n')
    inst.start()
    wait_for(lambda: "pgnotify again: listening" in inst.log, message=lambda: inst.log)
    master = inst.pid
    subprocess.run([*ctl.split(), "-m", "fast", "restart"], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "pgnotify again: listening again" in inst.log, timeout=40,
             message=lambda: inst.log[-3000:])
    assert "retrying every" in inst.log
    notify(postgres, "again")
    inst.wait_results(1, where=lambda r: r[0] == "41")
    assert inst.proc.poll() is None and inst.pid == master   # the master never noticed


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(make_instance,
                                                                       postgres, tmp_path):
    """Without a server the listener used to log a WARNING on every retry (the events
    sample was mostly that); now one WARNING per outage, DEBUG retries, one INFO at the
    end.  The server "appears" when its socket is linked into the folder the dsn names."""
    params = dict(part.split("=", 1) for part in postgres.split())
    if not params.get("host", "").startswith("/"):
        pytest.skip("needs the test server's unix socket")
    later = tmp_path / "pg"
    later.mkdir()
    dsn = f"host={later} port={params['port']} user=postgres dbname=postgres"
    inst = make_instance({"workers": 1}, [{"num": 42, "handler": MARK}], start=False)
    with open(inst.config_path, "a") as f:
        f.write(f'\n[[pgnotify]]\nsignal = 42\ndsn = "{dsn}"\nchannel = "late"\n')
    inst.start(args=["--log-level", "DEBUG"])

    def lines(text):
        return [line for line in inst.log.splitlines() if "pgnotify late:" in line and text in line]

    wait_for(lambda: len(lines("retrying in")) >= 2, timeout=20, message=lambda: inst.log)
    assert len(lines(" WARNING ")) == 1, inst.log
    assert all(" DEBUG " in line for line in lines("retrying in"))
    socket_name = f".s.PGSQL.{params['port']}"
    os.symlink(os.path.join(params["host"], socket_name), later / socket_name)
    wait_for(lambda: lines("listening again"), timeout=20, message=lambda: inst.log)
    assert len(lines(" WARNING ")) == 1 and " INFO " in lines("listening again")[0]
    notify(postgres, "late")
    inst.wait_results(1, where=lambda r: r[0] == "42")


def test_a_bad_dsn_is_a_config_error(make_instance, cli):
    inst = make_instance({"workers": 1}, start=False)
    with open(inst.config_path, "a") as f:
        f.write('\n[[pgnotify]]\nsignal = 3\ndsn = "host=x nonsense"\nchannel = "c"\n')
    res = cli("check", str(inst.config_path))
    assert res.returncode == 2
    assert "[[pgnotify]] #1" in res.stderr and "key 'dsn'" in res.stderr
    assert "Traceback" not in res.stderr
