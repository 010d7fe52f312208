"""The quickstart's handlers: each says which worker ran it.

Worker 1 raises one of each signal right after it starts, so the first run shows
the three kinds of target at work.
"""

import uwsgi
from uwsgidecorators import postfork


def hello(num):
    print(f"signal {num} (worker): handled by worker {uwsgi.worker_id()}")


def everyone(num):
    print(f"signal {num} (workers): handled by worker {uwsgi.worker_id()}")


def only_two(num):
    print(f"signal {num} (worker2): handled by worker {uwsgi.worker_id()}")


@postfork
def raise_some():
    if uwsgi.worker_id() == 1:
        for num in (30, 22, 17):
            uwsgi.signal(num)
