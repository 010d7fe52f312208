"""`[[timer]]`, `[[rb_timer]]`, `[[cron]]`, `[[file_monitor]]` and `[[pgnotify]]` entries.

Each raises a signal: the one its `signal` key names, or, when it gives a `handler`
(and `target`) instead, the lowest free number, taken after every explicit number is
placed.  Errors name the file, the entry and the key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from switchboard.errors import ConfigError
from switchboard.sources import cron, paths, pgnotify
from switchboard.sources.timer import check_iterations, check_period
from switchboard.targets import Topology, parse_target

SECTIONS = ("timer", "rb_timer", "cron", "file_monitor", "pgnotify")
_COMMON = ("signal", "handler", "target")
_KEYS = {
    "timer": ("seconds", "iterations", "unique"),
    "rb_timer": ("seconds", "iterations", "unique"),
    "cron": ("expr", "minute", "hour", "day", "month", "weekday", "unique"),
    "file_monitor": ("path", "iterations", "recursive"),
    "pgnotify": ("dsn", "channel"),
}


@dataclass
class SourceEntry:
    kind: str
    where: str
    num: int | None           # None: take the lowest free number for `handler`
    handler: str | None
    target: str
    params: dict[str, Any] = field(default_factory=dict)

    def spec(self, num: int) -> dict[str, Any]:
        """The request the master's registry applies (see api._add_source)."""
        return {"kind": self.kind, "num": num, **self.params}


def parse(path: str, data: dict[str, Any], topology: Topology,
          clustered: bool = False) -> list[SourceEntry]:
    """Every source entry of a parsed config, checked (`unique` needs `clustered`)."""
    entries = []
    for kind in SECTIONS:
        raw = data.get(kind, [])
        if not isinstance(raw, list):
            raise ConfigError(path, f"must be an array of tables ([[{kind}]])", f"[{kind}]")
        for i, item in enumerate(raw, 1):
            entry = _entry(path, kind, f"[[{kind}]] #{i}", item, topology)
            _unique(path, entry, item, clustered)
            entries.append(entry)
    return entries


def _unique(path: str, entry: SourceEntry, item: dict[str, Any], clustered: bool) -> None:
    """`unique = true`: one node of the cluster raises each fire (SPEC section 13)."""
    unique = item.get("unique", False)
    if not isinstance(unique, bool):
        raise ConfigError(path, f"must be a boolean, not {type(unique).__name__}",
                          entry.where, "unique")
    if not unique:
        return
    if not clustered:
        raise ConfigError(path, "needs a [cluster] section (the claim of each fire is made "
                          "in its PostgreSQL)", entry.where, "unique")
    if entry.params.get("iterations"):
        raise ConfigError(path, "a unique timer runs forever (iterations would be counted "
                          "per node)", entry.where, "iterations")
    entry.params["unique"] = True


def _entry(path: str, kind: str, where: str, item: Any, topology: Topology) -> SourceEntry:
    if not isinstance(item, dict):
        raise ConfigError(path, "must be a table", where)
    valid = _COMMON + _KEYS[kind]
    for key in item:
        if key not in valid:
            raise ConfigError(path, f"unknown key (valid: {', '.join(valid)})", where, key)

    def check(key: str, checker: Callable[[Any], Any]) -> Any:
        try:
            return checker(item[key])
        except (TypeError, ValueError) as exc:
            raise ConfigError(path, str(exc), where, key) from None

    num, handler, target = _number(path, where, item, topology)
    params = _PARAMS[kind](path, where, item, check)
    return SourceEntry(kind, where, num, handler, target, params)


def _number(path: str, where: str, item: dict[str, Any], topology: Topology
            ) -> tuple[int | None, str | None, str]:
    if "signal" not in item and "handler" not in item:
        raise ConfigError(path, "is required (or give `handler` to take a free number)", where,
                          "signal")
    num = item.get("signal")
    if num is not None and (isinstance(num, bool) or not isinstance(num, int)
                            or not 0 <= num <= 255):
        raise ConfigError(path, f"signal number {num!r} is not an integer in [0, 255]", where,
                          "signal")
    handler = item.get("handler")
    if handler is not None and not isinstance(handler, str):
        raise ConfigError(path, f"must be a string, not {type(handler).__name__}", where,
                          "handler")
    target = item.get("target", "worker")
    if "target" in item and handler is None:
        raise ConfigError(path, "only goes with `handler`", where, "target")
    try:
        parse_target(target, topology)
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, str(exc), where, "target") from None
    return num, handler, target


def _timer(path: str, where: str, item: dict[str, Any], check: Any) -> dict[str, Any]:
    if "seconds" not in item:
        raise ConfigError(path, "is required", where, "seconds")
    return {"seconds": check("seconds", check_period),
            "iterations": check("iterations", check_iterations) if "iterations" in item else 0}


def _cron(path: str, where: str, item: dict[str, Any], check: Any) -> dict[str, Any]:
    fields = [k for k in ("minute", "hour", "day", "month", "weekday") if k in item]
    if "expr" in item:
        if fields:
            raise ConfigError(path, "give either `expr` or the five fields, not both", where,
                              fields[0])
        spec = check("expr", cron.from_expr)
    else:
        values = [item.get(k, -1) for k in ("minute", "hour", "day", "month", "weekday")]
        try:
            spec = cron.from_ints(*values)
        except (TypeError, ValueError) as exc:
            key = str(exc).split()[1] if str(exc).startswith("cron ") else "minute"
            raise ConfigError(path, str(exc), where, key) from None
    return {"cron": dataclasses.asdict(spec)}


def _file_monitor(path: str, where: str, item: dict[str, Any], check: Any) -> dict[str, Any]:
    if "path" not in item:
        raise ConfigError(path, "is required", where, "path")
    folder = os.path.dirname(path)
    target = check("path", lambda p: paths.check_path(
        os.path.join(folder, os.path.expanduser(p)) if isinstance(p, str) and p else p))
    recursive = item.get("recursive", False)
    if not isinstance(recursive, bool):
        raise ConfigError(path, f"must be a boolean, not {type(recursive).__name__}", where,
                          "recursive")
    return {"path": target, "recursive": recursive,
            "iterations": check("iterations", check_iterations) if "iterations" in item else 0}


def _pgnotify(path: str, where: str, item: dict[str, Any], check: Any) -> dict[str, Any]:
    for key in ("dsn", "channel"):
        if key not in item:
            raise ConfigError(path, "is required", where, key)
    channel = item["channel"]
    if not isinstance(channel, str) or not channel or "\0" in channel:
        raise ConfigError(path, "must be a non-empty string without NUL", where, "channel")
    return {"dsn": check("dsn", pgnotify.check_dsn), "channel": channel}


_PARAMS = {"timer": _timer, "rb_timer": _timer, "cron": _cron, "file_monitor": _file_monitor,
           "pgnotify": _pgnotify}
