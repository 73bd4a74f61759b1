"""Pure: what provider prompt caching saved and what its storage cost, for one call."""

from __future__ import annotations

from dataclasses import dataclass

from extensions.config.catalog import Price
from extensions.prompt_cache.settings import GroupCaching


@dataclass(frozen=True, slots=True)
class PromptCacheUse:
    read_tokens: int  # input served from the provider's cache
    write_tokens: int  # input written to it
    saved_usd: float  # what the read tokens would have cost more at the plain input price
    storage_usd: float  # explicit caches: stored tokens × hours × the storage rate


def prompt_cache_use(price: Price | None, settings: GroupCaching | None, read: int,
                     written: int) -> PromptCacheUse | None:  # fmt: skip
    if not read and not written:
        return None
    saved = 0.0
    if price is not None and price.cache_read is not None:
        saved = read * max(0.0, price.input - price.cache_read)
    storage = 0.0
    if settings is not None and settings.ttl_s and written:
        storage = written / 1e6 * settings.storage_usd_per_mtok_hour * settings.ttl_s / 3600
    return PromptCacheUse(read, written, saved, storage)
