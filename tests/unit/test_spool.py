"""Spool job files: what spool() accepts, atomic durable writes, order, and the job lock."""

from __future__ import annotations

import os

import pytest
from tests.unit.conftest import start_child

from switchboard import spool


def test_a_dict_becomes_str_keys_and_bytes_values():
    job = spool.make_job({"a": "x", b"b": b"y"}, c="z")
    assert job == {"a": b"x", "b": b"y", "c": b"z"}


def test_bytes_become_the_body():
    assert spool.make_job(b"payload") == {"body": b"payload"}


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
    paths = [spool.write(str(tmp_path), {"n": str(i).encode()}) for i in range(5)]
    assert spool.pending(str(tmp_path)) == paths
    for i, path in enumerate(paths):
        with spool.taken(path) as job:
            assert job == {"n": str(i).encode()}


def test_no_temporary_file_is_left_or_listed(tmp_path):
    spool.write(str(tmp_path), {"a": b"1"})
    names = os.listdir(tmp_path)
    assert len(names) == 1 and names[0].startswith(spool.PREFIX)
    (tmp_path / ".uwsgi_spoolfile_on_half_written").write_bytes(b"garbage")
    assert len(spool.pending(str(tmp_path))) == 1


def test_a_job_held_by_another_process_is_skipped(tmp_path):
    path = spool.write(str(tmp_path), {"a": b"1"})
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
        assert job == {"a": b"1"}


def test_a_job_gone_meanwhile_is_none(tmp_path):
    path = spool.write(str(tmp_path), {"a": b"1"})
    os.unlink(path)
    with spool.taken(path) as job:
        assert job is None


def test_a_foreign_file_is_refused(tmp_path):
    path = tmp_path / (spool.PREFIX + "foreign")
    path.write_bytes(b"not a job")
    with pytest.raises(ValueError, match="is not a Switchboard spool job"), \
            spool.taken(str(path)):
        pass
