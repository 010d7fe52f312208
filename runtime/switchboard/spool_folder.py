"""The spool folder's trust: who can put a job there can run code in the spooler.

Jobs may carry pickles (`@spool(pass_arguments=True)`, as uWSGI), so a file another
local user drops into the folder would run as us.  The folder, and every parent the
instance creates for it, is made 0700; an existing folder that another user owns, or
that its group or others may write into, is refused before anything is forked.
"""

from __future__ import annotations

import os
import stat

from switchboard.errors import SwitchboardError


class UnsafeSpoolFolder(SwitchboardError):
    """The spool folder (or a parent the instance made) is writable by another user."""


def prepare(folder: str) -> None:
    """Create `folder` (and missing parents) 0700; UnsafeSpoolFolder if others can write."""
    for path in [*_make(folder), folder]:
        problem = _problem(path)
        if problem:
            raise UnsafeSpoolFolder(
                f"spool folder {path} {problem}: another user could put a job there, and a "
                "job can run code in the spooler. Make it yours with mode 0700 (chmod 700), "
                "or point `spooler` elsewhere")


def _make(folder: str) -> list[str]:
    """Create the missing folders down to `folder`, each 0700 whatever the umask; the
    parents it created (outermost first)."""
    missing = []
    path = os.path.abspath(folder)
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue                    # made meanwhile by someone else: checked below
        os.chmod(path, 0o700)
        created.append(path)
    return [p for p in created if p != os.path.abspath(folder)]


def _problem(path: str) -> str | None:
    """What lets another user write into `path`, or None."""
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"is owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"has mode {mode:04o}: other users may write into it"
    return None
