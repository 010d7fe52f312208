"""The few exception classes Switchboard raises, each built from the offending value."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base class: an error the runtime reports to the user without a traceback."""


class ConfigError(SwitchboardError):
    """A deployment config that cannot be used; names the file, the entry and the key."""

    def __init__(self, path: str, message: str, entry: str | None = None,
                 key: str | None = None) -> None:
        self.path, self.entry, self.key, self.message = path, entry, key, message
        where = [path]
        if entry:
            where.append(entry)
        if key:
            where.append(f"key '{key}'")
        super().__init__(": ".join(where) + ": " + message)


class BootError(SwitchboardError):
    """A child process that cannot start; the master stops instead of respawning it."""


class HandlerError(SwitchboardError):
    """A handler failed in a way its language reports itself (a Lua error and traceback).

    Logged as its message alone: a Python traceback of the host would only be noise.
    """
