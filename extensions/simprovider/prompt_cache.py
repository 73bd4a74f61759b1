"""Simulated Anthropic prompt caching (pure logic; the caller passes the clock).

The prompt is a sequence of segments in Anthropic's cache order: tools, then system blocks,
then message content blocks. The cached prefix runs up to and including the last segment
marked with ``cache_control``. If its token estimate reaches the model's minimum, the first
request seeing it (per model) is a cache *write*; later ones within the TTL are cache
*reads*, and each read refreshes the TTL, as Anthropic does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum


class CacheOutcome(StrEnum):
    NONE = "none"
    WRITE = "write"
    READ = "read"


@dataclass(frozen=True, slots=True)
class CacheResult:
    outcome: CacheOutcome
    tokens: int


NO_CACHE = CacheResult(CacheOutcome.NONE, 0)


class PromptCache:
    """Remembers cached prefixes per (model, prefix hash) until they expire."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._expiry: dict[tuple[str, str], float] = {}
        self._max_entries = max_entries

    def __len__(self) -> int:
        return len(self._expiry)

    def clear(self) -> None:
        self._expiry.clear()

    def lookup(
        self,
        model: str,
        prefix_key: str,
        prefix_tokens: int,
        min_tokens: int,
        ttl_s: float,
        now: float,
    ) -> CacheResult:
        """Record this request's prefix and say whether it was written or read."""
        if prefix_tokens <= 0 or prefix_tokens < min_tokens:
            return NO_CACHE
        key = (model, prefix_key)
        expiry = self._expiry.get(key)
        self._expiry[key] = now + ttl_s
        if expiry is not None and expiry > now:
            return CacheResult(CacheOutcome.READ, prefix_tokens)
        if len(self._expiry) > self._max_entries:
            self._prune(now)
        return CacheResult(CacheOutcome.WRITE, prefix_tokens)

    def _prune(self, now: float) -> None:
        for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
            del self._expiry[key]
        while len(self._expiry) > self._max_entries:
            self._expiry.pop(next(iter(self._expiry)))


def prefix_key(segments: list[str]) -> str:
    """Hash of the cached prefix's segments."""
    hasher = hashlib.sha256()
    for segment in segments:
        hasher.update(segment.encode("utf-8", "surrogatepass"))
        hasher.update(b"\x1e")
    return hasher.hexdigest()
