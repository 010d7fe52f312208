"""The `uwsgi` module that user code imports: Switchboard's signal API (SPEC section 8).

In every process Switchboard starts, `sys.modules["uwsgi"]` is this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from switchboard import api_absent, api_instance, hosts
from switchboard import spool as spool_files
from switchboard.api_instance import (  # noqa: F401 - the uwsgi module's names
    hostname,
    is_locked,
    log,
    mem,
    micros,
    reload,
    setprocname,
    started_on,
    stop,
    version,
    version_info,
)
from switchboard.api_spool import (  # noqa: F401 - the uwsgi module's names
    send_to_spooler,
    set_spooler_frequency,
    spool,
    spooler_dir,
    spooler_get_task,
    spooler_jobs,
    spooler_pid,
    spooler_pids,
)
from switchboard.context import Context
from switchboard.hosts import python as python_host
from switchboard.messages import farm_get_msg as farm_get_msg
from switchboard.messages import farm_msg as farm_msg
from switchboard.messages import in_farm as in_farm
from switchboard.messages import mule_get_msg as mule_get_msg
from switchboard.messages import mule_msg as mule_msg
from switchboard.messages import mule_msg_recv_size as mule_msg_recv_size
from switchboard.shared import SIGNALS, USER_LOCKS
from switchboard.sources import cron, paths
from switchboard.sources.timer import MIN_PERIOD, check_iterations, check_period
from switchboard.table import HandlerKind, check_signum
from switchboard.targets import MASTER_SLOT, Role, parse_target

_ctx: Context | None = None
post_fork_hook: Callable[[], object] | None = None   # uWSGI's hook, kept for compatibility
spooler: Callable[[dict[Any, bytes]], object] | None = None   # runs spool jobs (as uWSGI)
mule_msg_hook: Callable[[bytes], object] | None = None     # a mule without program: messages
numproc = 0
opt: dict[str, Any] = {}        # the instance's options, as uWSGI's (api_instance.options)
spoolers: tuple[bytes, ...] = ()
globals().update(api_absent.functions())

# The `uwsgi` API's names, one table for both languages: each is in Python and in the Lua
# `uwsgi` table (hosts/lua.py converts Lua's arguments; see its docstring to add one).
NAMES = ("register_signal", "unregister_signal", "signal", "signal_wait", "signal_received",
         "signal_registered", "worker_id", "mule_id", "i_am_the_spooler", "masterpid",
         "add_timer", "add_rb_timer", "add_cron", "add_file_monitor", "del_timer", "del_cron",
         "del_file_monitor", "set_user_harakiri", "spool", "lock", "unlock",
         # the spooler (api_spool.py), the instance (api_instance.py)
         "send_to_spooler", "spooler_jobs", "spooler_pid", "spooler_pids", "spooler_dir",
         "spooler_get_task", "set_spooler_frequency", "is_locked", "reload", "stop",
         # mule messages (messages.py)
         "mule_msg", "mule_get_msg", "farm_msg", "farm_get_msg", "in_farm",
         "mule_msg_recv_size",
         # the cluster (cluster/)
         "cluster_nodes")
SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE = spool_files.SPOOL_OK, spool_files.SPOOL_RETRY, \
    spool_files.SPOOL_IGNORE


def _context() -> Context:
    if _ctx is None:
        raise RuntimeError("the uwsgi API is only available in processes Switchboard runs")
    return _ctx


def register_signal(signum: int, who: str, handler: Callable[[int], Any] | str, /) -> None:
    """Set what signal `signum` runs and where (`who`: the target); replaces an earlier
    registration."""
    ctx = _context()
    num, target = check_signum(signum), who
    tgt = parse_target(target, ctx.topology)
    if isinstance(handler, str):
        hosts.resolve(handler)
        ctx.table.register(num, tgt, HandlerKind.REFERENCE, handler, ctx.slot)
        return
    if not callable(handler):
        raise TypeError(f"handler must be a callable or a reference string, "
                        f"not {type(handler).__name__}")
    ref = python_host.reference_of(handler)
    if ref is not None:
        ctx.table.register(num, tgt, HandlerKind.REFERENCE, ref, ctx.slot)
        return
    if ctx.slot != MASTER_SLOT and ctx.slot not in ctx.topology.members(tgt):
        raise ValueError(
            f"signal {num}: {handler!r} exists only in {ctx.topology.describe(ctx.slot)}, "
            f"which target '{target}' never reaches; register a module-level function "
            "or a python:/lua: reference instead")
    entry = ctx.table.register(num, tgt, HandlerKind.LOCAL, repr(handler)[:200], ctx.slot)
    ctx.local_handlers[num] = (entry.gen, handler)


def unregister_signal(num: int, /) -> bool:
    """Remove signal `num` from the table; False if it was not registered."""
    ctx = _context()
    return ctx.table.unregister(check_signum(num))


def signal_registered(signum: int, /) -> bool | None:
    """True if `signum` has a handler, else None (as uWSGI)."""
    return True if _context().table.get(check_signum(signum)) is not None else None


def signal(signum: int, node: str = "", /) -> None:
    """Raise signal `signum`: returns once the master holds it, OSError if it cannot."""
    if type(signum) is int and 0 <= signum < SIGNALS and not node and _ctx is not None:
        _ctx.raise_signal(signum)   # the hot path: what the checks below would allow
        return
    ctx = _context()
    num = check_signum(signum)
    if not node:
        ctx.raise_signal(num)
        return
    from switchboard.cluster import sender  # here: psycopg only where a cluster is

    node = sender.check_remote(num, node)
    if ctx.cluster is None:
        raise OSError(f"signal {num} to '{node}': this instance is not in a cluster "
                      "(add a [cluster] section to its config)")
    ctx.cluster.send(num, node)


def cluster_nodes() -> list[str]:
    """The names of the cluster's live members (as of the last heartbeat)."""
    ctx = _context()
    if ctx.cluster is None:
        raise OSError("cluster_nodes(): this instance is not in a cluster (add a [cluster] "
                      "section to its config)")
    return ctx.cluster.state.nodes()


