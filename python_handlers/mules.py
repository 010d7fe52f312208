"""samples/mules: a farm, a mule program and spool jobs.

- signal 40 -> `mule`: the first available mule;  41 -> `farm_heavy` (mules 2 and 3);
  42 -> `mules`: every mule;  43 -> `mule1`: handled inside mule 1's program.
- signal 44 -> `worker`: the handler spools a job; the spooler runs `report`.
"""

import uwsgi
from uwsgidecorators import spool


def where():
    if uwsgi.mule_id():
        return f"mule {uwsgi.mule_id()}"
    if uwsgi.i_am_the_spooler():
        return "the spooler"
    return f"worker {uwsgi.worker_id()}"


def hello(num):
    print(f"signal {num}: handled by {where()}")


def feeder():
    """Mule 1's program: its own loop, handling signals only inside signal_wait()."""
    print("mule 1: program started")
    while True:
        num = uwsgi.signal_wait(timeout=60)
        if num is not None:
            print(f"mule 1: program saw signal {num}")


@spool
def report(job):
    print(f"spool job {job['name']}: run by {where()}")   # @spool hands str, as uWSGI


def spool_one(num):
    report.spool(name=f"from-{where().replace(' ', '-')}")
    print(f"signal {num}: {where()} spooled a job")
