"""Adapter between LiteLLM's request ``data`` and the response cache.

``open`` turns the request into a cache key and a policy plan; ``exact`` and
``semantic`` look up (a hit becomes ``mock_response``: no upstream call, zero
cost); a miss leaves a pending entry that ``stored`` writes once the model's
answer is complete (streamed answers included). Fail-open: any cache error
leaves the request to the model, counted and logged.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import litellm
import numpy as np

from extensions.cache.keys import RequestKey, chat_key, embedding_key, scope_id
from extensions.cache.policy import (
    CacheabilityClassifier,
    ClientControl,
    Plan,
    plan_intent,
    plan_request,
)
from extensions.cache.service import Entry, Outcome, ResponseCache
from extensions.cache.settings import CacheSettings, IntentCache
from extensions.embedding.encoder import Encoder, Vectors
from extensions.hooks.routing import META_KEY
from extensions.router.engine import Routed
from extensions.router.settings import Action, Router

logger = logging.getLogger("gateway.cache")
CACHE_META = "cache"
PENDING_MAX_AGE_S = 900.0
STORABLE_FINISH = frozenset({"stop", "length"})


@dataclass(frozen=True)
class Ticket:
    """One request's cache state between the pre-call hook and the success event."""

    target: str  # the model group or router the client asked for
    key: RequestKey
    plan: Plan
    client: ClientControl
    token: str


@dataclass(frozen=True)
class Pending:
    ticket: Ticket
    vector: Vectors | None
    intent: str | None
    ttl_s: float
    shadow: Entry | None
    shadow_similarity: float | None
    created: float


def text_chunks(text: str, words_per_chunk: int = 4) -> list[str]:
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]


def served_response(entry: Entry, model: str) -> litellm.ModelResponse:
    """The cached answer as a fresh completion: new id and time, zero usage (nothing was spent)."""
    body = dict(entry.response)
    body.update(id=f"chatcmpl-gwc-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=model,
                usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})  # fmt: skip
    return litellm.ModelResponse(**body)


