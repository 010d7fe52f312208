"""Issue 15, item 2: the spool folder runs what it finds, so it must be ours alone, and
a file that is not a valid job is moved aside (not deleted, not run) and logged."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

JOBS = """
import uwsgi
import sbtest


def spooler(job):
    sbtest.record("ran", job[b"name"].decode())
    return uwsgi.SPOOL_OK


uwsgi.spooler = spooler
"""


def test_run_refuses_a_spool_folder_others_can_write(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    (tmp_path / "app.toml").write_text('[switchboard]\nspooler = "spool"\n')
    proc = subprocess.run([sys.executable, "-m", "switchboard", "run", "app.toml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert (f"app.toml: [switchboard]: key 'spooler': spool folder {spool} has mode 0777: "
            "other users may write into it") in proc.stderr
    assert "spawned" not in proc.stderr             # refused before anything forked


def test_invalid_job_files_are_moved_aside_logged_and_counted(make_instance, wait_for):
    inst = make_instance(start=False, modules={"jobs": JOBS})
    spool = inst.dir / "spool"
    spool.mkdir(mode=0o700)
    (spool / "uwsgi_spoolfile_on_junk_1").write_bytes(b"not a job at all")
    (spool / "uwsgi_spoolfile_on_truncated_2").write_bytes(b"switchboard-spool-1\n\x80\x05")
    (spool / "uwsgi_spoolfile_on_good_3").write_bytes(      # a valid job, written last
        b"switchboard-spool-1\n" + pickle.dumps({b"name": b"good"}))
    inst.write_config({"workers": 1, "spooler": "spool", "import": ["jobs"]})
    inst.start()
    stats = inst.stats_when(lambda s: s["spoolers"][0]["jobs_invalid"] == 2)
    inst.wait_results(1, where=lambda r: r == ["ran", "good"])
    assert [r for r in inst.results() if r[0] == "ran"] == [["ran", "good"]]
    assert sorted(os.listdir(spool / "invalid")) == ["uwsgi_spoolfile_on_junk_1",
                                                    "uwsgi_spoolfile_on_truncated_2"]
    assert (spool / "invalid" / "uwsgi_spoolfile_on_junk_1").read_bytes() == \
        b"not a job at all"                              # moved, not altered or deleted
    log = inst.log
    assert re.search(r"spool job uwsgi_spoolfile_on_junk_1 is not a valid spool file "
                     r"\(no switchboard-spool-1 header\): moved to \S+/invalid/"
                     r"uwsgi_spoolfile_on_junk_1, not run", log), log
    assert "uwsgi_spoolfile_on_truncated_2 is not a valid spool file (unreadable" in log
    assert stats["spoolers"][0]["respawns"] == 0
    assert inst.stop() == 0
