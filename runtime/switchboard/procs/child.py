"""A child's life after the fork: reset, boot, then read and run signals until told to stop.

One loop serves both the idle child and `signal_wait()`: the wait is the same loop with a
condition to return.  A group's shared channel is read one byte per read, so a signal
this process has not started stays there for another idle member.  Its own channel is
read in batches into a ring in shared memory, so if it dies the master takes back what
it had not started, in order, for its replacement.  A group's byte is read into shared
memory too, and a signal counts as out of its channel only once it is marked started:
a child killed in between does not lose it (windows.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal as unix
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol

from switchboard.alarm import Alarm
from switchboard.context import Context
from switchboard.direct import DirectWriter
from switchboard.latency import BUCKET_OF, MAX, ROW, bucket
from switchboard.procs.boot import NEVER, Boot
from switchboard.procs.handlers import Handlers, Resolved
from switchboard.procs.inbox import MessageInbox
from switchboard.procs.sending import ToMaster
from switchboard.procs.waiting import ANY, Waiting
from switchboard.shared import (
    BUSY,
    BUSY_TIME,
    DEPTH,
    FAILED,
    FILLING,
    HANDLED,
    LAST_ACTIVE,
    LAST_RECEIVED,
    MARKS,
    MAX_NESTED,
    OWN_READ,
    OWN_RING,
    OWN_STARTED,
    POLLING,
    READ_BYTE,
    READ_DEPTH,
    RING_FROM,
    RUNNING,
    SIGNUM,
    STARTED,
    STATUS,
    USER_HARAKIRI,
    ProcRecord,
    RecordView,
)

log = logging.getLogger("switchboard.child")

_BACKGROUND = -3        # from _wait(): background work is due
_AGAIN = -4             # ... or a channel may have something: read again


class Background(Protocol):
    """Work a child does between signals: wakes on `fds` or at `deadline()`."""

    fds: list[int]

    def start(self) -> None: ...
    def deadline(self) -> float | None: ...
    def woken(self, fd: int) -> None: ...
    def run(self) -> None: ...
    def stop(self) -> None: ...


class Child(Boot, Waiting, ToMaster, Handlers, MessageInbox, Context):
    """The Context of a worker, mule or spooler."""

    sock: socket.socket
    record: ProcRecord
    signal_timeout: float
    stopping: bool = False
    program: Callable[..., Any] | None = None    # a mule's main loop
    script: str = ""                             # worker 1's `pyrun` script
    background: Background | None = None         # a spooler's jobs, the sources' events
    _in_program = False
    _in_background = False

    def setup(self, sock: socket.socket, groups: list[tuple[socket.socket, int]],
              drained_fd: int, signal_timeout: float,
              direct: dict[int, tuple[socket.socket, socket.socket]] | None = None,
              signal_queue: int = 65536) -> None:
        self.sock, self.signal_timeout = sock, signal_timeout
        self.direct = DirectWriter(self.shared, self.table, self.topology, self.slot,
                                   direct or {}, signal_queue)
        self.record = self.shared.procs[self.slot]
        self._own = sock.fileno()
        self._ring = memoryview(self.record.own_ring).cast("B")
        self._own_read = self.record.own_started    # ring positions read so far
        self.record.own_read, self.record.filling = self._own_read, 0
        self._own_next = self.record.own_started    # ... and taken to run
        # What the signal _read_now() returned came from, for _dispatch() to record as
        # it marks it: its ring position + 1, or -(index in shared.taken + 1) for a group.
        self._source = 0
        slots, slot = self.shared.slots, self.slot
        # (fd, its pressure flag, our word in shared.taken); a group's number is its
        # flag - slots (group flags follow the slots' ones)
        self._groups = [(g.fileno(), i, (i - slots) * slots + slot) for g, i in groups]
        self._taken = self.shared.taken
        self._fds = [self._own] + [fd for fd, _, _ in self._groups]
        self._channel_of = {fd: i for i, fd in enumerate(self._fds)}     # -> _readable
        # Worth a read (see _read_now): our own channel first, then each group's.
        self._readable = [True] * len(self._fds)
        self._drained_fd = drained_fd
        self._pressure = self.shared.pressure
        self._sent = self.shared.sent
        view = RecordView(self.shared, self.slot)     # self.record's fields, faster
        self._u8, self._i16, self._u64, self._f64 = view.u8, view.i16, view.u64, view.f64
        self._read_into = [view.u8[READ_BYTE:READ_BYTE + 1]]    # a group read lands here
        # Raise-to-start latency (latency.py): our histogram row per signal, and the run of
        # stamps the last signal of our own channel fell in (the next one nearly always
        # does too), as ring positions + 1 (what self._source holds): lo < source <= hi.
        latency = self.shared.latency
        self._find = latency.find
        base = slot * latency.signals * ROW
        self._rows = [latency.hist[base + num * ROW:base + (num + 1) * ROW]
                      for num in range(latency.signals)]
        self._run_lo, self._run_hi, self._run_at, self._run_number = 0, 0, 0.0, -1
        self._maxes = [latency.summary(slot, num).max_us for num in range(latency.signals)]
        # per group: [its channel, its members' words in shared.taken, the cached run as
        # bounds on the words' sum (see _group_run), its stamp, its number]
        self._group_runs: dict[int, list[Any]] = {}
        for _, i, mine in self._groups:
            members = self.topology.members(self.topology.groups()[i - slots])
            first = (i - slots) * slots
            words = self._taken[first + min(members):first + max(members) + 1]
            self._group_runs[mine] = [i, words, 0, 0, 0.0, -1]
        self._cache: dict[int, tuple[int, Resolved, str]] = {}
        self._generations = self.table.entry_generations
        self._waits: list[int] = []
        self._msg_fds: set[int] = set()             # message queues the poll watches
        self._inbox: list[socket.socket] = []       # what mule_msg_hook is handed
        self._wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        unix.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        unix.signal(unix.SIGTERM, self._on_term)
        self._alarm = Alarm()       # deadlines to the microsecond (epoll takes whole ms)
        # epoll, for EPOLLEXCLUSIVE on the groups' channels: a byte written to one wakes
        # one waiting member, not every idle one (each wake-up costs the writer's send()
        # about 10 µs here); the master splits a batch to wake more (Outbox.flush).
        self._poll = select.epoll()
        for fd in [self._own, self._wake_r, self._alarm.fd]:
            self._poll.register(fd, select.EPOLLIN)
        for fd, _, _ in self._groups:
            self._poll.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
        if self.background is not None:
            for fd in self.background.fds:
                self._poll.register(fd, select.EPOLLIN)

    def _on_term(self, signum: int, frame: object) -> None:
        first, self.stopping = not self.stopping, True
        # Interrupt the mule's program (SPEC 2), once: a second SIGTERM (the master's,
        # after a kill of the whole process group) must not cut its cleanup short.
        if first and self._in_program and self.record.status != BUSY:
            raise SystemExit(0)

    # -- the loop ---------------------------------------------------------------------

    def _serve(self, want: int, deadline: float | None) -> int | None:
        """Run signals until one satisfies `want`; None when `deadline` passes."""
        while True:
            if self.stopping:
                raise SystemExit(0)
            num = self._read_now()          # own channel first
            if num is None:
                if self._inbox and want == NEVER and self._hand_message():
                    continue
                waited = self._wait(deadline)
                if waited is None:
                    return None
                if waited == _BACKGROUND:
                    self._run_background()
            elif self._dispatch(num, want):
                return num

    def _run_background(self) -> None:
        assert self.background is not None
        self._in_background = True
        try:
            self.background.run()
        finally:
            self._in_background = False

    def _wait(self, deadline: float | None) -> int | None:
        """Nothing to read: wait until a channel may have something (_AGAIN), background
        work (spool jobs, file events) is due (_BACKGROUND), or `deadline` passes (None)."""
        background = None if self._in_background else self.background
        now = time.monotonic()
        if deadline is not None and deadline <= now:
            return None
        due = background.deadline() if background is not None else None
        if due is not None and due <= now:
            return _BACKGROUND
        wakes = [t for t in (deadline, due) if t is not None]
        wake = min(wakes) if wakes else None
        self._alarm.set(wake)
        timeout = max(0.0, wake - now) if wake is not None else -1
        u8 = self._u8
        u8[POLLING] = 1
        try:
            ready = self._poll.poll(timeout)
        finally:
            u8[POLLING] = 0
        channel_of = self._channel_of
        for fd, _ in ready:
            channel = channel_of.get(fd)
            if channel is not None:         # the usual wake-up, so looked at first
                self._readable[channel] = True
            elif fd == self._wake_r:
                self._drain_wakeups()
            elif fd == self._alarm.fd:
                self._alarm.clear()
            elif background is not None and fd in background.fds:
                background.woken(fd)
            # else a message (self._msg_fds): the caller takes it
        return _AGAIN

    def _wake_master(self, flag: int) -> None:
        """The master refused signals for this channel; there is room now."""
        self._pressure[flag] = 0
        with contextlib.suppress(BlockingIOError):   # full: the master is awake already
            os.write(self._drained_fd, b"\0")

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except BlockingIOError:
            pass

    def _dispatch(self, num: int, want: int) -> bool:
        """Run `num`'s handler here if it can run here; True if it ends the wait.

        One function on purpose: it runs for every signal, and each call saved is
        a tenth of a microsecond of a run that costs about two."""
        u8, i16, u64, f64 = self._u8, self._i16, self._u64, self._f64
        saved, depth, source = i16[SIGNUM], u8[DEPTH], self._source
        i16[SIGNUM] = num      # from here on, the master counts it if this process dies
        if depth < MAX_NESTED:
            i16[RUNNING + depth] = num
            u64[MARKS + depth] = u64[HANDLED + num] + u64[FAILED + num]
            u64[RING_FROM + depth] = source if source > 0 else 0
        u8[DEPTH] = depth + 1
        # Marked: now say where it came from is done with (windows.py has the window).
        if source > 0:
            u64[OWN_STARTED] = source
        elif source < 0:
            self._taken[-source - 1] += 1
        self._source = 0
        self.last_received = i16[LAST_RECEIVED] = num
        try:
            cached = self._cache.get(num)
            if cached is None or cached[0] != self._generations[num]:
                cached = self._handler(num)
            handler = cached[1]
            if not callable(handler):
                return self._cannot_run(num, want, handler, cached[2])
            status, started, harakiri = u8[STATUS], f64[STARTED], f64[USER_HARAKIRI]
            now = time.monotonic()
            u8[STATUS], f64[STARTED] = BUSY, now
            # -- latency recording (bench/latency_cost.py measures the run without it)
            # where a group's signal sat in its channel: its members' takes, as of now
            taken = sum(self._group_runs[-source - 1][1]) if source < 0 else 0
            # -- end of latency recording
            try:
                handler(num)
            except Exception as exc:
                self._failed(num, cached[2], exc)
            else:
                u64[HANDLED + num] += 1
            finally:
                # set_user_harakiri() lasts for this handler only, as uWSGI's per request
                u8[STATUS], f64[STARTED], f64[USER_HARAKIRI] = status, started, harakiri
                f64[LAST_ACTIVE] = end = time.monotonic()
                f64[BUSY_TIME] += end - now
                # -- latency recording: after the handler, off the path it measures
                self._record_latency(num, source, taken, now)
                # -- end of latency recording
            return want in (ANY, num)
        finally:
            if 0 < depth <= MAX_NESTED:     # nested: what this run counted is not the outer's
                outer = i16[RUNNING + depth - 1]
                u64[MARKS + depth - 1] = u64[HANDLED + outer] + u64[FAILED + outer]
            i16[SIGNUM], u8[DEPTH] = saved, depth

    def _record_latency(self, num: int, source: int, taken: int, now: float) -> None:
        """Count the raise-to-start latency of the signal that started at `now` (latency.py)
        in its histogram row: from the stamp of the run its position fell in."""
        if source > 0:
            if not self._run_lo < source <= self._run_hi:
                self._own_run(source - 1, now)
            us = int((now - self._run_at) * 1e6)
        elif source:
            run = self._group_runs[-source - 1]
            if not run[2] <= taken < run[3]:
                self._group_run(run, taken, now)
            us = int((now - run[4]) * 1e6)
        else:
            us = 0
        # never negative: a run is stamped before a child can read from it
        row = self._rows[num]
        try:
            row[BUCKET_OF[us]] += 1
        except IndexError:
            row[bucket(us)] += 1
        if us > self._maxes[num]:
            self._maxes[num] = row[MAX] = us

    def _own_run(self, pos: int, now: float) -> None:
        """The run of stamps holding our own channel's position `pos` (latency.py)."""
        lo, hi, at, number = self._find(self.slot, pos, self._run_number)
        if not at:                  # no stamp (yet): the latency reads 0
            lo, hi, at = pos, pos + 1, now
        self._run_lo, self._run_hi, self._run_at, self._run_number = lo, hi, at, number

    def _group_run(self, run: list[Any], taken: int, now: float) -> None:
        """The run of stamps holding the signal just taken from a group (latency.py).
        Its position comes from the members' words in shared.taken (twice their takes,
        plus one while reading): exact but for members reading at the same instant.
        The run is kept as the bounds on that sum which put a position in it."""
        pos = (taken + 1) // 2 - 1
        lo, hi, at, number = self._find(run[0], pos, run[5])
        if not at:
            lo, hi, at = pos, pos + 1, now
        run[2:] = (2 * lo + 1, 2 * hi + 1, at, number)

    def _read_now(self) -> int | None:
        """A signal if one is there now (our own channel first), without blocking.

        A read that finds nothing is a system call wasted on the hot path, so a channel
        is read only while it is worth it: after poll() found it readable, for as long
        as reads return bytes, and (our own channel) when the master flagged a write."""
        readable = self._readable
        position = self._own_next
        if self._own_read == position:    # the ring is empty
            sent, slot = self._sent, self.slot
            if sent[slot]:
                sent[slot] = 0      # before the read: a write after it raises it again
                readable[0] = True
            if readable[0]:
                self._fill_ring()
        if self._own_read != position:          # the ring holds what we read: take one
            self._own_next = self._source = position + 1
            if self._pressure[self.slot]:
                self._wake_master(self.slot)
            return self._ring[position % OWN_RING]
        u8, taken = self._u8, self._taken
        for i, (fd, flag, mine) in enumerate(self._groups, 1):
            if not readable[i]:
                continue
            # One byte (the group's other members share the rest), read straight into
            # shared memory, with the window open (taken odd) until _dispatch marks it.
            u8[READ_DEPTH] = u8[DEPTH]
            taken[mine] += 1
            try:
                count = os.readv(fd, self._read_into)
            except BlockingIOError:
                taken[mine] -= 1
                readable[i] = False
                continue
            if not count:
                self._master_gone()
            if self._pressure[flag]:
                self._wake_master(flag)
            self._source = -mine - 1
            return u8[READ_BYTE]
        return None

    def _fill_ring(self) -> None:
        """Read our own channel into the ring, in shared memory: only we read this
        channel, so one read serves many signals, and if we die the master takes back
        what we had not started (Outbox.take_back)."""
        ring, at = self._ring, self._own_read % OWN_RING
        # Not over a signal taken and not yet marked started (its byte is taken back
        # from here if we die before we mark it).
        free = OWN_RING - (self._own_read - self._u64[OWN_STARTED])
        if free <= 0:
            return
        views = ([ring[at:at + free]] if at + free <= OWN_RING
                 else [ring[at:], ring[:at + free - OWN_RING]])
        u64 = self._u64
        u64[FILLING] += 1   # odd while what we read is not in own_read yet (direct.py)
        try:
            count = os.readv(self._own, views)
        except BlockingIOError:
            u64[FILLING] += 1
            self._readable[0] = False
            return
        if not count:
            u64[FILLING] += 1
            self._master_gone()
        self._own_read += count
        u64[OWN_READ] = self._own_read
        u64[FILLING] += 1

    def _master_gone(self) -> None:
        log.warning("%s: the master is gone; exiting", self._name())
        raise SystemExit(1)

    def set_user_harakiri(self, seconds: float) -> None:
        self.record.user_harakiri = time.monotonic() + seconds if seconds else 0.0


    def _name(self) -> str:
        return f"{self.role.value} {self.ident}"
