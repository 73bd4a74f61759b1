"""Redis URLs (single or cluster), their validation in gateway.yaml, and the per-shard
breakers of ``RedisLink`` (no Redis: the shards are named by a stand-in)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError

from extensions.backends.redis import RedisLink
from extensions.backends.redis_url import RedisTarget, parse_redis_url
from extensions.backends.settings import RedisSettings
from extensions.config.schema import GatewayConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://h:6379/0", RedisTarget(False, "redis://h:6379/0")),
        ("rediss://:pw@h:6380/2", RedisTarget(False, "rediss://:pw@h:6380/2")),
        ("redis+cluster://h1", RedisTarget(True, "redis://h1:6379")),
        (
            "rediss+cluster://user:p%40ss@h1:7000,h2:7001,[::1]:7002/0?ssl_cert_reqs=none",
            RedisTarget(
                True,
                "rediss://user:p%40ss@h1:7000/0?ssl_cert_reqs=none",
                (("h2", 7001), ("::1", 7002)),
            ),
        ),
        ("redis+cluster://[::1]:7000,h2", RedisTarget(True, "redis://[::1]:7000", (("h2", 6379),))),
    ],
)
def test_urls(url: str, target: RedisTarget) -> None:
    assert parse_redis_url(url) == target


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", "must start with redis://"),
        ("redis+cluster://h1:7000/3", "database 0 only"),
        ("redis+cluster://h1:7000,,h2", "'' is not a host[:port] seed node"),
        ("redis+cluster://h1:99999", "out of range"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_redis_url(url)


def test_gateway_yaml_accepts_a_cluster_url_and_refuses_a_bad_one() -> None:
    config = GatewayConfig.model_validate({"version": 1, "redis": {"url": "redis+cluster://a:7000,b:7000"}})
    assert config.redis.url == "redis+cluster://a:7000,b:7000"
    sink = {"type": "redis_stream", "url": "redis+cluster://a:7000"}
    assert GatewayConfig.model_validate({"version": 1, "handoff_sinks": {"ops": sink}}).handoff_sinks
    with pytest.raises(ValidationError, match="database 0 only"):
        GatewayConfig.model_validate({"version": 1, "redis": {"url": "redis+cluster://a:7000/1"}})


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class TwoShards(RedisLink):
    """Routes starting with "a" live on shard A, the others on shard B."""

    def shard_of(self, route: str | None) -> str:
        return "A" if (route or "").startswith("a") else "B"


async def test_a_failed_shard_bypasses_its_own_keys_only() -> None:
    clock, states = Clock(), list[bool]()
    settings = RedisSettings(url="redis://127.0.0.1:1/0", retry_after_s=5)
    link = TwoShards(settings, clock=clock, on_state=states.append)
    calls: list[str] = []

    def op(name: str, fail: bool) -> Any:
        async def run(_: Any) -> str:
            calls.append(name)
            if fail:
                raise RedisConnectionError("down")
            return name

        return run

    assert await link.run(op("a1", True), "fallback", route="a1") == "fallback"
    assert link.down == ["A"] and states == [True, False]
    assert await link.run(op("a2", False), "fallback", route="a2") == "fallback"  # not tried
    assert await link.run(op("b1", False), "fallback", route="b1") == "b1"  # shard B answers
    assert await link.run(op("b2", True), "fallback", route="b2") == "fallback"
    assert link.down == ["A", "B"] and link.outages == 2 and states == [True, False]
    clock.now += 5
    assert await link.run(op("a3", False), "fallback", route="a3") == "a3"  # tried again: back
    assert link.down == ["B"] and states == [True, False]
    assert await link.run(op("b3", False), "fallback", route="b3") == "b3"
    assert link.down == [] and link.available and states == [True, False, True]
    assert calls == ["a1", "b1", "b2", "a3", "b3"] and link.failures == 3


class FailedOver:
    """A stand-in for the cluster client: its slot map names ``primaries``."""

    def __init__(self, primaries: list[str]) -> None:
        self.primaries = primaries
        self.nodes_manager = self

    def get_nodes_by_server_type(self, kind: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=name) for name in self.primaries]

    async def initialize(self) -> FailedOver:
        return self


async def test_a_failed_over_master_is_not_waited_for() -> None:
    states: list[bool] = []
    link = TwoShards(RedisSettings(url="redis+cluster://127.0.0.1:1"), on_state=states.append)
    await link.close()
    link.client = FailedOver(["A", "B"])

    async def fail(_: Any) -> None:
        raise RedisConnectionError("down")

    async def work(_: Any) -> str:
        return "ok"

    await link.run(fail, None, route="a")
    assert link.down == ["A"] and states == [True, False]
    assert await link.run(work, "fallback", route="b") == "ok"
    assert link.down == ["A"]  # still the master of its slots: waited for
    link.client.primaries = ["A2", "B"]  # its replica took over
    assert await link.run(work, "fallback", route="b") == "ok"
    assert link.down == [] and states == [True, False, True]
