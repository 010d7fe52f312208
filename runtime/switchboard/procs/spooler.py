"""The spooler's own work, done between signals: run the jobs in the spool directory.

It scans when woken (`uwsgi.spool()` writes a byte to a pipe every spooler polls) and
every `spooler-frequency` seconds (for jobs kept for retry or dated later with `at`;
`uwsgi.set_spooler_frequency()` changes it for every spooler).  A job runs under its flock;
its fate follows the spooler function's return value, as in uWSGI: SPOOL_OK removes it,
SPOOL_IGNORE leaves it alone for good, anything else (SPOOL_RETRY, a non-int, an
exception) keeps it for the next scan.  Nothing is ever lost: a spooler that dies
mid-job leaves the file for its replacement.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from switchboard import api, spool
from switchboard.shared import BUSY

if TYPE_CHECKING:
    from switchboard.procs.child import Child

log = logging.getLogger("switchboard.spooler")


class SpoolerWork:
    """The spooler's background work, driven by the child's loop."""

    def __init__(self, child: Child, folder: str, frequency: float, wake_fd: int) -> None:
        self.child, self.folder, self.frequency = child, folder, frequency
        self.fds = [wake_fd]
        self.next_scan = 0.0                    # scan as soon as the loop starts
        self.ignored: set[str] = set()
        self._warned_no_function = False

    def start(self) -> None:
        """Nothing to set up: the first scan is due at once."""

    def stop(self) -> None:
        """Nothing to put back: a job file stays until it ran."""

    def deadline(self) -> float:
        return self.next_scan

    def woken(self, fd: int) -> None:
        """A job was spooled: scan now."""
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 4096)
        self.next_scan = 0.0

    def run(self) -> None:
        """Run every pending job once (stopping early when told to stop)."""
        frequency = self.child.shared.table.spooler_frequency or self.frequency
        self.next_scan = time.monotonic() + frequency
        for path in spool.pending(self.folder):
            if self.child.stopping:
                return
            if path not in self.ignored:
                try:
                    with spool.taken(path) as job:
                        if job is not None:
                            self._run(path, job)
                except spool.InvalidJob as exc:
                    self._set_aside(path, exc)

    def _set_aside(self, path: str, exc: spool.InvalidJob) -> None:
        """A file named as a job that is not one: moved aside, never run, counted."""
        try:
            target = spool.set_aside(self.folder, path)
        except FileNotFoundError:
            return                      # another spooler moved it first
        self.child.record.jobs_invalid += 1
        log.error("spool job %s is not a valid spool file (%s): moved to %s, not run",
                  os.path.basename(path), exc, target)

    def _run(self, path: str, job: dict[bytes, bytes]) -> None:
        func = api.spooler
        rec = self.child.record
        if func is None:
            if not self._warned_no_function:
                log.error("spool job %s kept: no spooler function (set uwsgi.spooler, or "
                          "use @spool)", os.path.basename(path))
                self._warned_no_function = True
            return
        saved = rec.status, rec.started
        rec.status, rec.started = BUSY, time.monotonic()
        try:
            ret = func(spool.handed(job, path))
        except Exception:
            rec.jobs_failed += 1
            log.exception("spool job %s failed; kept for retry", os.path.basename(path))
            return
        finally:
            rec.status, rec.started = saved
            rec.last_active = time.monotonic()
        if ret == spool.SPOOL_OK:
            os.unlink(path)
            rec.jobs_done += 1
        elif ret == spool.SPOOL_IGNORE:
            self.ignored.add(path)
            log.info("spool job %s ignored (SPOOL_IGNORE): left in place",
                     os.path.basename(path))
        else:
            rec.jobs_retried += 1
            log.info("spool job %s kept for retry (the spooler function returned %r)",
                     os.path.basename(path), ret)
