"""The response cache: exact lookups by key, semantic lookups by meaning, one payload store.

Outcomes (also the ``x-gateway-cache`` header and the log field): ``HIT_EXACT``,
``HIT_SEMANTIC``, ``SHADOW_HIT`` (shadow mode: found, not served), ``MISS`` and
``BYPASS`` (policy said no). Fail-open: a store or index that fails behaves as
empty, so a request never fails because of the cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from extensions.cache.keys import RequestKey
from extensions.cache.settings import CacheSettings, SemanticMode
from extensions.cache.store import Store
from extensions.cache.vectors import VectorIndex
from extensions.cache.verify import features, same_question
from extensions.embedding.encoder import Vectors

ENTRY_FORMAT = 1


class Outcome(StrEnum):
    HIT_EXACT = "HIT_EXACT"
    HIT_SEMANTIC = "HIT_SEMANTIC"
    SHADOW_HIT = "SHADOW_HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


@dataclass(frozen=True)
class Entry:
    """A cached answer and what it answered."""

    response: dict[str, Any]  # the OpenAI response body
    query: str
    intent: str | None
    model_group: str | None
    created: float
    cost_usd: float = 0.0  # what the answer cost when it was made: a hit saves this

    def to_bytes(self) -> bytes:
        return json.dumps({"v": ENTRY_FORMAT, "response": self.response, "query": self.query,
                           "intent": self.intent, "model_group": self.model_group,
                           "created": self.created, "cost_usd": self.cost_usd},
                          separators=(",", ":")).encode()  # fmt: skip

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry | None:
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(d, dict) or d.get("v") != ENTRY_FORMAT:
            return None
        return cls(d["response"], d["query"], d.get("intent"), d.get("model_group"),
                   float(d["created"]), float(d.get("cost_usd") or 0.0))  # fmt: skip


@dataclass(frozen=True)
class SemanticMatch:
    entry: Entry | None  # None: nothing passed
    similarity: float | None  # the best candidate's, passed or not
    rejected_by: str | None = None  # the verification check that refused the best candidate
    entry_id: str | None = None  # the served entry's key (to evict it when an audit fails it)


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        store: Store,
        index: VectorIndex | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self._clock = clock

    def _fresh(self, entry: Entry | None, max_age_s: int | None) -> bool:
        return entry is not None and (
            max_age_s is None or self._clock() - entry.created <= max_age_s
        )

    async def exact(self, key: str, max_age_s: int | None = None) -> Entry | None:
        raw = await self.store.get(key)
        entry = Entry.from_bytes(raw) if raw else None
        return entry if self._fresh(entry, max_age_s) else None

    async def semantic(
        self,
        key: RequestKey,
        vector: Vectors,
        threshold: float,
        intent: str | None = None,
        max_age_s: int | None = None,
    ) -> SemanticMatch:
        if self.index is None or not key.query:
            return SemanticMatch(None, None)
        neighbours = await self.index.search(
            key.namespace, vector, self.settings.semantic.candidates
        )
        best: float | None = None
        rejected: str | None = None
        query = features(key.query)
        for n in neighbours:
            if best is None:
                best = n.similarity
            if n.similarity < threshold:
                break
            entry = await self.exact(n.entry_id)
            if entry is None:  # payload expired or evicted: drop the dangling vector
                await self.index.remove(key.namespace, n.entry_id)
                continue
            if not self._fresh(entry, max_age_s):
                continue
            if intent is not None and entry.intent is not None and entry.intent != intent:
                rejected = rejected or "intent"
                continue
            failed = same_question(
                query, features(entry.query), self.settings.semantic.verification
            )
            if failed is not None:
                rejected = rejected or failed
                continue
            return SemanticMatch(entry, n.similarity, entry_id=n.entry_id)
        return SemanticMatch(None, best, rejected)

    @property
    def shadow(self) -> bool:
        return self.settings.semantic.mode is SemanticMode.SHADOW

    async def evict(self, namespace: str, entry_id: str) -> None:
        """Remove an entry and its vector (an audit found its answer wrong)."""
        await self.store.delete(entry_id)
        if self.index is not None:
            await self.index.remove(namespace, entry_id)

    async def put(
        self, key: RequestKey, vector: Vectors | None, entry: Entry, ttl_s: float
    ) -> None:
        await self.store.set(key.exact, entry.to_bytes(), ttl_s)
        if self.index is not None and vector is not None and key.query:
            await self.index.add(key.namespace, key.exact, vector, ttl_s)
