"""uWSGI's ini for the options Switchboard shares: read into the same Config as TOML."""

from __future__ import annotations

import pytest

from switchboard import config, ini
from switchboard.errors import ConfigError


def load(tmp_path, text, name="app.ini"):
    path = tmp_path / name
    path.write_text(text)
    return config.load(str(path))


def test_the_shared_options_become_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("SPOOL", "/var/spool/app")
    cfg = load(tmp_path, """
; a comment
[uwsgi]
master = 1
processes = 3
mules = 2
mule = jobs:main
farm = pair:1,2
spooler = $(SPOOL)
spooler-processes = 2
spooler-ordered = true
spooler-frequency = 5
spooler-import = %d/handlers.py
import = app.signals
pythonpath = %dlib
harakiri = 30
cheaper = 1
lua = %d/x.lua
pyrun = %d/main.py
socket = /tmp/app.sock
route = ^/ break:200
[other]
processes = 99
""")
    assert (cfg.workers, cfg.mules, cfg.farms) == (3, 3, {"pair": [1, 2]})
    assert cfg.programs[3].program == "python:jobs:main"
    assert (cfg.spooler, cfg.spooler_processes, cfg.spooler_frequency) == \
        ("/var/spool/app", 2, 5.0)
    assert cfg.spooler_ordered is True
    assert cfg.imports == ["handlers", "app.signals"]
    assert cfg.python_path == [str(tmp_path), f"{tmp_path}/lib"]   # handlers.py's folder
    assert (cfg.harakiri, cfg.cheaper) == (30.0, 1)
    assert cfg.lua == [f"{tmp_path}//x.lua"] and cfg.pyrun == f"{tmp_path}//main.py"
    assert cfg.ignored == ["socket", "route"]
    # uwsgi.opt, as uWSGI 2.0.31 shows it: str keys, bytes values, lists when repeated
    opt = ini.uwsgi_opt(cfg)
    assert opt["processes"] == b"3" and opt["spooler"] == b"/var/spool/app"
    assert opt["socket"] == b"/tmp/app.sock"


def test_repeated_options_are_lists_and_magic_expands(tmp_path):
    cfg = load(tmp_path, "[uwsgi]\nimport = a\nimport = b\npyimport = c\n"
                         "pythonpath = %p\npythonpath = 100%%\n", name="site.ini")
    assert cfg.imports == ["a", "b", "c"]
    assert cfg.python_path == [str(tmp_path / "site.ini"), "100%"]
    assert ini.uwsgi_opt(cfg)["import"] == [b"a", b"b"]


@pytest.mark.parametrize("text, option, message", [
    ("[uwsgi]\nprocesses = many\n", "processes", "must be an integer, not 'many'"),
    ("[uwsgi]\nprocesses = 0\n", "processes", "0 is below the minimum 1"),
    ("[uwsgi]\nspooler-frequency = soon\n", "spooler-frequency", "must be a number"),
    ("[uwsgi]\nspooler-ordered = perhaps\n", "spooler-ordered", "must be true or false"),
    ("[uwsgi]\nspooler = $(NO_SUCH_VARIABLE_X)\n", "spooler",
     "$(NO_SUCH_VARIABLE_X): the environment variable is not set"),
    ("[uwsgi]\nspooler = a\nspooler = b\n", "spooler", "only one spool folder"),
    ("[uwsgi]\nfarm = nomules\n", "farm", "expected NAME:MULE,MULE"),
    ("[uwsgi]\nmules = 1\nfarm = f:2\n", "farm", "farm 'f' names mule 2, but mules = 1"),
    ("[uwsgi]\nmule = script.py\n", "mule", "a mule program must be module:function"),
    ("[uwsgi]\ncheaper = 2\n", "cheaper", "cheaper = 2 must be below workers = 1"),
])
def test_errors_name_the_ini_file_and_option(tmp_path, text, option, message):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    err = info.value
    assert (err.path, err.entry, err.key) == (str(tmp_path / "app.ini"), "[uwsgi]", option)
    assert message in str(err)


def test_a_line_that_is_not_an_option_is_an_error_with_its_number(tmp_path):
    with pytest.raises(ConfigError, match=r"app.ini: \[uwsgi\]: line 3: expected "
                                          r"'option = value', not 'oops'"):
        load(tmp_path, "[uwsgi]\nmaster = 1\noops\n")


def test_a_file_without_a_uwsgi_section_says_so(tmp_path):
    with pytest.raises(ConfigError, match="no \\[uwsgi\\] section"):
        load(tmp_path, "[other]\nprocesses = 2\n")


def test_a_toml_configs_opt_uses_uwsgis_names(tmp_path):
    path = tmp_path / "app.toml"
    path.write_text('[switchboard]\nworkers = 2\nmules = 1\nspooler = "spool"\n'
                    'import = ["a", "b"]\n')
    opt = ini.uwsgi_opt(config.load(str(path)))
    assert opt == {"master": True, "processes": b"2", "mules": b"1",
                   "spooler": str(tmp_path / "spool").encode(), "spooler-processes": b"1",
                   "spooler-frequency": b"30", "import": [b"a", b"b"]}
