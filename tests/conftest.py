"""Shared fixtures: a process-leak guard for every test, and the `Instance` helper that
runs a real `switchboard run` in a temporary folder for the integration tests.

Nothing here sleeps for a fixed time to make a test pass: every wait polls a condition
against a deadline (`wait_for`) and fails with what it saw when the deadline passes.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import re
import shutil
import signal as unix
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from switchboard import control

PYTHON = sys.executable
READY_TIMEOUT = 20.0      # seconds a fresh instance gets to log its `ready` line
CLI_TIMEOUT = 30.0        # seconds one `switchboard signal/stats/check` call may take
LEAK_GRACE = 5.0          # seconds a test's child processes get to disappear after it
READY_LINE = re.compile(r"\bready:")


# ---------------------------------------------------------------------------------------
# Polling


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
             message: str | Callable[[], str] = "") -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes.

    On timeout the test fails with `message` (a string, or a callable producing one,
    evaluated then, so it can show the state that was not reached).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"condition not met within {timeout:g} s"
                        + (f": {text}" if text else ""), pytrace=False)
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Process leaks


def _set_child_subreaper() -> None:
    """Make this pytest process the reaper of its orphaned descendants.

    Without it, a worker whose master died would be re-parented to init and escape the
    leak check below; with it, it stays a descendant of pytest and is seen.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)          # PR_SET_CHILD_SUBREAPER


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every process, read from /proc/*/stat."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError:
            continue
        rest = data[data.rfind(")") + 2:].split()   # the name may hold spaces and ')'
        if len(rest) >= 2:
            table[int(entry)] = (int(rest[1]), rest[0])
    return table


def descendants(root: int | None = None, include_zombies: bool = False) -> set[int]:
    """Every live descendant of `root` (default: this process)."""
    root = os.getpid() if root is None else root
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    if include_zombies:
        return found
    return {p for p in found if table.get(p, (0, "Z"))[1] not in ("Z", "X")}


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return False
    return data[data.rfind(")") + 2:].split()[0] not in ("Z", "X")


def pytest_configure(config: pytest.Config) -> None:
    _set_child_subreaper()


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail a test that leaves a child process behind (and kill what it left)."""
    before = descendants(include_zombies=True)
    yield
    _reap_orphans_not_in(before)
    deadline = time.monotonic() + LEAK_GRACE
    leaked = _not_ours(descendants() - before)
    while leaked and time.monotonic() < deadline:
        time.sleep(0.05)
        _reap_orphans_not_in(before)
        leaked = _not_ours(descendants() - before)
    if not leaked:
        return
    described = {pid: cmdline(pid) for pid in sorted(leaked)}
    for pid in leaked:
        with contextlib.suppress(OSError):
            os.kill(pid, unix.SIGKILL)
    wait_for(lambda: not (descendants() & leaked), timeout=5.0)
    _reap_orphans_not_in(before)
    pytest.fail("the test leaked processes still running "
                f"{LEAK_GRACE:g} s after it ended (now killed): "
                + "; ".join(f"pid {pid}: {cmd!r}" for pid, cmd in described.items()),
                pytrace=False)


def _not_ours(pids: set[int]) -> set[int]:
    """Leave out the session's PostgreSQL server: it outlives tests on purpose."""
    return {p for p in pids if not cmdline(p).startswith(("postgres", _PG_BINARY_MARK))}


_PG_BINARY_MARK = "/usr/lib/postgresql/"


# ---------------------------------------------------------------------------------------
# A real PostgreSQL server for the tests that need one


def _pg_bindir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(versions[-1]) if versions else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A DSN of a PostgreSQL server started for this session (private port and data
    folder, unix socket only), or of the one $SWITCHBOARD_TEST_PG_DSN names."""
    if os.environ.get("SWITCHBOARD_TEST_PG_DSN"):
        yield os.environ["SWITCHBOARD_TEST_PG_DSN"]
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    folder = tempfile.mkdtemp(prefix="sb-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:                     # initdb refuses to run as root
        import pwd
        pw = pwd.getpwnam("postgres")
        os.chown(folder, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), 54000 + os.getpid() % 1000
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-w", "-t", "60", "-l",
                    os.path.join(folder, "log"), "-o",
                    f"-p {port} -k {folder} -c listen_addresses=''", "start"],
                   check=True, capture_output=True, timeout=90)
    os.environ["SWITCHBOARD_TEST_PG_CTL"] = " ".join(
        [*as_user, f"{bindir}/pg_ctl", "-D", data, "-w", "-t", "60", "-l",
         os.path.join(folder, "log")])
    try:
        yield f"host={folder} port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def _reap_orphans_not_in(before: set[int]) -> None:
    """Reap zombie children of pytest that appeared during the test.

    Only zombies are collected, so a Popen that is still running is never disturbed.
    """
    table = _proc_table()
    me = os.getpid()
    for pid, (ppid, state) in table.items():
        if ppid == me and state == "Z" and pid not in before:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------------------------------------
# A running instance


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)           # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_document(settings: dict[str, Any], signals: Iterable[dict[str, Any]] = ()) -> str:
    lines = ["[switchboard]"]
    lines += [f"{key} = {toml_value(v)}" for key, v in settings.items()]
    for sig in signals:
        lines += ["", "[[signal]]"]
        lines += [f"{key} = {toml_value(v)}" for key, v in sig.items()]
    return "\n".join(lines) + "\n"


SBTEST_MODULE = '''\
"""Written by the test suite: how test handlers report what they did."""
import os
import time

import uwsgi

DIR = {folder!r}
RESULTS = os.path.join(DIR, "results.txt")


def record(*fields):
    """Append one line to the results file: one write, O_APPEND, so lines never mix."""
    line = (" ".join(str(f) for f in fields) + "\\n").encode()
    fd = os.open(RESULTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def mark(num):
    """A handler: records '<num> <worker_id> <pid>'."""
    record(num, uwsgi.worker_id(), os.getpid())


def touch(name):
    with open(os.path.join(DIR, name), "a"):
        pass


def wait_file(name, timeout=60.0):
    """Block until the test creates DIR/name (how a test holds a handler busy)."""
    path = os.path.join(DIR, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{{path}} did not appear within {{timeout}} s")
        time.sleep(0.005)
'''


class Instance:
    """One `switchboard run` in its own folder, session and process group."""

    def __init__(self, folder: Path, config_path: Path | None = None) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = config_path or (folder / "switchboard.toml")
        self.control_path = folder / "control.sock"
        self.log_path = folder / "master.log"
        self.stdout_path = folder / "stdout.txt"
        self.results_path = folder / "results.txt"
        self.runtime_dir = folder / "xdg"         # default control socket folder
        self.runtime_dir.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "sbtest.py").write_text(SBTEST_MODULE.format(folder=str(folder)))

    # -- writing the deployment ------------------------------------------------------

    def write_module(self, name: str, source: str) -> Path:
        path = self.dir / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    def write_config(self, settings: dict[str, Any] | None = None,
                     signals: Iterable[dict[str, Any]] = (), text: str | None = None) -> Path:
        """Write the config: from `settings`/`signals`, or verbatim `text`.

        `control` and `python-path` default to this folder.
        """
        if text is None:
            settings = dict(settings or {})
            settings.setdefault("control", str(self.control_path))
            settings.setdefault("python-path", [str(self.dir)])
            text = toml_document(settings, signals)
        self.config_path.write_text(text)
        return self.config_path

    # -- running ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["XDG_RUNTIME_DIR"] = str(self.runtime_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, wait_ready: bool = True, timeout: float = READY_TIMEOUT,
              args: Iterable[str] = (), config_arg: str | None = None) -> Instance:
        """Run `switchboard run CONFIG` (CONFIG = `config_arg`, relative to this folder,
        or the absolute config path)."""
        assert self.proc is None, "already started"
        config = config_arg if config_arg is not None else str(self.config_path)
        with open(self.log_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "switchboard", "run", config, *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.dir,
                env=self.env, start_new_session=True)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        def ready() -> bool:
            if READY_LINE.search(self.log):
                return True
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"switchboard exited with status {self.proc.returncode} "
                            f"before it was ready; its log:\n{self.log}", pytrace=False)
            return False
        wait_for(ready, timeout, message=lambda: f"no 'ready:' line; log so far:\n{self.log}")

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def stdout(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run `python -m switchboard ARGS` (cwd and environment of this instance)."""
        return subprocess.run([PYTHON, "-m", "switchboard", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir, env=self.env)

    def signal(self, num: int, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Raise `num` through `switchboard signal NUM --config CONFIG`."""
        res = self.cli("signal", str(num), "--config", str(self.config_path))
        if check:
            assert res.returncode == 0, (
                f"switchboard signal {num} failed ({res.returncode}): {res.stderr}\n"
                f"log:\n{self.log}")
        return res

    def ask(self, line: str) -> dict[str, Any]:
        """One request on the control socket, as `switchboard signal/stats` send it (the
        CLI is tested on its own; talking to the socket directly keeps tests fast)."""
        reply = control.request(str(self.control_path), line, CLI_TIMEOUT)
        assert reply.get("ok"), f"{line!r}: {reply}\nlog:\n{self.log[-3000:]}"
        return reply

    def raise_signal(self, num: int) -> None:
        self.ask(f"signal {num}")

    def socket_stats(self) -> dict[str, Any]:
        return self.ask("stats")["stats"]

    def stats_when(self, predicate: Callable[[dict[str, Any]], Any],
                   timeout: float = 15) -> dict[str, Any]:
        """Poll the stats until `predicate` holds; the stats that satisfied it."""
        def check() -> dict[str, Any] | None:
            stats = self.socket_stats()
            return stats if predicate(stats) else None
        return wait_for(check, timeout, interval=0.05, message=lambda: (
            f"stats: {self.socket_stats()}\nlog:\n{self.log[-6000:]}"))

    def stats(self) -> dict[str, Any]:
        res = self.cli("stats", "--config", str(self.config_path))
        assert res.returncode == 0, f"switchboard stats failed: {res.stderr}\nlog:\n{self.log}"
        return json.loads(res.stdout)

    def signal_stats(self, num: int) -> dict[str, Any]:
        return self.stats()["signals"].get(str(num), {})

    def worker(self, wid: int, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        stats = stats or self.stats()
        return next(w for w in stats["workers"] if w["id"] == wid)

    def worker_pids(self) -> dict[int, int]:
        return {w["id"]: w["pid"] for w in self.stats()["workers"]}

    # -- what handlers recorded ------------------------------------------------------

    def results(self) -> list[list[str]]:
        try:
            text = self.results_path.read_text()
        except FileNotFoundError:
            return []
        return [line.split() for line in text.splitlines() if line.strip()]

    def wait_results(self, count: int, timeout: float = 15.0,
                     where: Callable[[list[str]], bool] | None = None) -> list[list[str]]:
        """Wait until at least `count` result lines (matching `where`) exist; all lines."""
        def enough() -> list[list[str]] | None:
            lines = self.results()
            chosen = [r for r in lines if where is None or where(r)]
            return lines if len(chosen) >= count else None
        return wait_for(enough, timeout, message=lambda: (
            f"expected {count} result lines, have {self.results()[-50:]}\n"
            f"log:\n{self.log[-6000:]}"))

    def touch(self, name: str) -> None:
        (self.dir / name).touch()

    # -- stopping --------------------------------------------------------------------

    def send(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def stop(self, sig: int = unix.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` to the master, wait for it to exit; its exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"switchboard (pid {self.proc.pid}) did not exit within {timeout:g} s;"
                        f" log:\n{self.log}", pytrace=False)

    def kill_group(self) -> None:
        """Teardown: SIGKILL the whole process group, whatever state it is in."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, unix.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture
def make_instance(tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Factory: `make_instance(settings, signals, modules={name: source}, ...)`.

    Writes the handler modules and the config into tmp_path (control socket and
    python-path there), starts `switchboard run` and waits for its `ready` line unless
    `start=False`.  Every instance's process group is killed at teardown.
    """
    made: list[Instance] = []

    def make(settings: dict[str, Any] | None = None, signals: Iterable[dict[str, Any]] = (),
             modules: dict[str, str] | None = None, text: str | None = None,
             start: bool = True, wait_ready: bool = True, name: str | None = None) -> Instance:
        folder = tmp_path / (name or f"i{len(made)}")
        inst = Instance(folder)
        made.append(inst)
        for mod, source in (modules or {}).items():
            inst.write_module(mod, source)
        inst.write_config(settings, signals, text)
        if start:
            inst.start(wait_ready=wait_ready)
        return inst

    def run_existing(config_path: Path, wait_ready: bool = True) -> Instance:
        inst = Instance(tmp_path / f"i{len(made)}", config_path=Path(config_path))
        made.append(inst)
        return inst.start(wait_ready=wait_ready)

    make.existing = run_existing  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for inst in made:
            inst.kill_group()


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `python -m switchboard ARGS` outside any instance (its own XDG runtime dir)."""
    env = dict(os.environ)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "xdg-cli")
    os.makedirs(env["XDG_RUNTIME_DIR"], exist_ok=True)

    def run(*args: str, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYTHON, "-m", "switchboard", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=tmp_path, env=env)
    return run


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    """The `wait_for(predicate, timeout, message=...)` poller, for test modules."""
    return wait_for


class _ProcTools:
    descendants = staticmethod(descendants)
    pid_alive = staticmethod(pid_alive)
    cmdline = staticmethod(cmdline)


@pytest.fixture
def procs() -> type[_ProcTools]:
    """/proc helpers: descendants(root), pid_alive(pid), cmdline(pid)."""
    return _ProcTools
