"""The response cache as the pipeline uses it: keys, policy and lookups for one request.

``open`` turns a neutral chat request into cache keys and a policy plan (a
``Ticket``); ``exact`` looks the exact key up; ``after_routing`` runs the semantic
lookup with the router's embedding (one embedding per request) and, on a miss,
returns what to store once the answer is complete (``Pending``); ``store`` writes
it. Embeddings requests use ``embedding_key`` / ``embedding_hit`` / ``embedding_store``
(exact only). Fail-open: any cache error leaves the request to the model, counted and
logged.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from extensions.cache.keys import RequestKey, chat_key, embedding_key, scope_id
from extensions.cache.policy import CacheabilityClassifier, ClientControl, Plan, plan_intent
from extensions.cache.policy import plan_request as plan_shape
from extensions.cache.service import Entry, Outcome, ResponseCache
from extensions.cache.settings import CacheSettings, IntentCache
from extensions.embedding.encoder import Encoder, Vectors
from extensions.router.engine import Routed
from extensions.router.settings import Action, Router

logger = logging.getLogger("gateway.cache")
STORABLE_FINISH = frozenset({"stop", "length"})


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request's cache keys and plan, from ``open`` to the store."""

    target: str  # the model group or router the client asked for
    key: RequestKey
    plan: Plan
    client: ClientControl


@dataclass(frozen=True, slots=True)
class Pending:
    """What to store once the answer is complete."""

    ticket: Ticket
    vector: Vectors | None
    intent: str | None
    ttl_s: float
    shadow: Entry | None = None  # shadow mode: the entry that would have been served
    shadow_similarity: float | None = None


@dataclass(frozen=True, slots=True)
class Lookup:
    """The semantic stage's result: a hit, or what to store later, and the log fields."""

    outcome: Outcome
    entry: Entry | None = None
    pending: Pending | None = None
    similarity: float | None = None
    reason: str | None = None
    entry_id: str | None = None  # a hit's key, and its semantic namespace (for audits)
    namespace: str | None = None


