"""``decide``: exact cache → router (one embedding) → semantic cache → where to forward.

The result is an ``Answer`` (the gateway answers itself: a cache hit or the router's
own answer; no upstream call, zero cost) or a ``Forward`` (the model group to call,
the request as it goes there, and the fallbacks this key may use). Caches and the
router fail open: an error in either leaves the request to a model.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from extensions.access.grants import Grant
from extensions.access.settings import DegradeStep
from extensions.access.usage import SavingsEstimate
from extensions.cache.requests import RequestCache, Ticket, served_answer
from extensions.cache.service import Entry
from extensions.cache.service import Outcome as CacheOutcome
from extensions.config.catalog import Catalog
from extensions.pipeline.context import (
    ChatRequest,
    EmbeddingRequest,
    RequestContext,
    Routing,
    Served,
)
from extensions.pipeline.upstream import Call
from extensions.prompt_cache.marking import mark_prefix
from extensions.prompt_cache.settings import PromptCaching
from extensions.protocols.chunks import completion
from extensions.router.decide import DEFAULT_INTENT, Decision
from extensions.router.engine import Routed, RouterEngine
from extensions.router.handoff import HandoffDispatcher
from extensions.router.settings import Action

logger = logging.getLogger("gateway.router")
GATEWAY, CACHE, ROUTER, BUDGET = "gateway", "cache", "router", "budget"  # no model answered
OUT_OF_SCOPE = "out_of_scope"  # the intent of a refusal


@dataclass(frozen=True, slots=True)
class Answer:
    """The gateway's own answer: a chat completion or an embeddings response."""

    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Forward:
    """Call a model: ``call`` names the group and the request as it goes upstream."""

    call: Call
    embedding_key: str | None = None  # embeddings: where to store the result


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class Decider:
    def __init__(
        self,
        catalog: Catalog,
        cache: RequestCache | None,
        engine: RouterEngine | None,
        handoffs: HandoffDispatcher | None,
        savings: SavingsEstimate | None,
        prompt_caching: PromptCaching | None = None,
    ) -> None:
        self.catalog = catalog
        self.prompt_caching = prompt_caching or PromptCaching()
        self.cache = cache
        self.engine = engine
        self.handoffs = handoffs
        self.savings = savings
        self.router_failures = 0

    def is_router(self, model: str) -> bool:
        return self.engine is not None and self.engine.handles(model)

    async def decide(self, ctx: RequestContext, grant: Grant) -> Answer | Forward:
        request = ctx.request
        if isinstance(request, EmbeddingRequest):
            return await self._embeddings(ctx, request, grant)
        assert isinstance(request, ChatRequest)
        return await self._chat(ctx, request, grant)

    # -- chat -----------------------------------------------------------------------------

    def _scope(self, ctx: RequestContext) -> str:
        assert self.cache is not None and ctx.principal is not None
        return self.cache.scope(ctx.principal.team, ctx.principal.alias)

    async def _chat(
        self, ctx: RequestContext, request: ChatRequest, grant: Grant
    ) -> Answer | Forward:
        target = request.model
        ticket: Ticket | None = None
        if self.cache is not None:
            ticket = self.cache.open(
                target, request.messages, request.params, request.client_cache, self._scope(ctx)
            )
            started = time.perf_counter()
            entry = await self.cache.exact(ticket)
            ctx.cache.exact_ms = _ms(started)
            if entry is not None:
                return self._hit(ctx, target, entry, CacheOutcome.HIT_EXACT, None)
        routed: Routed | None = None
        if self.is_router(target):
            routed = await self._route(ctx, request)
            assert ctx.routing is not None
            if ctx.routing.action is not Action.ROUTE:
                return await self._router_answer(ctx, request, routed)
        group = ctx.routing.model_group if ctx.routing is not None else target
        assert group is not None
        if self.cache is not None and ticket is not None:
            started = time.perf_counter()
            lookup = await self.cache.after_routing(ticket, routed)
            ctx.cache.semantic_ms = _ms(started)
            if lookup.entry is not None:
                ctx.cache.hit_id, ctx.cache.hit_namespace = lookup.entry_id, lookup.namespace
                ctx.cache.hit_group = lookup.entry.model_group or group
                return self._hit(ctx, target, lookup.entry, lookup.outcome, lookup.similarity)
            self.cache.count(lookup.outcome)
            ctx.cache.outcome = lookup.outcome
            ctx.cache.similarity = lookup.similarity
            ctx.cache.reason = lookup.reason
            ctx.cache.pending = lookup.pending
        degraded = self._degrade(ctx, target, group)
        if isinstance(degraded, Answer):
            return degraded
        group = degraded
        messages = request.messages
        prompt = routed.decision.system_prompt if routed is not None else None
        if prompt:
            messages = [{"role": "system", "content": prompt}, *messages]
        gemini = self.catalog.provider_of_group(group) == "gemini"
        messages = mark_prefix(messages, self.prompt_caching.groups.get(group), gemini)
        upstream = replace(request, model=group, messages=messages)
        # a router's targets and their fallbacks are the operator's choice; a model group
        # named by the client falls back only to groups the key may use
        allows = grant.allows if routed is None else _anything
        return Forward(Call(ctx.id, group, upstream, self.catalog.allowed_fallbacks(allows)))

    def _degrade(self, ctx: RequestContext, target: str, group: str) -> Answer | str:
        """The budget ladder: the highest rung of the key's (or team's) and the router's
        ladders the key's budget share has reached picks a cheaper group, or no model
        call at all. Returns the group to call, or the answer instead of a model call."""
        admission = ctx.admission
        spent = admission.budget_spent if admission is not None else None
        if admission is None or spent is None:
            return group
        steps: list[DegradeStep] = list(admission.ladder)
        if self.engine is not None and self.engine.handles(target):
            steps += self.engine.router(target).spec.degrade
        reached = [s for s in steps if spent >= s.at]
        if not reached:
            return group
        step = max(reached, key=lambda s: (s.at, s.cache_only))
        if step.cache_only:
            ctx.degraded = f"cache_only (budget {spent:.0%} spent)"
            ctx.served = Served(deployment=BUDGET, provider=GATEWAY)
            return Answer(completion(target, step.message))
        if step.model is None or step.model == group:
            return group
        ctx.degraded = f"{group} -> {step.model} (budget {spent:.0%} spent)"
        if ctx.routing is not None:
            ctx.routing.model_group = step.model
        return step.model

    def _hit(
        self,
        ctx: RequestContext,
        target: str,
        entry: Entry,
        outcome: CacheOutcome,
        similarity: float | None,
    ) -> Answer:
        assert self.cache is not None
        self.cache.count(outcome)
        ctx.cache.outcome = outcome
        ctx.cache.similarity = similarity
        ctx.saved_usd = entry.cost_usd
        ctx.served = Served(model_group=entry.model_group, deployment=CACHE, provider=GATEWAY)
        if self.is_router(target):  # the router's record, as it was when the answer was made
            ctx.routing = Routing(
                router=target,
                action=Action.ROUTE,
                intent=entry.intent,
                model_group=entry.model_group,
            )
        return Answer(served_answer(entry, entry.model_group or target))

    async def _route(self, ctx: RequestContext, request: ChatRequest) -> Routed:
        assert self.engine is not None
        name = request.model
        try:
            routed = await self.engine.route(name, request.messages)
        except Exception:  # the router fails open to its default model
            self.router_failures += 1
            logger.exception("router %r failed; sending the request to its default model", name)
            default = self.engine.router(name).spec.default
            fallback = Decision(
                Action.ROUTE,
                DEFAULT_INTENT,
                0.0,
                model=default.model,
                system_prompt=default.system_prompt,
            )
            routed = Routed(fallback, "", None, 0.0)
        decision = routed.decision
        ctx.routing = Routing(
            router=name,
            action=decision.action,
            intent=decision.intent or (OUT_OF_SCOPE if decision.action is Action.REFUSE else None),
            confidence=round(decision.confidence, 4),
            classify_ms=round(routed.classify_ms, 3),
            model_group=decision.model,
        )
        if decision.action is not Action.ROUTE and request.structured:
            # JSON was asked for: never a template's free text, a model answers instead
            spec = self.engine.router(name).spec
            intent = next((i for i in spec.intents if i.name == decision.intent), None)
            route = intent.route if intent is not None and intent.route is not None else None
            model = route.model if route is not None else spec.default.model
            prompt = route.system_prompt if route is not None else spec.default.system_prompt
            routed = replace(
                routed,
                decision=replace(decision, action=Action.ROUTE, model=model, system_prompt=prompt),
            )
            ctx.routing = replace(
                ctx.routing, action=Action.ROUTE, model_group=model, structured_override=True
            )
        return routed

    async def _router_answer(
        self, ctx: RequestContext, request: ChatRequest, routed: Routed
    ) -> Answer:
        decision = routed.decision
        assert ctx.routing is not None and self.engine is not None
        ctx.cache.outcome = CacheOutcome.BYPASS if self.cache is not None else None
        ctx.cache.reason = "answered by the router" if self.cache is not None else None
        if self.cache is not None:
            self.cache.count(CacheOutcome.BYPASS)
        if decision.action is Action.HANDOFF and self.handoffs is not None:
            assert decision.sink is not None
            record = {
                "id": f"handoff-{uuid.uuid4().hex}",
                "time": time.time(),
                "router": request.model,
                "intent": decision.intent,
                "queue": decision.queue,
                "confidence": decision.confidence,
                "key_alias": ctx.principal.alias if ctx.principal else None,
                "request_id": ctx.id,
                "conversation": request.messages,
            }
            ctx.routing.handoff_id = str(record["id"])
            await self.handoffs.deliver(decision.sink, record)
        ctx.served = Served(deployment=ROUTER, provider=GATEWAY)
        if self.savings is not None:  # what the router's default model would have cost
            default = self.engine.router(request.model).spec.default.model
            ctx.saved_usd = self.savings.usd(default, request.messages)
        return Answer(completion(request.model, decision.text or ""))

    # -- embeddings -----------------------------------------------------------------------

    async def _embeddings(
        self, ctx: RequestContext, request: EmbeddingRequest, grant: Grant
    ) -> Answer | Forward:
        key = None
        if self.cache is not None:
            body = {"input": request.input, **request.params}
            key = self.cache.embedding_key(
                request.model, body, request.client_cache, self._scope(ctx)
            )
            if key is None:
                ctx.cache.outcome = CacheOutcome.BYPASS
            else:
                started = time.perf_counter()
                hit = await self.cache.embedding_hit(key)
                ctx.cache.exact_ms = _ms(started)
                ctx.cache.outcome = CacheOutcome.HIT_EXACT if hit else CacheOutcome.MISS
                self.cache.count(ctx.cache.outcome)
                if hit is not None:
                    ctx.served = Served(
                        model_group=request.model, deployment=CACHE, provider=GATEWAY
                    )
                    return Answer({**hit, "model": request.model})
        fallbacks = self.catalog.allowed_fallbacks(grant.allows)
        return Forward(Call(ctx.id, request.model, request, fallbacks), key)


def _anything(group: str) -> bool:
    return True
