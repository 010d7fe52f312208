"""uWSGI code that runs unchanged (issue 16, item 4): bugs found running it.

Checked on /work/uwsgi-venv/bin/uwsgi (2.0.31): add_rb_timer(n, 0, 1) fires once at
once; the postfork chain runs in workers, mules and spoolers, never elsewhere.
"""

from __future__ import annotations

import pytest
from tests.integration.test_messages import uwsgi_test_file

pytestmark = pytest.mark.timeout(60)

ONESHOT = """
import uwsgi

import sbtest


def fired(num):
    sbtest.record("fired", num)


uwsgi.register_signal(60, "worker", fired)
uwsgi.add_rb_timer(60, 0, 1)
"""


def test_add_rb_timer_zero_seconds_once_is_a_one_shot_at_once(make_instance, wait_for):
    inst = make_instance({"workers": 1, "import": ["oneshot"]}, modules={"oneshot": ONESHOT})
    inst.wait_results(1, where=lambda r: r[0] == "fired")
    stats = inst.signal_stats(60)
    assert stats["handled"] == 1
    assert inst.stop() == 0


WATCH = """
import uwsgi

uwsgi.add_file_monitor(61, {path!r})
"""


def test_uwsgi_sigwait_postfork_with_a_file_monitor_boots(make_instance, wait_for):
    # tests/sigwait.py waits for a signal in a @postfork function: the sources helper
    # (here because of the file monitor) must not run it
    inst = make_instance(start=False)
    inst.write_module("sigwait", uwsgi_test_file("tests/sigwait.py"))
    inst.write_module("watch", WATCH.format(path=str(inst.dir / "watched")))
    inst.write_config({"workers": 2, "import": ["sigwait", "watch"]})
    inst.start(wait_ready=False)
    wait_for(lambda: "waiting for a signal..." in inst.stdout,
             message=lambda: inst.stdout + inst.log)
    # worker 1 is not ready until its postfork returns, as uWSGI's is not serving yet
    wait_for(lambda: inst.control_path.exists())
    inst.raise_signal(17)
    wait_for(lambda: "signal 17 received" in inst.stdout, message=lambda: inst.stdout + inst.log)
    inst.wait_ready()
    assert "I AM THE WORKER 1" in inst.stdout and "I AM THE WORKER 2" in inst.stdout
    assert "crashed" not in inst.log and "cannot boot" not in inst.log
    assert inst.stop() == 0