class CachingHook:
    def __init__(
        self,
        cache: ResponseCache,
        encoder: Encoder | None,
        routers: Mapping[str, Router],
        classifier: CacheabilityClassifier | None = None,
    ) -> None:
        self.cache = cache
        self.settings: CacheSettings = cache.settings
        self.encoder = encoder
        self.routers = dict(routers)
        self.classifier = classifier
        self._pending: dict[str, Pending] = {}
        self.errors = 0
        self.outcomes: dict[str, int] = {o.value: 0 for o in Outcome}

    # -- before routing -------------------------------------------------------------------

    def open(
        self, data: dict[str, Any], team: str | None, key_id: str | None, headers: Mapping[str, str]
    ) -> Ticket:
        target = str(data.get("model"))
        client = ClientControl.parse(data.get("cache"), headers.get("cache-control"))
        plan = plan_request(self.settings.rules, client, data)
        router = self.routers.get(target)
        if router is not None and not router.cache.enabled:
            plan = Plan(False, False, f"router '{target}' has caching off")
        scope = scope_id(self.settings.scope, team, key_id)
        return Ticket(target, chat_key(target, scope, data), plan, client, uuid.uuid4().hex)

    async def exact(self, ticket: Ticket) -> Entry | None:
        if not (self.settings.exact.enabled and ticket.plan.lookup):
            return None
        try:
            return await self.cache.exact(ticket.key.exact, ticket.client.max_age_s)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("exact lookup")
            return None

    # -- after routing --------------------------------------------------------------------

    def _intent_settings(self, target: str, intent: str | None) -> IntentCache | None:
        router = self.routers.get(target)
        if router is None or intent is None:
            return None
        return next((i.cache for i in router.intents if i.name == intent), None)

    def _threshold(self, target: str, intent_settings: IntentCache | None) -> float:
        if intent_settings is not None and intent_settings.threshold is not None:
            return intent_settings.threshold
        router = self.routers.get(target)
        if router is not None and router.cache.threshold is not None:
            return router.cache.threshold
        return self.settings.semantic.threshold

    async def _vector(self, ticket: Ticket, routed: Routed | None) -> Vectors | None:
        if routed is not None and routed.embedding is not None and routed.query == ticket.key.query:
            return routed.embedding  # the router's embedding: one embedding per request
        if self.encoder is None or not ticket.key.query.strip():
            return None
        vectors = await self.encoder.encode([ticket.key.query])
        return np.asarray(vectors[0], dtype=np.float32)

    async def after_routing(
        self, ticket: Ticket, data: dict[str, Any], routed: Routed | None
    ) -> tuple[Outcome, Entry | None, dict[str, Any]]:
        """Semantic lookup and the pending store; returns the outcome, a hit, and log fields."""
        if routed is not None and routed.decision.action is not Action.ROUTE:
            return Outcome.BYPASS, None, {"reason": "answered by the router"}
        intent = routed.decision.intent if routed is not None else None
        intent_settings = self._intent_settings(ticket.target, intent)
        plan = plan_intent(ticket.plan, intent, intent_settings)
        vector: Vectors | None = None
        info: dict[str, Any] = {}
        sem = self.settings.semantic
        try:
            if plan.lookup or plan.store:
                if sem.enabled or self.classifier is not None:
                    vector = await self._vector(ticket, routed)
                if self.classifier is not None and vector is not None:
                    plan = self.classifier.plan(plan, vector)
            if sem.enabled and plan.lookup and vector is not None:
                threshold = self._threshold(ticket.target, intent_settings)
                match = await self.cache.semantic(ticket.key, vector, threshold, intent,
                                                  ticket.client.max_age_s)  # fmt: skip
                if match.similarity is not None:
                    info["similarity"] = round(match.similarity, 4)
                if match.rejected_by:
                    info["rejected_by"] = match.rejected_by
                if match.entry is not None and not self.cache.shadow:
                    return Outcome.HIT_SEMANTIC, match.entry, info
                if match.entry is not None:
                    self._remember(ticket, plan, vector, intent, intent_settings, match.entry,
                                   match.similarity)  # fmt: skip
                    return Outcome.SHADOW_HIT, None, info
        except Exception:  # noqa: BLE001 - fail-open: the model answers
            self._failed("semantic lookup")
        if plan.reason:
            info["reason"] = plan.reason
        self._remember(ticket, plan, vector, intent, intent_settings, None, None)
        if not plan.lookup and not plan.store:
            return Outcome.BYPASS, None, info
        return Outcome.MISS, None, info

    def _remember(self, ticket: Ticket, plan: Plan, vector: Vectors | None, intent: str | None,
                  intent_settings: IntentCache | None, shadow: Entry | None,
                  similarity: float | None) -> None:  # fmt: skip
        if not plan.store and shadow is None:
            return
        ttl = ticket.client.ttl_s or (intent_settings.ttl_s if intent_settings else None)
        now = time.monotonic()
        if len(self._pending) > 1000:  # requests that never completed (cancelled streams)
            stale = [t for t, p in self._pending.items() if now - p.created > PENDING_MAX_AGE_S]
            for t in stale:
                del self._pending[t]
        ticket = replace(ticket, plan=plan)
        self._pending[ticket.token] = Pending(ticket, vector, intent, ttl or self.settings.ttl_s,
                                              shadow, similarity, now)  # fmt: skip

    # -- answering ------------------------------------------------------------------------

    def record(self, data: dict[str, Any], outcome: Outcome, ticket: Ticket | None,
               info: Mapping[str, Any]) -> None:  # fmt: skip
        self.outcomes[outcome.value] += 1
        if logger.isEnabledFor(logging.DEBUG):  # the request log has it at INFO
            details = " ".join(f"{k}={v}" for k, v in info.items())
            logger.debug("cache %s model=%s %s", outcome.value, data.get("model"), details)
        meta = data.setdefault("metadata", {})
        record = meta.setdefault(META_KEY, {})
        record[CACHE_META] = {"outcome": outcome.value, **info}
        if ticket is not None and ticket.token in self._pending:
            record[CACHE_META]["token"] = ticket.token

    # -- embeddings (exact only) ------------------------------------------------------------

    def embedding_key(self, body: Mapping[str, Any], team: str | None, key_id: str | None
                      ) -> str | None:  # fmt: skip
        """The key of an embeddings request, or None when it is not to be cached."""
        if not self.settings.embeddings.enabled:
            return None
        client = ClientControl.parse(body.get("cache"), None)
        if client.no_cache or client.no_store:
            return None
        scope = scope_id(self.settings.scope, team, key_id)
        return "e" + embedding_key(str(body.get("model")), scope, body)

    async def embedding_hit(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self.cache.store.get(key)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("embeddings lookup")
            return None
        entry = Entry.from_bytes(raw) if raw else None
        self.outcomes[(Outcome.HIT_EXACT if entry else Outcome.MISS).value] += 1
        if entry is None:
            return None
        body = dict(entry.response)
        body["usage"] = {"prompt_tokens": 0, "total_tokens": 0}
        return body

    async def embedding_store(self, key: str, body: dict[str, Any]) -> None:
        entry = Entry(body, "", None, body.get("model"), time.time())
        try:
            await self.cache.store.set(key, entry.to_bytes(), self.settings.embeddings.ttl_s)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("embeddings store")

    # -- after the model answered ---------------------------------------------------------

    def pending(self, token: str | None) -> Pending | None:
        return self._pending.pop(token, None) if token else None

    async def stored(self, pending: Pending, response: Any, model_group: str | None,
                     cost_usd: float = 0.0) -> bool:  # fmt: skip
        """Store a complete answer; False when it is not one we keep."""
        if not pending.ticket.plan.store:
            return False
        body = response.model_dump() if hasattr(response, "model_dump") else dict(response)
        choices = body.get("choices") or []
        if len(choices) != 1 or choices[0].get("finish_reason") not in STORABLE_FINISH:
            return False
        message = choices[0].get("message") or {}
        if not message.get("content") and not message.get("tool_calls"):
            return False
        usage = body.get("usage") or {}
        if int(usage.get("completion_tokens") or 0) > self.settings.rules.max_tokens_cached:
            return False
        entry = Entry(body, pending.ticket.key.query, pending.intent, model_group, time.time(),
                      cost_usd)  # fmt: skip
        vector = pending.vector if self.settings.semantic.enabled else None
        try:
            await self.cache.put(pending.ticket.key, vector, entry, pending.ttl_s)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("store")
            return False
        return True

    async def answer_similarity(self, a: str, b: str) -> float | None:
        """Shadow mode: how alike the cached and the fresh answers are (cosine)."""
        if self.encoder is None:
            return None
        vectors = await self.encoder.encode([a, b])
        return float(np.dot(vectors[0], vectors[1]))

    def _failed(self, what: str) -> None:
        self.errors += 1
        logger.warning("cache %s failed; continuing without the cache", what, exc_info=True)


async def rechunk(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A replayed answer as a proper stream: its text split over several chunks."""
    async for chunk in stream:
        choices = getattr(chunk, "choices", None) or []
        delta = getattr(choices[0], "delta", None) if choices else None
        text = getattr(delta, "content", None) if delta is not None else None
        if not text or len(choices) != 1:
            yield chunk
            continue
        pieces = text_chunks(text)
        for i, piece in enumerate(pieces):
            part = chunk.model_copy(deep=True)
            part.choices[0].delta.content = piece
            if i < len(pieces) - 1:
                part.choices[0].finish_reason = None
            if i > 0:
                part.choices[0].delta.role = None
            yield part
