"""Handlers of samples/cluster: what each node prints when the cluster signals it."""

import uwsgi


def reload_cache(num):
    print(f"signal {num}: worker {uwsgi.worker_id()} reloads the cache", flush=True)


def flush(num):
    print(f"signal {num}: worker {uwsgi.worker_id()} flushes", flush=True)


def nightly(num):
    """A unique timer: one node of the cluster runs each fire."""
    print(f"signal {num}: this node's turn for the unique job "
          f"(members: {', '.join(uwsgi.cluster_nodes())})", flush=True)


def greet(num):
    """Runs once on web-1: reload web-2's cache, then flush every node."""
    uwsgi.signal(40, "web-2")
    uwsgi.signal(41, "*")
    print(f"signal {num}: asked web-2 to reload and every node to flush", flush=True)
