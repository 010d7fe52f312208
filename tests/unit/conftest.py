"""Fixtures for the unit suite: real shared memory, real socketpairs, real forks.

Nothing here sleeps: cross-process steps are ordered with pipes, and every fork is
reaped by the test that made it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator

import pytest

from switchboard import api, binding, decorators
from switchboard.master import MasterContext
from switchboard.router import Outbox, Router
from switchboard.shared import Shared
from switchboard.table import SignalTable
from switchboard.targets import Kind, Role, Target, Topology

# -- shared memory and the table ----------------------------------------------------------

def close_shared(shared: Shared) -> None:
    """Release the memfd and, when nothing else points into it, the mapping."""
    with contextlib.suppress(OSError):
        os.close(shared.fd)
    with contextlib.suppress(BufferError):
        shared.map.close()


@pytest.fixture
def topology() -> Topology:
    return Topology(workers=3, mules=2, spoolers=1, farms={"heavy": (1, 2), "light": (2,)})


@pytest.fixture
def shared(topology: Topology) -> Iterator[Shared]:
    sh = Shared(topology.slots, len(topology.groups()))
    yield sh
    close_shared(sh)


@pytest.fixture
def table(shared: Shared) -> SignalTable:
    return SignalTable(shared)


# -- forks ---------------------------------------------------------------------------------

def fork_call(func: Callable[[], object]) -> int:
    """Run `func` in a forked child; its exit status (0 if it returned, 1 if it raised)."""
    _, status = os.waitpid(start_child(func), 0)
    return os.waitstatus_to_exitcode(status)


def start_child(func: Callable[[], object]) -> int:
    """Fork a child running `func` and return its pid without waiting (caller reaps)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            func()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os._exit(code)     # a child never returns into pytest
    return pid


# -- outboxes and routers ------------------------------------------------------------------

def make_outbox(name: str, master_end: socket.socket, child_end: socket.socket,
                limit: int) -> Outbox:
    """An Outbox over a socketpair (it watches the child's end for unread bytes)."""
    return Outbox(name, master_end, child_end, limit)


class Boxes:
    """Real socketpairs behind every outbox of a router; closed at teardown."""

    def __init__(self, topology: Topology, limit: int) -> None:
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.by_slot: dict[int, Outbox] = {}
        for slot in range(1, topology.slots):
            self.by_slot[slot] = self._box(topology.describe(slot), limit)
        self.groups = {g: self._box(f"group {g.text(topology)}", limit)
                       for g in topology.groups()}
        self.any_worker = self.groups[Target(Kind.WORKER)]

    def _box(self, name: str, limit: int) -> Outbox:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        a.setblocking(False)
        b.setblocking(False)
        self.pairs.append((a, b))
        return make_outbox(name, a, b, limit)

    def close(self) -> None:
        for a, b in self.pairs:
            a.close()
            b.close()


def flush_and_read(router: Router, box: Outbox) -> bytes:
    """Flush `box` and read what reached its child's end (as the child would)."""
    box.flush()
    peer = next(b for a, b in router.test_boxes.pairs if a is box.sock)  # type: ignore[attr-defined]
    data = b""
    while True:
        try:
            chunk = peer.recv(65536)
        except BlockingIOError:
            return data
        data += chunk


@pytest.fixture
def make_router(table: SignalTable, topology: Topology) -> Iterator[Callable[..., Router]]:
    made: list[Boxes] = []

    def make(limit: int = 16, held_limit: int = 8) -> Router:
        boxes = Boxes(topology, limit)
        made.append(boxes)
        router = Router(table, topology, boxes.by_slot, boxes.groups, held_limit)
        router.test_boxes = boxes  # type: ignore[attr-defined]
        return router

    yield make
    for boxes in made:
        boxes.close()


# -- the uwsgi API bound to a master-less context -----------------------------------------

@pytest.fixture
def restore_api() -> Iterator[None]:
    """Undo binding.install(): the API's context and the injected modules."""
    saved_ctx, saved_numproc = api._ctx, api.numproc
    saved_modules = {name: sys.modules.get(name) for name in ("uwsgi", "uwsgidecorators")}
    saved_chain = list(decorators.postfork_chain)
    saved_hook = api.post_fork_hook
    yield
    api._ctx, api.numproc = saved_ctx, saved_numproc
    api.post_fork_hook = saved_hook
    decorators.postfork_chain[:] = saved_chain
    for name, module in saved_modules.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@pytest.fixture
def master_ctx(restore_api: None, table: SignalTable, shared: Shared, topology: Topology,
               make_router: Callable[..., Router]) -> MasterContext:
    """The master's context as Master.boot() builds it, with a router over socketpairs."""
    ctx = MasterContext(Role.MASTER, 0, 0, topology, shared, table, os.getpid())
    ctx.router = make_router()
    binding.install(ctx)
    return ctx


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short folder for unix sockets (sun_path is limited to 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="sbu", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def handler_module(tmp_path, monkeypatch) -> Iterator[object]:
    """A real, importable module of handlers, with a unique name."""
    name = f"sb_unit_handlers_{os.getpid()}_{id(tmp_path):x}"
    long_name = "h" + "x" * 520
    (tmp_path / f"{name}.py").write_text(
        "def hello(num):\n    return num\n\n"
        "class Box:\n    def method(self, num):\n        return num\n"
        "    @staticmethod\n    def static(num):\n        return num\n\n"
        "NOT_CALLABLE = 42\n\n"
        f"def {long_name}(num):\n    return num\n"
    )
    (tmp_path / f"{name}_broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    module = importlib.import_module(name)
    module.LONG_NAME = long_name  # type: ignore[attr-defined]
    yield module
    for mod in (name, f"{name}_broken"):
        sys.modules.pop(mod, None)
