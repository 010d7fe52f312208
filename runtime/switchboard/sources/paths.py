"""Paths for file monitors, checked without importing watchdog (every process may call it)."""

from __future__ import annotations

import os


def check_path(path: object) -> str:
    """An absolute path to monitor; ValueError/TypeError naming it."""
    if not isinstance(path, str):
        raise TypeError(f"path must be a string, not {type(path).__name__}")
    if not path:
        raise ValueError("path is empty")
    if "\0" in path:
        raise ValueError(f"path {path!r} contains a NUL byte")
    full = os.path.abspath(os.path.expanduser(path))
    if os.path.exists(full) and not os.access(full, os.R_OK):
        raise ValueError(f"cannot monitor {full}: permission denied")
    return full
