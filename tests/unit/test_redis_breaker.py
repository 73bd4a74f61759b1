"""The Redis link's breaker: fail-open, then retried after ``retry_after_s``."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from extensions.backends.redis import RedisLink
from extensions.backends.settings import RedisSettings

pytestmark = pytest.mark.unit


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_breaker_opens_on_failure_and_retries_after_interval() -> None:
    clock = Clock()
    link = RedisLink(RedisSettings(url="redis://127.0.0.1:1/0", retry_after_s=5), clock=clock)
    calls = []

    async def failing(_: Any) -> str:
        calls.append(1)
        raise RedisConnectionError("down")

    async def working(_: Any) -> str:
        calls.append(1)
        return "ok"

    assert await link.run(failing, "fallback") == "fallback"
    assert not link.available and link.outages == 1
    assert await link.run(working, "fallback") == "fallback"  # open: not even tried
    assert len(calls) == 1
    clock.now += 5
    assert await link.run(working, "fallback") == "ok"  # retried, and closed again
    assert link.available and link.failures == 2
