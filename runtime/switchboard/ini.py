"""uWSGI's ini format, for the options Switchboard shares with uWSGI (SPEC section 10).

`switchboard run app.ini` reads the file's `[uwsgi]` section, expands uWSGI's magic
(`%d` the file's folder, `%p` its path, `%n` its name, `%%`, `$(ENV)`), and translates
the options into the same TOML-shaped data the TOML loader checks, so every check and
error path is shared; errors name the ini file and the option.  Options Switchboard
does not implement (HTTP sockets, routing, ...) are ignored, named in one warning.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from typing import Any

from switchboard import config as config_mod
from switchboard.errors import ConfigError

log = logging.getLogger("switchboard.config")

SECTION = "[uwsgi]"
_ENV = re.compile(r"\$\(([^)]*)\)")
_TRUE = ("1", "true", "yes", "on", "")
_FALSE = ("0", "false", "no", "off")


def load(path: str) -> config_mod.Config:
    """Read and check an ini file; ConfigError names the file and option."""
    path = os.path.abspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, f"cannot read config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 ({exc.reason})") from None
    options = parse(path, text)
    settings, programs, ignored = translate(path, options)
    try:
        config = config_mod.from_dict({"switchboard": settings, "mule": programs}, path)
    except ConfigError as exc:
        if exc.entry == "[switchboard]" and exc.key:
            raise ConfigError(path, exc.message, SECTION, _OPTION_OF.get(exc.key, exc.key)) \
                from None
        raise
    config.options = {k: v for k, v in options.items()}
    config.ignored = ignored
    if ignored:
        log.warning("%s: options Switchboard does not implement, ignored: %s", path,
                    ", ".join(ignored))
    return config


def parse(path: str, text: str) -> dict[str, str | list[str]]:
    """The `[uwsgi]` section's options, magic expanded; a repeated option is a list."""
    options: dict[str, str | list[str]] = {}
    section, seen = None, False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            seen = seen or section == "uwsgi"
            continue
        if section != "uwsgi":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(path, f"line {lineno}: expected 'option = value', not {line!r}",
                              SECTION)
        value = _expand(path, key, value.strip())
        earlier = options.get(key)
        if earlier is None:
            options[key] = value
        else:
            options[key] = (earlier if isinstance(earlier, list) else [earlier]) + [value]
    if not seen:
        raise ConfigError(path, "no [uwsgi] section")
    return options


