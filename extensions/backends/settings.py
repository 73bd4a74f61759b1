"""``redis`` section of gateway.yaml: the shared Redis (or Redis Cluster) of every worker."""

from __future__ import annotations

from pydantic import Field, field_validator

from extensions.backends.redis_url import parse_redis_url
from extensions.config.base import StrictModel


def check_redis_url(url: str) -> str:
    """A validator for every Redis URL in the config (``redis.url``, handoff sinks)."""
    parse_redis_url(url)
    return url


class RedisSettings(StrictModel):
    """Where the shared Redis is, and how long to wait for it before degrading.

    ``url``: ``redis://host:6379/0`` (``rediss://`` for TLS) names one Redis;
    ``redis+cluster://host1:6379,host2:6379`` (``rediss+cluster://``) a Redis Cluster by
    its seed nodes (docs/redis.md). It may be written ``os.environ/NAME`` (LiteLLM's
    convention): the loader substitutes the variable, so secrets stay out of the file.
    """

    url: str | None = None
    socket_timeout_ms: int = Field(100, ge=5, le=10_000)
    retry_after_s: float = Field(2.0, gt=0, le=300)
    key_prefix: str = Field("gw:", pattern=r"^[A-Za-z0-9:_.-]{1,32}$")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        return None if url is None else check_redis_url(url)
