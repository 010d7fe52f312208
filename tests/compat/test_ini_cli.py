"""`switchboard run|check app.ini`: uWSGI's ini, `pyrun`, and the options left out."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)


def switchboard(folder, *args):
    return subprocess.run([sys.executable, "-m", "switchboard", *args], cwd=folder,
                          capture_output=True, text=True, timeout=50)


def test_check_reads_an_ini_and_lists_what_it_ignores(tmp_path):
    (tmp_path / "app.ini").write_text("[uwsgi]\nmaster = true\nprocesses = 2\n"
                                      "http-socket = :8080\nroute = ^/ break:200\n")
    proc = switchboard(tmp_path, "check", "app.ini")
    assert proc.returncode == 0, proc.stderr
    assert "workers: 2, mules: 0, spoolers: 0" in proc.stdout
    assert "ignored uWSGI options (not implemented): http-socket, route" in proc.stdout


def test_a_bad_ini_exits_2_naming_the_file_and_option(tmp_path):
    (tmp_path / "app.ini").write_text("[uwsgi]\nprocesses = two\n")
    proc = switchboard(tmp_path, "run", "app.ini")
    assert proc.returncode == 2
    assert (f"{tmp_path}/app.ini: [uwsgi]: key 'processes': must be an integer, "
            "not 'two'") in proc.stderr


@pytest.mark.parametrize("body, status", [("raise SystemExit(3)", 3), ("pass", 0),
                                          ("raise RuntimeError('boom')", 1)])
def test_pyrun_runs_in_worker_1_and_its_status_is_ours(tmp_path, body, status):
    # uWSGI 2.0.31 exits 0 whatever the script does (checked); the script's status is
    # more useful, and is what a test runner such as uWSGI's t/ scripts needs
    (tmp_path / "main.py").write_text(
        "import uwsgi\nprint('in worker', uwsgi.worker_id(), flush=True)\n" + body + "\n")
    (tmp_path / "app.ini").write_text("[uwsgi]\nmaster = 1\nprocesses = 2\n"
                                      "pyrun = %d/main.py\n")
    proc = switchboard(tmp_path, "run", "app.ini")
    assert proc.returncode == status, proc.stdout + proc.stderr
    assert "in worker 1" in proc.stdout
    assert "pyrun script" in proc.stderr and "stopping" in proc.stderr


def test_an_import_that_fails_names_the_ini_option(tmp_path):
    (tmp_path / "app.ini").write_text("[uwsgi]\nimport = no_such_module_here\n")
    proc = switchboard(tmp_path, "check", "app.ini")
    assert proc.returncode == 2
    assert (f"{tmp_path}/app.ini: [uwsgi]: key 'import': importing 'no_such_module_here' "
            "failed: ModuleNotFoundError") in proc.stderr
