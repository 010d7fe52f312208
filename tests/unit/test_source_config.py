"""`[[timer]]`, `[[rb_timer]]`, `[[cron]]`, `[[file_monitor]]` and `[[pgnotify]]` config
entries (SPEC sections 7, 10 and 14): what a good entry becomes, and errors that name
the file, the entry and the key.
"""

from __future__ import annotations

import os

import pytest

from switchboard.config import from_dict
from switchboard.errors import ConfigError
from switchboard.sources import config as source_config

PATH = "/srv/app/switchboard.toml"
H = "python:os:getpid"             # a resolvable reference (parsing does not resolve it)


def parse(**sections):
    """The source entries of a config made of `sections` (plus workers = 2)."""
    data = {"switchboard": {"workers": 2}, **sections}
    return from_dict(data, PATH).sources


def error(**sections) -> ConfigError:
    data = {"switchboard": {"workers": 2, "mules": 1}, **sections}
    with pytest.raises(ConfigError) as err:
        from_dict(data, PATH)
    return err.value


def assert_points(err: ConfigError, entry: str, key: str | None, *words: str) -> None:
    text = str(err)
    assert err.path == PATH and text.startswith(PATH + ": ")
    assert err.entry == entry and entry in text
    if key is not None:
        assert err.key == key and f"key '{key}'" in text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"


# -- good entries ---------------------------------------------------------------------------

def test_the_sections_are_the_five_of_the_spec():
    assert set(source_config.SECTIONS) == {"timer", "rb_timer", "cron", "file_monitor",
                                           "pgnotify"}


def test_a_timer_entry():
    (entry,) = parse(timer=[{"signal": 26, "seconds": 2}])
    assert (entry.kind, entry.where, entry.num, entry.handler) == ("timer", "[[timer]] #1", 26,
                                                                  None)
    assert entry.params == {"seconds": 2.0, "iterations": 0}
    assert entry.spec(26) == {"kind": "timer", "num": 26, "seconds": 2.0, "iterations": 0}


def test_sub_second_periods_and_iterations():
    entries = parse(timer=[{"signal": 1, "seconds": 0.001}, {"signal": 2, "seconds": 0.25,
                                                             "iterations": 3}],
                    rb_timer=[{"signal": 31, "seconds": 40, "iterations": 1}])
    assert [(e.kind, e.num, e.params) for e in entries] == [
        ("timer", 1, {"seconds": 0.001, "iterations": 0}),
        ("timer", 2, {"seconds": 0.25, "iterations": 3}),
        ("rb_timer", 31, {"seconds": 40.0, "iterations": 1}),
    ]
    assert [e.where for e in entries] == ["[[timer]] #1", "[[timer]] #2", "[[rb_timer]] #1"]


def test_a_handler_entry_leaves_the_number_to_be_chosen_and_targets_worker():
    (entry,) = parse(timer=[{"handler": H, "seconds": 1}])
    assert entry.num is None and entry.handler == H and entry.target == "worker"
    (entry,) = parse(cron=[{"handler": H, "target": "workers", "expr": "* * * * *"}])
    assert entry.num is None and entry.target == "workers"


def test_a_cron_entry_with_an_expression():
    (entry,) = parse(cron=[{"signal": 5, "expr": "*/5 9-17 * * 1-5"}])
    assert entry.params["cron"]["expr"] == "*/5 9-17 * * 1-5"


def test_a_cron_entry_with_fields_defaults_the_others_to_any():
    (entry,) = parse(cron=[{"signal": 5, "minute": -5, "weekday": 7}])
    cron = entry.params["cron"]
    assert (cron["minute"], cron["hour"], cron["day"], cron["month"], cron["weekday"]) == \
        (-5, -1, -1, -1, 7)
    assert cron["expr"] == ""
    (entry,) = parse(cron=[{"signal": 5}])                # every minute
    assert entry.params["cron"]["minute"] == -1


