"""Log setup: every process logs to the same stderr, each line naming its process."""

from __future__ import annotations

import logging
import os
import sys

_label = "master"


class _ProcessFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.proc = f"{_label} {os.getpid()}"
        return True


def setup(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "%(asctime)s switchboard[%(proc)s] %(levelname)s %(message)s"))
    handler.addFilter(_ProcessFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def set_label(label: str) -> None:
    """Name this process in log lines (called right after the fork)."""
    global _label
    _label = label
