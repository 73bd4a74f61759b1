"""``prompt_caching`` section of gateway.yaml: provider prompt caching per model group."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, model_validator

from extensions.config.base import StrictModel


class Mode(StrEnum):
    AUTOMATIC = "automatic"  # the provider caches long prefixes by itself (OpenAI): send nothing
    EXPLICIT = "explicit"  # the gateway marks the stable prefix (Anthropic cache_control,
    #                        Gemini context caching through LiteLLM)


class GroupCaching(StrictModel):
    """One model group's prompt caching."""

    mode: Mode
    min_tokens: int = Field(1024, ge=1)  # shorter prefixes are never marked (providers' minimum)
    ttl_s: int | None = Field(None, ge=60, le=7 * 86400)  # explicit caches' lifetime (Gemini)
    storage_usd_per_mtok_hour: float = Field(0.0, ge=0.0)  # storage fee of explicit caches

    @model_validator(mode="after")
    def _storage_needs_ttl(self) -> GroupCaching:
        if self.storage_usd_per_mtok_hour > 0 and self.ttl_s is None:
            raise ValueError("a storage fee needs 'ttl_s' (how long each cache is stored)")
        if self.mode is Mode.AUTOMATIC and (self.ttl_s or self.storage_usd_per_mtok_hour):
            raise ValueError("'ttl_s' and a storage fee apply to mode 'explicit' only")
        return self


class PromptCaching(StrictModel):
    """Per model group of litellm.yaml. Cached-input prices are litellm.yaml's
    ``cache_read_input_token_cost`` / ``cache_creation_input_token_cost``."""

    groups: dict[str, GroupCaching] = {}