def test_a_file_monitor_path_is_relative_to_the_config_folder():
    (rel, absolute, home) = parse(file_monitor=[
        {"signal": 17, "path": "var/watched"},
        {"handler": H, "path": "/tmp", "recursive": True, "iterations": 2},
        {"signal": 18, "path": "~/x"},
    ])
    assert rel.params == {"path": "/srv/app/var/watched", "recursive": False, "iterations": 0}
    assert absolute.params == {"path": "/tmp", "recursive": True, "iterations": 2}
    assert home.params["path"] == os.path.expanduser("~/x")


def test_a_path_that_does_not_exist_yet_is_accepted():
    (entry,) = parse(file_monitor=[{"signal": 1, "path": "/nonexistent/a/b/c/file.txt"}])
    assert entry.params["path"] == "/nonexistent/a/b/c/file.txt"


def test_a_pgnotify_entry():
    (entry,) = parse(pgnotify=[{"signal": 40, "dsn": "postgresql:///app", "channel": "jobs"}])
    assert entry.params == {"dsn": "postgresql:///app", "channel": "jobs"}
    (entry,) = parse(pgnotify=[{"handler": H, "dsn": "host=/tmp dbname=x", "channel": "c"}])
    assert entry.num is None


def test_signal_and_handler_together_set_both():
    (entry,) = parse(timer=[{"signal": 9, "handler": H, "target": "worker2", "seconds": 1}])
    assert (entry.num, entry.handler, entry.target) == (9, H, "worker2")


def test_entries_of_every_kind_keep_their_config_order_within_a_kind():
    entries = parse(timer=[{"signal": n, "seconds": 1} for n in range(3)],
                    cron=[{"signal": 10 + n} for n in range(2)])
    assert [(e.kind, e.num, e.where) for e in entries] == [
        ("timer", 0, "[[timer]] #1"), ("timer", 1, "[[timer]] #2"), ("timer", 2, "[[timer]] #3"),
        ("cron", 10, "[[cron]] #1"), ("cron", 11, "[[cron]] #2")]


def test_no_limit_on_the_number_of_entries():
    entries = parse(timer=[{"signal": n % 256, "seconds": 1} for n in range(300)],
                    file_monitor=[{"signal": n % 256, "path": f"/tmp/f{n}"} for n in range(100)])
    assert len(entries) == 400


# -- errors: file, entry and key --------------------------------------------------------------

@pytest.mark.parametrize("seconds, words", [
    (0, ["0"]), (-1, ["-1"]), (-0.5, ["-0.5"]), (0.0001, ["0.0001"]), (0.0, ["0.0"]),
])
def test_a_zero_negative_or_too_small_period(seconds, words):
    err = error(timer=[{"signal": 1, "seconds": seconds}])
    assert_points(err, "[[timer]] #1", "seconds", *words)


@pytest.mark.parametrize("seconds", ["2", True, [1]])
def test_a_period_of_the_wrong_type(seconds):
    err = error(rb_timer=[{"signal": 1, "seconds": seconds}])
    assert_points(err, "[[rb_timer]] #1", "seconds")


def test_a_missing_period():
    assert_points(error(timer=[{"signal": 1}]), "[[timer]] #1", "seconds", "required")


def test_the_second_entry_is_named_as_the_second():
    err = error(timer=[{"signal": 1, "seconds": 1}, {"signal": 2, "seconds": -3}])
    assert_points(err, "[[timer]] #2", "seconds", "-3")


@pytest.mark.parametrize("iterations, words", [(-1, ["-1"]), (1.5, []), ("3", [])])
def test_bad_iterations(iterations, words):
    err = error(timer=[{"signal": 1, "seconds": 1, "iterations": iterations}])
    assert_points(err, "[[timer]] #1", "iterations", *words)
    err = error(file_monitor=[{"signal": 1, "path": "/tmp", "iterations": iterations}])
    assert_points(err, "[[file_monitor]] #1", "iterations", *words)


