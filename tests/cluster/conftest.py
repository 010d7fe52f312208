"""Cluster tests: several instances on this machine joined through the tests' PostgreSQL.

Each test uses its own cluster name, so tests sharing the session's server never see
each other's nodes or signals.  Each instance has its own folder, so a handler's
results file says which node ran it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from tests.conftest import Instance, toml_value

MARK = "python:sbtest:mark"


@pytest.fixture
def cluster_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_node(make_instance: Callable[..., Instance], postgres: str, cluster_name: str
              ) -> Callable[..., Instance]:
    """`make_node("a", signals, cluster={...}, extra="toml", start=True)`: an instance
    named `a` in this test's cluster (heartbeat 0.5 s unless told)."""
    def make(node: str, signals: list[dict[str, Any]] | None = None,
             cluster: dict[str, Any] | None = None, extra: str = "",
             settings: dict[str, Any] | None = None, start: bool = True,
             modules: dict[str, str] | None = None) -> Instance:
        inst = make_instance(settings or {"workers": 1}, signals or [], name=node,
                             modules=modules, start=False)
        table = {"dsn": postgres, "name": cluster_name, "node": node, "heartbeat": 0.5,
                 **(cluster or {})}
        with open(inst.config_path, "a") as f:
            f.write("\n[cluster]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                               for k, v in table.items()))
            f.write(extra)
        if start:
            inst.start()
        return inst
    return make
