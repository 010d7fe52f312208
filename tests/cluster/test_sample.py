"""samples/cluster runs as shipped (a copy, pointed at the tests' PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from tests.conftest import wait_for
from tests.events.test_samples import copy_samples

pytestmark = pytest.mark.timeout(90)

SHIPPED = ('dsn = "postgresql:///postgres"', 'name = "demo"')


def test_the_cluster_sample_signals_across_two_nodes(make_instance, tmp_path, postgres):
    repo = copy_samples(tmp_path)
    name = f"demo{uuid.uuid4().hex[:8]}"          # apart from other tests' clusters
    configs = []
    for node in ("web-2", "web-1"):
        config = repo / "samples" / "cluster" / f"{node}.toml"
        text = config.read_text()
        assert all(text.count(line) == 1 for line in SHIPPED), "update this test"
        config.write_text(text.replace(SHIPPED[0], f'dsn = "{postgres}"')
                          .replace(SHIPPED[1], f'name = "{name}"'))
        configs.append(config)
    web2 = make_instance.existing(configs[0])
    web1 = make_instance.existing(configs[1])
    wait_for(lambda: "reloads the cache" in web2.stdout, 15, message=lambda: web2.log)
    for inst in (web1, web2):
        wait_for(lambda inst=inst: inst.stdout.count("flushes") == 2, 15,
                 message=lambda inst=inst: inst.log)
    assert "asked web-2 to reload and every node to flush" in web1.stdout
    assert "reloads the cache" not in web1.stdout

    def turns() -> int:
        return sum(i.stdout.count("unique job (members: web-1, web-2)") for i in (web1, web2))
    wait_for(lambda: turns() >= 2, 15, message=lambda: (web1.stdout, web2.stdout))
    assert web1.stop() == 0 and web2.stop() == 0
