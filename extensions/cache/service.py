"""The response cache: exact lookups by key, semantic lookups by meaning, one payload store.

Outcomes (also the ``x-gateway-cache`` header and the log field): ``HIT_EXACT``,
``HIT_SEMANTIC``, ``SHADOW_HIT`` (shadow mode: found, not served), ``MISS`` and
``BYPASS`` (policy said no). Fail-open: a store or index that fails behaves as
empty, so a request never fails because of the cache.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from extensions.cache.keys import RequestKey
from extensions.cache.settings import CacheSettings, SemanticMode
from extensions.cache.store import Store
from extensions.cache.vectors import VectorIndex
from extensions.cache.verifiers import (
    CandidateVerifier,
    Question,
    Verdict,
    build_verifier,
    passes,
    rejection,
)
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
    vector: Vectors | None = None  # the query's embedding, kept when the verifier reads it

    def to_bytes(self) -> bytes:
        body = {
            "v": ENTRY_FORMAT,
            "response": self.response,
            "query": self.query,
            "intent": self.intent,
            "model_group": self.model_group,
            "created": self.created,
            "cost_usd": self.cost_usd,
        }
        if self.vector is not None:  # float16, base64: 768 bytes for 384 dimensions
            half = np.asarray(self.vector, dtype=np.float16).reshape(-1).tobytes()
            body["vec"] = base64.b64encode(half).decode()
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry | None:
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(d, dict) or d.get("v") != ENTRY_FORMAT:
            return None
        vector = None
        if isinstance(d.get("vec"), str):
            half = np.frombuffer(base64.b64decode(d["vec"]), dtype=np.float16)
            vector = half.astype(np.float32)
        return cls(
            d["response"],
            d["query"],
            d.get("intent"),
            d.get("model_group"),
            float(d["created"]),
            float(d.get("cost_usd") or 0.0),
            vector,
        )


@dataclass(frozen=True)
class SemanticMatch:
    entry: Entry | None  # None: nothing passed
    similarity: float | None  # the best candidate's, passed or not
    rejected_by: str | None = None  # the check (or "verifier", "intent") that refused one
    score: float | None = None  # the verifier's score of the served candidate
    entry_id: str | None = None  # the served entry's key (to evict it when an audit fails it)


@dataclass(frozen=True)
class Candidate:
    """An entry above the threshold, fresh and of the right intent, with its verdict."""

    entry: Entry
    similarity: float
    verdict: Verdict
    entry_id: str = ""


@dataclass(frozen=True)
class Candidates:
    """What a lookup found before deciding: ``pick`` decides, for any minimum score."""

    found: list[Candidate]  # most similar first
    similarity: float | None  # the nearest neighbour's
    rejected_by: str | None  # why a neighbour above the threshold was not verified at all


def pick(candidates: Candidates, threshold: float, min_score: float) -> SemanticMatch:
    """The most similar candidate at or above ``threshold`` that the verifier passes."""
    rejected = candidates.rejected_by
    for c in candidates.found:
        if c.similarity < threshold:
            break
        if passes(c.verdict, min_score):
            return SemanticMatch(c.entry, c.similarity, None, c.verdict.score, c.entry_id)
        rejected = rejected or rejection(c.verdict)
    return SemanticMatch(None, candidates.similarity, rejected)


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        store: Store,
        index: VectorIndex | None,
        clock: Callable[[], float] = time.time,
        verifier: CandidateVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.index = index
        self._clock = clock
        self.verifier = verifier or build_verifier(settings.semantic)
        # model inference runs on its own thread, never on the event loop
        self._verify_thread = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-verifier")
            if self.verifier.inference
            else None
        )

    def _fresh(self, entry: Entry | None, max_age_s: int | None) -> bool:
        return entry is not None and (
            max_age_s is None or self._clock() - entry.created <= max_age_s
        )

    async def _load(self, key: str) -> Entry | None:
        raw = await self.store.get(key)
        return Entry.from_bytes(raw) if raw else None

    async def exact(self, key: str, max_age_s: int | None = None) -> Entry | None:
        entry = await self._load(key)
        return entry if self._fresh(entry, max_age_s) else None

    async def semantic(
        self,
        key: RequestKey,
        vector: Vectors,
        threshold: float,
        intent: str | None = None,
        max_age_s: int | None = None,
    ) -> SemanticMatch:
        found = await self.candidates(key, vector, threshold, intent, max_age_s)
        return pick(found, threshold, self.verifier.min_score)

    async def candidates(
        self,
        key: RequestKey,
        vector: Vectors,
        threshold: float,
        intent: str | None = None,
        max_age_s: int | None = None,
    ) -> Candidates:
        """The nearest entries at or above ``threshold``, each with the verifier's verdict."""
        if self.index is None or not key.query:
            return Candidates([], None, None)
        neighbours = await self.index.search(
            key.namespace, vector, self.settings.semantic.candidates
        )
        best = neighbours[0].similarity if neighbours else None
        above = [n for n in neighbours if n.similarity >= threshold]
        entries = await asyncio.gather(*(self._load(n.entry_id) for n in above))
        kept: list[tuple[float, Entry, str]] = []
        rejected: str | None = None
        for n, entry in zip(above, entries, strict=True):
            if entry is None:  # payload expired or evicted: drop the dangling vector
                await self.index.remove(key.namespace, n.entry_id)
                continue
            if not self._fresh(entry, max_age_s):
                continue
            if intent is not None and entry.intent is not None and entry.intent != intent:
                rejected = rejected or "intent"
                continue
            kept.append((n.similarity, entry, n.entry_id))
        if not kept:
            return Candidates([], best, rejected)
        verdicts = await self._verdicts(Question(key.query, vector), [e for _, e, _ in kept])
        found = [Candidate(e, s, v, i) for (s, e, i), v in zip(kept, verdicts, strict=True)]
        return Candidates(found, best, rejected)

    async def _verdicts(self, query: Question, entries: Sequence[Entry]) -> list[Verdict]:
        cached = [Question(e.query, e.vector) for e in entries]
        if self._verify_thread is None:
            return self.verifier.verdicts(query, cached)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._verify_thread, self.verifier.verdicts, query, cached
        )

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
        if self.verifier.needs_vectors and entry.vector is None and vector is not None:
            entry = replace(entry, vector=np.asarray(vector, dtype=np.float32).reshape(-1))
        await self.store.set(key.exact, entry.to_bytes(), ttl_s)
        if self.index is not None and vector is not None and key.query:
            await self.index.add(key.namespace, key.exact, vector, ttl_s)
