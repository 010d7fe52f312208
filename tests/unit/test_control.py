"""The control socket: one request line in, one JSON reply out, then the server closes.

The server runs on a real selector that the test drives by hand, so nothing depends on
timing; where the protocol has deadlines, the server's clock is replaced.
"""

from __future__ import annotations

import errno
import json
import os
import selectors
import socket
import stat
import threading
from collections.abc import Callable, Iterator

import pytest

from switchboard import control
from switchboard.config import from_dict
from switchboard.control import MAX_REQUEST, ControlServer, request


class Clock:
    """Stands in for the `time` module inside control.py."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Client:
    """A non-blocking client, so the test thread can drive the server between steps."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.data = b""
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    def poll(self) -> bool:
        """Read what arrived; True once the server closed the connection."""
        while not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.closed = True
                break
            if not chunk:
                self.closed = True
            self.data += chunk
        return self.closed

    def reply(self) -> dict:
        assert self.closed and self.data.endswith(b"\n"), self.data[:200]
        return json.loads(self.data)

    def close(self) -> None:
        self.sock.close()


class Server:
    def __init__(self, path: str, dispatch: Callable, retry_for: float = 10.0) -> None:
        self.selector = selectors.DefaultSelector()
        self.server = ControlServer(path, self.selector, dispatch, retry_for)
        self.path = path

    def pump(self, until: Callable[[], bool], passes: int = 200) -> None:
        """Run the server's loop until `until()`; fail if it stalls instead."""
        for _ in range(passes):
            if until():
                return
            events = self.selector.select(timeout=5)
            assert events, "the server has nothing left to do, but the condition is not met"
            for key, mask in events:
                key.data(mask)
        assert until()

    def settle(self) -> None:
        """Handle everything ready right now."""
        for _ in range(50):
            events = self.selector.select(timeout=0)
            if not events:
                return
            for key, mask in events:
                key.data(mask)

    def close(self) -> None:
        self.server.close()
        self.selector.close()


class Recorder:
    """A dispatch function: records requests and answers from a script of replies."""

    def __init__(self, *replies: dict | None) -> None:
        self.lines: list[str] = []
        self.replies = list(replies)

    def __call__(self, line: str) -> dict | None:
        self.lines.append(line)
        if self.replies:
            return self.replies.pop(0)
        return {"ok": True, "echo": line}


@pytest.fixture
def sock_path(short_tmp) -> str:
    return os.path.join(short_tmp, "c.sock")


@pytest.fixture
def serve(sock_path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(dispatch: Callable, retry_for: float = 10.0) -> Server:
        srv = Server(sock_path, dispatch, retry_for)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


@pytest.fixture
def clients() -> Iterator[Callable[[str], Client]]:
    made: list[Client] = []

    def make(path: str) -> Client:
        c = Client(path)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# -- one request, one reply ------------------------------------------------------------------

def test_a_request_line_gets_one_json_reply_and_the_server_closes(serve, clients):
    rec = Recorder({"ok": True, "stats": {"workers": []}})
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"stats\n")
    srv.pump(client.poll)
    assert client.reply() == {"ok": True, "stats": {"workers": []}}
    assert client.data.count(b"\n") == 1
    assert rec.lines == ["stats"]


def test_only_the_first_line_is_the_request_and_it_is_stripped(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"  signal 5 \r\nignored\n")
    srv.pump(client.poll)
    assert rec.lines == ["signal 5"]
    assert client.reply()["echo"] == "signal 5"


def test_a_request_without_newline_is_taken_at_end_of_input(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"stats")
    client.sock.shutdown(socket.SHUT_WR)
    srv.pump(client.poll)
    assert rec.lines == ["stats"]


def test_a_request_split_over_several_writes(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"sig")
    srv.settle()
    assert rec.lines == []          # not a whole line yet
    client.send(b"nal 7\n")
    srv.pump(client.poll)
    assert rec.lines == ["signal 7"]


def test_a_request_that_is_not_utf8_is_still_answered(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"signal \xff\xfe\n")
    srv.pump(client.poll)
    assert len(rec.lines) == 1 and rec.lines[0].startswith("signal ")
    assert client.reply()["ok"] is True


