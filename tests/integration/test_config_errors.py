"""Bad deployment configs through the CLI (SPEC sections 10, 11 and 14): `run` and
`check` exit 2 before forking anything, and the message names the file, the entry and
the key, without a Python traceback."""

from __future__ import annotations

import re
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

HANDLERS = """
def hello(num):
    print("hello", num)

NOT_CALLABLE = 3
"""

SIG = '[[signal]]\nnum = 30\ntarget = "worker"\nhandler = "python:handlers:hello"\n'

CASES = {
    "unknown-key": ("[switchboard]\nworkers = 2\nworkerz = 3\n",
                    ["[switchboard]", "workerz"]),
    "unknown-section": ("[switchboard]\nworkers = 1\n\n[sigal]\nnum = 3\n", ["sigal"]),
    "wrong-type": ('[switchboard]\nworkers = "two"\n', ["[switchboard]", "workers", "integer"]),
    "wrong-type-list": ('[switchboard]\nimport = "handlers"\n', ["[switchboard]", "import"]),
    "below-minimum": ("[switchboard]\nworkers = 0\n", ["[switchboard]", "workers", "0"]),
    "negative-harakiri": ("[switchboard]\nharakiri = -1\n", ["harakiri", "-1"]),
    "signal-num-type": ('[[signal]]\nnum = "30"\nhandler = "python:handlers:hello"\n',
                        ["[[signal]] #1", "num"]),
    "num-out-of-range": ("[[signal]]\nnum = 256\nhandler = \"python:handlers:hello\"\n",
                         ["[[signal]] #1", "num", "256"]),
    "num-negative": ("[[signal]]\nnum = -1\nhandler = \"python:handlers:hello\"\n",
                     ["[[signal]] #1", "num", "-1"]),
    "bad-target": ('[[signal]]\nnum = 30\ntarget = "wrker"\nhandler = "python:handlers:hello"\n',
                   ["[[signal]] #1", "target", "wrker"]),
    "uppercase-target": ('[[signal]]\nnum = 30\ntarget = "Worker"\n'
                         'handler = "python:handlers:hello"\n',
                         ["[[signal]] #1", "target", "Worker"]),
    "no-such-worker": ('[switchboard]\nworkers = 2\n\n[[signal]]\nnum = 30\ntarget = "worker3"\n'
                       'handler = "python:handlers:hello"\n',
                       ["[[signal]] #1", "target", "worker3"]),
    "mules-without-mules": ('[[signal]]\nnum = 30\ntarget = "mules"\n'
                            'handler = "python:handlers:hello"\n',
                            ["[[signal]] #1", "target", "mules"]),
    "spooler-without-spooler": ('[[signal]]\nnum = 30\ntarget = "spooler"\n'
                                'handler = "python:handlers:hello"\n',
                                ["[[signal]] #1", "target", "spooler"]),
    "unknown-signal-key": ('[[signal]]\nnum = 30\nhander = "python:handlers:hello"\n',
                           ["[[signal]] #1", "hander"]),
    "missing-handler": ("[[signal]]\nnum = 30\n", ["[[signal]] #1", "handler"]),
    "no-such-module": ('[[signal]]\nnum = 30\nhandler = "python:nosuchmodule:hello"\n',
                       ["[[signal]] #1", "handler", "nosuchmodule"]),
    "no-such-function": ('[[signal]]\nnum = 30\nhandler = "python:handlers:nope"\n',
                         ["[[signal]] #1", "handler", "nope"]),
    "not-callable": ('[[signal]]\nnum = 30\nhandler = "python:handlers:NOT_CALLABLE"\n',
                     ["[[signal]] #1", "handler", "NOT_CALLABLE"]),
    "no-language": ('[[signal]]\nnum = 30\nhandler = "handlers.hello"\n',
                    ["[[signal]] #1", "handler", "handlers.hello"]),
    "duplicate-number": (SIG + "\n" + SIG.replace("hello", "hello"),
                         ["[[signal]] #1", "[[signal]] #2", "30"]),
    "failing-import": ('[switchboard]\nimport = ["nosuchmodule"]\n', ["import", "nosuchmodule"]),
}


def _write(tmp_path, text):
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    path = tmp_path / "bad.toml"
    if text.startswith("[switchboard]"):
        text = text.replace("[switchboard]\n", '[switchboard]\npython-path = ["."]\n', 1)
    else:
        text = '[switchboard]\npython-path = ["."]\n\n' + text
    path.write_text(text)
    return path


def _assert_clean_error(res, path, expected):
    out = res.stdout + res.stderr
    assert res.returncode == 2, f"exit {res.returncode}; stdout {res.stdout!r}; " \
                                f"stderr {res.stderr!r}"
    assert "Traceback" not in out, out
    assert str(path) in res.stderr, res.stderr
    for text in expected:
        assert text in res.stderr, f"{text!r} not in {res.stderr!r}"


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_a_clean_error(cli, tmp_path, case, command):
    text, expected = CASES[case]
    path = _write(tmp_path, text)
    res = cli(command, str(path))
    _assert_clean_error(res, path, expected)
    if command == "run":
        assert "spawned worker" not in res.stderr
        assert not re.search(r"\bready:", res.stderr)


@pytest.mark.parametrize("command", ["check", "run"])
def test_malformed_toml_names_its_line(cli, tmp_path, command):
    path = tmp_path / "broken.toml"
    path.write_text("[switchboard]\nworkers = 2\nworkers 3\n")
    res = cli(command, str(path))
    _assert_clean_error(res, path, ["line 3"])


@pytest.mark.parametrize("command", ["check", "run"])
def test_missing_config_file(cli, tmp_path, command):
    path = tmp_path / "nowhere" / "switchboard.toml"
    res = cli(command, str(path))
    _assert_clean_error(res, path, [])


def test_check_validates_a_good_config_without_forking(cli, tmp_path):
    text = ('[switchboard]\nworkers = 3\npython-path = ["."]\nimport = ["handlers"]\n\n'
            + SIG + '\n[[signal]]\nnum = 17\ntarget = "worker2"\n'
            'handler = "python:handlers:hello"\n')
    (tmp_path / "handlers.py").write_text(textwrap.dedent(HANDLERS) + textwrap.dedent("""
        import os
        import uwsgi
        from uwsgidecorators import postfork
        uwsgi.register_signal(5, "workers", hello)
        open(os.path.join(os.path.dirname(__file__), "imported"), "a").write("x")

        @postfork
        def forked():
            open(os.path.join(os.path.dirname(__file__), "forked"), "a").write("x")
        """))
    path = tmp_path / "good.toml"
    path.write_text(text)
    res = cli("check", str(path))
    assert res.returncode == 0, res.stderr
    assert "workers: 3" in res.stdout
    assert "signal table: 3 entries" in res.stdout
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith("  ")]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("5", "workers", "python:handlers:hello"),
        ("17", "worker2", "python:handlers:hello"),
        ("30", "worker", "python:handlers:hello")]
    assert "hello" not in res.stderr
    # It imported the modules exactly as `run` does, once, and forked nothing.
    assert (tmp_path / "imported").read_text() == "x"
    assert not (tmp_path / "forked").exists()
