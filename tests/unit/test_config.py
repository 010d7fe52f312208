"""The deployment config (SPEC sections 10 and 14): every key checked, errors that point.

Every error must name the file, the entry and the key (SPEC section 10).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from switchboard import config, statserver
from switchboard.config import SETTINGS, Config, from_dict, load
from switchboard.errors import ConfigError

PATH = "/srv/app/switchboard.toml"
BY_KEY = {f.metadata["key"]: f for f in SETTINGS}


def sb(**settings_: object) -> dict:
    """A parsed config with only a [switchboard] table (keys with dashes via **{...})."""
    return {"switchboard": dict(settings_)}


def error(data: dict, path: str = PATH) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        from_dict(data, path)
    return err.value


def default_of(fld: dataclasses.Field) -> object:
    if fld.default_factory is not dataclasses.MISSING:
        return fld.default_factory()
    return fld.default


# -- the settings: declared once, every one documented and checked --------------------------

SPEC_KEYS = ["workers", "mules", "farms", "spooler", "cheaper", "cheaper-wait", "cheaper-idle",
             "harakiri", "mule-harakiri", "spooler-harakiri", "reload-mercy", "signal-timeout",
             "signal-queue", "python-path", "import", "lua", "lua-engine", "control", "stats",
             "stats-http"]


def test_every_setting_the_spec_names_is_a_key_declared_once():
    keys = [f.metadata["key"] for f in SETTINGS]
    assert len(keys) == len(set(keys))
    missing = [k for k in SPEC_KEYS if k not in keys]
    assert not missing
    for fld in SETTINGS:
        assert fld.metadata["doc"].strip(), f"{fld.metadata['key']} has no doc line"


def test_defaults_are_those_of_the_spec():
    cfg = from_dict({}, PATH)
    assert cfg.workers == 1
    assert cfg.mules == 0
    assert cfg.farms == {}
    assert cfg.spooler == ""
    assert cfg.cheaper == 0
    assert cfg.harakiri == 0
    assert cfg.cheaper_wait == pytest.approx(0.1)
    assert cfg.cheaper_idle == 30
    assert cfg.reload_mercy == 10
    assert cfg.signal_timeout == 10
    assert cfg.signal_queue == 65536
    assert cfg.lua_engine == "lua54"
    assert cfg.signals == []


def test_defaults_are_not_shared_between_configs():
    one, two = from_dict({}, PATH), from_dict({}, PATH)
    one.python_path.append("x")
    assert two.python_path == []


@pytest.mark.parametrize("key, kind", [
    ("workers", "int"), ("mules", "int"), ("cheaper", "int"), ("signal-queue", "int"),
    ("cheaper-wait", "float"), ("cheaper-idle", "float"), ("harakiri", "float"),
    ("mule-harakiri", "float"), ("spooler-harakiri", "float"), ("reload-mercy", "float"),
    ("signal-timeout", "float"), ("spooler", "str"), ("lua-engine", "str"),
    ("control", "str"), ("stats", "str"), ("stats-http", "bool"), ("python-path", "list[str]"),
    ("import", "list[str]"), ("lua", "list[str]"),
])
def test_spec_settings_have_the_documented_type(key, kind):
    assert _kind(BY_KEY[key]) == kind


def _kind(fld: dataclasses.Field) -> str:
    return str(fld.type).replace("<class '", "").replace("'>", "")


WRONG = {
    "bool": [1, "true", [True], {}],
    "int": ["3", True, 1.5, [1], {}],
    "float": ["1", True, [1.0], {}],
    "str": [1, True, ["x"], {}],
    "list[str]": ["x", [1], ["x", 2], {}, [["x"]]],
    "dict[str, list[int]]": [[1], "x", {"a": "x"}, {"a": [1.5]}, {"a": ["1"]}],
}


def _wrong_cases():
    for fld in SETTINGS:
        for value in WRONG[_kind(fld)]:
            yield pytest.param(fld.metadata["key"], value,
                               id=f"{fld.metadata['key']}={value!r}")


@pytest.mark.parametrize("key, value", list(_wrong_cases()))
def test_a_wrong_type_is_an_error_naming_file_entry_and_key(key, value):
    err = error(sb(**{key: value}))
    assert (err.path, err.entry, err.key) == (PATH, "[switchboard]", key)
    assert str(err).startswith(f"{PATH}: [switchboard]: key '{key}': ")
    assert "must be" in err.message


def test_wrong_type_messages_say_what_was_wanted_and_given():
    assert "must be an integer, not a boolean" in str(error(sb(workers=True)))
    assert "must be an integer, not a float" in str(error(sb(workers=2.0)))
    assert "must be a number, not a string" in str(error(sb(harakiri="30")))
    assert "must be a string, not an integer" in str(error(sb(control=1)))
    assert "must be a list of strings, not a string" in str(error(sb(**{"import": "m"})))


def _minimum_cases():
    for fld in SETTINGS:
        minimum = fld.metadata["minimum"]
        if minimum is None:
            continue
        below = minimum - 1 if _kind(fld) == "int" else minimum - 0.001
        yield pytest.param(fld.metadata["key"], below, id=f"{fld.metadata['key']}={below}")


@pytest.mark.parametrize("key, value", list(_minimum_cases()))
def test_a_value_below_the_minimum_is_an_error_naming_the_value(key, value):
    err = error(sb(**{key: value}))
    assert (err.entry, err.key) == ("[switchboard]", key)
    assert "minimum" in err.message
    assert str(value) in err.message


@pytest.mark.parametrize("key, value", [
    ("workers", 0), ("workers", -3), ("signal-queue", 0), ("harakiri", -1),
    ("signal-timeout", -0.5), ("reload-mercy", -1), ("cheaper-wait", -1), ("mules", -1),
    ("cheaper", -1),
])
def test_the_spec_minimums(key, value):
    assert error(sb(**{key: value})).key == key


def test_minimums_themselves_are_accepted():
    cfg = from_dict(sb(workers=1, **{"signal-queue": 1, "harakiri": 0, "reload-mercy": 0,
                                      "signal-timeout": 0}), PATH)
    assert (cfg.workers, cfg.signal_queue, cfg.harakiri) == (1, 1, 0)


def test_a_float_setting_takes_an_integer_and_stores_a_float():
    cfg = from_dict(sb(harakiri=30, **{"signal-timeout": 2, "cheaper-idle": 5}), PATH)
    assert cfg.harakiri == 30.0 and isinstance(cfg.harakiri, float)
    assert isinstance(cfg.signal_timeout, float)
    assert from_dict(sb(harakiri=0.25), PATH).harakiri == 0.25


def test_good_values_are_kept():
    cfg = from_dict(sb(workers=4, control="var/sb.sock", **{
        "python-path": [".", "lib"], "import": ["python_handlers.demo"],
        "signal-queue": 10, "reload-mercy": 2.5, "lua-engine": "luajit21"}), PATH)
    assert cfg.workers == 4
    assert cfg.control == "var/sb.sock"
    assert cfg.python_path == [".", "lib"]
    assert cfg.imports == ["python_handlers.demo"]
    assert cfg.signal_queue == 10
    assert cfg.reload_mercy == 2.5
    assert cfg.lua_engine == "luajit21"
    assert cfg.topology().workers == 4


@pytest.mark.parametrize("engine", ["lua54", "lua55", "luajit21"])
def test_the_spec_lua_engines_are_accepted(engine):
    assert from_dict(sb(**{"lua-engine": engine}), PATH).lua_engine == engine


def test_an_unknown_lua_engine_is_an_error_naming_it():
    err = error(sb(**{"lua-engine": "lua51"}))
    assert err.key == "lua-engine" and "lua51" in err.message


def test_an_unknown_key_is_an_error_naming_it_and_the_valid_keys():
    err = error(sb(worker=4))
    assert (err.path, err.entry, err.key) == (PATH, "[switchboard]", "worker")
    assert "workers" in err.message and "signal-queue" in err.message


@pytest.mark.parametrize("key", ["Workers", "signal_queue", "reload_mercy"])
def test_keys_are_exact(key):
    assert error(sb(**{key: 1})).key == key


@pytest.mark.parametrize("value, family, address", [
    ("127.0.0.1:9191", socket.AF_INET, ("127.0.0.1", 9191)),
    ("[::1]:9191", socket.AF_INET6, ("::1", 9191)),
    ("@sb-stats", socket.AF_UNIX, "\0sb-stats"),
    ("var/stats.sock", socket.AF_UNIX, "/etc/sb/var/stats.sock"),
])
def test_a_stats_address_is_tcp_abstract_or_a_path_relative_to_the_config(value, family,
                                                                            address):
    assert from_dict(sb(stats=value), PATH).stats == value
    assert statserver.parse_address(value, "/etc/sb") == (family, address)


@pytest.mark.parametrize("value, words", [
    ("127.0.0.1:99999", "0..65535"), ("localhost:http", "port must be a number"),
    (":9191", "give a host"), ("@", "needs a name"),
])
def test_a_bad_stats_address_is_an_error_naming_the_key(value, words):
    err = error(sb(stats=value))
    assert (err.entry, err.key) == ("[switchboard]", "stats")
    assert words in err.message


# -- sections --------------------------------------------------------------------------------

def test_an_unknown_section_is_an_error_naming_it():
    err = error({"switchbaord": {"workers": 2}})
    assert err.path == PATH
    assert "switchbaord" in str(err)
    assert "switchboard" in err.message and "signal" in err.message   # the valid ones


SPEC_SECTIONS = {"mule", "timer", "rb_timer", "cron", "file_monitor", "pgnotify", "cluster"}


@pytest.mark.parametrize("name", sorted(config._PLANNED_SECTIONS))
def test_a_planned_section_is_not_supported_yet_naming_it(name):
    assert name in SPEC_SECTIONS
    err = error({name: [{"signal": 1}]})
    assert f"[{name}]" in str(err)
    assert "not supported yet" in err.message


def test_switchboard_must_be_a_table():
    err = error({"switchboard": [1, 2]})
    assert "[switchboard]" in str(err) and "table" in err.message


# -- [[signal]] ------------------------------------------------------------------------------

def sig(**entry: object) -> dict:
    return entry


def test_signal_entries_are_read_in_order():
    cfg = from_dict({"switchboard": {"workers": 2}, "signal": [
        sig(num=30, target="worker2", handler="python:m:f"),
        sig(num=1, target="workers", handler="lua:lua/demo.lua:hello"),
    ]}, PATH)
    assert [(s.num, s.target, s.handler) for s in cfg.signals] == [
        (30, "worker2", "python:m:f"), (1, "workers", "lua:lua/demo.lua:hello")]


def test_a_signal_without_target_targets_worker():
    cfg = from_dict({"signal": [sig(num=3, handler="python:m:f")]}, PATH)
    assert cfg.signals[0].target == "worker"


@pytest.mark.parametrize("missing", ["num", "handler"])
def test_signal_required_keys(missing):
    entry = sig(num=3, target="worker", handler="python:m:f")
    del entry[missing]
    err = error({"signal": [sig(num=1, handler="python:m:g"), entry]})
    assert err.key == missing
    assert "[[signal]] #2" in err.entry
    assert "required" in err.message


def test_an_unknown_key_in_a_signal_names_the_entry():
    err = error({"signal": [sig(num=3, handler="python:m:f", traget="workers")]})
    assert err.key == "traget" and "[[signal]] #1" in err.entry
    assert "target" in err.message


@pytest.mark.parametrize("num", [-1, 256, 1000])
def test_a_signal_number_out_of_range_names_the_value(num):
    err = error({"signal": [sig(num=num, handler="python:m:f")]})
    assert err.key == "num" and str(num) in err.message


@pytest.mark.parametrize("num", [True, "5", 5.0, [5]])
def test_a_signal_number_of_the_wrong_type(num):
    err = error({"signal": [sig(num=num, handler="python:m:f")]})
    assert err.key == "num" and "must be an integer" in err.message


def test_signal_numbers_0_and_255_are_valid():
    cfg = from_dict({"signal": [sig(num=0, handler="python:m:f"),
                                sig(num=255, handler="python:m:g")]}, PATH)
    assert [s.num for s in cfg.signals] == [0, 255]


def test_two_entries_with_one_number_name_both():
    err = error({"signal": [sig(num=7, handler="python:m:a"), sig(num=8, handler="python:m:b"),
                            sig(num=7, handler="python:m:c")]})
    text = str(err)
    assert "[[signal]] #1" in text and "[[signal]] #3" in text
    assert "7" in err.message
    assert err.key == "num"


@pytest.mark.parametrize("target, needle", [
    ("worker3", "worker3"), ("bogus", "bogus"), ("mule", "mule"), ("spooler", "spooler"),
    ("farm_x", "farm_x"), ("Workers", "Workers"),
])
def test_a_bad_target_names_the_entry_the_key_and_the_value(target, needle):
    err = error({"switchboard": {"workers": 2},
                 "signal": [sig(num=4, target=target, handler="python:m:f")]})
    assert err.key == "target" and "[[signal]] #1" in err.entry
    assert needle in err.message


def test_a_target_of_the_wrong_type():
    err = error({"signal": [sig(num=4, target=1, handler="python:m:f")]})
    assert err.key == "target" and "must be a string" in err.message


def test_a_handler_of_the_wrong_type():
    err = error({"signal": [sig(num=4, handler=["python:m:f"])]})
    assert err.key == "handler" and "must be a string" in err.message


def test_signal_must_be_an_array_of_tables():
    assert "[signal]" in str(error({"signal": {"num": 1}}))
    err = error({"signal": [1]})
    assert "[[signal]] #1" in str(err) and "table" in err.message


# -- files -----------------------------------------------------------------------------------

def test_load_reads_a_file_and_keeps_its_absolute_path(tmp_path, monkeypatch):
    path = tmp_path / "app.toml"
    path.write_text('[switchboard]\nworkers = 3\ncontrol = "var/sb.sock"\n\n'
                    '[[signal]]\nnum = 30\ntarget = "worker3"\n'
                    'handler = "python:python_handlers.demo:hello"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load("app.toml")
    assert cfg.path == str(path)
    assert cfg.workers == 3
    assert cfg.signals[0].num == 30
    assert cfg.folder == str(tmp_path)


def test_relative_paths_are_relative_to_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "sb.toml").write_text("[switchboard]\n")
    monkeypatch.chdir("/")
    cfg = load(str(tmp_path / "etc" / "sb.toml"))
    assert cfg.relative("var/sb.sock") == str(tmp_path / "etc" / "var" / "sb.sock")
    assert cfg.relative("../lua/demo.lua") == str(tmp_path / "lua" / "demo.lua")
    assert cfg.relative(".") == str(tmp_path / "etc")
    assert cfg.relative("/abs/x.sock") == "/abs/x.sock"
    assert cfg.relative("~/x") == os.path.expanduser("~/x")


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[switchboard]\nworkers = 2\nmules = = 1\n")
    with pytest.raises(ConfigError) as err:
        load(str(path))
    assert str(path) in str(err.value)
    assert "line 3" in str(err.value)


def test_a_missing_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as err:
        load(str(path))
    assert str(path) in str(err.value)
    assert "No such file" in str(err.value) or "cannot read" in str(err.value)


def test_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[switchboard]\ncontrol = "caf\xe9"\n')
    with pytest.raises(ConfigError) as err:
        load(str(path))
    assert str(path) in str(err.value)


def test_errors_from_a_file_name_the_absolute_file(tmp_path, monkeypatch):
    (tmp_path / "c.toml").write_text("[switchboard]\nworkers = 0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        load("c.toml")
    assert str(err.value).startswith(f"{tmp_path / 'c.toml'}: [switchboard]: key 'workers'")


def test_a_huge_integer_for_a_number_setting_is_a_config_error():
    # tomllib reads integers of any size; float() of one over 1e308 overflows.
    err = error(sb(harakiri=10**400))
    assert err.key == "harakiri"


# -- properties ------------------------------------------------------------------------------

_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**1100), max_value=2**1100),      # tomllib has no int limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["worker", "workers", "worker2", "mule", "spooler", "python:m:f",
                     "lua54", "luajit21", ""]),
    st.datetimes(), st.dates(), st.times(),
    st.datetimes(timezones=st.just(datetime.UTC)),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
_keys = st.one_of(st.sampled_from([f.metadata["key"] for f in SETTINGS]), st.text(max_size=10))
_section = st.dictionaries(_keys, _values, max_size=6)
_signal = st.dictionaries(
    st.one_of(st.sampled_from(["num", "target", "handler"]), st.text(max_size=6)),
    st.one_of(st.integers(-2, 260), _values), max_size=4)
_documents = st.dictionaries(
    st.one_of(st.sampled_from(["switchboard", "signal", *sorted(config._PLANNED_SECTIONS)]),
              st.text(max_size=8)),
    st.one_of(_section, st.lists(_signal, max_size=4), _values),
    max_size=3,
)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(_documents)
@example({"switchboard": {"signal-timeout": 10**400}})    # a valid TOML integer
def test_from_dict_returns_a_config_or_raises_config_error_only(data):
    try:
        cfg = from_dict(data, PATH)
    except ConfigError as exc:
        assert str(exc).startswith(PATH)
        return
    assert isinstance(cfg, Config)
    assert cfg.workers >= 1 and cfg.signal_queue >= 1
    nums = [s.num for s in cfg.signals]
    assert len(nums) == len(set(nums)) and all(0 <= n <= 255 for n in nums)
    for fld in SETTINGS:
        value = getattr(cfg, fld.name)
        if fld.metadata["minimum"] is not None and not (isinstance(value, float)
                                                        and math.isnan(value)):
            assert value >= fld.metadata["minimum"]


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from([f.metadata["key"] for f in SETTINGS]), _values,
                       max_size=5))
def test_from_dict_on_switchboard_tables_raises_only_config_error(section):
    try:
        cfg = from_dict({"switchboard": section}, PATH)
    except ConfigError as exc:
        assert exc.entry == "[switchboard]" and exc.key in section
        return
    assert isinstance(cfg, Config)
