"""The master: the only process that forks, reaps, kills and routes.  It never runs a handler.

Its loop, each pass: wait on the selector (children's channels, the control socket,
the wakeup fd of Unix signals), read raised signals in large chunks and route them,
flush every outbox with one write per socket, then reap, murder (harakiri) and
manage (respawn).  Unix signal handlers only wake the loop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal as unix
import sys
import time
from typing import Any

import setproctitle

from switchboard import api, binding, control, decorators, ini, loader, stats, statserver
from switchboard.alarm import Alarm
from switchboard.channels import Channels
from switchboard.cheaper import Cheaper
from switchboard.cluster.state import ClusterState
from switchboard.config import Config
from switchboard.context import Context
from switchboard.errors import ConfigError
from switchboard.hosts import lua
from switchboard.lifecycle import Lifecycle
from switchboard.messages import Queues
from switchboard.procs import spawn
from switchboard.procs.spawn import BLOCKED_IN_FORK
from switchboard.recount import Recounts
from switchboard.relay import Relay
from switchboard.reload import Reload
from switchboard.router import ANY, Outbox, Router
from switchboard.shared import CHEAP, STARTING, Shared
from switchboard.sources.registry import Registry
from switchboard.sources.schedule import Schedule
from switchboard.supervisor import ChildProc, Supervisor, kill_pid
from switchboard.table import SignalTable, check_signum
from switchboard.targets import MASTER_SLOT, Role
from switchboard.windows import ReadWindows

log = logging.getLogger("switchboard.master")

READ = selectors.EVENT_READ
_TICK = 0.5            # housekeeping (harakiri, cheaper-idle) runs at least this often
_BUSY_TICK = 0.02      # ... and under load at most this often, unless something is due


class MasterContext(Context):
    router: Router
    registry: Registry

    def raise_signal(self, num: int) -> None:
        if not self.router.route(num):
            raise OSError(f"signal {num}: its queue is full (signal-queue)")
        self.router.raised[num] += 1

    def add_source(self, spec: dict[str, Any]) -> None:
        self.registry.apply(spec)


class Master(Supervisor):
    def __init__(self, config: Config) -> None:
        self.config = config
        self.topology = config.topology()
        self.children: dict[int, ChildProc] = {}
        self.pids: dict[int, int] = {}
        self.respawns = [0] * self.topology.slots
        self.harakiris = [0] * self.topology.slots
        self.malformed = [0] * self.topology.slots      # junk records a child sent
        self.due: dict[int, float] = {}
        self.stopping = False
        self.exit_code = 0
        self.announced = False
        self.started = time.monotonic()
        self._sigchld = False
        self._housekeep_at = 0.0
        self._housekeeping_skipped = False
        self._wake_at: float | None = None     # the next due thing, from _timeout()

    # -- boot: everything before the first fork ------------------------------------------

    def boot(self) -> None:
        """Build the shared table and channels, then load the config's registrations."""
        topo, config = self.topology, self.config
        self.shared = Shared(topo.slots, len(topo.groups()))
        self.table = SignalTable(self.shared)
        self.channels = Channels.create(topo)
        flags = self.shared.pressure
        boxes = {slot: Outbox(topo.describe(slot), *ends, config.signal_queue, flags, slot,
                              self.shared.sent, self.shared.procs[slot], self.shared)
                 for slot, ends in self.channels.private.items()}
        # group pressure flags follow the slots' ones (see Shared)
        self.flag_of = {g: topo.slots + i for i, g in enumerate(self.channels.groups)}
        groups = {g: Outbox(f"group {g.text(topo)}", *ends, config.signal_queue, flags,
                            self.flag_of[g], shared=self.shared,
                            members=[self.shared.procs[m] for m in topo.members(g)])
                  for g, ends in self.channels.groups.items()}
        self.router = Router(self.table, topo, boxes, groups, config.signal_queue)
        self.relay = Relay(self.router, self._on_ready, self._on_message, self._on_malformed,
                           self.shared.latency)
        self.windows = ReadWindows(self.shared, topo, self.router, self.flag_of)
        self.recounts = Recounts(self.shared, topo, self.router, self.windows,
                                 lambda slot: slot in self.children)
        self.registry = Registry(self.router, Schedule())
        self.registry.tell_helper = self._tell_helper
        self.commands = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)   # master -> sources helper
        self.ctx = MasterContext(Role.MASTER, 0, 0, topo, self.shared, self.table, os.getpid(),
                                 spool_dir=loader.spool_folder(config),
                                 spool_wake=self.channels.spool_wake[1],
                                 queues=Queues.create(topo),
                                 signal_timeout=config.signal_timeout)
        self.ctx.router, self.ctx.registry = self.router, self.registry
        binding.install(self.ctx)
        if config.cluster is not None:
            from switchboard.cluster import node  # psycopg: only where a cluster is
            self.cluster_state = ClusterState(topo.slots, config.cluster.name,
                                              config.cluster.node)
            self.ctx.cluster = node.sender(config.cluster, self.cluster_state, MASTER_SLOT,
                                           config.signal_timeout, master=True)
            self.registry.clustered = True
        api.opt = ini.uwsgi_opt(config)
        loader.apply(config, self.table, self.registry.apply)
        self.programs = loader.mule_programs(config)
        workers = list(topo.worker_slots())
        self.cheaper = Cheaper(config.cheaper or len(workers), config.cheaper_wait,
                               config.cheaper_idle, workers)
        self.reloading = Reload(self)
        self.view = stats.View(
            topo, self.shared, self.table, self.router, self.registry, self.started,
            lambda: {slot: (c.pid, c.started) for slot, c in self.children.items()},
            self.respawns, self.harakiris, self.malformed,
            lambda: {i: p.program for i, p in self.config.programs.items()})
        if config.cluster is not None:
            self.view.sections["cluster"] = self.cluster_state.describe

    # -- run -----------------------------------------------------------------------------

    def run(self) -> int:
        """Fork the children and route until stopped; the exit status."""
        setproctitle.setproctitle("switchboard master")
        if self.config.cluster is not None:     # before any fork: see cluster/node.py
            from switchboard.cluster import node
            node.join(self.config.cluster, self.cluster_state, self.config.signal_timeout)
        self.selector = selectors.DefaultSelector()
        self.wake_fds = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        unix.set_wakeup_fd(self.wake_fds[1], warn_on_full_buffer=False)
        for sig in BLOCKED_IN_FORK:
            unix.signal(sig, _wake_only)
        self.selector.register(self.wake_fds[0], READ, self._on_wakeup)
        self.alarm = Alarm()        # timers fire on time, not at the next whole ms
        self.selector.register(self.alarm.fd, READ, lambda mask: self.alarm.clear())
        self.relay.start(self.selector, self.channels.wake[0])
        pidfile = self.config.pidfile and self.config.relative(self.config.pidfile)
        self.lifecycle = Lifecycle(pidfile)
        self.control = control.ControlServer(control.socket_path(self.config), self.selector,
                                             self._on_request, self.config.signal_timeout)
        log.info("master pid %d: control socket %s", os.getpid(), self.control.path)
        self.stats_server = self._stats_server()
        self.lifecycle.started()
        for slot in self.cheaper.cheap:
            self.router.set_cheap(slot, True)
            self.shared.procs[slot].status = CHEAP
        self.dormant = set(self.cheaper.cheap)
        helper = self.topology.sources_slot()
        if helper is not None and not self.registry.needs_helper():
            self.dormant.add(helper)        # spawned when the first monitor is added
        self.running = True
        for slot in range(1, self.topology.slots):
            if slot not in self.dormant:
                self._spawn(slot)
        try:
            while True:
                _guarded(self._pass)
                if self.stopping and not self.children:
                    break
                for key, mask in self.selector.select(self._timeout()):
                    _guarded(key.data, mask)
        finally:
            self.relay.count_stopped(self.channels)
            self.control.close()
            if self.config.cluster is not None:
                from switchboard.cluster import node, release
                release.release(self.config.cluster, self._unrun_fires())
                node.leave(self.config.cluster)
            if self.stats_server is not None:
                self.stats_server.close()
            self.lifecycle.stopped()
        log.info("stopped (exit status %d)", self.exit_code)
        return self.exit_code

    def _unrun_fires(self) -> dict[int, tuple[list[str], int]]:
        """The unique fires this node won and dropped at the stop (cluster/release.py)."""
        from switchboard.cluster import release
        router = self.router
        raised = [n + sum(rec.direct_raised[num] for rec in self.shared.procs)
                  for num, n in enumerate(router.raised)]
        return release.unrun(self.registry.unique, self.cluster_state.fired,
                             router.dropped.get("stopped", [0] * len(raised)), raised,
                             lambda num: None if (e := self.table.get(num)) is None else e.target)

    def _timeout(self) -> float:
        """Until the next thing due: a tick, a respawn, a cheaper decision, housekeeping.
        The alarm rings at it; the selector's own timeout is whole milliseconds."""
        wakes = list(self.due.values())
        if self._housekeeping_skipped:
            wakes.append(self._housekeep_at)
        for wake in (self.cheaper.wake_at(), self.registry.schedule.wake_at()):
            if wake is not None:
                wakes.append(wake)
        if not wakes:
            self.alarm.set(None)
            self._wake_at = None
            return _TICK
        wake = self._wake_at = min(wakes)
        self.alarm.set(wake)
        return min(_TICK, max(0.0, wake - time.monotonic()))

    def _pass(self) -> None:
        self.registry.fire()
        self.router.retry_ticks()
        self.relay.move()
        self.control.retry()
        self.control.expire()
        if self.stats_server is not None:
            self.stats_server.expire()
        self.router.log_drops()
        now = time.monotonic()
        self._housekeeping_skipped = not (
            self._sigchld or self.stopping or now >= self._housekeep_at
            or (self._wake_at is not None and now >= self._wake_at))
        if not self._housekeeping_skipped:
            # Not on every pass: under load a pass comes with every read, and looking at
            # 32 children's records each time cost more than routing what was read.
            # A skipped pass is made up for by _BUSY_TICK later (_timeout wakes for it).
            self._housekeep_at = now + _BUSY_TICK
            self._housekeep()

    def _housekeep(self) -> None:
        if self._sigchld:
            self._reap()
        if self.windows.open:
            self.windows.settle()
        if self.recounts.cuts:
            self.recounts.settle()
        self._murder()
        self._manage()

    # -- control socket and stats server ------------------------------------------------

    def _stats_server(self) -> statserver.StatsServer | None:
        """The stats server if `stats` is set (none by default)."""
        if not self.config.stats:
            return None
        from switchboard.metrics import Collector  # prometheus_client: only when served
        address = statserver.parse_address(self.config.stats, self.config.folder)
        server = statserver.StatsServer(address, self.config.stats_http, self.selector,
                                        lambda: stats.document(self.view),
                                        Collector(self.view).text)
        self.view.sections["stats_server"] = server.counters.as_dict
        log.info("stats server on %s (%s)", server.describe(),
                 "HTTP: JSON, /metrics and the status page" if server.http else "raw JSON")
        return server

    def _on_request(self, line: str) -> control.Reply | None:
        parts = line.split()
        if parts == ["stats"]:
            return {"ok": True, "stats": stats.document(self.view)}
        if len(parts) == 2 and parts[0] == "signal":
            try:
                num = check_signum(int(parts[1]))
            except ValueError as exc:
                return {"ok": False, "error": str(exc) if "range" in str(exc) else
                        f"signal number must be an integer, not '{parts[1][:20]}'"}
            if self.stopping:
                return {"ok": False, "error": "the instance is stopping"}
            unregistered = self.table.get(num) is None
            waiting = sum(w in (ANY, num) for w in self.router.waiters.values())
            if not self.router.route(num):
                return None
            self.router.raised[num] += 1
            if unregistered:    # legal (SPEC: held for signal_wait), but say it: a typo?
                return {"ok": True, "held": True, "waiting": waiting}
            return {"ok": True}
        return {"ok": False, "error": f"unknown request {line[:60]!r} "
                "(expected 'signal N' or 'stats')"}

    # -- Unix signals --------------------------------------------------------------------

    def _on_wakeup(self, mask: int) -> None:
        try:
            data = os.read(self.wake_fds[0], 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == unix.SIGCHLD:
                self._sigchld = True
            elif signum in (unix.SIGINT, unix.SIGTERM):
                self.stop(f"got {unix.Signals(signum).name}")
            elif signum == unix.SIGHUP and not self.stopping:
                self.reloading.begin()

    def stop(self, reason: str, code: int = 0) -> None:
        """Begin a graceful stop: children finish their current handler, then exit."""
        if self.stopping:
            return
        self.stopping, self.exit_code = True, code
        self.lifecycle.stopping()
        self.stop_deadline = time.monotonic() + self.config.reload_mercy
        self.due.clear()
        log.info("stopping (%s); children have %g s (reload-mercy) to finish",
                 reason, self.config.reload_mercy)
        for child in self.children.values():
            kill_pid(child.pid, unix.SIGTERM)

    # -- spawn (reap, murder, manage: supervisor.py) ------------------------------------

    def _spawn(self, slot: int) -> None:
        role, ident = self.topology.role_of(slot)
        rec = self.shared.procs[slot]
        rec.status, rec.signum, rec.user_harakiri = STARTING, -1, 0.0
        sys.stdout.flush()
        sys.stderr.flush()
        old_mask = unix.pthread_sigmask(unix.SIG_BLOCK, BLOCKED_IN_FORK)
        pid = os.fork()
        if pid == 0:
            spawn.run_child(self, slot, role, ident, old_mask)   # never returns
        unix.pthread_sigmask(unix.SIG_SETMASK, old_mask)
        rec.pid = pid
        self.children[slot] = ChildProc(pid, time.monotonic())
        self.pids[pid] = slot
        log.info("spawned %s (pid %d)", self.topology.describe(slot), pid)

    def _on_message(self, slot: int, payload: bytes) -> bool:
        """A child asked for something bigger than a signal (a timer, a monitor...);
        False if the payload is not a request at all."""
        try:
            spec = json.loads(payload)
        except ValueError:
            return False
        try:
            self.registry.apply(spec, origin="child")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("%s sent a request that cannot be applied (%s); ignored",
                      self.topology.describe(slot), exc)
        return True

    def _tell_helper(self, command: dict[str, Any]) -> None:
        """Pass a file-monitor change to the sources helper, starting it if needed."""
        slot = self.topology.sources_slot()
        if slot is None or not getattr(self, "running", False) or self.stopping:
            return                      # not forked yet: the helper inherits the registry
        if slot in self.dormant:
            self.dormant.discard(slot)
            self._spawn(slot)           # it inherits every monitor, this one included
            return
        with contextlib.suppress(BlockingIOError):
            os.write(self.commands[1], json.dumps(command).encode() + b"\n")

    def apply_config(self, config: Config) -> bool:
        """A reload (same layout): load the new config, then forget what the old one
        made and the new one did not make again.  False, and a log line, if loading
        failed: what was loaded so far stays, and a restart is advised."""
        old_entries = {e.num: e.gen for e in self.table.entries() if e.owner == MASTER_SLOT}
        old_sources = self.registry.boot_sources()
        decorators.postfork_chain.clear()
        api.post_fork_hook = None
        decorators.install_hooks()          # as at boot: the hook uwsgidecorators sets
        lua.reset()
        try:
            loader.apply(config, self.table, self.registry.apply, fresh=True)
            self.programs = loader.mule_programs(config)
        except ConfigError as exc:
            log.error("reload failed while applying the config, which is now partly "
                      "loaded; restart the instance: %s", exc)
            return False
        for num, gen in old_entries.items():
            if self.table.entry_generation(num) == gen:      # not registered again
                self.table.unregister(num)
                self.ctx.local_handlers.pop(num, None)
        self.registry.drop_sources(old_sources)
        if self.config.cluster is not None or config.cluster is not None:
            from switchboard.cluster import node
            config.cluster = node.on_reload(self.config.cluster, config.cluster)
        self.config = config
        api.opt = ini.uwsgi_opt(config)
        self.cheaper.wait, self.cheaper.idle = config.cheaper_wait, config.cheaper_idle
        for box in [*self.router.boxes.values(), *self.router.groups.values()]:
            box.limit = config.signal_queue
        self.router.held_limit = config.signal_queue
        self.control.retry_for = config.signal_timeout
        return True


def _wake_only(signum: int, frame: object) -> None:
    """Unix signal handlers only wake the loop (through the wakeup fd)."""


def _guarded(step: Any, *args: Any) -> None:
    """One step of the loop: a bug in it is logged, and the loop (the master) goes on."""
    try:
        step(*args)
    except Exception:
        log.exception("internal error in the master's loop (%s); carrying on",
                      getattr(step, "__qualname__", step))

