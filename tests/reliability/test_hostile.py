"""Hostile input (SPEC 10, 11, 14): whatever a config file or a control-socket client
sends, the answer is a clear error and the runtime goes on.

- `switchboard.config.load` on random bytes, and on TOML documents built from the real
  sections and keys with random values, returns a Config or raises ConfigError (naming
  the file), never another exception.
- Random bytes on a running instance's control socket get one JSON reply or a clean
  close; the master keeps running and answers `stats` after each batch, and the stats
  count exactly the `signal N` requests it accepted.
- The control socket is 0600, refuses requests over 4 KiB with an error reply, and is
  not blocked by clients that send nothing.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import socket
import stat
import time
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from switchboard import config as config_mod
from switchboard.config import SETTINGS, Config
from switchboard.errors import ConfigError
from switchboard.sources import config as source_config

pytestmark = pytest.mark.timeout(120)

MAX_REQUEST = 4096      # SPEC: requests over 4 KiB are refused


# ---------------------------------------------------------------------------------------
# Config files


def _load(path) -> Config | ConfigError:
    """load(), which may only return a Config or raise ConfigError."""
    try:
        cfg = config_mod.load(str(path))
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(str(path) + ": "), message      # names the file
        assert message[len(str(path)) + 2:].strip(), message     # and says something
        assert "Traceback" not in message
        return exc
    assert isinstance(cfg, Config)
    return cfg


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode)))
def test_config_load_on_random_bytes_gives_a_config_or_a_config_error(tmp_path, data):
    path = tmp_path / "random.toml"
    path.write_bytes(data)
    _load(path)


# Plausible documents: the real sections and keys, values that are sometimes right and
# often wrong in type, range or form, and sometimes a key or section nobody knows.

_ints = st.one_of(st.integers(-3, 300), st.integers(-(2**70), 2**70))
_floats = st.floats(allow_nan=True, allow_infinity=True)
_strings = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["worker", "worker0", "worker2", "workers", "active-workers", "mule",
                     "mule1", "mule9", "mules", "farm_heavy", "farm1", "spooler", "", "Worker",
                     "python:os:getcwd", "python:nope:x", "lua:x.lua:f", "lua54", "lua55",
                     "luajit21", "*/5 * * * *", "61 * * * *", "* * * *", "@daily",
                     "postgresql:///app", "host=x nonsense", "spool", "var/spool", ".",
                     "/", "~", "~nobody/x", "../../x", "watched/sub"]))
_dates = st.one_of(st.dates(), st.times(), st.datetimes(),
                   st.datetimes(timezones=st.just(datetime.UTC)))
_scalars = st.one_of(st.booleans(), _ints, _floats, _strings, _dates)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(["heavy", "a b"])),
                        inner, max_size=3)),
    max_leaves=10)

_KEYS = {
    "switchboard": [f.metadata["key"] for f in SETTINGS],
    "signal": ["num", "target", "handler"],
    "mule": ["id", "program"],
    **{kind: ["signal", "handler", "target", *keys]
       for kind, keys in source_config._KEYS.items()},
}
_ARRAYS = [k for k in _KEYS if k != "switchboard"]
_keys_of = {name: st.one_of(st.sampled_from(keys), st.sampled_from(keys),
                            st.text(max_size=8)) for name, keys in _KEYS.items()}


def _table(name):
    return st.dictionaries(_keys_of[name], _values, max_size=6)


_documents = st.fixed_dictionaries(
    {"switchboard": st.one_of(st.none(), _table("switchboard"))},
    optional={**{name: st.lists(_table(name), max_size=3) for name in _ARRAYS},
              "cluster": _table("signal"),
              "surprise": _table("signal")})


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") \
            if value in (float("inf"), float("-inf")) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _render(doc) -> str:
    out = []
    for name, content in doc.items():
        if content is None:
            continue
        if isinstance(content, dict):
            out.append(f"[{_key(name)}]")
            out += [f"{_key(k)} = {_toml(v)}" for k, v in content.items()]
        else:
            for table in content:
                out.append(f"[[{_key(name)}]]")
                out += [f"{_key(k)} = {_toml(v)}" for k, v in table.items()]
        out.append("")
    return "\n".join(out)


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_documents, cut=st.one_of(st.none(), st.tuples(st.integers(0, 10**6),
                                                           st.binary(max_size=3))))
def test_config_load_on_plausible_documents_gives_a_config_or_a_config_error(tmp_path, doc,
                                                                            cut):
    text = _render(doc).encode()
    if cut is not None:              # damage it somewhere: drop a byte, insert a few
        at, insert = cut[0] % (len(text) + 1), cut[1]
        text = text[:at] + insert + text[at + 1:]
    (tmp_path / "watched").mkdir(exist_ok=True)
    path = tmp_path / "switchboard.toml"
    path.write_bytes(text)
    result = _load(path)
    if isinstance(result, Config):
        assert result.workers >= 1 and result.signal_queue >= 1
        assert all(0 <= s.num <= 255 for s in result.signals)


@pytest.mark.parametrize("text", [
    "a = " + "[" * 5000 + "]" * 5000,
    "a = " + "{b = " * 3000 + "1" + "}" * 3000,
    "[switchboard]\nworkers = 1" + "0" * 5000,
], ids=["arrays-nested-5000-deep", "inline-tables-nested-3000-deep", "a-5001-digit-integer"])
def test_config_load_on_pathological_toml_gives_a_config_error(tmp_path, text):
    """Valid or not, a file must never make load() raise something else: these make
    tomllib recurse past Python's limit, or hit its limit on integer digits."""
    path = tmp_path / "switchboard.toml"
    path.write_text(text)
    try:
        result = _load(path)
    except (RecursionError, ValueError) as exc:
        pytest.fail(f"load() raised {type(exc).__name__}: {str(exc)[:200]}", pytrace=False)
    assert isinstance(result, ConfigError | Config)


