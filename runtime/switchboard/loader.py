"""Apply a checked Config in the master: sys.path, `[[signal]]` entries, imports.

`switchboard check` and `switchboard run` both go through here, so they agree.
Order: explicit `[[signal]]` entries first (their handler modules and scripts are loaded
to resolve them), then the `import` list, then the `lua` scripts, so numbers taken by
decorators never collide with the config's explicit ones.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from switchboard import api, hosts
from switchboard import spool_folder as spool_folder_trust
from switchboard.config import Config, SignalEntry
from switchboard.errors import ConfigError
from switchboard.hosts import lua
from switchboard.table import SignalTable


def apply(config: Config, table: SignalTable,
          add_source: Callable[[dict[str, Any]], None], fresh: bool = False) -> None:
    """Run the config's registrations, imports and Lua scripts in this (master) process.

    `fresh` (a reload): modules already imported are imported again (importlib.reload).
    """
    lua.configure(config.lua_engine, config.folder, config.lua_budget)
    for folder in reversed(config.python_path):
        path = config.relative(folder)
        if path not in sys.path:
            sys.path.insert(0, path)
    table.reserved = {entry.num for entry in config.signals} | {
        entry.num for entry in config.sources if entry.num is not None}
    try:
        if fresh:
            _reimport(config)
        for entry in config.signals:
            _register(config, table, entry)
        _imports(config)
        _sources(config, table, add_source)
    finally:
        table.reserved = set()


def _sources(config: Config, table: SignalTable,
             add_source: Callable[[dict[str, Any]], None]) -> None:
    """Start the config's timers, crons, monitors and listeners; take free numbers."""
    for entry in config.sources:
        num = entry.num
        if entry.handler is not None:
            try:
                num = table.free_number() if num is None else num
                api.register_signal(num, entry.target, entry.handler)
            except (ValueError, TypeError) as exc:
                raise ConfigError(config.path, str(exc), entry.where, "handler") from None
        assert num is not None
        add_source(entry.spec(num))


def _reimport(config: Config) -> None:
    """Re-run the modules the config names (imports and handler references)."""
    names = list(config.imports) + [e.handler.split(":")[1] for e in config.signals
                                    if e.handler.startswith("python:")]
    names += [e.handler.split(":")[1] for e in config.sources
              if e.handler and e.handler.startswith("python:")]
    for name in dict.fromkeys(names):
        module = sys.modules.get(name)
        if module is None:
            continue
        try:
            importlib.reload(module)
        except Exception as exc:
            raise ConfigError(config.path, f"re-importing '{name}' failed: {_summary(exc)}",
                              config.section, "import") from None


def _imports(config: Config) -> None:
    for name in config.imports:
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise ConfigError(config.path, f"importing '{name}' failed: {_summary(exc)}",
                              config.section, "import") from None
    for script in config.lua:
        try:
            lua.run_script(script)
        except ValueError as exc:
            raise ConfigError(config.path, str(exc), config.section, "lua") from None


def spool_folder(config: Config) -> str:
    """The spool directory, created 0700 if missing and refused if another user may
    write into it (spool_folder.py); "" without a spooler."""
    if not config.spooler:
        return ""
    folder = config.relative(config.spooler)
    entry = config.section
    try:
        spool_folder_trust.prepare(folder)
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} is not writable")
    except spool_folder_trust.UnsafeSpoolFolder as exc:
        raise ConfigError(config.path, str(exc), entry, "spooler") from None
    except OSError as exc:
        raise ConfigError(config.path, f"cannot use spool directory {folder}: "
                          f"{exc.strerror or exc}", entry, "spooler") from None
    return folder


def mule_programs(config: Config) -> dict[int, Callable[..., Any]]:
    """Resolve each `[[mule]] program` now, so a bad one stops the start."""
    programs = {}
    for mule, entry in config.programs.items():
        try:
            program = hosts.resolve(entry.program)
        except ValueError as exc:
            raise ConfigError(config.path, str(exc), entry.where, "program") from None
        # a program is the mule's whole life: no per-call Lua budget applies to it
        unbudgeted = getattr(program, "unbudgeted", None)
        programs[mule] = unbudgeted() if unbudgeted else program
    return programs


def _register(config: Config, table: SignalTable, entry: SignalEntry) -> None:
    try:
        hosts.resolve(entry.handler)          # imports its module: may register numbers
        earlier = table.get(entry.num)
        api.register_signal(entry.num, entry.target, entry.handler)
        now = table.get(entry.num)
        # a reload registers the same entries again: only a real change is news
        if earlier is not None and now is not None and \
                (earlier.ref, earlier.target) != (now.ref, now.target):
            log.warning("signal %d: %s replaces %s, registered while loading the config",
                        entry.num, entry.where, earlier.ref)
    except (ValueError, TypeError) as exc:
        raise ConfigError(config.path, str(exc), entry.where, "handler") from None


log = logging.getLogger("switchboard.loader")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _summary(exc: BaseException) -> str:
    """The exception and where in user code it was raised, without the whole traceback."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} (at {exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames
            if "importlib" not in f.filename and not f.filename.startswith(_PACKAGE)]
    where = f" (at {user[-1].filename}:{user[-1].lineno})" if user else ""
    return traceback.format_exception_only(exc)[-1].strip() + where