@pytest.mark.parametrize("num", [256, -1, 1000])
def test_a_signal_number_out_of_range(num):
    err = error(cron=[{"signal": num, "expr": "* * * * *"}])
    assert_points(err, "[[cron]] #1", "signal", str(num))


@pytest.mark.parametrize("num", ["5", 5.0, True])
def test_a_signal_number_of_the_wrong_type(num):
    assert_points(error(timer=[{"signal": num, "seconds": 1}]), "[[timer]] #1", "signal")


@pytest.mark.parametrize("section, item", [
    ("timer", {"seconds": 1}),
    ("rb_timer", {"seconds": 1}),
    ("cron", {"expr": "* * * * *"}),
    ("file_monitor", {"path": "/tmp"}),
    ("pgnotify", {"dsn": "postgresql:///x", "channel": "c"}),
])
def test_neither_signal_nor_handler(section, item):
    err = error(**{section: [item]})
    assert_points(err, f"[[{section}]] #1", "signal", "handler")


@pytest.mark.parametrize("section, item", [
    ("timer", {"signal": 1, "seconds": 1}),
    ("cron", {"signal": 1}),
    ("file_monitor", {"signal": 1, "path": "/tmp"}),
    ("pgnotify", {"signal": 1, "dsn": "postgresql:///x", "channel": "c"}),
])
def test_a_target_without_a_handler(section, item):
    err = error(**{section: [{**item, "target": "workers"}]})
    assert_points(err, f"[[{section}]] #1", "target", "handler")


@pytest.mark.parametrize("target, words", [
    ("worker9", ["worker9"]), ("nowhere", ["nowhere"]), ("mule2", ["mule2"]),
    ("spooler", ["spooler"]), ("farm_x", ["farm_x"]), ("Workers", ["Workers"]),
])
def test_a_bad_target(target, words):
    err = error(timer=[{"handler": H, "target": target, "seconds": 1}])
    assert_points(err, "[[timer]] #1", "target", *words)


def test_a_handler_that_is_not_a_string():
    assert_points(error(timer=[{"handler": 5, "seconds": 1}]), "[[timer]] #1", "handler")


@pytest.mark.parametrize("section, item, key", [
    ("timer", {"signal": 1, "seconds": 1, "period": 2}, "period"),
    ("timer", {"signal": 1, "seconds": 1, "num": 2}, "num"),
    ("rb_timer", {"signal": 1, "seconds": 1, "recursive": True}, "recursive"),
    ("cron", {"signal": 1, "expr": "* * * * *", "second": 0}, "second"),
    ("cron", {"signal": 1, "minutes": 5}, "minutes"),
    ("file_monitor", {"signal": 1, "path": "/tmp", "seconds": 1}, "seconds"),
    ("pgnotify", {"signal": 1, "dsn": "postgresql:///x", "channel": "c", "payload": "x"},
     "payload"),
])
def test_an_unknown_key_is_named_with_the_valid_ones(section, item, key):
    err = error(**{section: [item]})
    assert_points(err, f"[[{section}]] #1", key, "unknown key")


@pytest.mark.parametrize("expr", ["* * * *", "* * * * * *", "61 * * * *", "* * * * 9",
                                  "every minute", "", "*/0 * * * *"])
def test_a_malformed_cron_expression(expr):
    err = error(cron=[{"signal": 5, "expr": expr}])
    assert_points(err, "[[cron]] #1", "expr", "malformed cron expression", f"'{expr}'")


def test_a_cron_expression_that_is_not_a_string():
    assert_points(error(cron=[{"signal": 5, "expr": 5}]), "[[cron]] #1", "expr")


@pytest.mark.parametrize("field", ["minute", "hour", "day", "month", "weekday"])
def test_an_expression_and_fields_together(field):
    err = error(cron=[{"signal": 5, "expr": "* * * * *", field: 1}])
    assert_points(err, "[[cron]] #1", field, "expr")