def test_clients_are_answered_independently(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    a, b = clients(srv.path), clients(srv.path)
    b.send(b"signal 2\n")
    a.send(b"signal 1\n")
    srv.pump(lambda: a.poll() and b.poll())
    assert a.reply()["echo"] == "signal 1"
    assert b.reply()["echo"] == "signal 2"


def test_a_client_that_leaves_before_the_reply_does_not_break_the_server(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    gone = clients(srv.path)
    gone.send(b"stats\n")
    gone.close()
    srv.settle()
    client = clients(srv.path)
    client.send(b"signal 1\n")
    srv.pump(client.poll)
    assert client.reply()["echo"] == "signal 1"


# -- oversized requests ----------------------------------------------------------------------

def test_a_request_over_4_kib_gets_an_error_reply(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"x" * (MAX_REQUEST + 500))
    srv.pump(client.poll)
    reply = client.reply()
    assert reply["ok"] is False and str(MAX_REQUEST) in reply["error"]
    assert rec.lines == []


def test_a_long_line_with_its_newline_is_still_refused(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"signal " + b"1" * (MAX_REQUEST + 100) + b"\n")
    srv.pump(client.poll)
    assert client.reply()["ok"] is False
    assert rec.lines == []


def test_an_oversized_request_arriving_in_two_parts_is_refused(serve, clients):
    # The server reads the first part before the second (with its newline) arrives.
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"x" * (MAX_REQUEST - 96))
    srv.settle()
    client.send(b"y" * 200 + b"\n")          # the line is now 4104 bytes
    srv.pump(client.poll)
    assert client.reply()["ok"] is False, "a request over 4 KiB must be refused"
    assert rec.lines == []


def test_a_request_just_under_the_limit_is_served(serve, clients):
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    line = b"s" * (MAX_REQUEST - 1)
    client.send(line + b"\n")
    srv.pump(client.poll)
    assert rec.lines == [line.decode()]
    assert client.reply()["ok"] is True


# -- parked requests (the signal's queue is full) --------------------------------------------

def test_a_parked_request_is_answered_when_a_retry_succeeds(serve, clients):
    rec = Recorder(None, None, {"ok": True})
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"signal 30\n")
    srv.settle()
    assert not client.poll()                 # no answer yet: the signal has no room
    srv.server.retry()
    srv.settle()
    assert not client.poll()
    srv.server.retry()
    srv.pump(client.poll)
    assert client.reply() == {"ok": True}
    assert rec.lines == ["signal 30"] * 3


