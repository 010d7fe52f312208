"""The typed view of a process record (the per-signal path) names the ctypes fields."""

from __future__ import annotations

from switchboard import shared as sh


def test_each_view_index_is_its_field(shared):
    slot = 2
    rec, view = shared.procs[slot], sh.RecordView(shared, slot)
    view.u8[sh.STATUS], view.u8[sh.DEPTH] = sh.BUSY, 3
    view.i16[sh.SIGNUM], view.i16[sh.RUNNING + 2], view.i16[sh.LAST_RECEIVED] = 201, 77, -1
    view.u64[sh.MARKS + 1], view.u64[sh.OWN_STARTED] = 2**40, 12345
    view.u64[sh.HANDLED + 255], view.u64[sh.FAILED + 9] = 5, 6
    view.f64[sh.STARTED], view.f64[sh.LAST_ACTIVE], view.f64[sh.USER_HARAKIRI] = 1.5, 2.5, 3.5

    assert (rec.status, rec.depth, rec.signum, rec.running[2], rec.last_received) == (
        sh.BUSY, 3, 201, 77, -1)
    assert (rec.marks[1], rec.own_started, rec.handled[255], rec.failed[9]) == (
        2**40, 12345, 5, 6)
    assert (rec.started, rec.last_active, rec.user_harakiri) == (1.5, 2.5, 3.5)
    other = shared.procs[slot + 1]
    assert (other.status, other.signum, other.handled[255]) == (0, -1, 0), "only its own"