def signal_wait(signum: int | None = None, /, timeout: float | None = None, *,
                num: int | None = None) -> int | None:
    """Block until a signal arrives (or signal `num`); its number, or None on timeout."""
    ctx = _context()
    num = signum if num is None else num
    if num is not None:
        num = check_signum(num)
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number, not {type(timeout).__name__}")
        if timeout < 0:
            raise ValueError(f"timeout {timeout} is negative")
    return ctx.wait(num, timeout)


def signal_received() -> int:
    """The number of the last signal this process received, -1 before any (as uWSGI)."""
    return _context().last_received


def worker_id() -> int:
    ctx = _context()
    return ctx.ident if ctx.role is Role.WORKER else 0


def mule_id() -> int:
    ctx = _context()
    return ctx.ident if ctx.role is Role.MULE else 0


def i_am_the_spooler() -> bool | None:
    """True in a spooler, None elsewhere (as uWSGI)."""
    return True if _context().role is Role.SPOOLER else None


def masterpid() -> int:
    return _context().masterpid


def add_timer(signum: int, seconds: float, /, iterations: int = 0, *,
              unique: bool = False) -> None:
    """Raise `signum` every `seconds` (a float, >= 0.001); `iterations` times, 0 = forever.

    `unique=True`: one node of the cluster raises each fire (on the epoch grid)."""
    _add_source("timer", signum, seconds=check_period(seconds),
                iterations=check_iterations(iterations), **_unique(unique, iterations))


def add_rb_timer(signum: int, seconds: float, iterations: int = 0, /, *,
                 unique: bool = False) -> None:
    """uWSGI's user-space timer: here the same machinery as add_timer().  As uWSGI,
    `add_rb_timer(n, 0, 1)` is a one-shot at once (here: after 1 ms)."""
    iterations = check_iterations(iterations)
    if seconds == 0 and iterations == 1 and not isinstance(seconds, bool):
        seconds = MIN_PERIOD
    _add_source("rb_timer", signum, seconds=check_period(seconds), iterations=iterations,
                **_unique(unique, iterations))


def add_cron(signum: int, minute: int, hour: int, day: int, month: int, weekday: int, /,
             *, unique: bool = False) -> bool:
    """Raise `signum` in each local minute matching uWSGI's cron integers; True."""
    spec = cron.from_ints(minute, hour, day, month, weekday)
    _add_source("cron", signum, cron=dataclasses.asdict(spec), **_unique(unique, 0))
    return True


def _unique(unique: object, iterations: object) -> dict[str, bool]:
    """The spec's `unique` flag, checked: it needs [cluster] and no iterations."""
    if not isinstance(unique, bool):
        raise TypeError(f"unique must be a bool, not {type(unique).__name__}")
    if not unique:
        return {}
    if _context().cluster is None:
        raise ValueError("unique=True needs a [cluster] section (each fire is claimed in "
                         "its PostgreSQL)")
    if iterations:
        raise ValueError("unique=True runs forever (iterations would be counted per node)")
    return {"unique": True}


def add_file_monitor(signum: int, filename: str, /, iterations: int = 0,
                     recursive: bool = False) -> None:
    """Raise `signum` when the file or directory `filename` changes (it may not exist yet)."""
    if not isinstance(recursive, bool):
        raise TypeError(f"recursive must be a bool, not {type(recursive).__name__}")
    _add_source("file_monitor", signum, path=paths.check_path(filename),
                iterations=check_iterations(iterations), recursive=recursive)


def del_timer(num: int, /) -> None:
    """Remove every timer and rb_timer raising `num`."""
    _add_source("del_timer", num)


def del_cron(num: int, /) -> None:
    _add_source("del_cron", num)


def del_file_monitor(num: int, /) -> None:
    _add_source("del_file_monitor", num)


def _add_source(kind: str, num: int, **spec: Any) -> None:
    _context().add_source({"kind": kind, "num": check_signum(num), **spec})


def set_user_harakiri(seconds: float, /) -> None:
    """Kill this process if it is still busy `seconds` from now (0 clears it)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ValueError(f"seconds must be a number >= 0, not {seconds!r}")
    _context().set_user_harakiri(float(seconds))


async def signal_wait_async(num: int | None = None, timeout: float | None = None) -> int | None:
    """signal_wait() for asyncio code: the event loop keeps running while it waits."""
    ctx = _context()
    if num is not None:
        num = check_signum(num)
    return await ctx.wait_async(num, timeout)


def lock(lock_num: int = 0, /) -> None:
    """Take user lock `lock_num` (shared by every process of this instance)."""
    n = _user_lock(lock_num)
    _context().shared.acquire(n)
    api_instance.held.add(n)


def unlock(lock_num: int = 0, /) -> None:
    n = _user_lock(lock_num)
    api_instance.held.discard(n)
    _context().shared.release(n)


def _user_lock(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"lock number must be an integer, not {type(n).__name__}")
    if not 0 <= n < USER_LOCKS:
        raise ValueError(f"lock number {n} is out of range [0, {USER_LOCKS - 1}]")
    return n + 1
