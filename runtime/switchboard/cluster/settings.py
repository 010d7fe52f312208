"""The `[cluster]` table of the deployment config, checked."""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass
from typing import Any

from switchboard.errors import ConfigError
from switchboard.sources.pgnotify import check_dsn

KEYS = ("dsn", "name", "node", "heartbeat", "ttl", "schema")
NAME = re.compile(r"[A-Za-z0-9_.-]{1,60}")
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,50}")


@dataclass(frozen=True)
class ClusterConfig:
    dsn: str
    name: str
    node: str
    heartbeat: float = 5.0
    ttl: float = 3600.0
    schema: str = "switchboard"

    def channel(self, node: str) -> str:
        """The NOTIFY channel that wakes `node` ("*": every node of this cluster)."""
        digest = hashlib.sha1(f"{self.name}\0{node}".encode()).hexdigest()[:24]
        return f"switchboard_{digest}"


def parse(path: str, raw: Any) -> ClusterConfig:
    """A ClusterConfig from the `[cluster]` table; ConfigError names the key."""
    where = "[cluster]"
    if not isinstance(raw, dict):
        raise ConfigError(path, "must be a table", where)
    for key in raw:
        if key not in KEYS:
            raise ConfigError(path, f"unknown key (valid: {', '.join(KEYS)})", where, key)
    for key in ("dsn", "name"):
        if key not in raw:
            raise ConfigError(path, "is required", where, key)
    try:
        dsn = check_dsn(raw["dsn"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, str(exc), where, "dsn") from None
    name = _name(path, "name", raw["name"])
    node = _name(path, "node", raw.get("node", socket.gethostname().split(".")[0]))
    heartbeat = _seconds(path, "heartbeat", raw.get("heartbeat", 5.0), 0.1, 3600.0)
    ttl = _seconds(path, "ttl", raw.get("ttl", 3600.0), 1.0, 10.0**8)
    schema = raw.get("schema", "switchboard")
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        raise ConfigError(path, f"{schema!r} is not a schema name (lower-case letters, "
                          "digits and '_', starting with a letter or '_')", where, "schema")
    return ClusterConfig(dsn, name, node, heartbeat, ttl, schema)


def _name(path: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ConfigError(path, f"{value!r} is not a valid {key} (1-60 letters, digits, "
                          "'_', '.' or '-')", "[cluster]", key)
    return value


def _seconds(path: str, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(path, f"must be a number of seconds, not {type(value).__name__}",
                          "[cluster]", key)
    if not low <= value <= high:
        raise ConfigError(path, f"{value} is out of range [{low:g}, {high:g}]", "[cluster]",
                          key)
    return float(value)
