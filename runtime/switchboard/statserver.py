"""The stats server: uWSGI's `--stats` on a TCP, Unix or abstract address, in the master's
selector loop, never blocking it.

Raw mode writes one JSON document on connect and closes.  HTTP mode (`stats-http`)
reads one HTTP/1.0 request (at most 8 KiB, within 5 s), answers it and closes:
`GET /` is the status page for a browser (an `Accept` with text/html) and the JSON for
anything else (uwsgitop's `http://` mode); `/stats.json` is always the JSON, `/metrics`
the Prometheus text.  Every socket is non-blocking, a slow reader keeps only its
own buffer, at most 64 clients are served at once (more are closed at once, counted),
an answer is reused for a while (so clients cannot take more than 5 % of the master's
time), and nothing a client sends changes the instance.  docs/design.md says why the master's
loop and not a thread or a helper process.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from switchboard import control

MAX_REQUEST = 8192          # bytes of request line and headers
TIMEOUT = 5.0               # seconds a client has to send its request and read the answer
MAX_CLIENTS = 64
FRESH = 0.1                 # seconds an answer is reused, at least ...
SHARE = 0.05                # ... and long enough that building it takes at most this share

Address = tuple[int, Any]   # (socket family, address as bind() takes it)


def parse_address(text: str, folder: str = "") -> Address:
    """`host:port`, `[v6]:port`, `@abstract` or a Unix path; ValueError naming the text."""
    if text.startswith("@"):
        if len(text) < 2:
            raise ValueError("'@' needs a name for an abstract Unix socket")
        return socket.AF_UNIX, "\0" + text[1:]
    host, sep, port = text.rpartition(":")
    if sep and "/" not in text:
        if not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"'{text}': port must be a number in 0..65535 (0: any free port)")
        if host.startswith("[") and host.endswith("]"):
            return socket.AF_INET6, (host[1:-1], int(port))
        if not host:
            raise ValueError(f"'{text}': give a host (127.0.0.1 keeps it on this machine)")
        return socket.AF_INET, (host, int(port))
    return socket.AF_UNIX, os.path.join(folder, text)


@dataclass
class Counters:
    """What the server did, shown in its own section of the stats."""

    requests: int = 0
    bad_requests: int = 0       # malformed: answered 400
    not_found: int = 0
    timeouts: int = 0           # closed before a whole request came or the answer left
    refused: int = 0            # closed at once: MAX_CLIENTS were being served

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    inbuf: bytes = b""
    outbuf: memoryview = field(default_factory=lambda: memoryview(b""))


Handler = Callable[[], bytes]


class StatsServer:
    """Serves `document()` (JSON) raw or over HTTP, with `metrics()` and the page."""

    def __init__(self, address: Address, http: bool, selector: selectors.BaseSelector,
                 document: Callable[[], dict[str, Any]], metrics: Handler) -> None:
        self.http, self._selector = http, selector
        self._document, self._metrics = document, metrics
        self.counters = Counters()
        self._clients: dict[int, _Client] = {}
        self._made: dict[str, tuple[float, bytes]] = {}     # what -> (reuse until, answer)
        self.family, self.address = address
        self.sock = _listen(address)
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def describe(self) -> str:
        """The address as a person would type it, for the log."""
        if self.family == socket.AF_UNIX:
            path = self.address
            return "@" + path[1:] if path.startswith("\0") else path
        host, port = self.sock.getsockname()[:2]
        return f"[{host}]:{port}" if self.family == socket.AF_INET6 else f"{host}:{port}"

    def _accept(self, mask: int) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                return
            except OSError:             # e.g. EMFILE: try again on the next wake-up
                return
            if len(self._clients) >= MAX_CLIENTS:
                self.counters.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            client = _Client(sock, time.monotonic() + TIMEOUT)
            self._clients[sock.fileno()] = client
            if self.http:
                self._selector.register(sock, selectors.EVENT_READ,
                                        lambda m, c=client: self._read(c))
            else:
                self.counters.requests += 1
                self._answer(client, self._json())

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(MAX_REQUEST + 1 - len(client.inbuf))
        except BlockingIOError:
            return
        except OSError:
            return self._close(client)
        client.inbuf += data
        head, end, _ = client.inbuf.partition(b"\r\n\r\n")
        if not end:
            head, end, _ = client.inbuf.partition(b"\n\n")
        if end:
            self._selector.unregister(client.sock)
            self._answer(client, self._respond(head))
        elif not data or len(client.inbuf) > MAX_REQUEST:
            self._selector.unregister(client.sock)
            self._answer(client, self._bad("request line and headers over 8 KiB"
                                           if data else "incomplete request"))

    def _respond(self, head: bytes) -> bytes:
        """The whole HTTP answer to one request."""
        lines = head.decode("latin-1").splitlines()
        parts = lines[0].split() if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return self._bad("malformed request line")
        method, target = parts[0], parts[1]
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                return self._bad("malformed header line")
            headers[name.strip().lower()] = value.strip()
        if method not in ("GET", "HEAD"):
            self.counters.bad_requests += 1
            return _http(405, "text/plain", b"read-only: only GET and HEAD\n",
                         extra="Allow: GET, HEAD\r\n")
        self.counters.requests += 1
        path = target.split("?", 1)[0]
        if path == "/" and "text/html" in headers.get("accept", ""):
            body, kind = _page(), "text/html; charset=utf-8"
        elif path in ("/", "/stats.json"):
            body, kind = self._json(), "application/json"
        elif path == "/metrics":
            body = self._cached("metrics", self._metrics)
            kind = "text/plain; version=0.0.4; charset=utf-8"
        else:
            self.counters.requests -= 1
            self.counters.not_found += 1
            return _http(404, "text/plain", f"no page {path[:100]}\n".encode())
        return _http(200, kind, b"" if method == "HEAD" else body, len(body))

    def _bad(self, why: str) -> bytes:
        self.counters.bad_requests += 1
        return _http(400, "text/plain", f"bad request: {why}\n".encode())

    def _json(self) -> bytes:
        return self._cached("json", lambda: json.dumps(self._document()).encode())

    def _cached(self, what: str, make: Handler) -> bytes:
        """A fresh answer at most every FRESH seconds, or less often when it is slow to
        build: clients in a loop cannot make the master spend more than SHARE of its
        time on each kind of answer (a big instance's /metrics takes tens of ms)."""
        now = time.monotonic()
        made = self._made.get(what)
        if made is None or now > made[0]:
            answer = make()
            took = time.monotonic() - now
            made = self._made[what] = (now + max(FRESH, took / SHARE), answer)
        return made[1]

    def _answer(self, client: _Client, data: bytes) -> None:
        client.outbuf = memoryview(data)
        client.deadline = time.monotonic() + TIMEOUT
        self._write(client)
        if client.outbuf:
            self._selector.register(client.sock, selectors.EVENT_WRITE,
                                    lambda m, c=client: self._write(c))

    def _write(self, client: _Client) -> None:
        client.outbuf = control.send_rest(client.sock, client.outbuf)
        if not client.outbuf:
            self._close(client)

    def _close(self, client: _Client) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(client.sock)
        self._clients.pop(client.sock.fileno(), None)
        # Unread bytes at close() make the kernel reset the connection, which can
        # destroy our answer (a 400 to an oversized request) before the client reads it.
        with contextlib.suppress(OSError):
            client.sock.recv(65536)
        client.sock.close()

    def expire(self) -> None:
        """Close clients that took too long to ask or to read (called every pass)."""
        if not self._clients:
            return
        now = time.monotonic()
        for client in [c for c in self._clients.values() if now > c.deadline]:
            self.counters.timeouts += 1
            self._close(client)

    def close(self) -> None:
        for client in list(self._clients.values()):
            self._close(client)
        self._selector.unregister(self.sock)
        self.sock.close()
        if self.family == socket.AF_UNIX and not self.address.startswith("\0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.address)

    def close_inherited(self) -> None:
        """In a forked child: drop the descriptors without touching the socket file."""
        for client in self._clients.values():
            client.sock.close()
        self.sock.close()


def _listen(address: Address) -> socket.socket:
    family, addr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            if not addr.startswith("\0"):
                control.clear_stale(addr, "stats socket")
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        shown = "@" + addr[1:] if isinstance(addr, str) and addr.startswith("\0") else addr
        raise OSError(exc.errno, f"cannot open the stats server on {shown}: "
                      f"{exc.strerror}") from None
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock


def _http(status: int, kind: str, body: bytes, length: int | None = None,
          extra: str = "") -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
              405: "Method Not Allowed"}[status]
    head = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n"
            f"Cache-Control: no-store\r\n{extra}Connection: close\r\n\r\n")
    return head.encode() + body


_PAGE: bytes | None = None


def _page() -> bytes:
    """The status page, read once from the package (works offline: no CDN)."""
    global _PAGE
    if _PAGE is None:
        _PAGE = resources.files("switchboard").joinpath("page/status.html").read_bytes()
    return _PAGE
