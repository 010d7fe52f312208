"""Spool jobs: durable files in the spool directory, written atomically, run by the spooler.

A job is a dict of bytes keys and bytes values (as uWSGI hands them to the spooler
function); `priority` puts it in a numbered sub-folder, `at` dates its file in the
future.  `write` puts it in a hidden temporary file, fsyncs it and renames it into
place, so the spooler never sees half a job and a job survives any crash after
`uwsgi.spool()` returned.  The spooler takes a job under an flock, so two spooler
processes never run the same job, and a spooler that dies releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pickle
import socket
import time
from collections.abc import Iterator
from typing import Any

SPOOL_OK = -2       # done: remove the job
SPOOL_RETRY = -1    # keep it and run it again at the next scan
SPOOL_IGNORE = 0    # leave it where it is; this spooler process will not run it again

PREFIX = "uwsgi_spoolfile_on_"
_counter = itertools.count(1)
_MAGIC = b"switchboard-spool-1\n"


def make_job(job: Any = None, **kwargs: Any) -> dict[bytes, bytes]:
    """Check and normalise what `uwsgi.spool()` was given; TypeError names what is wrong.

    uWSGI takes bytes only; str keys and values are accepted too (encoded as UTF-8),
    and `at` and `priority` may be numbers."""
    if isinstance(job, bytes | bytearray):
        job = {b"body": bytes(job)}
    elif job is None:
        job = {}
    elif not isinstance(job, dict):
        raise TypeError(f"spool() takes a dict or bytes, not {type(job).__name__}")
    items = {**job, **kwargs}
    if not items:
        raise ValueError("spool() needs a non-empty dict (or bytes)")
    out: dict[bytes, bytes] = {}
    for key, value in items.items():
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(key, bytes):
            raise TypeError(f"spool job keys must be str or bytes, not {type(key).__name__}")
        if key in (b"at", b"priority") and isinstance(value, int | float) \
                and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"spool job value '{key.decode(errors='replace')}' must be str "
                            f"or bytes, not {type(value).__name__}")
        out[key] = bytes(value)
    _check_special(out)
    return out


def _check_special(job: dict[bytes, bytes]) -> None:
    """`priority` must be a whole number >= 0 and `at` a unix time: ValueError if not."""
    if b"priority" in job and not job[b"priority"].isdigit():
        raise ValueError(f"spool job 'priority' must be a whole number >= 0, "
                         f"not {job[b'priority']!r}")
    if b"at" in job:
        try:
            float(job[b"at"])
        except ValueError:
            raise ValueError(f"spool job 'at' must be a unix time, not {job[b'at']!r}") \
                from None


def folder_for(folder: str, job: dict[bytes, bytes]) -> str:
    """Where a job goes: its `priority` sub-folder (made 0700 on first use), as uWSGI."""
    if b"priority" not in job:
        return folder
    sub = os.path.join(folder, str(int(job[b"priority"])))
    os.makedirs(sub, mode=0o700, exist_ok=True)
    return sub


def write(folder: str, job: dict[bytes, bytes]) -> str:
    """Store a job durably (in its priority sub-folder, dated `at` if given); its path."""
    folder = folder_for(folder, job)
    name = f"{PREFIX}{socket.gethostname()}_{os.getpid()}_{next(_counter)}_{time.time_ns()}"
    final = os.path.join(folder, name)
    temp = os.path.join(folder, "." + name)
    data = _MAGIC + pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        if b"at" in job:            # a job for later: its mtime says when (as uWSGI)
            at = float(job[b"at"])
            os.utime(fd, (at, at))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, final)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def pending(folder: str) -> list[str]:
    """Jobs due now: priority sub-folders first (lowest number first), then the folder,
    each in the order written."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    subs = sorted(int(n) for n in names if n.isdigit()
                  and os.path.isdir(os.path.join(folder, n)))
    found = [p for n in subs for p in _due(os.path.join(folder, str(n)))]
    return found + _due(folder, names)


def listed(folder: str) -> list[str]:
    """Job files directly in `folder`, due or not (uwsgi.spooler_jobs())."""
    try:
        return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                      if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def _due(folder: str, names: list[str] | None = None) -> list[str]:
    if names is None:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
    now = time.time()
    stamped = []
    for name in names:
        if name.startswith(PREFIX):
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                mtime = os.stat(path).st_mtime_ns
                if mtime <= now * 1e9:
                    stamped.append((mtime, _written_ns(name), path))
    return [p for _, _, p in sorted(stamped)]


def _written_ns(name: str) -> int:
    """The write time a job's name ends with: orders jobs whose mtimes tie (the clock
    behind mtime ticks in milliseconds)."""
    tail = name.rpartition("_")[2]
    return int(tail) if tail.isdigit() else 0


@contextlib.contextmanager
def taken(path: str) -> Iterator[dict[bytes, bytes] | None]:
    """Hold the job's lock while the body runs; None if another spooler has it or it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        if not os.path.exists(path):      # finished by another spooler meanwhile
            yield None
            return
        yield load(fd, path)
    finally:
        os.close(fd)


class InvalidJob(ValueError):
    """A file named as a job that is not one: set aside, never run."""


def load(fd: int, path: str) -> dict[bytes, bytes]:
    """Read a job; InvalidJob for a file that is not one of ours."""
    with os.fdopen(os.dup(fd), "rb") as f:
        data = f.read()
    if not data.startswith(_MAGIC):
        raise InvalidJob("no switchboard-spool-1 header")
    try:
        job = pickle.loads(data[len(_MAGIC):])
    except Exception as exc:        # a truncated or garbled pickle fails in many ways
        raise InvalidJob(f"unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(job, dict):
        raise InvalidJob(f"holds a {type(job).__name__}, not a dict")
    # files written before keys were bytes had str keys
    return {k.encode() if isinstance(k, str) else k: v for k, v in job.items()}


def read(path: str) -> dict[bytes, bytes] | None:
    """A job's content without taking it (uwsgi.spooler_get_task()); None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return load(fd, path)
    except InvalidJob:
        return None
    finally:
        os.close(fd)


def set_aside(folder: str, path: str) -> str:
    """Move an invalid job file to `folder`/invalid (made 0700), never scanned; where."""
    aside = os.path.join(folder, "invalid")
    os.makedirs(aside, mode=0o700, exist_ok=True)
    target = os.path.join(aside, os.path.basename(path))
    os.rename(path, target)
    return target


def handed(job: dict[bytes, bytes], task: str) -> dict[Any, bytes]:
    """The dict the spooler function gets, as uWSGI builds it: bytes keys, except
    `body` and `spooler_task_name` (the file's path)."""
    out: dict[Any, bytes] = {("body" if k == b"body" else k): v for k, v in job.items()}
    out["spooler_task_name"] = task.encode()
    return out