class RequestCache:
    def __init__(
        self,
        cache: ResponseCache,
        encoder: Encoder | None,
        routers: Mapping[str, Router],
        classifier: CacheabilityClassifier | None = None,
        fits_window: Callable[[str], bool] | None = None,
    ) -> None:
        self.cache = cache
        self.settings: CacheSettings = cache.settings
        self.encoder = encoder
        self.routers = dict(routers)
        self.classifier = classifier
        self.fits_window = fits_window
        self.errors = 0
        self.outcomes: dict[str, int] = {o.value: 0 for o in Outcome}

    # -- before routing -------------------------------------------------------------------

    def open(
        self,
        target: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        client: ClientControl,
        scope: str,
    ) -> Ticket:
        body = {"messages": messages, **params}
        plan = plan_shape(self.settings.rules, client, body)
        router = self.routers.get(target)
        if router is not None and not router.cache.enabled:
            plan = Plan(False, False, f"router '{target}' has caching off")
        return Ticket(target, chat_key(target, scope, body), plan, client)

    def scope(self, team: str | None, alias: str | None) -> str:
        return scope_id(self.settings.scope, team, alias)

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

    def ttl_s(self, client: ClientControl, intent_settings: IntentCache | None) -> float:
        """The configured TTL; a client may ask for a shorter one, never a longer one."""
        configured = float(
            intent_settings.ttl_s
            if intent_settings and intent_settings.ttl_s
            else self.settings.ttl_s
        )
        return min(configured, float(client.ttl_s)) if client.ttl_s else configured

    async def _vector(self, ticket: Ticket, routed: Routed | None) -> Vectors | None:
        if routed is not None and routed.embedding is not None and routed.query == ticket.key.query:
            return routed.embedding  # the router's embedding: one embedding per request
        if self.encoder is None or not ticket.key.query.strip():
            return None
        vectors = await self.encoder.encode([ticket.key.query])
        return np.asarray(vectors[0], dtype=np.float32)

    def needs_vector(self, ticket: Ticket) -> bool:
        """Whether the semantic stage would embed this request's query at all."""
        plan = ticket.plan
        wanted = self.settings.semantic.enabled or self.classifier is not None
        return wanted and (plan.lookup or plan.store) and bool(ticket.key.query.strip())

    async def after_routing(self, ticket: Ticket, routed: Routed | None) -> Lookup:
        """Semantic lookup, or what to store once the model has answered."""
        if routed is not None and routed.decision.action is not Action.ROUTE:
            return Lookup(Outcome.BYPASS, reason="answered by the router")
        intent = routed.decision.intent if routed is not None else None
        intent_settings = self._intent_settings(ticket.target, intent)
        plan = plan_intent(ticket.plan, intent, intent_settings)
        semantic = self.settings.semantic.enabled
        if semantic and self.fits_window is not None and not self.fits_window(ticket.key.query):
            semantic = False  # its end would be cut off: near-identical embeddings, wrong hits
            plan = replace(plan, reason=plan.reason or "query longer than the encoder's window")
        vector: Vectors | None = None
        similarity: float | None = None
        ttl = self.ttl_s(ticket.client, intent_settings)
        try:
            if (plan.lookup or plan.store) and (semantic or self.classifier is not None):
                vector = await self._vector(ticket, routed)
                if self.classifier is not None and vector is not None:
                    plan = self.classifier.plan(plan, vector)
            if semantic and plan.lookup and vector is not None:
                threshold = self._threshold(ticket.target, intent_settings)
                match = await self.cache.semantic(
                    ticket.key, vector, threshold, intent, ticket.client.max_age_s
                )
                similarity = None if match.similarity is None else round(match.similarity, 4)
                if match.entry is not None and not self.cache.shadow:
                    return Lookup(Outcome.HIT_SEMANTIC, match.entry, similarity=similarity,
                                  entry_id=match.entry_id, namespace=ticket.key.namespace)  # fmt: skip
                if match.entry is not None:
                    pending = Pending(
                        replace(ticket, plan=plan),
                        vector,
                        intent,
                        ttl,
                        match.entry,
                        match.similarity,
                    )
                    return Lookup(Outcome.SHADOW_HIT, None, pending, similarity)
                if match.rejected_by:
                    plan = replace(plan, reason=plan.reason or f"rejected by {match.rejected_by}")
        except Exception:  # noqa: BLE001 - fail-open: the model answers
            self._failed("semantic lookup")
        kept = None
        if plan.store:
            stored_vector = vector if semantic else None
            kept = Pending(replace(ticket, plan=plan), stored_vector, intent, ttl)
        outcome = Outcome.BYPASS if plan.bypass else Outcome.MISS
        return Lookup(outcome, None, kept, similarity, plan.reason)

    def count(self, outcome: Outcome) -> None:
        self.outcomes[outcome.value] += 1

    # -- after the model answered ---------------------------------------------------------

    async def store(
        self, pending: Pending, answer: Mapping[str, Any], model_group: str | None, cost_usd: float
    ) -> bool:
        """Store a complete answer; False when it is not one we keep."""
        if not pending.ticket.plan.store:
            return False
        choices = answer.get("choices") or []
        if len(choices) != 1 or choices[0].get("finish_reason") not in STORABLE_FINISH:
            return False
        message = choices[0].get("message") or {}
        if not message.get("content") and not message.get("tool_calls"):
            return False
        usage = answer.get("usage") or {}
        if int(usage.get("completion_tokens") or 0) > self.settings.rules.max_tokens_cached:
            return False
        entry = Entry(
            dict(answer),
            pending.ticket.key.query,
            pending.intent,
            model_group,
            time.time(),
            cost_usd,
        )
        try:
            await self.cache.put(pending.ticket.key, pending.vector, entry, pending.ttl_s)
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

    # -- embeddings (exact only) ------------------------------------------------------------

    def embedding_key(
        self, model: str, body: Mapping[str, Any], client: ClientControl, scope: str
    ) -> str | None:
        """The key of an embeddings request, or None when it is not to be cached."""
        if not self.settings.embeddings.enabled or client.no_cache or client.no_store:
            return None
        return "e" + embedding_key(model, scope, body)

    async def embedding_hit(self, key: str) -> dict[str, Any] | None:
        try:
            raw = await self.cache.store.get(key)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("embeddings lookup")
            return None
        entry = Entry.from_bytes(raw) if raw else None
        if entry is None:
            return None
        body = dict(entry.response)
        body["usage"] = {"prompt_tokens": 0, "total_tokens": 0}
        return body

    async def embedding_store(self, key: str, body: Mapping[str, Any]) -> None:
        entry = Entry(dict(body), "", None, body.get("model"), time.time())
        try:
            await self.cache.store.set(key, entry.to_bytes(), self.settings.embeddings.ttl_s)
        except Exception:  # noqa: BLE001 - fail-open
            self._failed("embeddings store")

    def _failed(self, what: str) -> None:
        self.errors += 1
        logger.warning("cache %s failed; continuing without the cache", what, exc_info=True)


def served_answer(entry: Entry, model: str) -> dict[str, Any]:
    """A cached answer as a fresh completion: new id and time, zero usage (nothing spent)."""
    body = dict(entry.response)
    body.update(
        id=f"chatcmpl-gwc-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=model,
        usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    )
    return body
