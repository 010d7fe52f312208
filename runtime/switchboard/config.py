"""The deployment config (SPEC section 10): TOML in, a checked Config out.

Each `[switchboard]` setting is declared once, below, as a field with its key, type,
check and doc line; loading, `switchboard check` and the docs all read that one list.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from switchboard import statserver
from switchboard.cluster import settings as cluster_settings
from switchboard.cluster.settings import ClusterConfig
from switchboard.errors import ConfigError
from switchboard.sources import config as source_config
from switchboard.targets import Topology, parse_target

MAX_PROCESSES = 1024          # per role: each slot costs shared memory and a process
MAX_COUNT = 2**30
MAX_SECONDS = 10.0**9


def setting(key: str, default: Any, doc: str, *, minimum: float | None = None,
            maximum: float | None = None) -> Any:
    """Declare a `[switchboard]` key: its type comes from the field's annotation."""
    if maximum is None and isinstance(default, int | float) and not isinstance(default, bool):
        maximum = MAX_SECONDS if isinstance(default, float) else MAX_COUNT
    meta = {"key": key, "doc": doc, "minimum": minimum, "maximum": maximum}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SignalEntry:
    num: int
    target: str
    handler: str
    where: str          # "[[signal]] #2", for error messages


@dataclass(frozen=True)
class MuleProgram:
    mule: int
    program: str        # a python: or lua: reference to a callable taking no argument
    where: str


@dataclass
class Config:
    path: str = ""
    workers: int = setting("workers", 1, "Worker processes.", minimum=1, maximum=MAX_PROCESSES)
    mules: int = setting("mules", 0, "Mule processes.", minimum=0, maximum=MAX_PROCESSES)
    farms: dict[str, list[int]] = setting("farms", {}, "Named groups of mules: "
                                          "{ name = [mule ids] } (farm_NAME, farmN).")
    spooler: str = setting("spooler", "", "Spool directory (relative to the config); "
                           "enables the spooler.")
    spooler_processes: int = setting("spooler-processes", 1,
                                     "Spooler processes sharing the spool directory.",
                                     minimum=1, maximum=64)
    spooler_frequency: float = setting("spooler-frequency", 30.0,
                                       "Seconds between scans of the spool directory "
                                       "(new jobs also wake the spooler at once).",
                                       minimum=0.01)
    cheaper: int = setting("cheaper", 0, "Workers kept running when idle (0 = all).",
                           minimum=0, maximum=MAX_PROCESSES)
    cheaper_wait: float = setting("cheaper-wait", 0.1,
                                  "Seconds an any-worker signal waits before a spawn.",
                                  minimum=0)
    cheaper_idle: float = setting("cheaper-idle", 30.0,
                                  "Seconds idle before a worker is cheaped.", minimum=0)
    harakiri: float = setting("harakiri", 0.0,
                              "Kill a worker whose handler runs longer (0 = off).", minimum=0)
    mule_harakiri: float = setting("mule-harakiri", 0.0, "harakiri for mules.", minimum=0)
    spooler_harakiri: float = setting("spooler-harakiri", 0.0, "harakiri for the spooler.",
                                      minimum=0)
    reload_mercy: float = setting("reload-mercy", 10.0,
                                  "Seconds children get to finish on stop.", minimum=0)
    signal_timeout: float = setting("signal-timeout", 10.0,
                                    "Seconds a raiser waits for a full queue.", minimum=0)
    signal_queue: int = setting("signal-queue", 65536, "Bound of each target queue.",
                                minimum=1)
    python_path: list[str] = setting("python-path", [],
                                     "Folders added to sys.path (relative to the config).")
    imports: list[str] = setting("import", [], "Python modules imported in the master.")
    lua: list[str] = setting("lua", [], "Lua scripts run in the master (relative to the config).")
    lua_engine: str = setting("lua-engine", "lua54", "lupa engine: lua54, lua55 or luajit21.")
    lua_budget: float = setting("lua-budget", 0.0,
                                "CPU seconds a Lua handler may run before it is stopped "
                                "with an error (0 = off).", minimum=0)
    pyrun: str = setting("pyrun", "", "Python script run as __main__ in worker 1 (relative "
                         "to the config); the instance stops when it ends, with its "
                         "exit status.")
    spooler_ordered: bool = setting("spooler-ordered", False,
                                    "Accepted for uWSGI's ini: priority sub-folders always "
                                    "run first, lowest number first.")
    control: str = setting("control", "", "Control socket path (default: derived).")
    pidfile: str = setting("pidfile", "", "File the master writes its pid to while it "
                           "runs (relative to the config); none when empty.")
    stats: str = setting("stats", "", "Stats server address: host:port, a Unix path "
                         "(relative to the config) or @abstract; none when empty.")
    stats_http: bool = setting("stats-http", False, "Speak HTTP/1.0 on the stats address "
                               "(JSON, /metrics, the status page) instead of raw JSON.")
    signals: list[SignalEntry] = field(default_factory=list)
    programs: dict[int, MuleProgram] = field(default_factory=dict)   # by mule id
    sources: list[source_config.SourceEntry] = field(default_factory=list)
    cluster: ClusterConfig | None = None
    options: dict[str, Any] = field(default_factory=dict)   # an ini's options, as read
    ignored: list[str] = field(default_factory=list)        # ... those not implemented

    @property
    def section(self) -> str:
        """Where settings live in the file, for error messages: an ini's [uwsgi]."""
        return "[uwsgi]" if self.options else "[switchboard]"

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    def topology(self) -> Topology:
        return Topology(workers=self.workers, mules=self.mules,
                        spoolers=self.spooler_processes if self.spooler else 0,
                        farms={name: tuple(ids) for name, ids in self.farms.items()},
                        sources=1)

    def relative(self, path: str) -> str:
        """A path from the config, made absolute against the config's folder."""
        return os.path.normpath(os.path.join(self.folder, os.path.expanduser(path)))


