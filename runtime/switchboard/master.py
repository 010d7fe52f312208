"""The master: the only process that forks, reaps, kills and routes.  It never runs a handler.

Its loop, each pass: wait on the selector (children's channels, the control socket,
the wakeup fd of Unix signals), read raised signals in large chunks and route them,
flush every outbox with one write per socket, then reap, murder (harakiri) and
manage (respawn).  Unix signal handlers only wake the loop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal as unix
import sys
import time
from dataclasses import dataclass

import setproctitle

from switchboard import api, control, loader, logs, stats
from switchboard.channels import (
    RAISE,
    READY,
    RECORD,
    REROUTE,
    WAIT_ANY,
    WAIT_END,
    WAIT_NUM,
    Channels,
)
from switchboard.config import Config
from switchboard.context import Context
from switchboard.procs.child import BOOT_ERROR, Child, become_child
from switchboard.router import ANY, Outbox, Router
from switchboard.shared import BUSY, DOWN, STARTING, Shared
from switchboard.table import SignalTable, check_signum
from switchboard.targets import Role

log = logging.getLogger("switchboard.master")

READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_BLOCKED_IN_FORK = {unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGCHLD}
_FAST_DEATH = 1.0      # a child that dies younger than this is respawned after a pause


@dataclass
class ChildProc:
    pid: int
    started: float
    ready: bool = False
    kill_reason: str = ""     # "harakiri" or "reload-mercy" once the master kills it
    killed_for: str = ""      # the same, said for the log


class Link:
    """The master's end of one child's channel: what it raised, and what waits for it."""

    __slots__ = ("slot", "sock", "inbox", "blocked", "outbox", "mask")

    def __init__(self, slot: int, outbox: Outbox) -> None:
        self.slot, self.outbox, self.sock = slot, outbox, outbox.sock
        self.inbox = bytearray()
        self.blocked = False
        self.mask = 0


class MasterContext(Context):
    router: Router

    def raise_signal(self, num: int) -> None:
        if not self.router.route(num):
            raise OSError(f"signal {num}: its queue is full (signal-queue)")
        self.router.raised[num] += 1


class Master:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.topology = config.topology()
        self.children: dict[int, ChildProc] = {}
        self.pids: dict[int, int] = {}
        self.respawns = [0] * self.topology.slots
        self.harakiris = [0] * self.topology.slots
        self.due: dict[int, float] = {}
        self.stopping = False
        self.exit_code = 0
        self.announced = False
        self.started = time.monotonic()
        self._sigchld = False
        self._group_masks: dict[str, int] = {}

    # -- boot: everything before the first fork ------------------------------------------

    def boot(self) -> None:
        """Build the shared table and channels, then load the config's registrations."""
        topo, config = self.topology, self.config
        self.shared = Shared(topo.slots, len(topo.groups()))
        self.table = SignalTable(self.shared)
        self.channels = Channels.create(topo)
        flags = self.shared.pressure
        boxes = {slot: Outbox(topo.describe(slot), *ends, config.signal_queue, flags, slot)
                 for slot, ends in self.channels.private.items()}
        # group pressure flags follow the slots' ones (see Shared)
        self.flag_of = {g: topo.slots + i for i, g in enumerate(self.channels.groups)}
        self.groups = {g: Outbox(f"group {g.text(topo)}", *ends, config.signal_queue, flags,
                                 self.flag_of[g]) for g, ends in self.channels.groups.items()}
        self.router = Router(self.table, topo, boxes, self.groups, config.signal_queue)
        self.links = [Link(slot, box) for slot, box in boxes.items()]
        self.ctx = MasterContext(Role.MASTER, 0, 0, topo, self.shared, self.table, os.getpid())
        self.ctx.router = self.router
        api.install(self.ctx)
        loader.apply(config, self.table)

    # -- run -----------------------------------------------------------------------------

    def run(self) -> int:
        """Fork the children and route until stopped; the exit status."""
        setproctitle.setproctitle("switchboard master")
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        unix.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in _BLOCKED_IN_FORK:
            unix.signal(sig, _wake_only)
        self.selector.register(self._wake_r, READ, self._on_wakeup)
        self.selector.register(self.channels.wake[0], READ, self._on_drained)
        path = self.config.control and self.config.relative(self.config.control)
        self.control = control.ControlServer(path or control.default_path(self.config.path),
                                             self.selector, self._on_request,
                                             self.config.signal_timeout)
        log.info("master pid %d: control socket %s", os.getpid(), self.control.path)
        for slot in range(1, self.topology.slots):
            self._spawn(slot)
        try:
            while True:
                self._pass()
                if self.stopping and not self.children:
                    break
                for key, mask in self.selector.select(self._timeout()):
                    key.data(mask)
        finally:
            self._count_stopped()
            self.control.close()
        log.info("stopped (exit status %d)", self.exit_code)
        return self.exit_code

    def _timeout(self) -> float:
        if self.due:
            return max(0.0, min(self.due.values()) - time.monotonic())
        return 0.5

    def _pass(self) -> None:
        self._flush()
        blocked = [link for link in self.links if link.blocked]
        for link in blocked:
            self._process(link)     # the flush may have made room for them
        if self.router.held and self.router.waiters:
            self.router.serve_waiters()
        if blocked or self.router.held:
            self._flush()
        self.control.retry()
        self.control.expire()
        self.router.log_drops()
        if self._sigchld:
            self._reap()
        self._murder()
        self._manage()

    # -- signals from children -----------------------------------------------------------

    def _on_link(self, link: Link, mask: int) -> None:
        if mask & READ and not link.blocked:
            try:
                data = link.sock.recv(262144)
            except BlockingIOError:
                return
            link.inbox += data
            self._process(link)

    def _process(self, link: Link) -> None:
        """Act on every whole record in the link's inbox, stopping at a full queue."""
        buf, router, slot = link.inbox, self.router, link.slot
        route, raised = router.route, router.raised
        i, end = 0, len(buf) - 1
        while i < end:
            op, arg = buf[i], buf[i + 1]
            if op == RAISE:
                if not route(arg):
                    break
                raised[arg] += 1
            elif op == REROUTE:
                if not route(arg, front=True):
                    break
            elif op == WAIT_ANY:
                router.wait(slot, ANY)
            elif op == WAIT_NUM:
                router.wait(slot, arg)
            elif op == WAIT_END:
                router.wait(slot, None)
            elif op == READY:
                self._on_ready(slot)
            else:
                log.error("%s sent an unknown record (%d, %d); ignored",
                          self.topology.describe(slot), op, arg)
            i += RECORD
        del buf[:i]
        link.blocked = len(buf) >= RECORD

    def _flush(self) -> None:
        for link in self.links:
            if link.outbox.buf:
                link.outbox.flush()
            mask = (0 if link.blocked else READ) | (WRITE if link.outbox.buf else 0)
            if mask != link.mask:
                self._interest(link.sock, link.mask, mask, lambda m, k=link: self._on_link(k, m))
                link.mask = mask
        for box in self.groups.values():
            if box.buf:
                box.flush()
            want = WRITE if box.buf else 0
            mask = self._group_masks.get(box.name, 0)
            if want != mask:
                self._interest(box.sock, mask, want, _nothing)
                self._group_masks[box.name] = want

    def _interest(self, sock: object, old: int, new: int, callback: object) -> None:
        if old == 0:
            self.selector.register(sock, new, callback)   # type: ignore[arg-type]
        elif new == 0:
            self.selector.unregister(sock)   # type: ignore[arg-type]
        else:
            self.selector.modify(sock, new, callback)   # type: ignore[arg-type]

    # -- control socket ------------------------------------------------------------------

    def _on_request(self, line: str) -> control.Reply | None:
        parts = line.split()
        if parts == ["stats"]:
            return {"ok": True, "stats": stats.document(self)}
        if len(parts) == 2 and parts[0] == "signal":
            try:
                num = check_signum(int(parts[1]))
            except ValueError as exc:
                return {"ok": False, "error": str(exc) if "range" in str(exc) else
                        f"signal number must be an integer, not '{parts[1][:20]}'"}
            if self.stopping:
                return {"ok": False, "error": "the instance is stopping"}
            if not self.router.route(num):
                return None
            self.router.raised[num] += 1
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {line[:60]!r} "
                "(expected 'signal N' or 'stats')"}

    # -- Unix signals --------------------------------------------------------------------

    def _on_wakeup(self, mask: int) -> None:
        try:
            data = os.read(self._wake_r, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == unix.SIGCHLD:
                self._sigchld = True
            elif signum in (unix.SIGINT, unix.SIGTERM):
                self.stop(f"got {unix.Signals(signum).name}")
            elif signum == unix.SIGHUP:
                log.warning("SIGHUP: graceful reload is not supported yet; ignored")

    def _on_drained(self, mask: int) -> None:
        """A child read from a channel we found full: the pass retries blocked raisers."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.channels.wake[0], 4096)

    def stop(self, reason: str, code: int = 0) -> None:
        """Begin a graceful stop: children finish their current handler, then exit."""
        if self.stopping:
            return
        self.stopping, self.exit_code = True, code
        self.stop_deadline = time.monotonic() + self.config.reload_mercy
        self.due.clear()
        log.info("stopping (%s); children have %g s (reload-mercy) to finish",
                 reason, self.config.reload_mercy)
        for child in self.children.values():
            _kill(child.pid, unix.SIGTERM)

    # -- spawn, reap, murder, manage -----------------------------------------------------

    def _spawn(self, slot: int) -> None:
        role, ident = self.topology.role_of(slot)
        rec = self.shared.procs[slot]
        rec.status, rec.signum = STARTING, -1
        sys.stdout.flush()
        sys.stderr.flush()
        old_mask = unix.pthread_sigmask(unix.SIG_BLOCK, _BLOCKED_IN_FORK)
        pid = os.fork()
        if pid == 0:
            self._child(slot, role, ident, old_mask)
        unix.pthread_sigmask(unix.SIG_SETMASK, old_mask)
        rec.pid = pid
        self.children[slot] = ChildProc(pid, time.monotonic())
        self.pids[pid] = slot
        log.info("spawned %s (pid %d)", self.topology.describe(slot), pid)

    def _child(self, slot: int, role: Role, ident: int, old_mask: set[int]) -> None:
        """The forked side of _spawn: reset, become the child, never return."""
        code = 1
        try:
            unix.set_wakeup_fd(-1)
            for sig in _BLOCKED_IN_FORK:
                unix.signal(sig, unix.SIG_DFL)
            self.selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
            control.close_inherited(self.control)
            groups = self.topology.groups_of(slot)
            self.channels.keep_for_child(slot, groups)
            logs.set_label(self.topology.describe(slot))
            setproctitle.setproctitle(f"switchboard {self.topology.describe(slot)}")
            child = Child(role, ident, slot, self.topology, self.shared, self.table,
                          self.ctx.masterpid, dict(self.ctx.local_handlers))
            unix.pthread_sigmask(unix.SIG_SETMASK, old_mask)
            code = become_child(child, self.channels.private[slot][1],
                                [(self.channels.groups[g][1], self.flag_of[g]) for g in groups],
                                self.channels.wake[1], self.config.signal_timeout)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            log.exception("%s crashed", self.topology.describe(slot))
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _on_ready(self, slot: int) -> None:
        child = self.children.get(slot)
        if child is not None:
            child.ready = True
        if not self.announced and len(self.children) == self.topology.slots - 1 and all(
                c.ready for c in self.children.values()):
            self.announced = True
            t = self.topology
            log.info("ready: %d workers, %d mules, %d spoolers (%.3f s)", t.workers, t.mules,
                     t.spoolers, time.monotonic() - self.started)

    def _reap(self) -> None:
        self._sigchld = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot = self.pids.pop(pid, None)
            if slot is not None:
                self._on_exit(slot, pid, status)

    def _on_exit(self, slot: int, pid: int, status: int) -> None:
        child = self.children.pop(slot)
        rec = self.shared.procs[slot]
        name, how = self.topology.describe(slot), _how(status)
        booted = rec.status != STARTING
        if rec.signum >= 0:
            self.router.drop(rec.signum, child.kill_reason or "died")
            log.error("signal %d: its handler did not finish: %s (pid %d) %s",
                      rec.signum, name, pid, how)
        rec.status, rec.pid, rec.signum = DOWN, 0, -1
        self.router.wait(slot, None)
        for num in self.table.drop_owned_by(slot):
            log.warning("signal %d: unregistered: its handler was a callable that lived "
                        "only in %s (pid %d)", num, name, pid)
        if self.stopping:
            log.info("%s (pid %d) %s", name, pid, how)
            return
        code = os.waitstatus_to_exitcode(status)
        if code == BOOT_ERROR or (not booted and code != -unix.SIGKILL):
            log.error("%s (pid %d) failed to boot (%s); stopping instead of respawning",
                      name, pid, how)
            self.stop(f"{name} failed to boot", code=1)
            return
        young = time.monotonic() - child.started < _FAST_DEATH
        log.warning("%s (pid %d) %s%s; respawning%s", name, pid, how,
                    f" ({child.killed_for})" if child.killed_for else "",
                    f" in {_FAST_DEATH:g} s" if young else "")
        self.respawns[slot] += 1
        self.due[slot] = time.monotonic() + (_FAST_DEATH if young else 0.0)

    def _murder(self) -> None:
        """Kill children whose current handler has run past its harakiri limit."""
        now = time.monotonic()
        for slot, child in self.children.items():
            limit = self._harakiri_limit(slot)
            rec = self.shared.procs[slot]
            if not limit or child.kill_reason or rec.status != BUSY:
                continue
            ran = now - rec.started
            if ran > limit:
                entry = self.table.get(rec.signum)
                child.kill_reason = "harakiri"
                child.killed_for = f"harakiri after {ran:.1f} s on signal {rec.signum}"
                self.harakiris[slot] += 1
                log.error("harakiri: %s (pid %d) ran signal %d's handler %s for %.1f s "
                          "(limit %g s); killing it", self.topology.describe(slot), child.pid,
                          rec.signum, entry.ref if entry else "?", ran, limit)
                _kill(child.pid, unix.SIGKILL)

    def _harakiri_limit(self, slot: int) -> float:
        role = self.topology.role_of(slot)[0]
        if role is Role.MULE:
            return self.config.mule_harakiri
        if role is Role.SPOOLER:
            return self.config.spooler_harakiri
        return self.config.harakiri

    def _manage(self) -> None:
        now = time.monotonic()
        for slot, when in list(self.due.items()):
            if when <= now:
                del self.due[slot]
                self._spawn(slot)
        if self.stopping and self.children and now > self.stop_deadline:
            for child in self.children.values():
                if child.kill_reason != "reload-mercy":
                    log.warning("%s (pid %d) still running after reload-mercy; killing it",
                                self.topology.describe(self.pids[child.pid]), child.pid)
                    child.kill_reason = child.killed_for = "reload-mercy"
                    _kill(child.pid, unix.SIGKILL)

    # -- stop accounting -----------------------------------------------------------------

    def _count_stopped(self) -> None:
        """Count every signal queued and not started as dropped (stopped)."""
        router = self.router
        for link in self.links:
            link.inbox += _drain(link.sock)
            for i in range(0, len(link.inbox) - 1, RECORD):
                op, num = link.inbox[i], link.inbox[i + 1]
                if op == RAISE:
                    router.raised[num] += 1
                if op in (RAISE, REROUTE):
                    router.drop(num, "stopped")
        queued = bytearray()
        for box in [*(link.outbox for link in self.links), *self.groups.values()]:
            queued += box.buf
            box.buf.clear()
        for _, child_end in [*self.channels.private.values(), *self.channels.groups.values()]:
            queued += _drain(child_end)
        queued.extend(router.held)
        router.held.clear()
        for num in queued:
            router.drop(num, "stopped")
        router.log_drops()


def _wake_only(signum: int, frame: object) -> None:
    """Unix signal handlers only wake the loop (through the wakeup fd)."""


def _nothing(mask: int) -> None:
    """The shared worker channel needs no callback: every pass flushes it."""


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {unix.Signals(-code).name}"
    return f"exited with status {code}"


def _drain(sock: object) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(262144)  # type: ignore[attr-defined]
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
