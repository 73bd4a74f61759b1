"""Pure: what a ``redis.url`` names, a single Redis or a Redis Cluster.

``redis://`` and ``rediss://`` (TLS) name one Redis, as redis-py reads them.
``redis+cluster://`` and ``rediss+cluster://`` name a cluster by one or more seed
nodes, comma-separated: ``redis+cluster://[user:password@]host1:port1,host2:port2``.
Credentials, TLS and query options apply to every node; the client asks a seed for
the slot map and finds the other nodes itself. A cluster has database 0 only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_NODE = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9_.-]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    cluster: bool
    url: str  # a plain redis:// or rediss:// URL: the only node, or the first seed
    seeds: tuple[tuple[str, int], ...] = ()  # a cluster's further seed nodes


def parse_redis_url(url: str) -> RedisTarget:
    """Raises ``ValueError`` with a message naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("redis", "rediss", *CLUSTER_SCHEMES):
        raise ValueError(
            "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://"
        )
    if scheme not in CLUSTER_SCHEMES:
        return RedisTarget(False, url)
    netloc, _, tail = _split_netloc(rest)
    userinfo, at, hosts = netloc.rpartition("@")
    nodes = [_node(part) for part in hosts.split(",")]
    db = urlsplit(f"redis://x{tail}").path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has database 0 only (the URL names /{db})")
    first_host, first_port = nodes[0]
    host = f"[{first_host}]" if ":" in first_host else first_host
    plain = f"{CLUSTER_SCHEMES[scheme]}://{userinfo}{at}{host}:{first_port}{tail}"
    return RedisTarget(True, plain, tuple(nodes[1:]))


def _split_netloc(rest: str) -> tuple[str, str, str]:
    """``host...`` and what follows it (``/db?query``)."""
    for i, ch in enumerate(rest):
        if ch in "/?#":
            return rest[:i], ch, rest[i:]
    return rest, "", ""


def _node(text: str) -> tuple[str, int]:
    match = _NODE.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a host[:port] seed node")
    port = int(match["port"] or 6379)
    if not 0 < port < 65536:
        raise ValueError(f"port {port} of '{text}' is out of range")
    return match["v6"] or match["host"], port
