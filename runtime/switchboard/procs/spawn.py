"""The forked side of the master's spawn: close what belongs to the master, build the
child for its role, and run it until it exits.  Never returns."""

from __future__ import annotations

import logging
import os
import signal as unix
import sys
import time
from typing import TYPE_CHECKING, NoReturn

import setproctitle

from switchboard import control, logs
from switchboard.procs.boot import become_child
from switchboard.procs.child import Child
from switchboard.procs.spooler import SpoolerWork
from switchboard.sources.pgnotify import Listener
from switchboard.targets import Role

if TYPE_CHECKING:
    from switchboard.cluster.receiver import Receiver
    from switchboard.master import Master

log = logging.getLogger("switchboard.master")

BLOCKED_IN_FORK = {unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGCHLD}


def run_child(master: Master, slot: int, role: Role, ident: int,
              old_mask: set[int]) -> NoReturn:
    """Reset inherited state first, then become the child; exit with its status."""
    code = 1
    try:
        unix.set_wakeup_fd(-1)
        for sig in BLOCKED_IN_FORK:
            unix.signal(sig, unix.SIG_DFL)
        _close_masters(master, slot, role)
        name = master.topology.describe(slot)
        logs.set_label(name)
        setproctitle.setproctitle(f"switchboard {name}")
        child = _make_child(master, slot, role, ident)
        unix.pthread_sigmask(unix.SIG_SETMASK, old_mask)
        groups = [(master.channels.groups[g][1], master.flag_of[g])
                  for g in master.topology.groups_of(slot)]
        direct = {**master.channels.private,
                  **{master.flag_of[g]: ends for g, ends in master.channels.groups.items()}}
        code = become_child(child, master.channels.private[slot][1], groups,
                            master.channels.wake[1], master.config.signal_timeout, direct,
                            master.config.signal_queue)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        log.exception("%s crashed", master.topology.describe(slot))
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _close_masters(master: Master, slot: int, role: Role) -> None:
    """Close the master's descriptors: its selector, alarm, wake pipes, control socket,
    and every channel end that is not this child's."""
    master.selector.close()
    master.alarm.close()
    for fd in master.wake_fds:
        os.close(fd)
    control.close_inherited(master.control)
    if master.stats_server is not None:
        master.stats_server.close_inherited()
    master.channels.keep_for_child(slot, spooler=role is Role.SPOOLER)
    os.close(master.commands[1])
    if role is not Role.SOURCES:
        os.close(master.commands[0])


def _make_child(master: Master, slot: int, role: Role, ident: int) -> Child:
    ctx = master.ctx
    child = Child(role, ident, slot, master.topology, master.shared, master.table,
                  ctx.masterpid, dict(ctx.local_handlers), spool_dir=ctx.spool_dir,
                  spool_wake=ctx.spool_wake, queues=ctx.queues)
    if master.config.cluster is not None:
        from switchboard.cluster import node  # psycopg: only where a cluster is
        child.cluster = node.sender(master.config.cluster, master.cluster_state, slot,
                                    master.config.signal_timeout, master=False)
    if ctx.queues is not None:
        ctx.queues.keep_for(ident if role is Role.MULE else 0, master.topology)
    if role is Role.WORKER and ident == 1 and master.config.pyrun:
        child.script = master.config.relative(master.config.pyrun)
    if role is Role.MULE:
        child.program = master.programs.get(ident)
    elif role is Role.SPOOLER:
        child.background = SpoolerWork(child, ctx.spool_dir, master.config.spooler_frequency,
                                       master.channels.spool_wake[0])
    elif role is Role.SOURCES:
        from switchboard.procs.sources import SourcesWork  # watchdog: only this child
        listeners = [Listener(x.num, x.dsn, x.channel) for x in master.registry.listeners]
        child.background = SourcesWork(child, master.commands[0],
                                       list(master.registry.monitors.values()), listeners,
                                       _receiver(master, slot))
    return child


def _receiver(master: Master, slot: int) -> Receiver | None:
    """The cluster's receiver for the sources helper, with the unique sources so far."""
    config = master.config.cluster
    if config is None:
        return None
    from switchboard.cluster import unique
    from switchboard.cluster.receiver import Receiver
    sources = [unique.from_spec(ident, spec) for ident, spec in master.registry.unique.items()]
    now = time.time()
    for source in sources:
        source.start(now)
    return Receiver(config, master.cluster_state, slot, sources, lambda: None)
