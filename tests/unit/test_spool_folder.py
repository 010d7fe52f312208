"""The spool folder's trust (issue 15): made 0700, refused when another user may write."""

from __future__ import annotations

import os

import pytest

from switchboard.spool_folder import UnsafeSpoolFolder, prepare


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_the_folder_and_the_parents_it_makes_are_0700_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        prepare(str(tmp_path / "a" / "b" / "spool"))
    finally:
        os.umask(old)
    for path in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "spool"):
        assert mode(path) == 0o700, path


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o702])
def test_a_folder_others_may_write_into_is_refused(tmp_path, bits):
    folder = tmp_path / "spool"
    folder.mkdir()
    folder.chmod(bits)
    with pytest.raises(UnsafeSpoolFolder, match=rf"spool folder {folder} has mode "
                                                rf"0{bits:o}: other users may write into it"):
        prepare(str(folder))


def test_a_readable_folder_of_ours_is_accepted(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    folder.chmod(0o755)                 # others may read, not write: no job gets in
    prepare(str(folder))
    assert mode(folder) == 0o755


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_another_user_owns_is_refused(tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4242, 4242)
    with pytest.raises(UnsafeSpoolFolder, match="is owned by uid 4242, not by you"):
        prepare(str(folder))


def test_a_file_where_the_folder_should_be_is_refused(tmp_path):
    (tmp_path / "spool").write_text("")
    with pytest.raises(UnsafeSpoolFolder, match="is not a directory"):
        prepare(str(tmp_path / "spool"))