@pytest.mark.parametrize("entry", [
    '[switchboard]\nspooler = "spool\\u0000dir"\n',
    '[switchboard]\ncontrol = "control\\u0000.sock"\n',
    '[switchboard]\n\n[[file_monitor]]\nsignal = 1\npath = "watched\\u0000"\n',
], ids=["spooler", "control", "file_monitor-path"])
def test_a_nul_byte_in_a_path_is_a_config_error_before_anything_starts(make_instance,
                                                                        wait_for, entry):
    """A path holding a NUL byte can name no file: `switchboard run` must exit 2 with
    an error naming the key, before forking anything (SPEC 10, 14)."""
    inst = make_instance(start=False)
    inst.write_config(text=entry)
    inst.start(wait_ready=False)
    wait_for(lambda: inst.proc.poll() is not None or "ready:" in inst.log, 15,
             message=lambda: inst.log)
    if inst.proc.poll() is None:
        inst.stop()
        pytest.fail(f"the instance started:\n{inst.log}", pytrace=False)
    log = inst.log
    assert inst.proc.returncode == 2, f"exit status {inst.proc.returncode}:\n{log}"
    assert "Traceback" not in log, log
    assert "spawned" not in log, log


# ---------------------------------------------------------------------------------------
# The control socket

FUZZ_SIGNALS = [{"num": n, "target": "worker", "handler": "python:sbtest:mark"}
                for n in range(1, 6)]