@pytest.mark.parametrize("field, value", [
    ("minute", 60), ("hour", 24), ("day", 32), ("day", 0), ("month", 13), ("month", 0),
    ("weekday", 8), ("minute", -61),
])
def test_a_cron_field_out_of_range_names_that_field(field, value):
    err = error(cron=[{"signal": 5, field: value}])
    assert_points(err, "[[cron]] #1", field, str(value))


@pytest.mark.parametrize("field", ["hour", "weekday"])
def test_a_cron_field_of_the_wrong_type_names_that_field(field):
    err = error(cron=[{"signal": 5, field: "1"}])
    assert_points(err, "[[cron]] #1", field)


def test_a_file_monitor_without_a_path():
    assert_points(error(file_monitor=[{"signal": 1}]), "[[file_monitor]] #1", "path", "required")


@pytest.mark.parametrize("path", ["", 5])
def test_a_file_monitor_path_that_is_not_a_non_empty_string(path):
    assert_points(error(file_monitor=[{"signal": 1, "path": path}]), "[[file_monitor]] #1",
                  "path")


@pytest.mark.parametrize("recursive", ["yes", 1])
def test_recursive_must_be_a_boolean(recursive):
    err = error(file_monitor=[{"signal": 1, "path": "/tmp", "recursive": recursive}])
    assert_points(err, "[[file_monitor]] #1", "recursive", "boolean")


@pytest.mark.parametrize("dsn", ["host=x nonsense", "host='unterminated", "a=b=c d"])
def test_a_bad_dsn(dsn):
    err = error(pgnotify=[{"signal": 3, "dsn": dsn, "channel": "c"}])
    assert_points(err, "[[pgnotify]] #1", "dsn", "bad dsn")


def test_a_dsn_that_is_not_a_string():
    assert_points(error(pgnotify=[{"signal": 3, "dsn": 5, "channel": "c"}]), "[[pgnotify]] #1",
                  "dsn")


@pytest.mark.parametrize("item, key", [
    ({"signal": 3, "channel": "c"}, "dsn"),
    ({"signal": 3, "dsn": "postgresql:///x"}, "channel"),
    ({"signal": 3, "dsn": "postgresql:///x", "channel": ""}, "channel"),
    ({"signal": 3, "dsn": "postgresql:///x", "channel": 7}, "channel"),
])
def test_pgnotify_needs_a_dsn_and_a_channel(item, key):
    assert_points(error(pgnotify=[item]), "[[pgnotify]] #1", key)


@pytest.mark.parametrize("raw", [{"signal": 1, "seconds": 1}, "x", 5])
def test_a_section_that_is_not_an_array_of_tables(raw):
    err = error(timer=raw)
    assert "[timer]" in str(err) and err.path == PATH


def test_an_entry_that_is_not_a_table():
    err = error(cron=["* * * * *"])
    assert_points(err, "[[cron]] #1", None, "table")


def test_a_handler_entry_giving_a_number_already_given_is_an_error_naming_both():
    data = {"switchboard": {"workers": 1},
            "signal": [{"num": 7, "handler": H}],
            "timer": [{"signal": 7, "handler": H, "seconds": 1}]}
    with pytest.raises(ConfigError) as err:
        from_dict(data, PATH)
    assert err.value.entry == "[[timer]] #1" and err.value.key == "signal"
    assert "[[signal]] #1" in str(err.value)


def test_a_source_raising_a_number_a_signal_entry_handles_is_fine():
    """`signal = N` without a handler just raises N: its handler is the [[signal]]'s."""
    data = {"switchboard": {"workers": 1}, "signal": [{"num": 7, "handler": H}],
            "timer": [{"signal": 7, "seconds": 1}], "cron": [{"signal": 7}]}
    assert len(from_dict(data, PATH).sources) == 2
