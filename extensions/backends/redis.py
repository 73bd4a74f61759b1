"""A Redis connection that degrades instead of failing: the breaker behind fail-open.

Every call goes through ``RedisLink.run``. When Redis errors or times out, the
link opens for ``retry_after_s`` (calls return the fallback at once, counted and
logged once per outage), then lets the next call try again: caching resumes by
itself when Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from extensions.backends.settings import RedisSettings

logger = logging.getLogger("gateway.redis")
T = TypeVar("T")


class RedisLink:
    def __init__(
        self,
        settings: RedisSettings,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[bool], None] | None = None,
    ):
        if not settings.url:
            raise ValueError("RedisLink needs redis.url")
        timeout = settings.socket_timeout_ms / 1000
        # one immediate retry on a broken connection: after a Redis restart, pooled
        # connections are dead, and the retry opens a fresh one instead of failing
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.url, socket_timeout=timeout, socket_connect_timeout=timeout,
            decode_responses=False, health_check_interval=0,
            retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
        )  # fmt: skip
        self.prefix = settings.key_prefix
        self._retry_after_s = settings.retry_after_s
        self._clock = clock
        self._open_until = 0.0
        self.failures = 0  # calls that failed or were skipped because Redis was down
        self.outages = 0
        self._on_state = on_state or (lambda up: None)  # told when Redis goes down / comes back
        self._on_state(True)

    @property
    def available(self) -> bool:
        return self._clock() >= self._open_until

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]], fallback: T) -> T:
        """``op(client)``, or ``fallback`` if Redis is down or fails (never raises for Redis)."""
        if not self.available:
            self.failures += 1
            return fallback
        try:
            result = await op(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if self._open_until == 0.0 or self.available:
                self.outages += 1
                logger.warning("Redis unavailable (%s: %s); bypassing it for %.1f s",
                               type(exc).__name__, exc, self._retry_after_s)  # fmt: skip
                self._on_state(False)
            self._open_until = self._clock() + self._retry_after_s
            return fallback
        if self._open_until:
            logger.warning("Redis is back; shared caching resumes")
            self._open_until = 0.0
            self._on_state(True)
        return result

    async def close(self) -> None:
        await self.client.aclose()
