"""``redis`` section of gateway.yaml: the one Redis shared by caches (and limits)."""

from __future__ import annotations

from pydantic import Field

from extensions.config.base import StrictModel


class RedisSettings(StrictModel):
    """Where the shared Redis is, and how long to wait for it before degrading.

    ``url`` may be written ``os.environ/NAME`` (LiteLLM's convention): the loader
    substitutes the variable, so secrets stay out of the file.
    """

    url: str | None = Field(None, pattern=r"^rediss?://")
    socket_timeout_ms: int = Field(100, ge=5, le=10_000)
    retry_after_s: float = Field(2.0, gt=0, le=300)
    key_prefix: str = Field("gw:", pattern=r"^[A-Za-z0-9:_.-]{1,32}$")
