"""typeshed's types-uWSGI stubs checked by mypy's stubtest inside a running instance.

A `pyrun` script runs `python -m mypy.stubtest uwsgi uwsgidecorators` in worker 1, where
`uwsgi` and `uwsgidecorators` are Switchboard's.  The allowlist (stubtest_allowlist.txt)
names only HTTP/request and plugin functions, each with its reason.  `--ignore-missing-stub`
lets Switchboard's additions (del_timer, unregister_signal, signal_wait_async, ...) be.
Switchboard's documented extra parameters are the one other kind of difference
accepted, listed below by exact message.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
PYTHON = sys.executable

# (name, message) of documented Switchboard extensions (docs/api.md): a superset of
# uWSGI's signature, so code written for uWSGI calls them unchanged.
EXTENSIONS = {
    ("uwsgi.add_timer", 'stub does not have parameter "iterations"'),
    ("uwsgi.add_file_monitor", 'stub does not have parameter "iterations"'),
    ("uwsgi.add_file_monitor", 'stub does not have parameter "recursive"'),
    ("uwsgi.signal_wait", 'stub does not have parameter "timeout"'),
    ("uwsgi.signal_wait", 'stub does not have parameter "num"'),
    # signal_wait(None) waits for any signal, as signal_wait() does
    ("uwsgi.signal_wait", 'runtime parameter "signum" has a default value of type None, '
                          'which is incompatible with stub parameter type int'),
    # uWSGI's C signal() requires the number ("B|s:signal", plugins/python/uwsgi_pymodule.c);
    # the stub gives it a default
    ("uwsgi.signal", 'stub parameter "signum" has a default value but runtime parameter '
                     'does not'),
    # SPEC 13: unique=True (keyword-only) has one node of the cluster raise each fire
    ("uwsgi.add_timer", 'stub does not have parameter "unique"'),
    ("uwsgi.add_rb_timer", 'stub does not have parameter "unique"'),
    ("uwsgi.add_cron", 'stub does not have parameter "unique"'),
}

# The mule parts (mule messages, @mulefunc & co, @thread), checked on their own.
MULES = re.compile(r"uwsgi\.(mule_msg|mule_get_msg|farm_msg|farm_get_msg|in_farm)$|"
                     r"uwsgidecorators\.(mule|muleloop|mulemsg|mulemsg_loop|mule_brain|"
                     r"mule_brainloop|mulefunc|mule_functions|mule_msg_dispatcher|farm|"
                     r"farm_loop|thread)$")

SCRIPT = """
import sys
from mypy import stubtest
sys.exit(stubtest.test_stubs(stubtest.parse_options(
    ["uwsgi", "uwsgidecorators", "--ignore-missing-stub", "--allowlist", sys.argv_allowlist])))
"""


@pytest.fixture(scope="module")
def differences(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    folder = tmp_path_factory.mktemp("stubtest")
    (folder / "run_stubtest.py").write_text(
        SCRIPT.replace("sys.argv_allowlist", repr(str(HERE / "stubtest_allowlist.txt"))))
    (folder / "spool").mkdir(mode=0o700)
    (folder / "app.ini").write_text(
        "[uwsgi]\nmaster = true\nprocesses = 1\nmules = 2\nfarm = pair:1,2\n"
        "spooler = %d/spool\npyrun = %d/run_stubtest.py\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([PYTHON, "-m", "switchboard", "run", "app.ini"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=180)
    found = re.findall(r"^error: (\S+) (.*)$", proc.stdout, re.M)
    assert found or proc.returncode == 0, proc.stdout + proc.stderr
    return [(name, message.removeprefix("is inconsistent, ")) for name, message in found]


def test_no_difference_in_the_signal_timer_cron_filemon_spooler_and_lock_parts(differences):
    left = [(n, m) for n, m in differences if (n, m) not in EXTENSIONS and not MULES.match(n)]
    assert left == [], "\n".join(f"{n}: {m}" for n, m in left)


def test_no_difference_in_the_mule_and_farm_parts(differences):
    pending = [(n, m) for n, m in differences if MULES.match(n)]
    assert pending == [], "\n".join(f"{n}: {m}" for n, m in pending)