def _expand(path: str, key: str, value: str) -> str:
    def env(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(path, f"$({name}): the environment variable is not set",
                              SECTION, key)
        return os.environ[name]
    folder = os.path.dirname(path) + "/"
    name = os.path.splitext(os.path.basename(path))[0]
    magic = {"d": folder, "p": path, "n": name, "%": "%"}
    value = re.sub(r"%([dpn%])", lambda m: magic[m.group(1)], value)
    return _ENV.sub(env, value)


# -- translation: ini option -> [switchboard] key --------------------------------------

def _int(path: str, key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(path, f"must be an integer, not {value!r}", SECTION, key) from None


def _number(path: str, key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(path, f"must be a number, not {value!r}", SECTION, key) from None


def _flag(path: str, key: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(path, f"must be true or false, not {value!r}", SECTION, key)


_SIMPLE: dict[str, tuple[str, Callable[[str, str, str], Any]]] = {
    "processes": ("workers", _int), "workers": ("workers", _int), "p": ("workers", _int),
    "spooler-processes": ("spooler-processes", _int),
    "spooler-frequency": ("spooler-frequency", _number),
    "spooler-ordered": ("spooler-ordered", _flag),
    "harakiri": ("harakiri", _number), "cheaper": ("cheaper", _int),
    "spooler": ("spooler", lambda p, k, v: v), "pyrun": ("pyrun", lambda p, k, v: v),
}
_LISTS = {"pythonpath": "python-path", "python-path": "python-path", "pp": "python-path",
          "lua": "lua"}
_IMPORTS = ("import", "pyimport", "shared-py-import", "python-import", "shared-import",
            "spooler-import", "spooler-python-import")
_OPTION_OF = {"workers": "processes", "python-path": "pythonpath", "import": "import",
              "farms": "farm", "mules": "mules"}


def translate(path: str, options: dict[str, str | list[str]]
              ) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The [switchboard] settings, [[mule]] programs and ignored options of an ini."""
    settings: dict[str, Any] = {}
    programs: list[dict[str, Any]] = []
    ignored: list[str] = []
    mules = 0
    for key, raw in options.items():
        values = raw if isinstance(raw, list) else [raw]
        if key in _SIMPLE:
            name, convert = _SIMPLE[key]
            if key == "spooler" and len(values) > 1:
                raise ConfigError(path, "only one spool folder is supported", SECTION, key)
            settings[name] = convert(path, key, values[-1])
        elif key in _LISTS:
            settings.setdefault(_LISTS[key], []).extend(values)
        elif key in _IMPORTS:
            for value in values:
                _add_import(settings, value)
        elif key == "mules":
            mules += sum(_int(path, key, v) for v in values)
        elif key == "mule":
            for value in values:
                mules += 1
                if value.lower() not in _TRUE:
                    programs.append({"id": mules, "program": _mule_program(path, value)})
        elif key == "farm":
            settings["farms"] = _farms(path, values)
        elif key == "master":
            _flag(path, key, values[-1])
        else:
            ignored.append(key)
    if mules:
        settings["mules"] = mules
    return settings, programs, ignored


def _add_import(settings: dict[str, Any], value: str) -> None:
    """A module name, or a .py file (its folder joins python-path), as uWSGI takes both."""
    if value.endswith(".py") or "/" in value:
        folder, name = os.path.split(value)
        settings.setdefault("python-path", []).append(folder or ".")
        value = name.removesuffix(".py")
    settings.setdefault("import", []).append(value)


def _mule_program(path: str, value: str) -> str:
    if ":" in value and not value.startswith(("python:", "lua:")) and "/" not in value:
        return "python:" + value
    if value.startswith(("python:", "lua:")):
        return value
    raise ConfigError(path, f"mule = {value}: a mule program must be module:function "
                      "(mule scripts are not supported)", SECTION, "mule")


def _farms(path: str, values: list[str]) -> dict[str, list[int]]:
    farms: dict[str, list[int]] = {}
    for value in values:
        name, sep, ids = value.partition(":")
        if not sep:
            raise ConfigError(path, f"farm = {value}: expected NAME:MULE,MULE", SECTION, "farm")
        farms[name] = [_int(path, "farm", i) for i in ids.split(",") if i.strip()]
    return farms


def uwsgi_opt(config: config_mod.Config) -> dict[str, Any]:
    """What `uwsgi.opt` shows: the ini's options, or a TOML config's as uWSGI names them."""
    if config.options:
        return _as_opt(config.options)
    c = config
    values: dict[str, Any] = {"master": True, "processes": c.workers}
    if c.mules:
        values["mules"] = c.mules
    if c.farms:
        values["farm"] = [f"{n}:{','.join(map(str, ids))}" for n, ids in c.farms.items()]
    if c.spooler:
        values.update({"spooler": c.relative(c.spooler),
                       "spooler-processes": c.spooler_processes,
                       "spooler-frequency": c.spooler_frequency})
    for key, value in (("harakiri", c.harakiri), ("cheaper", c.cheaper)):
        if value:
            values[key] = value
    for key, items in (("import", c.imports), ("pythonpath", c.python_path), ("lua", c.lua)):
        if items:
            values[key] = items if len(items) > 1 else items[0]
    if c.pyrun:
        values["pyrun"] = c.relative(c.pyrun)
    return _as_opt(values)


def _as_opt(values: dict[str, Any]) -> dict[str, Any]:
    def one(value: Any) -> Any:
        if value is True:
            return True
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value).encode()
    return {k: [one(v) for v in value] if isinstance(value, list) else one(value)
            for k, value in values.items()}
