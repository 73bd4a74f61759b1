"""The Redis the test command starts by itself: Redis 8 with vector sets and RediSearch,
as in the production `redis:8` image (the caches and limits build on both)."""

from __future__ import annotations

import pytest
import redis

from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration


def test_redis_8_with_vector_sets_and_search(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    info = client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 8
    client.execute_command("VADD", "t:vs", "VALUES", 3, 1.0, 0.0, 0.0, "a")
    client.execute_command("VADD", "t:vs", "VALUES", 3, 0.0, 1.0, 0.0, "b")
    nearest = client.execute_command("VSIM", "t:vs", "VALUES", 3, 0.9, 0.1, 0.0, "COUNT", 1)
    assert nearest == [b"a"]
    modules = {m[b"name"] if isinstance(m, dict) else m[1] for m in client.module_list()}
    assert b"search" in modules
    client.delete("t:vs")
