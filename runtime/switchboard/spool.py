"""Spool jobs: durable files in the spool directory, written atomically, run by the spooler.

A job is a dict of str keys and bytes values (as uWSGI hands them to the spooler
function).  `write` puts it in a hidden temporary file, fsyncs it and renames it into
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


def make_job(job: Any = None, **kwargs: Any) -> dict[str, bytes]:
    """Check and normalise what `uwsgi.spool()` was given; TypeError names what is wrong."""
    if isinstance(job, bytes | bytearray):
        job = {"body": bytes(job)}
    elif job is None:
        job = {}
    elif not isinstance(job, dict):
        raise TypeError(f"spool() takes a dict or bytes, not {type(job).__name__}")
    items = {**job, **kwargs}
    if not items:
        raise ValueError("spool() needs a non-empty dict (or bytes)")
    out: dict[str, bytes] = {}
    for key, value in items.items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        if not isinstance(key, str):
            raise TypeError(f"spool job keys must be str or bytes, not {type(key).__name__}")
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"spool job value '{key}' must be str or bytes, "
                            f"not {type(value).__name__}")
        out[key] = bytes(value)
    return out


def write(folder: str, job: dict[str, bytes]) -> str:
    """Store a job durably; its path."""
    name = f"{PREFIX}{socket.gethostname()}_{os.getpid()}_{next(_counter)}_{time.time_ns()}"
    final = os.path.join(folder, name)
    temp = os.path.join(folder, "." + name)
    data = _MAGIC + pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
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
    """Job files in the order they were written."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(PREFIX)]
    except FileNotFoundError:
        return []
    paths = [os.path.join(folder, n) for n in names]
    stamped = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            stamped.append((os.stat(path).st_mtime_ns, path))
    return [p for _, p in sorted(stamped)]


@contextlib.contextmanager
def taken(path: str) -> Iterator[dict[str, bytes] | None]:
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


def load(fd: int, path: str) -> dict[str, bytes]:
    """Read a job; ValueError for a file that is not one of ours."""
    with os.fdopen(os.dup(fd), "rb") as f:
        data = f.read()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{path} is not a Switchboard spool job")
    job = pickle.loads(data[len(_MAGIC):])
    if not isinstance(job, dict):
        raise ValueError(f"{path} holds a {type(job).__name__}, not a job")
    return job
