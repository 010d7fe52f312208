"""The control socket: `switchboard signal` and `switchboard stats` talk to the master here.

Protocol: the client sends one request line (`signal N` or `stats`), the master answers
with one JSON object and closes.  The socket is created 0600; a request over 4 KiB gets
an error reply, and a client that sends no complete request within 10 s is disconnected.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import selectors
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from switchboard.errors import SwitchboardError

if TYPE_CHECKING:
    from switchboard.config import Config

MAX_REQUEST = 4096
IDLE_TIMEOUT = 10.0

Reply = dict[str, Any]
# Returns a reply, or None to be asked again later (the signal's queue is full).
Dispatch = Callable[[str], Reply | None]

_Buffer = TypeVar("_Buffer", bytes, memoryview)     # an answer being sent (send_rest)


class UnsafeFolder(SwitchboardError):
    """A control socket would sit where another local user could swap it."""


def socket_path(config: Config) -> str:
    """The instance's control socket, after checking that its folder is ours alone."""
    if not config.control:
        return default_path(config.path)
    path = config.relative(config.control)
    _check_explicit_folder(os.path.dirname(path))
    return path


def default_path(config_path: str) -> str:
    """Where an instance whose config sets no `control` puts its socket."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    folder = os.path.join(base, "switchboard") if base else os.path.join(
        tempfile.gettempdir(), f"switchboard-{os.getuid()}")
    _private_folder(folder)
    digest = hashlib.sha256(os.path.abspath(config_path).encode()).hexdigest()[:16]
    return os.path.join(folder, f"{digest}.sock")


def _private_folder(folder: str) -> None:
    """Make `folder` 0700, or accept it only as tmux and ssh-agent do: a real directory,
    ours, with no group or other permissions (anyone may have made it first in /tmp)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    st = os.lstat(folder)
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif st.st_uid != os.getuid():
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    elif st.st_mode & 0o077:
        problem = (f"has mode {stat.S_IMODE(st.st_mode):04o}: other users may enter it "
                   "(it must be 0700)")
    else:
        return
    raise UnsafeFolder(f"control socket folder {folder} {problem}; another user could "
                       "replace the socket there. Remove it, or set `control` to a path "
                       "in a folder only you can write")


def _check_explicit_folder(folder: str) -> None:
    """A chosen path may sit in a group's folder, not in one any user can write into."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return                  # binding fails later with a message naming the path
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_ISVTX | stat.S_IWOTH):
        problem = f"is shared (mode {mode:04o}: every user may create files in it)"
    elif st.st_uid not in (os.getuid(), 0):
        problem = f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()}) or root"
    else:
        return
    raise UnsafeFolder(f"`control` folder {folder} {problem}; another user could replace "
                       "the socket there. Put the control socket in a folder only you "
                       "(or your group) can write")


def check_owner(path: str) -> None:
    """Refuse to talk to a socket another user made: it may not be our instance at all."""
    st = os.stat(path)          # FileNotFoundError: the caller says nothing listens
    if st.st_uid != os.getuid():
        raise UnsafeFolder(f"control socket {path} is owned by uid {st.st_uid}, not by you "
                           f"(uid {os.getuid()}): refusing to talk to it")


def request(path: str, line: str, timeout: float) -> Reply:
    """Send one request to a running instance; OSError if it cannot be reached."""
    deadline = time.monotonic() + timeout
    check_owner(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        while True:
            try:
                sock.connect(path)
                break
            except BlockingIOError:     # the listen backlog is full: wait for room
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    try:
        reply: Reply = json.loads(b"".join(chunks))
    except ValueError:
        raise OSError(errno.EPROTO, f"{path}: the instance sent a malformed reply") from None
    return reply


class _Conn:
    __slots__ = ("sock", "inbuf", "outbuf", "request", "deadline")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.request: str | None = None
        self.deadline = time.monotonic() + IDLE_TIMEOUT


class ControlServer:
    def __init__(self, path: str, selector: selectors.BaseSelector, dispatch: Dispatch,
                 retry_for: float) -> None:
        self.path, self._selector, self._dispatch = path, selector, dispatch
        self.retry_for = retry_for
        self._pending: list[_Conn] = []
        self._conns: set[_Conn] = set()
        self.sock = _bind(path)
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def _accept(self, mask: int) -> None:
        """Take every client waiting in the backlog."""
        while True:
            try:
                sock, _ = self.sock.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            self._conns.add(conn)
            self._selector.register(sock, selectors.EVENT_READ,
                                    lambda m, c=conn: self._read(c))

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(MAX_REQUEST + 1)
        except OSError:
            return self._close(conn)
        conn.inbuf += data
        line, newline, _ = conn.inbuf.partition(b"\n")
        if len(line) > MAX_REQUEST:
            self._selector.unregister(conn.sock)
            self._reply(conn, {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
        elif newline or not data:
            conn.request = line.decode("utf-8", "replace").strip()
            self._selector.unregister(conn.sock)
            conn.deadline = time.monotonic() + self.retry_for
            self._answer(conn)

    def _answer(self, conn: _Conn) -> None:
        assert conn.request is not None
        reply = self._dispatch(conn.request)
        if reply is None:
            if time.monotonic() < conn.deadline:
                self._pending.append(conn)
                return
            reply = {"ok": False, "error": f"not accepted within {self.retry_for:g} s "
                     "(signal-timeout): the signal's queue is full"}
        self._reply(conn, reply)

    def retry(self) -> None:
        """Ask again for requests that were waiting for room, and expire idle clients."""
        pending, self._pending = self._pending, []
        for conn in pending:
            self._answer(conn)

    def _reply(self, conn: _Conn, reply: Reply) -> None:
        conn.deadline = time.monotonic() + IDLE_TIMEOUT
        conn.outbuf = json.dumps(reply).encode() + b"\n"
        self._selector.register(conn.sock, selectors.EVENT_WRITE, lambda m: self._write(conn))

    def _write(self, conn: _Conn) -> None:
        conn.outbuf = send_rest(conn.sock, conn.outbuf)
        if not conn.outbuf:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        conn.sock.close()
        self._conns.discard(conn)

    def expire(self) -> None:
        """Close clients that sent no complete request in time, or never read the reply."""
        now = time.monotonic()
        for conn in list(self._conns):
            if now > conn.deadline and conn not in self._pending:
                self._close(conn)

    def close(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        self._selector.unregister(self.sock)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def send_rest(sock: socket.socket, data: _Buffer) -> _Buffer:
    """One non-blocking send of an answer (here and statserver.py); what is left of it:
    all of it while the socket is full, nothing once the client is gone."""
    try:
        sent = sock.send(data)
    except BlockingIOError:
        return data
    except OSError:
        sent = len(data)
    return data[sent:]


def _bind(path: str) -> socket.socket:
    """Bind the control socket 0600, refusing to take over a live instance's socket."""
    clear_stale(path, "control socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot create control socket {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    sock.listen(socket.SOMAXCONN)
    sock.setblocking(False)
    return sock


def clear_stale(path: str, what: str) -> None:
    """Remove a socket file nobody answers on (left by a master killed with SIGKILL);
    refuse a live one, and anything that is not a socket (a typo must not delete a file)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{what} {path}: a file that is not a socket is there; "
                      "refusing to replace it")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            probe.connect(path)
    except OSError:
        os.unlink(path)       # stale: nobody answers
    else:
        raise OSError(errno.EADDRINUSE, f"{what} {path} is in use by another running instance")


def close_inherited(server: ControlServer) -> None:
    """In a forked child: drop the master's control descriptors without unlinking."""
    for conn in server._conns:
        conn.sock.close()
    server.sock.close()