SETTINGS = [f for f in dataclasses.fields(Config) if "key" in f.metadata]
_BY_KEY = {f.metadata["key"]: f for f in SETTINGS}
_SECTIONS = {"switchboard", "signal", "mule", "cluster", *source_config.SECTIONS}
_SIGNAL_KEYS = {"num", "target", "handler"}
_FARM_NAME = re.compile(r"[A-Za-z0-9_-]+")


def load(path: str) -> Config:
    """Read and check a config file (TOML, or a uWSGI .ini); ConfigError names the file,
    entry and key."""
    path = os.path.abspath(path)
    if path.endswith(".ini"):
        from switchboard import ini
        return ini.load(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, f"cannot read config: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"invalid TOML: not UTF-8 ({exc.reason})") from None
    except RecursionError:
        raise ConfigError(path, "invalid TOML: nested too deeply") from None
    except ValueError as exc:           # e.g. an integer with thousands of digits
        raise ConfigError(path, f"invalid TOML: {exc}") from None
    return from_dict(data, path)


def from_dict(data: dict[str, Any], path: str) -> Config:
    """Build a Config from parsed TOML (`path` only names the file in errors)."""
    for name in data:
        if name not in _SECTIONS:
            raise ConfigError(path, f"unknown section '{name}' (valid: "
                              f"{', '.join(sorted(_SECTIONS))})")
    section = data.get("switchboard", {})
    if not isinstance(section, dict):
        raise ConfigError(path, "must be a table", "[switchboard]")
    values = {_BY_KEY[k].name: _check_setting(path, k, v) for k, v in _known(path, section)}
    config = Config(path=path, **values)
    _check_processes(config)
    if config.stats:
        try:
            statserver.parse_address(config.stats)
        except ValueError as exc:
            raise ConfigError(path, str(exc), "[switchboard]", "stats") from None
    config.signals = _signal_entries(path, data.get("signal", []), config.topology())
    config.programs = _mule_programs(path, data.get("mule", []), config.mules)
    if "cluster" in data:
        config.cluster = cluster_settings.parse(path, data["cluster"])
    config.sources = source_config.parse(path, data, config.topology(),
                                         clustered=config.cluster is not None)
    _check_duplicates(config)
    return config


def _check_duplicates(config: Config) -> None:
    """Two entries that give a handler for the same number are an error naming both."""
    seen = {entry.num: entry.where for entry in config.signals}
    for entry in config.sources:
        if entry.handler is not None and entry.num is not None:
            if entry.num in seen:
                raise ConfigError(config.path, f"signal {entry.num} is already given by "
                                  f"{seen[entry.num]}", entry.where, "signal")
            seen[entry.num] = entry.where


def _check_processes(config: Config) -> None:
    path = config.path
    if config.cheaper and config.cheaper >= config.workers:
        raise ConfigError(path, f"cheaper = {config.cheaper} must be below workers = "
                          f"{config.workers} (0 turns cheaper mode off)", "[switchboard]",
                          "cheaper")
    for name, ids in config.farms.items():
        if not _FARM_NAME.fullmatch(name):
            raise ConfigError(path, f"farm name '{name}' must be letters, digits, '_' or '-'",
                              "[switchboard]", "farms")
        if not ids:
            raise ConfigError(path, f"farm '{name}' has no mules", "[switchboard]", "farms")
        for mule in ids:
            if not 1 <= mule <= config.mules:
                raise ConfigError(path, f"farm '{name}' names mule {mule}, but mules = "
                                  f"{config.mules}", "[switchboard]", "farms")
        if len(set(ids)) != len(ids):
            raise ConfigError(path, f"farm '{name}' names a mule twice", "[switchboard]",
                              "farms")


def _mule_programs(path: str, raw: Any, mules: int) -> dict[int, MuleProgram]:
    if not isinstance(raw, list):
        raise ConfigError(path, "must be an array of tables ([[mule]])", "[mule]")
    programs: dict[int, MuleProgram] = {}
    for i, item in enumerate(raw, 1):
        where = f"[[mule]] #{i}"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a table", where)
        for key in item:
            if key not in ("id", "program"):
                raise ConfigError(path, "unknown key (valid: id, program)", where, key)
        for key in ("id", "program"):
            if key not in item:
                raise ConfigError(path, "is required", where, key)
        mule = _check_type(path, where, "id", item["id"], int)
        if not 1 <= mule <= mules:
            raise ConfigError(path, f"there is no mule {mule} (mules = {mules}; [[mule]] "
                              "gives an existing mule a program, it adds none)", where, "id")
        if mule in programs:
            raise ConfigError(path, f"mule {mule} already has a program from "
                              f"{programs[mule].where}", where, "id")
        program = _check_type(path, where, "program", item["program"], str)
        programs[mule] = MuleProgram(mule, program, where)
    return programs


def _known(path: str, section: dict[str, Any]) -> list[tuple[str, Any]]:
    for key in section:
        if key not in _BY_KEY:
            raise ConfigError(path, f"unknown key (valid: {', '.join(_BY_KEY)})",
                              "[switchboard]", key)
    return list(section.items())


def _check_setting(path: str, key: str, value: Any) -> Any:
    fld = _BY_KEY[key]
    meta = fld.metadata
    value = _check_type(path, "[switchboard]", key, value, fld.type)
    minimum, maximum = meta["minimum"], meta["maximum"]
    if minimum is not None and value < minimum:
        raise ConfigError(path, f"{value} is below the minimum {minimum}", "[switchboard]", key)
    if maximum is not None and value > maximum:
        raise ConfigError(path, f"{value} is above the maximum {maximum:,}", "[switchboard]",
                          key)
    if key == "lua-engine" and value not in ("lua54", "lua55", "luajit21"):
        raise ConfigError(path, f"unknown engine '{value}' (valid: lua54, lua55, luajit21)",
                          "[switchboard]", key)
    return value


def _check_type(path: str, entry: str, key: str, value: Any, kind: Any) -> Any:
    ok: bool
    if kind in ("bool", bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif kind in ("int", int):
        ok = isinstance(value, int) and not isinstance(value, bool)
        wanted = "an integer"
    elif kind in ("float", float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        wanted = "a number"
        if ok and not -MAX_SECONDS <= value <= MAX_SECONDS:
            raise ConfigError(path, f"{str(value)[:24]} is out of range", entry, key)
        value = float(value) if ok else value
    elif kind in ("str", str):
        ok, wanted = isinstance(value, str), "a string"
    elif kind in ("bool", bool):
        ok, wanted = isinstance(value, bool), "a boolean"
    elif kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        wanted = "a list of strings"
    else:   # dict[str, list[int]]
        ok = isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(i, int) for i in v) for v in value.values())
        wanted = "a table of lists of integers"
    if not ok:
        raise ConfigError(path, f"must be {wanted}, not {_toml_type(value)}", entry, key)
    if any("\0" in v for v in (value if isinstance(value, list) else [value])
           if isinstance(v, str)):
        raise ConfigError(path, "contains a NUL byte", entry, key)
    return value


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _signal_entries(path: str, raw: Any, topology: Topology) -> list[SignalEntry]:
    if not isinstance(raw, list):
        raise ConfigError(path, "must be an array of tables ([[signal]])", "[signal]")
    entries: list[SignalEntry] = []
    seen: dict[int, str] = {}
    for i, item in enumerate(raw, 1):
        where = f"[[signal]] #{i}"
        if not isinstance(item, dict):
            raise ConfigError(path, "must be a table", where)
        for key in item:
            if key not in _SIGNAL_KEYS:
                raise ConfigError(path, f"unknown key (valid: {', '.join(sorted(_SIGNAL_KEYS))})",
                                  where, key)
        for key in ("num", "handler"):
            if key not in item:
                raise ConfigError(path, "is required", where, key)
        num = _check_type(path, where, "num", item["num"], int)
        if not 0 <= num <= 255:
            raise ConfigError(path, f"signal number {num} is out of range [0, 255]", where, "num")
        where = f"[[signal]] #{i} (num = {num})"
        if num in seen:
            raise ConfigError(path, f"signal {num} is already given by {seen[num]}", where, "num")
        seen[num] = where
        target = _check_type(path, where, "target", item.get("target", "worker"), str)
        try:
            parse_target(target, topology)
        except ValueError as exc:
            raise ConfigError(path, str(exc), where, "target") from None
        handler = _check_type(path, where, "handler", item["handler"], str)
        entries.append(SignalEntry(num, target, handler, where))
    return entries
