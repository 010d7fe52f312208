"""The spooler's part of the `uwsgi` module: spool jobs and ask about the spoolers.

uWSGI 2.0.31 is the reference (checked by running it): `spool()` and
`send_to_spooler()` return the job's path as bytes, `spooler_jobs()` lists the job
files of the spool folder as bytes, `spooler_get_task(path)` reads one (None if it
cannot), `spooler_pids()` lists the spoolers' pids.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from switchboard import spool as spool_files
from switchboard.context import Context


def _spool_context(name: str) -> Context:
    from switchboard.api import _context
    ctx = _context()
    if not ctx.spool_dir:
        raise ValueError(f"{name}(): no spooler is configured (set `spooler` in the config)")
    return ctx


_NO_DICT: dict[Any, Any] = {}      # spool(**kwargs): the job is in the keywords


def spool(message_dict: dict[Any, Any] | bytes = _NO_DICT, /, **kwargs: Any) -> bytes:
    """Store a job for the spooler (durably, before returning); the job file's path."""
    ctx = _spool_context("spool")
    job = spool_files.make_job(message_dict, **kwargs)
    _check_spooler(ctx.spool_dir, job)
    path = spool_files.write(ctx.spool_dir, job)
    _wake(ctx)
    return path.encode()


send_to_spooler = spool


def _check_spooler(folder: str, job: dict[bytes, bytes]) -> None:
    """A `spooler` key must name this instance's spool folder: there is no other."""
    wanted = job.get(b"spooler")
    if wanted is not None and os.path.realpath(os.fsdecode(wanted)) != os.path.realpath(folder):
        raise ValueError(f"spool(): spooler {wanted!r} is not this instance's spool folder "
                         f"({folder})")


def _wake(ctx: Context) -> None:
    with contextlib.suppress(BlockingIOError):   # full: the spoolers are being woken already
        os.write(ctx.spool_wake, b"\0")


def spooler_jobs() -> list[bytes]:
    """The job files in the spool folder (not its priority sub-folders, as uWSGI)."""
    from switchboard.api import _context
    folder = _context().spool_dir
    return [p.encode() for p in spool_files.listed(folder)] if folder else []


def spooler_get_task(task_path: str, /) -> dict[Any, bytes] | None:
    """What the spooler function would get for this job file; None if it is not one."""
    if not isinstance(task_path, str):
        raise TypeError(f"spooler_get_task() argument 1 must be str, not "
                        f"{type(task_path).__name__}")
    job = spool_files.read(task_path)
    return None if job is None else spool_files.handed(job, task_path)


def spooler_pids() -> list[int]:
    """The pids of the running spooler processes."""
    from switchboard.api import _context
    ctx = _context()
    procs = ctx.shared.procs
    return [procs[slot].pid for slot in ctx.topology.spooler_slots() if procs[slot].pid > 0]


def spooler_pid() -> int:
    """The first spooler's pid; 0 without a spooler (as uWSGI)."""
    pids = spooler_pids()
    return pids[0] if pids else 0


def spooler_dir() -> bytes | None:
    """The spool folder (Switchboard's addition); None without a spooler."""
    from switchboard.api import _context
    folder = _context().spool_dir
    return folder.encode() if folder else None


def set_spooler_frequency(frequency: int, /) -> bool:
    """Scan the spool folder every `frequency` seconds from now on, in every spooler."""
    if isinstance(frequency, bool) or not isinstance(frequency, int | float) or frequency <= 0:
        raise ValueError(f"set_spooler_frequency(): frequency must be a number > 0, "
                         f"not {frequency!r}")
    ctx = _spool_context("set_spooler_frequency")
    ctx.shared.table.spooler_frequency = float(frequency)
    _wake(ctx)
    return True
