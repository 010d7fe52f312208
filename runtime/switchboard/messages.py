"""Mule and farm messages (uWSGI's `mule_msg` family): bytes handed to a mule or a farm.

Each mule, the "any mule" group and each farm has a queue: a Unix datagram socketpair
made by the master before the first fork, both ends kept by the master for the life of
the runtime.  A sender writes straight to the queue (one datagram per message: whole and
in order); a mule reads it when it asks (`mule_get_msg`) or, a mule with no program,
between signals (`uwsgi.mule_msg_hook`).  So messages wait while the mule is busy, and
a respawned mule reads what its predecessor left.  The kernel bounds each queue; a full
queue makes the sender wait up to `signal-timeout`, then `mule_msg` returns False.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from dataclasses import dataclass

from switchboard.context import Context, current
from switchboard.targets import Role, Topology

log = logging.getLogger("switchboard.messages")

RECV_SIZE = 65536       # uWSGI's default mule-msg-recv-size: what a mule reads at most
QUEUE_BYTES = 1 << 20   # asked of the kernel per queue (it may grant less: wmem_max)

Pair = tuple[socket.socket, socket.socket]      # (send end, receive end)


def _pair() -> Pair:
    send, recv = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (send, recv):
        sock.setblocking(False)
    send.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, QUEUE_BYTES)
    return send, recv


@dataclass
class Queues:
    """Every message queue: per mule id, the shared one (any mule), per farm name."""

    mules: dict[int, Pair]
    shared: Pair | None
    farms: dict[str, Pair]

    @classmethod
    def create(cls, topology: Topology) -> Queues:
        if not topology.mules:
            return cls({}, None, {})
        return cls({i: _pair() for i in range(1, topology.mules + 1)}, _pair(),
                   {name: _pair() for name in topology.farms})

    def keep_for(self, mule: int, topology: Topology) -> None:
        """In a forked child: close the receive ends that are not this mule's."""
        mine = {id(q) for q in self._readable_by(mule, topology)}
        for pair in self._all():
            if id(pair) not in mine:
                pair[1].close()

    def receivers(self, mule: int, topology: Topology, farms: bool = True) -> list[socket.socket]:
        """What mule `mule` reads, in order: its own queue, any mule's, its farms'."""
        pairs = self._readable_by(mule, topology)
        return [p[1] for p in (pairs if farms else pairs[:2])]

    def farm_receivers(self, mule: int, topology: Topology) -> list[socket.socket]:
        return [p[1] for p in self._readable_by(mule, topology)[2:]]

    def _readable_by(self, mule: int, topology: Topology) -> list[Pair]:
        if mule not in self.mules or self.shared is None:
            return []
        return [self.mules[mule], self.shared,
                *(self.farms[n] for n, ids in topology.farms.items() if mule in ids)]

    def _all(self) -> list[Pair]:
        return [*self.mules.values(), *([self.shared] if self.shared else []),
                *self.farms.values()]


# -- the API (re-exported by api.py) ---------------------------------------------------

def mule_msg(message: str | bytes, mule_id: int | str | bytes = 0, /) -> bool:
    """Queue `message` for mule N, any mule (0) or a farm (its name); False if the
    queue stayed full for signal-timeout."""
    ctx = current()
    queues = _queues(ctx, "mule_msg")
    mule: object = mule_id
    if mule is None or (mule == 0 and not isinstance(mule, bool)):
        assert queues.shared is not None        # _queues() checked
        return _send(ctx, queues.shared[0], _bytes(message), "any mule")
    if isinstance(mule, bytes):     # uWSGI on Python 3 takes a farm name only as bytes
        mule = mule.decode()
    if isinstance(mule, str):
        return _send(ctx, _farm(queues, mule, ctx), _bytes(message), f"farm '{mule}'")
    if isinstance(mule, bool) or not isinstance(mule, int):
        raise TypeError(f"mule must be a mule id or a farm name, not {type(mule).__name__}")
    if mule not in queues.mules:
        raise ValueError(f"mule_msg(): there is no mule {mule} (mules = {len(queues.mules)})")
    return _send(ctx, queues.mules[mule][0], _bytes(message), f"mule {mule}")


def farm_msg(farm_name: str | bytes, message: str | bytes, /) -> bool:
    """Queue `message` for the first free mule of the farm; False if it stayed full
    (uWSGI returns None)."""
    ctx, farm, msg = current(), farm_name, message
    if isinstance(farm, bytes):
        farm = farm.decode()
    if not isinstance(farm, str):
        raise TypeError(f"farm must be a farm name, not {type(farm).__name__}")
    return _send(ctx, _farm(_queues(ctx, "farm_msg"), farm, ctx), _bytes(msg),
                 f"farm '{farm}'")


