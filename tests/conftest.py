"""Session fixtures: one simulated provider and one gateway proxy shared by the tests."""

from __future__ import annotations

import os

# before anything imports litellm: never fetch its model cost map from the internet
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_cluster import LocalRedisCluster
from tests.support.redis_server import RedisServer
from tests.support.stack import Proxy, SimProvider


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def sim(log_dir: Path) -> Iterator[SimProvider]:
    provider = SimProvider(log_dir).start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def gateway(log_dir: Path, sim: SimProvider) -> Iterator[Proxy]:
    """The shipped configuration, unchanged."""
    proxy = Proxy(log_dir, sim).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def clean_sim(sim: SimProvider) -> Iterator[SimProvider]:
    """The provider with its stats and runtime faults cleared before and after the test."""
    sim.reset()
    yield sim
    sim.reset()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """Three Redis masters forming a cluster (tests/support/redis_cluster.py)."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()
