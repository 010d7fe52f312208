"""The control socket's folder is ours alone (as tmux and ssh-agent check theirs).

Without XDG_RUNTIME_DIR the default socket goes in TMPDIR/switchboard-UID, a name any local
user can take first.  `run` refuses (exit 2, before anything starts) a folder that is a
symlink, someone else's, or open to group/others; so does the CLI, and the CLI refuses a
socket file another user owns.  Each test failed before the check existed: the instance
bound inside the other user's folder, and the CLI talked to whoever listened.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

pytestmark = pytest.mark.timeout(60)

OTHER_UID = 65534           # nobody: another local user
needs_root = pytest.mark.skipif(os.getuid() != 0, reason="chown to another user needs root")

CONFIG = "[switchboard]\nworkers = 1\n"


def run_cli(tmp_path, *args, env_extra=None, timeout=30):
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["TMPDIR"] = str(tmp_path / "tmp")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "switchboard", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path, env=env)


@pytest.fixture
def config(tmp_path):
    (tmp_path / "tmp").mkdir(mode=0o1777)
    os.chmod(tmp_path / "tmp", 0o1777)         # like /tmp: anyone may create names in it
    path = tmp_path / "switchboard.toml"
    path.write_text(CONFIG)
    return path


def default_folder(tmp_path):
    return tmp_path / "tmp" / f"switchboard-{os.getuid()}"


def assert_refused(res, folder, problem):
    assert res.returncode == 2, res.stderr
    assert str(folder) in res.stderr and problem in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


@needs_root
def test_run_refuses_a_default_folder_another_user_made_first(tmp_path, config):
    folder = default_folder(tmp_path)
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    os.chown(folder, OTHER_UID, OTHER_UID)
    res = run_cli(tmp_path, "run", str(config))
    assert_refused(res, folder, f"owned by uid {OTHER_UID}")
    assert os.listdir(folder) == []            # nothing was bound there


def test_run_refuses_a_default_folder_that_is_a_symlink(tmp_path, config):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    default_folder(tmp_path).symlink_to(elsewhere)
    res = run_cli(tmp_path, "run", str(config))
    assert_refused(res, default_folder(tmp_path), "symbolic link")
    assert os.listdir(elsewhere) == []


def test_run_refuses_a_default_folder_open_to_others(tmp_path, config):
    folder = default_folder(tmp_path)
    folder.mkdir()
    os.chmod(folder, 0o755)
    res = run_cli(tmp_path, "run", str(config))
    assert_refused(res, folder, "mode 0755")


def test_the_cli_refuses_the_same_folder(tmp_path, config):
    folder = default_folder(tmp_path)
    folder.mkdir()
    os.chmod(folder, 0o777)
    for command in (["signal", "1"], ["stats"]):
        res = run_cli(tmp_path, *command, "--config", str(config))
        assert_refused(res, folder, "mode 0777")


def test_a_missing_default_folder_is_made_private(tmp_path, config):
    res = run_cli(tmp_path, "signal", "1", "--config", str(config))
    assert res.returncode == 1 and "no instance is listening" in res.stderr, res.stderr
    mode = os.lstat(default_folder(tmp_path)).st_mode
    assert stat.S_ISDIR(mode) and stat.S_IMODE(mode) == 0o700


def test_an_explicit_control_path_in_a_shared_folder_is_refused(tmp_path, config):
    config.write_text(CONFIG + f'control = "{tmp_path}/tmp/sb.sock"\n')
    res = run_cli(tmp_path, "run", str(config))
    assert_refused(res, tmp_path / "tmp", "is shared (mode 1777")
    assert not (tmp_path / "tmp" / "sb.sock").exists()


@needs_root
def test_the_cli_refuses_a_socket_another_user_owns(tmp_path, config):
    path = str(tmp_path / "impostor.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(15)
    os.chown(path, OTHER_UID, OTHER_UID)
    accepted: list[socket.socket] = []

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        accepted.append(conn)
        conn.sendall(b'{"ok": true}\n')
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        res = run_cli(tmp_path, "signal", "1", "--control", path)
    finally:
        listener.close()
        thread.join()
    assert res.returncode == 2, res.stderr
    assert path in res.stderr and f"owned by uid {OTHER_UID}" in res.stderr, res.stderr
    assert accepted == []
