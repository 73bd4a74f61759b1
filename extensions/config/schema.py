"""The pydantic model of ``config/gateway.yaml``: one model per YAML section.

Every model forbids unknown keys, so a typo stops start-up instead of being
silently ignored. Each section lives next to the code it configures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from extensions.access.settings import Access
from extensions.backends.settings import RedisSettings
from extensions.cache.settings import CacheSettings, Tier
from extensions.config.base import StrictModel
from extensions.embedding.settings import Embedding
from extensions.guard.settings import Guardrails
from extensions.prompt_cache.settings import PromptCaching
from extensions.observe.settings import Observability, TimelineStore
from extensions.protocols.settings import RequestSettings
from extensions.router.settings import HandoffSink, Router


class ResponseHeadersSettings(StrictModel):
    """``response_headers``: the ``x-gateway-*`` headers added to every response."""

    enabled: bool = True


class ReloadSettings(StrictModel):
    """``reload``: how a running gateway notices an edited gateway.yaml."""

    watch: bool = True  # every worker checks the file's content every poll_s
    poll_s: float = Field(2.0, ge=0.2, le=3600)


class GatewayConfig(StrictModel):
    """The whole of ``config/gateway.yaml`` (cross-references: ``config/references.py``)."""

    version: Literal[1]  # required: an empty or truncated file is never a valid config
    response_headers: ResponseHeadersSettings = ResponseHeadersSettings()
    requests: RequestSettings = RequestSettings()
    reload: ReloadSettings = ReloadSettings()
    embedding: Embedding = Embedding()
    redis: RedisSettings = RedisSettings()
    access: Access = Access()
    cache: CacheSettings = CacheSettings()
    handoff_sinks: dict[str, HandoffSink] = {}
    routers: dict[str, Router] = Field(default_factory=dict)
    guardrails: Guardrails = Guardrails()
    prompt_caching: PromptCaching = PromptCaching()
    observability: Observability = Observability()

    @model_validator(mode="after")
    def _shared_tier_needs_redis(self) -> GatewayConfig:
        if self.cache.enabled and self.cache.tier is Tier.SHARED and not self.redis.url:
            raise ValueError(
                "cache.tier is 'shared' but redis.url is not set (set redis.url, "
                "or use tier 'memory')"
            )
        return self

    @model_validator(mode="after")
    def _redis_limits_need_redis(self) -> GatewayConfig:
        if self.access.limits.store.value == "redis" and not self.redis.url:
            raise ValueError(
                "access.limits.store is 'redis' but redis.url is not set (set redis.url, "
                "or use store 'memory')"
            )
        return self

    @model_validator(mode="after")
    def _redis_timeline_needs_redis(self) -> GatewayConfig:
        if self.observability.dashboard.store is TimelineStore.REDIS and not self.redis.url:
            raise ValueError(
                "observability.dashboard.store is 'redis' but redis.url is not set (set "
                "redis.url, or use store 'memory')"
            )
        return self
