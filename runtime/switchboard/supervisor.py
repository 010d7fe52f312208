"""The master's children once forked: ready, reap, murder (harakiri, a malformed record)
and manage (respawn, cheaper, reload-mercy), in gunicorn's verbs.  Mixed into Master,
whose loop calls them; the fork itself stays in master.py (Master._spawn)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal as unix
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switchboard.shared import BUSY, CHEAP, DOWN, MAX_NESTED, STARTING
from switchboard.targets import Kind, Role, Target

if TYPE_CHECKING:
    from switchboard.cheaper import Cheaper
    from switchboard.config import Config
    from switchboard.lifecycle import Lifecycle
    from switchboard.recount import Recounts
    from switchboard.relay import Relay
    from switchboard.reload import Reload
    from switchboard.router import Router
    from switchboard.shared import Shared
    from switchboard.table import SignalTable
    from switchboard.targets import Topology
    from switchboard.windows import ReadWindows

log = logging.getLogger("switchboard.master")

_FAST_DEATH = 1.0      # a child that dies younger than this is respawned after a pause


@dataclass
class ChildProc:
    pid: int
    started: float
    ready: bool = False
    replacing: bool = False   # stopped by a reload: respawn at once, quietly
    kill_reason: str = ""     # "harakiri" or "reload-mercy" once the master kills it
    killed_for: str = ""      # the same, said for the log


class Supervisor:
    """Mixed into Master: what it needs of the master is declared below."""

    config: Config
    topology: Topology
    shared: Shared
    table: SignalTable
    router: Router
    relay: Relay
    windows: ReadWindows
    recounts: Recounts
    cheaper: Cheaper
    reloading: Reload
    lifecycle: Lifecycle
    children: dict[int, ChildProc]
    pids: dict[int, int]
    respawns: list[int]
    harakiris: list[int]
    malformed: list[int]
    due: dict[int, float]
    dormant: set[int]
    stopping: bool
    stop_deadline: float
    announced: bool
    started: float
    _sigchld: bool

    if TYPE_CHECKING:       # Master's own, declared for the type checker only
        def stop(self, reason: str, code: int = 0) -> None: ...
        def _spawn(self, slot: int) -> None: ...

    def _on_ready(self, slot: int) -> None:
        child = self.children.get(slot)
        if child is not None:
            child.ready = True
        self.reloading.replaced(slot)
        expected = self.topology.slots - 1 - len(self.dormant)
        if not self.announced and len(self.children) == expected and all(
                c.ready for c in self.children.values()):
            self.announced = True
            t = self.topology
            self.lifecycle.ready()
            log.info("ready: %d workers, %d mules, %d spoolers (%.3f s)", t.workers, t.mules,
                     t.spoolers, time.monotonic() - self.started)

    def _on_malformed(self, slot: int, what: str) -> None:
        """A child wrote junk to its channel (a handler writing to an inherited fd, say):
        it alone is killed and respawned."""
        self.malformed[slot] += 1
        child = self.children.get(slot)
        pid = child.pid if child else 0
        log.error("%s (pid %d) sent a malformed record: %s; killing it",
                  self.topology.describe(slot), pid, what)
        if child is not None and not child.kill_reason:
            child.kill_reason, child.killed_for = "malformed", "it sent a malformed record"
            kill_pid(child.pid, unix.SIGKILL)

    def _reap(self) -> None:
        """Collect our children that exited (only ours: a reload's check process is
        collected by its own Popen)."""
        self._sigchld = False
        for pid in list(self.pids):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._on_exit(self.pids.pop(pid), pid, status)

    def _on_exit(self, slot: int, pid: int, status: int) -> None:
        child = self.children.pop(slot)
        rec = self.shared.procs[slot]
        self.relay.child_exited(slot)
        self.recounts.died(slot)
        if slot in self.router.boxes:
            self.recounts.before_put_back(slot)
        self.router.requeue(slot)
        self.windows.member_died(slot)
        name, how = self.topology.describe(slot), _how(status)
        booted = rec.status != STARTING
        for level in range(min(rec.depth, MAX_NESTED)):       # outermost first
            num = rec.running[level]
            if level == rec.depth - 1 and rec.handled[num] + rec.failed[num] != rec.marks[level]:
                continue        # it had finished, and was counted, when the child died
            self.router.drop(num, child.kill_reason or "died")
            log.error("signal %d: its handler did not finish: %s (pid %d) %s",
                      num, name, pid, how)
        rec.status, rec.pid, rec.signum, rec.depth = DOWN, 0, -1, 0
        self.router.wait(slot, None)
        for num in self.table.drop_owned_by(slot):
            log.warning("signal %d: unregistered: its handler was a callable that lived "
                        "only in %s (pid %d)", num, name, pid)
        if self.stopping:
            log.info("%s (pid %d) %s", name, pid, how)
            return
        if slot == 1 and self.config.pyrun and booted and not child.replacing:
            code = os.waitstatus_to_exitcode(status)
            log.info("pyrun script %s ended (%s): stopping", self.config.pyrun, how)
            self.stop("the pyrun script ended", code=code if code >= 0 else 128 - code)
            return
        if child.replacing:
            log.info("reload: %s (pid %d) %s; starting its replacement", name, pid, how)
            self._spawn(slot)
            return
        if self.cheaper.gone(slot):
            self.router.set_cheap(slot, True)
            rec.status = CHEAP
            log.info("cheaped %s (pid %d): idle for %g s (cheaper-idle)", name, pid,
                     self.config.cheaper_idle)
            return
        code = os.waitstatus_to_exitcode(status)
        if not booted and code != -unix.SIGKILL:
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
            rec = self.shared.procs[slot]
            if child.kill_reason:
                continue
            if rec.user_harakiri and now > rec.user_harakiri:
                self._harakiri(slot, child, "ran past its set_user_harakiri() time")
                continue
            limit = self._harakiri_limit(slot)
            ran = now - rec.started
            if limit and rec.status == BUSY and ran > limit:
                entry = self.table.get(rec.signum)
                what = (f"signal {rec.signum}'s handler {entry.ref if entry else '?'}"
                        if rec.signum >= 0 else "a spool job")
                self._harakiri(slot, child, f"ran {what} for {ran:.1f} s (limit {limit:g} s)")

    def _harakiri(self, slot: int, child: ChildProc, why: str) -> None:
        child.kill_reason, child.killed_for = "harakiri", f"harakiri: {why}"
        self.harakiris[slot] += 1
        log.error("harakiri: %s (pid %d) %s; killing it", self.topology.describe(slot),
                  child.pid, why)
        kill_pid(child.pid, unix.SIGKILL)

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
        if self.config.cheaper and not self.stopping:
            self._apply_cheaper(now)
        if not self.stopping:
            self.reloading.step()
        if self.stopping and self.children and now > self.stop_deadline:
            for child in self.children.values():
                if child.kill_reason != "reload-mercy":
                    log.warning("%s (pid %d) still running after reload-mercy; killing it",
                                self.topology.describe(self.pids[child.pid]), child.pid)
                    child.kill_reason = child.killed_for = "reload-mercy"
                    kill_pid(child.pid, unix.SIGKILL)

    def kill(self, slot: int, reason: str) -> None:
        """Stop a child: gracefully (SIGTERM) without a reason, else SIGKILL for it."""
        child = self.children[slot]
        if reason:
            child.kill_reason = child.killed_for = reason
        kill_pid(child.pid, unix.SIGKILL if reason else unix.SIGTERM)

    def _apply_cheaper(self, now: float) -> None:
        box = self.router.groups[Target(Kind.WORKER)]
        queued = len(box.buf) + (box.unread() if not box.buf else 0)
        decision = self.cheaper.decide(now, queued, lambda s: self.router.boxes[s].wanted,
                                       self.shared.procs)
        for slot in decision.spawn:
            self.cheaper.spawned(slot)
            self.router.set_cheap(slot, False)
            log.info("bringing back %s (cheaper: signals are waiting)",
                     self.topology.describe(slot))
            self._spawn(slot)
        for slot in decision.cheap:
            self.cheaper.stopping(slot)
            kill_pid(self.children[slot].pid, unix.SIGTERM)


def kill_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _how(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {unix.Signals(-code).name}"
    return f"exited with status {code}"
