"""A Redis connection that degrades instead of failing: the breakers behind fail-open.

Every call goes through ``RedisLink.run(op, fallback, route)``. ``route`` is a key the
operation touches (all keys of one operation share a hash slot: docs/redis.md); on a
Redis Cluster it names the shard, and each shard has a breaker of its own, so a shard
that is down degrades the keys it holds and no others. A single Redis is one shard.

When a call errors or times out, its shard's breaker opens for ``retry_after_s``: calls
for that shard return the fallback at once (counted; logged once per outage), then the
next call tries again, and the shard resumes by itself when it answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.cluster import PRIMARY
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from extensions.backends.redis_client import close_client, make_client
from extensions.backends.redis_url import parse_redis_url
from extensions.backends.settings import RedisSettings

logger = logging.getLogger("gateway.redis")
T = TypeVar("T")
SINGLE = "redis"  # the one shard of a single Redis
WHOLE_CLUSTER = "cluster"  # a cluster operation without a route, or before the slot map is known


class RedisLink:
    def __init__(
        self,
        settings: RedisSettings,
        clock: Callable[[], float] = time.monotonic,
        on_state: Callable[[bool], None] | None = None,
    ):
        if not settings.url:
            raise ValueError("RedisLink needs redis.url")
        self.cluster = parse_redis_url(settings.url).cluster
        self.client: Any = make_client(settings.url, settings.socket_timeout_ms / 1000)
        self.prefix = settings.key_prefix
        self._retry_after_s = settings.retry_after_s
        self._clock = clock
        self._down: dict[str, float] = {}  # shard -> when its next call may try again
        self.failures = 0  # calls that failed or were skipped because their shard was down
        self.outages = 0
        self._on_state = on_state or (
            lambda up: None
        )  # told when any shard goes down / all are back
        self._on_state(True)

    @property
    def available(self) -> bool:
        """No shard's breaker is holding calls back right now."""
        now = self._clock()
        return all(now >= until for until in self._down.values())

    @property
    def down(self) -> list[str]:
        """Shards that failed and have not answered since."""
        return sorted(self._down)

    def shard_of(self, route: str | None) -> str:
        """The node holding ``route``'s hash slot, as the client's slot map has it."""
        if not self.cluster:
            return SINGLE
        if route is None:
            return WHOLE_CLUSTER
        nodes = self.client.nodes_manager.slots_cache.get(key_slot(route.encode()))
        return str(nodes[0].name) if nodes else WHOLE_CLUSTER

    async def run(
        self, op: Callable[[Any], Awaitable[T]], fallback: T, route: str | None = None
    ) -> T:
        """``op(client)``, or ``fallback`` if ``route``'s shard is down or fails (never
        raises for Redis). ``route``: a key ``op`` touches (a cluster's shard by it)."""
        shard = self.shard_of(route)
        until = self._down.get(shard)
        if until is not None and self._clock() < until:
            self.failures += 1
            return fallback
        try:
            if self.cluster:
                # no-op once the slot map is known; without it, redis-py (8.1) sends the
                # commands of a burst to random nodes and closes connections still in use
                # while it follows their MOVED replies (tests/integration/test_redis_cluster)
                await self.client.initialize()
            result = await op(self.client)
        except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
            self._failed(shard, exc)
            return fallback
        except AttributeError as exc:
            # redis-py (8.1) raises it when it closes a failed node's idle connections
            # while another command is taking one of them
            self._failed(shard, exc)
            return fallback
        if self._down:
            self._back(shard if until is not None else None)
        return result

    def _back(self, shard: str | None) -> None:
        """``shard`` answered; on a cluster, shards that no longer serve a slot (a
        failed-over master, or the whole cluster before its map was known) are not
        waited for either."""
        back = [shard] if shard in self._down else []
        if self.cluster:
            nodes = self.client.nodes_manager.get_nodes_by_server_type(PRIMARY)
            primaries = {node.name for node in nodes}
            back += [s for s in self._down if s not in primaries and s != shard]
        for name in back:
            del self._down[name]
            logger.warning("Redis is back%s; shared state resumes", _where(name))
        if back and not self._down:
            self._on_state(True)

    def _failed(self, shard: str, exc: BaseException) -> None:
        self.failures += 1
        if shard not in self._down:
            self.outages += 1
            logger.warning(
                "Redis unavailable%s (%s: %s); bypassing it for %.1f s",
                _where(shard),
                type(exc).__name__,
                exc,
                self._retry_after_s,
            )
            if not self._down:
                self._on_state(False)
        self._down[shard] = self._clock() + self._retry_after_s

    async def close(self) -> None:
        await close_client(self.client)


def _where(shard: str) -> str:
    return "" if shard == SINGLE else f" (shard {shard})"
