"""Spool job files: what spool() accepts, atomic durable writes, order, and the job lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.unit.conftest import start_child

from switchboard import spool


def test_a_dict_becomes_bytes_keys_and_bytes_values():
    # uWSGI 2.0.31 takes bytes only (checked: str raises "spooler callable dictionary
    # must contains only bytes"); str is encoded here, so both spellings work
    job = spool.make_job({"a": "x", b"b": b"y"}, c="z")
    assert job == {b"a": b"x", b"b": b"y", b"c": b"z"}


def test_bytes_become_the_body():
    assert spool.make_job(b"payload") == {b"body": b"payload"}


def test_at_and_priority_may_be_numbers_and_must_be_numbers():
    assert spool.make_job({"at": 12.5, "priority": 3}) == {b"at": b"12.5", b"priority": b"3"}
    with pytest.raises(ValueError, match="'priority' must be a whole number >= 0, not b'x'"):
        spool.make_job({"priority": "x"})
    with pytest.raises(ValueError, match="'at' must be a unix time, not b'soon'"):
        spool.make_job({"at": "soon"})


def test_priority_jobs_go_in_numbered_folders_and_run_first_lowest_first(tmp_path):
    # the folders are uWSGI's (checked: priority=3 wrote SPOOL/3/uwsgi_spoolfile_on_...)
    plain = spool.write(str(tmp_path), {b"n": b"plain"})
    p3 = spool.write(str(tmp_path), {b"priority": b"3"})
    p1 = spool.write(str(tmp_path), {b"priority": b"1"})
    assert os.path.dirname(p3) == str(tmp_path / "3")
    assert (tmp_path / "3").stat().st_mode & 0o777 == 0o700
    assert spool.pending(str(tmp_path)) == [p1, p3, plain]
    assert spool.listed(str(tmp_path)) == [plain]      # spooler_jobs(): the folder only


def test_a_job_at_a_later_time_is_not_due_until_then(tmp_path):
    import time
    later = spool.write(str(tmp_path), {b"at": str(time.time() + 3600).encode()})
    due = spool.write(str(tmp_path), {b"at": str(time.time() - 1).encode()})
    assert spool.pending(str(tmp_path)) == [due]
    assert os.stat(later).st_mtime > time.time() + 3000   # its mtime says when, as uWSGI
    assert spool.listed(str(tmp_path)) == sorted([later, due])


def test_the_spooler_function_gets_uwsgis_dict():
    # uWSGI 2.0.31 hands bytes keys, except str 'body' and 'spooler_task_name' (checked)
    job = spool.handed({b"a": b"1", b"body": b"B"}, "/s/uwsgi_spoolfile_on_x")
    assert job == {b"a": b"1", "body": b"B", "spooler_task_name": b"/s/uwsgi_spoolfile_on_x"}


def test_read_gives_a_job_or_none(tmp_path):
    path = spool.write(str(tmp_path), {b"a": b"1"})
    assert spool.read(path) == {b"a": b"1"}
    assert spool.read(str(tmp_path / "missing")) is None
    (tmp_path / "junk").write_bytes(b"not a job")
    assert spool.read(str(tmp_path / "junk")) is None


@pytest.mark.parametrize("job, message", [
    ([1, 2], "spool() takes a dict or bytes, not list"),
    ({"a": 1}, "spool job value 'a' must be str or bytes, not int"),
    ({1: "x"}, "spool job keys must be str or bytes, not int"),
    ({}, "spool() needs a non-empty dict"),
])
def test_bad_jobs_are_refused_with_a_message_naming_the_problem(job, message):
    with pytest.raises((TypeError, ValueError), match=message.replace("(", r"\(")
                       .replace(")", r"\)")):
        spool.make_job(job)


def test_written_jobs_are_listed_in_order_and_read_back(tmp_path):
    paths = [spool.write(str(tmp_path), {b"n": str(i).encode()}) for i in range(5)]
    assert spool.pending(str(tmp_path)) == paths
    for i, path in enumerate(paths):
        with spool.taken(path) as job:
            assert job == {b"n": str(i).encode()}


def test_no_temporary_file_is_left_or_listed(tmp_path):
    spool.write(str(tmp_path), {b"a": b"1"})
    names = os.listdir(tmp_path)
    assert len(names) == 1 and names[0].startswith(spool.PREFIX)
    (tmp_path / ".uwsgi_spoolfile_on_half_written").write_bytes(b"garbage")
    assert len(spool.pending(str(tmp_path))) == 1


def test_a_job_held_by_another_process_is_skipped(tmp_path):
    path = spool.write(str(tmp_path), {b"a": b"1"})
    held_r, held_w = os.pipe()
    go_r, go_w = os.pipe()

    def hold() -> None:
        with spool.taken(path) as job:
            assert job is not None
            os.write(held_w, b"held")
            os.read(go_r, 1)              # until the parent says so

    pid = start_child(hold)
    try:
        assert os.read(held_r, 4) == b"held"
        with spool.taken(path) as job:
            assert job is None
    finally:
        os.write(go_w, b"x")
        os.waitpid(pid, 0)
        for fd in (held_r, held_w, go_r, go_w):
            os.close(fd)
    with spool.taken(path) as job:
        assert job == {b"a": b"1"}


def test_a_job_gone_meanwhile_is_none(tmp_path):
    path = spool.write(str(tmp_path), {b"a": b"1"})
    os.unlink(path)
    with spool.taken(path) as job:
        assert job is None


@pytest.mark.parametrize("content, reason", [
    (b"not a job", "no switchboard-spool-1 header"),
    (b"switchboard-spool-1\n\x80\x05", "unreadable"),
    (b"switchboard-spool-1\n" + __import__("pickle").dumps([1]), "holds a list, not a dict"),
])
def test_a_foreign_file_is_refused(tmp_path, content, reason):
    path = tmp_path / (spool.PREFIX + "foreign")
    path.write_bytes(content)
    with pytest.raises(spool.InvalidJob, match=reason), spool.taken(str(path)):
        pass


def test_an_invalid_file_is_set_aside_not_deleted(tmp_path):
    path = tmp_path / (spool.PREFIX + "foreign")
    path.write_bytes(b"junk")
    target = spool.set_aside(str(tmp_path), str(path))
    assert target == str(tmp_path / "invalid" / (spool.PREFIX + "foreign"))
    assert Path(target).read_bytes() == b"junk" and not path.exists()
    assert (tmp_path / "invalid").stat().st_mode & 0o777 == 0o700
    assert spool.pending(str(tmp_path)) == []
