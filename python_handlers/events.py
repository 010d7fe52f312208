"""samples/events, the Python side: a sub-second timer, a cron entry, PostgreSQL jobs."""

import uwsgi

ticks = 0


def heartbeat(num):
    """Every 0.25 s on worker 1; it says so once a second."""
    global ticks
    ticks += 1
    if ticks % 4 == 0:
        print(f"timer: worker {uwsgi.worker_id()} counted {ticks} ticks of 0.25 s")


def every_minute(num):
    print(f"cron: signal {num} on worker {uwsgi.worker_id()}")


def on_job(num):
    print(f"pgnotify: a NOTIFY on channel switchboard_jobs reached worker {uwsgi.worker_id()}")
