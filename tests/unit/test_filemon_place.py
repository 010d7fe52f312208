"""A monitored path that does not exist yet, created in one go while the monitor moves its
watch closer: the change is still seen (real watchdog, real inotify).

The race the runtime must survive: the monitor sees `x` appear under the folder it
watches, and before its new watch on `x/y/z` is in place, `f.txt` is already written
there, so no event for it will ever come.  The test makes that order certain by writing
the file from inside the call that places the watch.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from switchboard.sources.filemon import FileMonitors, Monitor


def _fired(monitors: FileMonitors, woken: threading.Event, timeout: float) -> list[int]:
    """Run the main thread's side until a monitor fires or `timeout` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        woken.wait(0.01)
        woken.clear()
        fired = monitors.due()
        if fired:
            return [m.num for m in fired]
    return []


def test_a_file_written_before_the_closer_watch_is_in_place_is_seen(tmp_path: Path) -> None:
    woken = threading.Event()
    monitors = FileMonitors(woken.set, time.monotonic)
    try:
        path = tmp_path / "x" / "y" / "z" / "f.txt"
        monitors.add(Monitor(1, 16, str(path)))
        assert monitors.monitors[1].watching == str(tmp_path)
        schedule = monitors.observer.schedule

        def late_schedule(handler, target, recursive=False):   # type: ignore[no-untyped-def]
            if target == str(path.parent):
                path.write_text("here\n")       # before the watch exists: no event for it
            return schedule(handler, target, recursive=recursive)

        monitors.observer.schedule = late_schedule  # type: ignore[method-assign]
        os.makedirs(path.parent)

        assert _fired(monitors, woken, 5.0) == [16]
        assert monitors.monitors[1].watching == str(path)
    finally:
        monitors.stop()
