"""The redis-py asyncio client for a Redis URL: a single Redis or a Redis Cluster.

The retry settings, in one place (docs/redis.md explains them):

- Both: connect and read timeouts of ``timeout_s``; no backoff; one retry, so a slow
  or dead node costs a caller at most about two timeouts before ``RedisLink``'s
  breaker takes over.
- Single Redis: the retry is on a broken connection only (after a Redis restart the
  pooled connections are dead; the retry opens a fresh one).
- Cluster: the retry is on ConnectionError, TimeoutError, CLUSTERDOWN and an uncovered
  slot, each after the client has re-read the slot map from a reachable node. MOVED: the
  slot is re-pointed at the node named and the command resent at once, never a re-read of
  the whole map (``reinitialize_steps=0``: redis-py would close every connection, in use
  or not, and a resharding sends many MOVED). ASK: resent once to the node named, with
  ASKING, map unchanged. TRYAGAIN: resent (at most 16 redirections in all). A failover
  is a dead node until the map names the promoted replica: the first command after a
  failure re-reads the map. A partly covered cluster still serves its covered slots.
  CLUSTERDOWN, an uncovered slot and a failed pipeline re-read the map without closing
  connections in use (``GatewayCluster``); a pipeline waits 0.25 s before its retry.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import PRIMARY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from extensions.backends.redis_url import parse_redis_url

# connections per cluster node and worker; past it redis-py raises MaxConnectionsError
# at once (it does not queue), which the breaker counts as that shard failing
CLUSTER_MAX_CONNECTIONS = 1000


class GatewayCluster(RedisCluster):
    """``RedisCluster`` that never closes connections in use to recover from an error.

    redis-py (8.1) recovers from CLUSTERDOWN (a restarted node answers it until it has
    rejoined), from an uncovered slot and from a failed pipeline by closing every
    connection to every node, and from a failed re-read of the slot map likewise; it
    re-reads the command table (``COMMAND``) from the first master at every re-read,
    which fails while that master is down. The commands then in flight on healthy nodes
    failed too ("Connection closed by server", or an AttributeError from a socket closed
    under them), and the breakers of healthy shards opened. Here recovery only makes the
    next command re-read the slot map, the command table is read once (from the first
    master that answers), and ``close_for_good`` closes.
    """

    _shutting_down = False

    async def initialize(
        self,
        additional_startup_nodes_info: list[tuple[str, int]] | None = None,
        last_failed_node_name: str | None = None,
    ) -> GatewayCluster:
        if not self._initialize:
            return self
        if not self._lock:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._initialize:
                await self.nodes_manager.initialize(
                    additional_startup_nodes_info=additional_startup_nodes_info,
                    last_failed_node_name=last_failed_node_name,
                )
                if not self.commands_parser.commands:
                    await self._read_command_table()
                self._initialize = False
        return self

    async def _read_command_table(self) -> None:
        error: Exception | None = None
        for node in self.nodes_manager.get_nodes_by_server_type(PRIMARY):
            try:
                await self.commands_parser.initialize(node)
                return
            except (RedisError, OSError) as exc:
                error = exc
        raise RedisClusterException(f"no master answered COMMAND: {error}")

    async def aclose(self) -> None:
        if self._shutting_down:
            await super().aclose()
        else:
            self._initialize = True

    async def close_for_good(self) -> None:
        self._shutting_down = True
        await super().aclose()


async def close_client(client: Any) -> None:
    await (client.close_for_good() if isinstance(client, GatewayCluster) else client.aclose())


def make_client(url: str, timeout_s: float, decode_responses: bool = False) -> Any:
    """A ``Redis`` or a ``RedisCluster`` (typed ``Any``: redis-py's stubs type them loosely)."""
    target = parse_redis_url(url)
    common: dict[str, Any] = {
        "socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
        "decode_responses": decode_responses, "health_check_interval": 0,
        "retry": Retry(NoBackoff(), 1),
    }  # fmt: skip
    if not target.cluster:
        return Redis.from_url(target.url, retry_on_error=[RedisConnectionError], **common)
    return GatewayCluster.from_url(
        target.url,
        startup_nodes=[ClusterNode(host, port) for host, port in target.seeds] or None,
        require_full_coverage=False,
        reinitialize_steps=0,
        max_connections=CLUSTER_MAX_CONNECTIONS,
        **common,
    )