def mule_get_msg(signals: bool | None = True, farms: bool | None = True,
                 buffer_size: int = RECV_SIZE, timeout: float = -1) -> bytes | None:
    """Block until a message for this mule arrives: its bytes.  None after `timeout`
    seconds, or (as uWSGI) after running a signal that arrived meanwhile."""
    ctx = _mule(current(), "mule_get_msg")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ValueError(f"buffer_size must be a positive integer, not {buffer_size!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
    socks = ctx.queues.receivers(ctx.ident, ctx.topology, farms=bool(farms))
    deadline = None if timeout < 0 else time.monotonic() + timeout
    return ctx.receive(socks, buffer_size, deadline, signals=bool(signals))


def farm_get_msg() -> bytes | None:
    """Block until a message for one of this mule's farms arrives (None if in none)."""
    ctx = _mule(current(), "farm_get_msg")
    socks = ctx.queues.farm_receivers(ctx.ident, ctx.topology)
    if not socks:
        return None
    return ctx.receive(socks, RECV_SIZE, None, signals=False)


def in_farm(farm_name: str = "", /) -> bool | None:
    """True if this mule is in the farm (in any farm, without a name); else None."""
    ctx = current()
    if ctx.role is not Role.MULE:
        return None
    for farm, ids in ctx.topology.farms.items():
        if ctx.ident in ids and farm_name in ("", None, farm):
            return True
    return None


def mule_msg_recv_size() -> int:
    """The most a mule reads of one message by default (uWSGI's mule-msg-recv-size)."""
    return RECV_SIZE


# -- helpers ---------------------------------------------------------------------------

def _queues(ctx: Context, what: str) -> Queues:
    queues: Queues | None = ctx.queues
    if queues is None or queues.shared is None:
        raise ValueError(f"{what}(): no mule configured (set `mules` in [switchboard])")
    return queues


def _farm(queues: Queues, name: str, ctx: Context) -> socket.socket:
    if name not in queues.farms:
        raise ValueError(f"no farm named '{name}' "
                         f"(farms: {', '.join(ctx.topology.farms) or 'none'})")
    return queues.farms[name][0]


def _mule(ctx: Context, what: str) -> Context:
    if ctx.role is not Role.MULE:
        raise ValueError(f"{what}(): messages are received only in a mule, "
                         f"not in the {ctx.role.value}")
    return ctx


def _bytes(msg: object) -> bytes:
    if isinstance(msg, str):
        return msg.encode()
    if isinstance(msg, bytes | bytearray | memoryview):
        return bytes(msg)
    raise TypeError(f"a message must be str or bytes, not {type(msg).__name__}")


def _send(ctx: Context, sock: socket.socket, payload: bytes, where: str) -> bool:
    """One datagram to `sock`, waiting up to signal-timeout while the queue is full."""
    deadline = None
    poller = None
    while True:
        try:
            sock.send(payload)
            return True
        except BlockingIOError:
            pass
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                raise ValueError(f"a message of {len(payload)} bytes for {where} is larger "
                                 f"than its queue takes ({size} bytes)") from None
            raise
        now = time.monotonic()
        if deadline is None:
            deadline = now + ctx.signal_timeout
            poller = select.poll()
            poller.register(sock, select.POLLOUT)
        if now >= deadline:
            log.warning("message for %s not sent: its queue stayed full for %g s "
                        "(signal-timeout)", where, ctx.signal_timeout)
            return False
        assert poller is not None
        poller.poll(max(1.0, (deadline - now) * 1000))


# -- the receiving side (a mule: procs/child.py) ------------------------------------------

def take(socks: list[socket.socket], size: int) -> bytes | None:
    """The first message waiting in `socks` (in their order), without blocking."""
    for sock in socks:
        try:
            return sock.recv(size)
        except BlockingIOError:
            continue
    return None


def wait_for(socks: list[socket.socket], size: int, deadline: float | None) -> bytes | None:
    """Block until a message arrives in `socks` (signals wait meanwhile); None at
    `deadline`."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    while True:
        msg = take(socks, size)
        if msg is not None:
            return msg
        if deadline is None:
            poller.poll()
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        poller.poll(max(1.0, left * 1000))