def test_a_parked_request_gets_an_error_after_retry_for(serve, clients, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(control, "time", clock)
    rec = Recorder(None, None, None)
    srv = serve(rec, retry_for=2.0)
    client = clients(srv.path)
    client.send(b"signal 30\n")
    srv.settle()
    clock.now += 1.0
    srv.server.retry()
    srv.settle()
    assert not client.poll()
    clock.now += 1.5
    srv.server.retry()
    srv.pump(client.poll)
    reply = client.reply()
    assert reply["ok"] is False and "2 s" in reply["error"]


def test_with_no_retry_time_a_refusal_is_answered_at_once(serve, clients):
    rec = Recorder(None)
    srv = serve(rec, retry_for=0)
    client = clients(srv.path)
    client.send(b"signal 30\n")
    srv.pump(client.poll)
    assert client.reply()["ok"] is False
    assert rec.lines == ["signal 30"]


def test_expire_keeps_a_parked_request(serve, clients, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(control, "time", clock)
    rec = Recorder(None, {"ok": True})
    srv = serve(rec, retry_for=60.0)
    client = clients(srv.path)
    client.send(b"signal 30\n")
    srv.settle()
    clock.now += control.IDLE_TIMEOUT + 5
    srv.server.expire()
    srv.settle()
    assert not client.poll(), "a parked request is not an idle client"
    srv.server.retry()
    srv.pump(client.poll)
    assert client.reply() == {"ok": True}


def test_a_silent_client_is_disconnected_after_the_idle_timeout(serve, clients, monkeypatch):
    # control.py: a client that sends no complete request within 10 s is disconnected.
    clock = Clock()
    monkeypatch.setattr(control, "time", clock)
    rec = Recorder()
    srv = serve(rec)
    client = clients(srv.path)
    client.send(b"sta")                       # never completes its line
    srv.settle()
    clock.now += control.IDLE_TIMEOUT - 1
    srv.server.expire()
    srv.settle()
    assert not client.poll(), "closed before its time"
    clock.now += 2
    srv.server.expire()
    srv.settle()
    assert client.poll(), "a silent client is closed after IDLE_TIMEOUT"
    assert rec.lines == []


# -- the socket file -------------------------------------------------------------------------

def test_the_socket_is_private_and_removed_on_close(sock_path):
    srv = Server(sock_path, Recorder())
    try:
        mode = os.stat(sock_path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o600
    finally:
        srv.close()
    assert not os.path.exists(sock_path)


def test_a_stale_socket_file_is_replaced(sock_path, serve, clients):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()                              # the file stays, nobody listens
    assert os.path.exists(sock_path)
    srv = serve(Recorder())
    client = clients(srv.path)
    client.send(b"stats\n")
    srv.pump(client.poll)
    assert client.reply()["ok"] is True


def test_a_live_instance_socket_is_not_taken_over(sock_path, serve):
    serve(Recorder())
    with pytest.raises(OSError) as err:
        Server(sock_path, Recorder())
    assert err.value.errno == errno.EADDRINUSE
    assert sock_path in str(err.value)


def test_a_socket_in_a_missing_folder_is_an_error_naming_the_path(short_tmp):
    path = os.path.join(short_tmp, "no", "c.sock")
    with pytest.raises(OSError) as err:
        Server(path, Recorder())
    assert path in str(err.value)


# -- the client: request() -------------------------------------------------------------------

def _call_in_thread(srv: Server, line: str) -> dict:
    """request() blocks, so it runs in a thread while this thread runs the server."""
    out: dict = {}

    def client() -> None:
        try:
            out["reply"] = request(srv.path, line, timeout=10)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    while thread.is_alive():
        for key, mask in srv.selector.select(timeout=0.05):
            key.data(mask)
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["reply"]


def test_request_sends_one_line_and_returns_the_reply(serve):
    rec = Recorder({"ok": True, "n": 1})
    srv = serve(rec)
    assert _call_in_thread(srv, "signal 3") == {"ok": True, "n": 1}
    assert rec.lines == ["signal 3"]


def test_request_to_no_instance_is_an_os_error(short_tmp):
    with pytest.raises(OSError):
        request(os.path.join(short_tmp, "none.sock"), "stats", timeout=1)


def test_request_with_a_malformed_reply_is_an_os_error(sock_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    out: dict = {}

    def client() -> None:
        try:
            request(sock_path, "stats", timeout=10)
        except OSError as exc:
            out["error"] = exc

    thread = threading.Thread(target=client)
    thread.start()
    try:
        conn, _ = listener.accept()
        with conn:
            conn.recv(100)
            conn.sendall(b"this is not json\n")
    finally:
        thread.join()
        listener.close()
    assert out["error"].errno == errno.EPROTO
    assert sock_path in str(out["error"])


def test_default_path_is_stable_per_config_and_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    one = control.default_path("/srv/a/switchboard.toml")
    assert one == control.default_path("/srv/a/switchboard.toml")
    assert one != control.default_path("/srv/b/switchboard.toml")
    assert os.path.dirname(one).startswith(str(tmp_path))
    assert stat.S_IMODE(os.stat(os.path.dirname(one)).st_mode) == 0o700
    monkeypatch.chdir(tmp_path)
    assert control.default_path("x.toml") == control.default_path(str(tmp_path / "x.toml"))


# -- the master's requests, over the real protocol -------------------------------------------

@pytest.fixture
def booted_master(restore_api, tmp_path, monkeypatch):
    """A booted (not running) master: its table, router and request handler."""
    from switchboard.hosts import lua
    from switchboard.master import Master

    from .conftest import close_shared

    monkeypatch.setattr(lua, "_host", lua._Host())
    master = Master(from_dict({"switchboard": {"workers": 2, "signal-queue": 2}},
                              str(tmp_path / "sb.toml")))
    master.boot()
    yield master
    for sock in master.channels.all_sockets():
        sock.close()
    close_shared(master.shared)


def test_master_unknown_request_names_it_and_the_valid_ones(booted_master):
    reply = booted_master._on_request("reload now")
    assert reply["ok"] is False
    assert "reload now" in reply["error"]
    assert "signal N" in reply["error"] and "stats" in reply["error"]


@pytest.mark.parametrize("line, needle", [
    ("signal 256", "256"), ("signal -1", "-1"), ("signal five", "five"), ("signal 1.5", "1.5"),
])
def test_master_bad_signal_numbers_are_error_replies_naming_the_value(booted_master, line,
                                                                      needle):
    reply = booted_master._on_request(line)
    assert reply["ok"] is False and needle in reply["error"]


def test_master_accepts_an_unregistered_signal_and_holds_it(booted_master):
    # SPEC 14: `switchboard signal N` for an unregistered N is accepted: held for a waiter.
    # The reply says it was held and how many processes wait, for the CLI to tell.
    assert booted_master._on_request("signal 77") == {"ok": True, "held": True, "waiting": 0}
    assert list(booted_master.router.held) == [77]
    assert booted_master.router.raised[77] == 1


def test_master_parks_a_signal_whose_queue_is_full(booted_master):
    from switchboard import api
    api.register_signal(5, "worker1", "python:os:getpid")
    assert booted_master._on_request("signal 5") == {"ok": True}
    assert booted_master._on_request("signal 5") == {"ok": True}
    assert booted_master._on_request("signal 5") is None      # signal-queue = 2: ask later
    assert booted_master.router.raised[5] == 2


def test_master_stats_and_signal_over_the_socket(booted_master, serve):
    srv = serve(booted_master._on_request)
    assert _call_in_thread(srv, "signal 9") == {"ok": True, "held": True, "waiting": 0}
    reply = _call_in_thread(srv, "stats")
    assert reply["ok"] is True
    stats = reply["stats"]
    assert [w["id"] for w in stats["workers"]] == [1, 2]
    assert stats["signals"]["9"]["raised"] == 1
    assert stats["held"] == 1
    unknown = _call_in_thread(srv, "hello")
    assert unknown["ok"] is False
