"""The Python half of samples/mixed: 10 (Python) -> 11 (Lua) -> 12 (Python, every worker)."""

import uwsgi


def ping(num):
    print(f"python: worker {uwsgi.worker_id()} got {num}, raising 11 for Lua")
    uwsgi.signal(11)


def done(num):
    print(f"python: worker {uwsgi.worker_id()} got {num} from Lua")
