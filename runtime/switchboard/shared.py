"""Memory shared by the master and every child: the signal table and one record per process.

It is one memfd, mapped before the first fork, so every child sees the same bytes.
A POSIX record lock on the same fd is the cross-process lock: the kernel releases it
when its holder dies, so a child killed mid-registration cannot wedge the table.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from switchboard.latency import Latency

SIGNALS = 256
REF_MAX = 496
USER_LOCKS = 64
MAX_NESTED = 16         # handlers in progress one process tracks (nested by signal_wait)
OWN_RING = 64           # signals a child reads from its own channel in one system call
CHANNEL_LOCKS = 1 + USER_LOCKS   # lock byte of channel 0; the table's and users' come first

# Process status, as the master and the stats read it.
DOWN, STARTING, IDLE, BUSY, WAITING, CHEAP = range(6)
STATUS_NAMES = ("down", "starting", "idle", "busy", "waiting", "cheap")


class EntryRecord(ctypes.Structure):
    _fields_ = [
        ("gen", ctypes.c_uint64),          # bumped on every change
        ("kind", ctypes.c_uint8),          # 0 empty, else a handler kind (table.py)
        ("target_kind", ctypes.c_uint8),
        ("target_index", ctypes.c_uint16),
        ("owner", ctypes.c_uint16),        # slot that registered it
        ("ref_len", ctypes.c_uint16),
        ("ref", ctypes.c_char * REF_MAX),
    ]


class TableRecord(ctypes.Structure):
    _fields_ = [("gen", ctypes.c_uint64), ("entries", EntryRecord * SIGNALS),
                # uwsgi.set_spooler_frequency(): seconds between scans, 0 = the config's
                ("spooler_frequency", ctypes.c_double)]


class ProcRecord(ctypes.Structure):
    """One per slot; written by the child that owns the slot, read by the master."""

    _fields_ = [
        ("pid", ctypes.c_int32),
        ("status", ctypes.c_uint8),
        ("signum", ctypes.c_int16),        # signal whose handler runs now, -1 if none
        ("depth", ctypes.c_uint8),         # handlers in progress (nested by signal_wait)
        # A read from a group's channel lands here, and the depth it will run at: if the
        # child dies before it marks the signal, the master can still tell (windows.py)
        ("read_byte", ctypes.c_uint8),
        ("read_depth", ctypes.c_uint8),
        # 1 while it waits in epoll for its channels: a group's write wakes one waiting
        # member only (EPOLLEXCLUSIVE), so the master splits a batch for the waiting ones
        ("polling", ctypes.c_uint8),
        ("running", ctypes.c_int16 * MAX_NESTED),  # their signals, outermost first
        # handled + failed of each running signal's number when it started: if a child
        # dies with that sum moved, its innermost run had finished (and was counted)
        ("marks", ctypes.c_uint64 * MAX_NESTED),
        # position + 1 in the own channel's stream of each running level's signal, 0 if
        # it came from elsewhere: started, so never taken back (own_started may lag)
        ("ring_from", ctypes.c_uint64 * MAX_NESTED),
        ("started", ctypes.c_double),      # CLOCK_MONOTONIC when that handler started
        ("last_received", ctypes.c_int16),
        ("last_active", ctypes.c_double),  # CLOCK_MONOTONIC when it last finished work
        ("user_harakiri", ctypes.c_double),  # uwsgi.set_user_harakiri(): kill after this
        ("jobs_done", ctypes.c_uint64),    # spool jobs: removed after SPOOL_OK
        ("jobs_failed", ctypes.c_uint64),  # ... raised (kept for retry)
        ("jobs_retried", ctypes.c_uint64),  # ... returned SPOOL_RETRY or no int (kept)
        ("jobs_invalid", ctypes.c_uint64),  # ... not a spool file: moved to invalid/
        ("busy", ctypes.c_double),         # seconds spent in handlers (the stats' running_time)
        # Its own channel, read in batches into the ring: the byte at stream position P
        # sits at own_ring[P % OWN_RING]; positions below own_started have been started.
        # The master puts back what was read and not started when the child dies.
        ("own_started", ctypes.c_uint64),
        ("own_ring", ctypes.c_uint8 * OWN_RING),
        # ... and the stream position read up to, published after each read with
        # `filling` odd around it: with the channel's count in the kernel it tells the
        # master how much was written, when a raiser died in the middle (direct.py)
        ("own_read", ctypes.c_uint64),
        ("filling", ctypes.c_uint64),
        # Written by the master: bytes of this child's channel it has acted on, so the
        # child knows it has nothing left at the master (its order, direct.py)
        ("processed", ctypes.c_uint64),
        # While it writes straight to a channel (direct.py): (index of the channel in the
        # signal's route << 16) | (channel + 1), the channel's count before the write,
        # the signal, and its counts before this raise, so that if it dies there the
        # master can finish its accounting
        ("direct_pending", ctypes.c_uint64),
        ("direct_end", ctypes.c_uint64),
        ("direct_num", ctypes.c_uint64),
        ("direct_base_raised", ctypes.c_uint64),
        ("direct_base_routed", ctypes.c_uint64),
        # signals it raised straight into their channels, and the bytes that wrote (a
        # broadcast writes one per member)
        ("direct_raised", ctypes.c_uint64 * SIGNALS),
        ("direct_routed", ctypes.c_uint64 * SIGNALS),
        ("handled", ctypes.c_uint64 * SIGNALS),
        ("failed", ctypes.c_uint64 * SIGNALS),
        ("no_handler", ctypes.c_uint64 * SIGNALS),
    ]


class RecordView:
    """One ProcRecord as typed arrays, for the per-signal path: an item of a memoryview
    costs about half a ctypes field.  Index with the constants below (each field's offset
    over its item size; every field is aligned to its size)."""

    def __init__(self, shared: Shared, slot: int) -> None:
        start = ctypes.addressof(shared.procs[slot]) - ctypes.addressof(shared.table)
        raw = memoryview(shared.map)[start:start + ctypes.sizeof(ProcRecord)]
        self.u8, self.i16 = raw.cast("B"), raw.cast("h")
        self.u64, self.f64 = raw.cast("Q"), raw.cast("d")


STATUS, DEPTH, READ_BYTE, READ_DEPTH, POLLING = (                               # u8
    getattr(ProcRecord, f).offset for f in ("status", "depth", "read_byte", "read_depth",
                                            "polling"))
SIGNUM, RUNNING, LAST_RECEIVED = (getattr(ProcRecord, f).offset // 2            # i16
                                  for f in ("signum", "running", "last_received"))
(MARKS, RING_FROM, OWN_STARTED, HANDLED, FAILED, OWN_READ, FILLING, PROCESSED,   # u64
 DIRECT_RAISED, DIRECT_ROUTED, DIRECT_PENDING, DIRECT_END, DIRECT_NUM, DIRECT_BASE_RAISED,
 DIRECT_BASE_ROUTED) = (
    getattr(ProcRecord, f).offset // 8
    for f in ("marks", "ring_from", "own_started", "handled", "failed", "own_read",
              "filling", "processed", "direct_raised", "direct_routed", "direct_pending",
              "direct_end", "direct_num", "direct_base_raised", "direct_base_routed"))
STARTED, LAST_ACTIVE, USER_HARAKIRI, BUSY_TIME = (                              # f64
    getattr(ProcRecord, f).offset // 8 for f in ("started", "last_active", "user_harakiri",
                                                 "busy"))


class Shared:
    """The shared mapping: `table` and `procs[slot]`, plus the locks that guard them."""

    def __init__(self, slots: int, groups: int = 1) -> None:
        self.fd = os.memfd_create("switchboard", os.MFD_CLOEXEC)
        channels = slots + groups
        flags = ctypes.sizeof(TableRecord) + slots * ctypes.sizeof(ProcRecord) + channels
        taken_at = -(-(flags + 3 * channels) // 8) * 8   # after the sent, closed, writing
        written_at = taken_at + 8 * groups * slots
        settled_at = written_at + 8 * channels
        size = settled_at + 8 * groups
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)
        self.table = TableRecord.from_buffer(self.map)
        base = ctypes.sizeof(TableRecord)
        step = ctypes.sizeof(ProcRecord)
        self.procs = [ProcRecord.from_buffer(self.map, base + i * step) for i in range(slots)]
        # One flag per channel (private ones by slot, then groups): the master sets it
        # when it refuses a signal because the channel is full; the child that next
        # reads from the channel clears it and wakes the master (see channels.py).
        self.pressure = (ctypes.c_uint8 * channels).from_buffer(self.map, base + slots * step)
        # One flag per private channel: the master sets it after writing to the channel,
        # so a child busy on a shared channel knows, without a system call, that its own
        # channel has something (its own signals come first).
        self.sent = memoryview(self.map)[base + slots * step + channels:][:slots]
        # One flag per channel: set while the master wants every raiser to go through it
        # for that channel (it holds signals for it, or the channel's child is cheaped,
        # put back, or being counted); raisers read it under the channel's lock.
        self.closed = memoryview(self.map)[base + slots * step + 2 * channels:][:channels]
        # One flag per channel, set by the holder of its lock while it writes: found set
        # by the next holder, it says a raiser died writing, and the channel's count is
        # in doubt until the master recounts it (recount.py).
        self.writing = memoryview(self.map)[base + slots * step + 3 * channels:][:channels]
        # Bytes ever written to each channel, by the master or a raiser (direct.py).
        self.written = memoryview(self.map)[written_at:settled_at].cast("Q")
        # Per group: reads of dead members the master put back (windows.py), which their
        # words in `taken` do not count: with them, what a group's channel holds unread
        # is `written` less what was taken, no system call asked (direct.py).
        self.settled = memoryview(self.map)[settled_at:size].cast("Q")
        # taken[group * slots + slot]: twice the signals that member took from the group's
        # channel, plus one while it is between a read and marking what it read: with
        # the channel's own count, the master tells whether a child that died there had
        # read a signal (windows.py).
        self.taken = memoryview(self.map)[taken_at:size].cast("Q")
        self.slots = slots
        self.latency = Latency(slots, channels, SIGNALS)    # raise-to-start (latency.py)
        for rec in self.procs:
            rec.signum = rec.last_received = -1
        self._thread_lock = threading.Lock()

    def after_fork(self) -> None:
        """A child inherits the thread lock in whatever state it was: make a fresh one."""
        self._thread_lock = threading.Lock()

    @contextmanager
    def locked(self, n: int = 0) -> Iterator[None]:
        """Hold lock `n` (0 guards the table; 1.. are users' `uwsgi.lock(n)`)."""
        self.acquire(n)
        try:
            yield
        finally:
            self.release(n)

    def acquire(self, n: int = 0) -> None:
        if n == 0:
            self._thread_lock.acquire()
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, n)

    def release(self, n: int = 0) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, n)
        if n == 0:
            self._thread_lock.release()

    def lock_channel(self, channel: int, wait: bool = True) -> bool:
        """Take a channel's writer lock (direct.py); False if `wait` is off and another
        process holds it.  Held for microseconds, never across a blocking call."""
        flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
        try:
            fcntl.lockf(self.fd, flags, 1, CHANNEL_LOCKS + channel)
        except OSError:
            return False
        return True

    def unlock_channel(self, channel: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, CHANNEL_LOCKS + channel)

    def holder(self, n: int) -> int:
        """The pid holding lock `n` (0 if free or held by the caller), as the stats show."""
        query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, n, 1, 0)
        kind, _, _, _, pid = _FLOCK.unpack(fcntl.fcntl(self.fd, fcntl.F_GETLK, query))
        return 0 if kind == fcntl.F_UNLCK else pid

    def holders(self) -> list[dict[str, int]]:
        """uWSGI's `locks` list: each lock's name and the pid that holds it (0: free)."""
        return [{"signal table": self.holder(0)},
                *({f"user {n}": self.holder(n + 1)} for n in range(USER_LOCKS))]


_FLOCK = struct.Struct("hhqqi4x")      # struct flock on Linux (64-bit off_t)
