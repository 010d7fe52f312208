"""The stats server in a real selector loop on real sockets: raw and HTTP modes, content
negotiation, malformed and hostile clients (each counted, none blocking the loop)."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from switchboard import statserver
from switchboard.statserver import StatsServer

DOC = {"version": "0.1.0", "workers": [{"id": 1, "requests": 3}]}


class Loop:
    """The master's loop in miniature: select and call, on a thread, until stopped."""

    def __init__(self, http: bool, address: str = "127.0.0.1:0") -> None:
        self.selector = selectors.DefaultSelector()
        self.built = 0
        self.server = StatsServer(statserver.parse_address(address), http, self.selector,
                                  self._document, lambda: b"# metrics\n")
        self.passes = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _document(self) -> dict:
        self.built += 1
        return DOC

    def _run(self) -> None:
        while not self._stop:
            for key, mask in self.selector.select(0.01):
                key.data(mask)
            self.server.expire()
            self.passes += 1

    @property
    def address(self) -> tuple[str, int]:
        return self.server.sock.getsockname()

    def stop(self) -> None:
        self._stop = True
        self.thread.join()
        self.server.close()
        self.selector.close()


@pytest.fixture
def raw() -> Iterator[Loop]:
    loop = Loop(http=False)
    yield loop
    loop.stop()


@pytest.fixture
def http() -> Iterator[Loop]:
    loop = Loop(http=True)
    yield loop
    loop.stop()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _ask(loop: Loop, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(loop.address, timeout=5) as sock:
        sock.sendall(request)
        reply = _read_all(sock)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_raw_mode_writes_one_json_document_on_connect_and_closes(raw):
    with socket.create_connection(raw.address, timeout=5) as sock:
        assert json.loads(_read_all(sock)) == DOC
    assert raw.server.counters.requests == 1


def test_a_unix_or_abstract_address_serves_the_same(tmp_path):
    for address in (str(tmp_path / "stats.sock"), f"@sb-test-{time.monotonic_ns()}"):
        loop = Loop(http=False, address=address)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(loop.server.address)
                assert json.loads(_read_all(sock)) == DOC
        finally:
            loop.stop()
    assert not (tmp_path / "stats.sock").exists()      # removed on close


def test_http_get_root_is_json_unless_a_browser_asks_for_html(http):
    status, headers, body = _ask(http, b"GET / HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == DOC
    status, headers, body = _ask(http, b"GET / HTTP/1.1\r\nHost: x\r\nAccept: text/html,"
                                       b"application/xhtml+xml;q=0.9\r\n\r\n")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<title>Switchboard status</title>" in body
    assert b"http://" not in body and b"https://" not in body      # no CDN: works offline


def test_http_serves_stats_json_and_metrics(http):
    status, _, body = _ask(http, b"GET /stats.json HTTP/1.0\r\nAccept: text/html\r\n\r\n")
    assert status == 200 and json.loads(body) == DOC
    status, headers, body = _ask(http, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert body == b"# metrics\n"


@pytest.mark.parametrize("request_bytes, status", [
    (b"garbage\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),                              # HTTP/0.9: no version
    (b"GET / HTTP/1.0\r\nno colon here\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 405),   # read-only
    (b"GET /nothing HTTP/1.0\r\n\r\n", 404),
])
def test_malformed_or_unknown_requests_get_an_error_and_are_counted(http, request_bytes,
                                                                     status):
    assert _ask(http, request_bytes)[0] == status
    counters = http.server.counters
    assert (counters.bad_requests if status != 404 else counters.not_found) == 1
    assert counters.requests == 0


def test_a_request_over_8_kib_gets_a_400(http):
    status, _, body = _ask(http, b"GET / HTTP/1.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
    assert status == 400 and b"8 KiB" in body


def test_a_silent_client_neither_blocks_the_loop_nor_stays_forever(http, monkeypatch):
    monkeypatch.setattr(statserver, "TIMEOUT", 0.3)
    with socket.create_connection(http.address, timeout=5) as silent:
        time.sleep(0.05)
        # the loop goes on serving others while the silent one holds its connection
        assert _ask(http, b"GET / HTTP/1.0\r\n\r\n")[0] == 200
        assert silent.recv(10) == b""            # closed by the server after TIMEOUT
    assert http.server.counters.timeouts == 1


def test_answers_are_reused_for_a_tenth_of_a_second_so_a_loop_cannot_hog_the_master(http):
    for _ in range(5):
        _ask(http, b"GET /stats.json HTTP/1.0\r\n\r\n")
    assert http.built == 1
    time.sleep(statserver.FRESH + 0.05)
    _ask(http, b"GET /stats.json HTTP/1.0\r\n\r\n")
    assert http.built == 2


def test_a_slow_answer_is_reused_longer_so_stats_take_a_bounded_share_of_the_master(
        monkeypatch):
    loop = Loop(http=True)
    try:
        def slow() -> dict:
            loop.built += 1
            time.sleep(0.02)                    # 20 ms to build: reused for 0.4 s
            return DOC
        monkeypatch.setattr(loop.server, "_document", slow)
        _ask(loop, b"GET /stats.json HTTP/1.0\r\n\r\n")
        time.sleep(statserver.FRESH + 0.05)
        _ask(loop, b"GET /stats.json HTTP/1.0\r\n\r\n")
        assert loop.built == 1
    finally:
        loop.stop()


def test_clients_beyond_the_limit_are_closed_at_once_and_counted(http, monkeypatch):
    monkeypatch.setattr(statserver, "MAX_CLIENTS", 2)
    held = [socket.create_connection(http.address, timeout=5) for _ in range(2)]
    try:
        time.sleep(0.1)
        with socket.create_connection(http.address, timeout=5) as extra:
            assert extra.recv(10) == b""
        assert http.server.counters.refused == 1
    finally:
        for sock in held:
            sock.close()


def test_a_unix_address_replaces_a_stale_socket_but_never_a_file(tmp_path):
    """A typo such as `stats = "app.db"` must not delete the file (it did: any existing
    path was unlinked); a socket left by a killed master is replaced."""
    precious = tmp_path / "app.db"
    precious.write_text("data")
    with pytest.raises(OSError, match="not a socket"):
        Loop(http=False, address=str(precious))
    assert precious.read_text() == "data"
    stale = tmp_path / "stats.sock"
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(str(stale))            # bound, never listening: nobody answers
    loop = Loop(http=False, address=str(stale))
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(stale))
            assert json.loads(client.makefile("rb").read()) == DOC
    finally:
        loop.stop()