def _exchange(path: str, chunks: list[bytes], read: bool) -> bytes | None:
    """Send `chunks` on a new connection; then read the reply to the end (b"" if the
    server closed without one), or leave at once without reading (None)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(15)
        sock.connect(path)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass                  # the server answered (and closed) before the end
        if not read:
            return None
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data


def _accepted_signal(payload: bytes) -> int | None:
    """The signal the master must accept for this payload, as control.py and master.py
    read a request: the first line, up to 4 KiB, `signal N` with N in 0..255."""
    line = payload.partition(b"\n")[0]
    if len(line) > MAX_REQUEST:
        return None
    parts = line.decode("utf-8", "replace").split()
    if len(parts) != 2 or parts[0] != "signal":
        return None
    try:
        num = int(parts[1])
    except ValueError:
        return None
    return num if 0 <= num <= 255 else None


_lines = st.one_of(
    st.binary(max_size=200),
    st.integers(0, 255).map(lambda n: b"signal %d\n" % n),
    st.just(b"stats\n"),
    st.builds(lambda verb, sep, arg, end: verb + sep + arg + end,
              st.sampled_from([b"signal", b"stats", b"SIGNAL", b"signal\x00", b"", b"stat"]),
              st.sampled_from([b" ", b"\t", b"  ", b"", b"\xff"]),
              st.one_of(st.integers(-300, 300).map(lambda i: str(i).encode()),
                        st.sampled_from([b"1_0", b"\xd9\xa3", b"9" * 5000, b"0x10", b"3.0"]),
                        st.binary(max_size=12)),
              st.sampled_from([b"\n", b"\r\n", b"", b"\n\n", b"\nstats\n", b" x\n"])),
    st.binary(min_size=MAX_REQUEST - 2, max_size=MAX_REQUEST + 3),
)
_batches = st.lists(st.tuples(_lines, st.integers(1, 3), st.booleans()), min_size=1,
                    max_size=4)


def test_random_bytes_on_the_control_socket_get_a_json_reply_or_a_close(make_instance):
    inst = make_instance({"workers": 1}, FUZZ_SIGNALS)
    path = str(inst.control_path)
    accepted: Counter[int] = Counter()

    @settings(max_examples=200, deadline=None, derandomize=True, database=None)
    @given(batch=_batches)
    def fuzz(batch):
        for payload, parts, read in batch:
            step = max(1, len(payload) // parts)
            chunks = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
            reply = _exchange(path, chunks, read)
            num = _accepted_signal(payload)
            if num is not None:
                accepted[num] += 1
            if reply is None or reply == b"":
                continue
            assert reply.endswith(b"\n") and reply.count(b"\n") == 1, reply[:200]
            answer = json.loads(reply)
            assert isinstance(answer, dict) and isinstance(answer.get("ok"), bool), answer
            if answer["ok"]:
                assert num is not None or "stats" in answer, (payload[:80], answer)
            else:
                assert num is None and isinstance(answer.get("error"), str), (payload[:80],
                                                                               answer)
                if len(payload.partition(b"\n")[0]) > MAX_REQUEST:
                    assert f"longer than {MAX_REQUEST}" in answer["error"], answer
        # After each batch the master still serves a normal request.
        assert inst.proc.poll() is None, inst.log[-3000:]
        assert inst.socket_stats()["pid"] == inst.pid

    fuzz()
    # The stats count exactly the `signal N` requests the master had to accept; the
    # registered ones (1..5) were all handled, the others are held for a waiter.
    assert accepted, "the fuzzing never sent one valid request"
    stats = inst.stats_when(lambda s: all(s["signals"].get(str(n), {}).get("handled", 0)
                                          == accepted[n] for n in range(1, 6)))
    raised = {int(n): s["raised"] for n, s in stats["signals"].items() if s["raised"]}
    assert raised == dict(accepted), (raised, dict(accepted))
    for n in range(1, 6):
        assert stats["signals"][str(n)]["dropped"] == {}
    held = sum(c for n, c in accepted.items() if not 1 <= n <= 5)
    assert stats["held"] == held
    assert len([r for r in inst.results() if 1 <= int(r[0]) <= 5]) == sum(
        accepted[n] for n in range(1, 6))
    assert "internal error" not in inst.log, inst.log[-3000:]
    assert inst.stop() == 0


def test_the_control_socket_is_private_refuses_big_requests_and_idle_clients(make_instance):
    inst = make_instance({"workers": 1}, FUZZ_SIGNALS[:1])
    path = str(inst.control_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    too_long = "signal 1 " + "x" * MAX_REQUEST       # over 4 KiB before its newline
    for payload in (too_long.encode() + b"\n", too_long.encode()):
        reply = json.loads(_exchange(path, [payload], True))
        assert reply == {"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"}
    # A megabyte with no newline: refused once 4 KiB are in, never read to the end.
    start = time.monotonic()
    reply = _exchange(path, [b"x" * (1 << 20)], True)
    assert time.monotonic() - start < 10
    assert reply == b"" or json.loads(reply)["ok"] is False, reply[:200]

    # Clients that connect and say nothing do not hold up the others.  (Fewer than the
    # listen backlog of 64: see the next test for more at once.)
    idle = []
    try:
        for _ in range(50):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            idle.append(sock)
        start = time.monotonic()
        inst.raise_signal(1)
        stats = inst.socket_stats()
        assert time.monotonic() - start < 5
    finally:
        for sock in idle:
            sock.close()
    inst.wait_results(1)
    stats = inst.stats_when(lambda s: s["signals"]["1"]["handled"] == 1)
    assert (stats["signals"]["1"]["raised"], stats["signals"]["1"]["dropped"]) == (1, {})
    assert inst.stop() == 0


def test_a_crowd_of_clients_at_once_all_get_their_answer(make_instance):
    """200 clients send `signal 1` at the same moment, ten times over: the master is
    up and has room, so every request must be accepted (SPEC 5: a raiser gets an error
    only when its signal cannot be accepted within signal-timeout).  200 is more than
    the control socket's listen backlog, as a burst of cron jobs or scripts may be."""
    import threading

    from switchboard import control

    inst = make_instance({"workers": 1}, FUZZ_SIGNALS[:1])
    path = str(inst.control_path)
    clients, rounds = 200, 10
    barrier = threading.Barrier(clients)
    results: list[object] = []

    def client():
        for _ in range(rounds):
            barrier.wait(30)
            try:
                results.append(control.request(path, "signal 1", 30.0).get("ok"))
            except OSError as exc:
                results.append(repr(exc))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == clients * rounds
    failures = Counter(r for r in results if r is not True)
    stats = inst.stats_when(lambda s: s["signals"]["1"]["handled"] == results.count(True))
    assert not failures, f"{sum(failures.values())} of {len(results)} requests failed: " \
        f"{failures}"
    assert stats["signals"]["1"]["raised"] == clients * rounds
    assert inst.stop() == 0


def test_the_stats_name_every_counter_per_signal(make_instance):
    """The per-signal record has raised, routed, handled, failed, dropped by reason and
    coalesced (SPEC 12), for a registered signal and for a held unregistered one."""
    inst = make_instance({"workers": 1}, FUZZ_SIGNALS[:1])
    inst.raise_signal(1)
    inst.raise_signal(200)
    stats = inst.stats_when(lambda s: s["signals"]["1"]["handled"] == 1)
    for num in ("1", "200"):
        assert set(stats["signals"][num]) >= {"raised", "routed", "handled", "failed",
                                               "dropped", "coalesced"}, stats["signals"][num]
    assert stats["signals"]["200"]["raised"] == 1 and stats["held"] == 1
    assert inst.stop() == 0
