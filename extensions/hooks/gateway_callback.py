"""The gateway's LiteLLM callback: adapts LiteLLM's hook calls to our pure functions.

LiteLLM only runs ``async_pre_call_hook``, ``async_post_call_response_headers_hook``
and ``async_post_call_streaming_iterator_hook`` when they are defined on the
registered instance's own class (not inherited), so each hook is defined here.

Order of a chat request: validate, exact cache, route (one embedding), semantic
cache, then the model. Cache hits and the router's own answers become
``mock_response``: LiteLLM returns them without calling a provider.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

from extensions.access.budgets import Budgets, BudgetStoreUnavailable, BudgetVerdict
from extensions.access.grants import UNLIMITED, Grant
from extensions.access.limits import Limiter, Verdict
from extensions.access.usage import Charge, MemoryUsage, SavingsEstimate, Usage
from extensions.cache.service import Entry, Outcome
from extensions.config.schema import GatewayConfig
from extensions.hooks.caching import (
    CACHE_META,
    CachingHook,
    Pending,
    Ticket,
    rechunk,
    served_response,
)
from extensions.hooks.headers import CallInfo, cache_headers, deployment_headers, routing_headers
from extensions.hooks.routing import META_KEY, RoutingHook
from extensions.observe.observer import Observer, error_of, status_of, tokens_of
from extensions.observe.record import Upstream, Who, answer_text, build_record, last_user_text
from extensions.protocol.validation import (
    RequestProblem,
    check_chat_request,
    check_embedding_request,
)

logger = logging.getLogger("gateway.cache")
usage_logger = logging.getLogger("gateway.usage")
_CHECKS = {
    "acompletion": check_chat_request,
    "completion": check_chat_request,
    "aembedding": check_embedding_request,
    "embeddings": check_embedding_request,
}
SERVED = (Outcome.HIT_EXACT.value, Outcome.HIT_SEMANTIC.value)
LIMIT_META = "limit"
LIMIT_NAMES = {"rpm": "requests per minute", "tpm": "tokens per minute",
               "max_parallel": "parallel requests"}  # fmt: skip
MASTER_TOKEN = "gateway:master"  # the token custom_auth gives the master key
DENY_ALL = Grant(models=())


def _bad_request(problem: RequestProblem) -> ProxyException:
    return ProxyException(
        message=problem.message, type="invalid_request_error", param=problem.param, code=400
    )


def _limited(verdict: Verdict) -> ProxyException:
    if verdict.limit == "unavailable":
        return ProxyException(
            message="Usage limits cannot be checked right now (limit store unavailable); "
                    f"retry in {verdict.retry_after_s} s.",
            type="service_unavailable", param=None, code=503,
            headers={"retry-after": str(verdict.retry_after_s)},
        )  # fmt: skip
    what = LIMIT_NAMES.get(verdict.limit or "", verdict.limit)
    return ProxyException(
        message=f"Rate limit reached for {verdict.subject}: {what}. "
                f"Retry after {verdict.retry_after_s} s.",
        type="rate_limit_error", param=None, code=429,
        headers={"retry-after": str(verdict.retry_after_s)},
    )  # fmt: skip


def _over_budget(v: BudgetVerdict, now: float) -> ProxyException:
    assert v.resets_at is not None
    wait = max(1, int(v.resets_at.timestamp() - now))
    return ProxyException(
        message=f"The {v.period} budget of {v.subject} (${v.budget_usd:.2f}) is used up "
                f"(${v.spent_usd:.4f} spent); it resets at {v.resets_at:%Y-%m-%dT%H:%M:%SZ}.",
        type="budget_exceeded", param=None, code=429, headers={"retry-after": str(wait)},
    )  # fmt: skip


def _request_headers(data: Mapping[str, Any]) -> dict[str, str]:
    raw = (data.get("proxy_server_request") or {}).get("headers") or {}
    return {str(k).lower(): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as far as the cache scope cares (never the key itself)."""

    team: str | None
    key_id: str | None  # LiteLLM's token: a digest or ``gateway:<alias>``
    alias: str | None

    @classmethod
    def of(cls, auth: Any) -> Caller:
        return cls(getattr(auth, "team_id", None), getattr(auth, "token", None),
                   getattr(auth, "key_alias", None))  # fmt: skip


@dataclass(frozen=True)
class Forwarded:
    """What the fast lane decided for a request it passes on to LiteLLM."""

    requested: str  # the model name the client sent
    model: str
    messages: list[Any]
    record: dict[str, Any]

    def apply_to(self, data: dict[str, Any]) -> None:
        data["model"] = self.model
        data["messages"] = self.messages
        if self.record:
            data.setdefault("metadata", {}).setdefault(META_KEY, {}).update(self.record)


# Set by the fast lane (an ASGI middleware, same task as the LiteLLM handler).
FORWARDED: ContextVar[Forwarded | None] = ContextVar("gateway_forwarded", default=None)
ADMITTED: ContextVar[str | None] = ContextVar("gateway_admitted", default=None)  # request id
# Set by the fast lane: when the request arrived (perf_counter) and what it learned.
TRACE: ContextVar[dict[str, Any] | None] = ContextVar("gateway_trace", default=None)
EMBEDDING_CALLS = frozenset({"aembedding", "embeddings"})


def _ms_since(t0: object) -> float:
    return (time.perf_counter() - t0) * 1000 if isinstance(t0, float) else 0.0


def _gateway_meta(data: Mapping[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata") or {}
    record = metadata.get(META_KEY) if isinstance(metadata, Mapping) else None
    return record if isinstance(record, dict) else {}


def log_prompt_cache(record: Mapping[str, Any]) -> None:
    """Provider prompt caching at work: cached input tokens read and written, per call."""
    usage = (record.get("metadata") or {}).get("usage_object") or {}
    details = usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    if cached or written:
        usage_logger.info("provider prompt cache: model_group=%s cached_tokens=%d "
                          "cache_creation_tokens=%d prompt_tokens=%d", record.get("model_group"),
                          cached, written, int(usage.get("prompt_tokens") or 0))  # fmt: skip


class GatewayCallback(CustomLogger):  # type: ignore[misc]
    """One instance per proxy worker, holding the validated gateway config."""

    def __init__(
        self,
        config: GatewayConfig,
        routing: RoutingHook | None = None,
        caching: CachingHook | None = None,
        grants: Mapping[str, Grant] | None = None,
        limiter: Limiter | None = None,
        budgets: Budgets | None = None,
        usage: Usage | None = None,
        savings: SavingsEstimate | None = None,
        observer: Observer | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.routing = routing
        self.caching = caching
        self.grants = dict(grants or {})
        self.limiter = limiter
        self.budgets = budgets
        self.usage = usage or Usage(MemoryUsage())
        self.savings = savings
        self.observer = observer
        self.generation = 1  # which reload of gateway.yaml this is (set by Generations)

    async def refusal(self, caller: Caller, request_id: str) -> ProxyException | None:
        """Budgets, then limits (counting the request if it passes); None = admitted."""
        if caller.key_id == MASTER_TOKEN:
            return None
        if self.budgets is not None:
            try:
                budget = await self.budgets.check(caller.alias)
            except BudgetStoreUnavailable:
                return _limited(Verdict(False, None, "unavailable", 5))
            if not budget.allowed:
                return _over_budget(budget, time.time())
        if self.limiter is not None:
            verdict = await self.limiter.admit(caller.alias, request_id)
            if not verdict.allowed:
                return _limited(verdict)
        return None

    async def usage_report(self, day: str | None) -> dict[str, Any]:
        """Usage by key, team and model for a UTC day, with what is left of each budget."""
        report = await self.usage.report(day)
        if self.budgets is not None:
            report["budgets"] = await self.budgets.remaining()
        return report

    async def finished(self, request_id: str, charge: Charge) -> None:
        """The request is over: free its parallel slot, count its tokens, cost and savings."""
        if self.limiter is not None:
            await self.limiter.release(charge.alias, request_id)
            await self.limiter.charge_tokens(charge.alias, charge.tokens)
        if self.budgets is not None:
            await self.budgets.charge(charge.alias, charge.spend_usd)
        try:
            await self.usage.record(charge)
        except Exception:
            logger.warning("usage accounting failed", exc_info=True)

    def grant(self, caller: Caller) -> Grant:
        """The master key may use everything; a gateway key what its entry allows."""
        if caller.key_id == MASTER_TOKEN:
            return UNLIMITED
        return self.grants.get(caller.alias or "", DENY_ALL)

    def check_model(self, caller: Caller, model: object) -> None:
        """403 naming what the key may use, before anything else happens (fail-closed)."""
        grant = self.grant(caller)
        if isinstance(model, str) and grant.allows(model):
            return
        allowed = ", ".join(grant.models or ()) or "nothing"
        raise ProxyException(
            message=f"This key ({caller.alias}) may not use model '{model}'. "
                    f"Allowed: {allowed}.",
            type="permission_denied", param="model", code=403,
        )  # fmt: skip

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> dict[str, Any]:
        started = time.perf_counter()
        if self.observer is not None:
            self.observer.ensure_started()
        if isinstance(data.get("metadata"), dict):
            data["metadata"].pop(META_KEY, None)  # only the gateway writes its record
        caller = Caller.of(user_api_key_dict)
        self.check_model(caller, data.get("model"))
        check = _CHECKS.get(call_type)
        problem = check(data) if check else None
        if problem:
            raise _bad_request(problem)
        admitted = ADMITTED.get()
        request_id = admitted or f"req-{uuid.uuid4().hex}"
        if admitted is None:  # the fast lane did not count it already
            refused = await self.refusal(caller, request_id)
            if refused is not None:
                raise refused
        record = data.setdefault("metadata", {}).setdefault(META_KEY, {})
        record[LIMIT_META] = {"alias": caller.alias, "team": caller.team, "id": request_id,
                              "model": data.get("model")}  # fmt: skip
        trace = TRACE.get() or {}
        record.update(trace)
        record.setdefault("t0", started)
        endpoint = "embeddings" if call_type in EMBEDDING_CALLS else "chat"
        record.update(request_id=request_id, route=data.get("model"), endpoint=endpoint,
                      stream=bool(data.get("stream")), generation=self.generation)  # fmt: skip
        if call_type != "acompletion":
            return data
        forwarded = FORWARDED.get()
        if forwarded is not None and forwarded.requested == data.get("model"):
            forwarded.apply_to(data)  # the fast lane already decided: no second embedding
            return data
        await self.prepare(data, caller, _request_headers(data))
        self.own_time(data, "forwarded", _ms_since(started))
        return data

    def own_time(self, data: dict[str, Any], path: str, ms: float) -> None:
        data.setdefault("metadata", {}).setdefault(META_KEY, {}).setdefault("timing", {})[
            "gateway"] = round(ms, 3)  # fmt: skip
        if self.observer is not None:
            self.observer.timing(path, ms)

    async def prepare(
        self, data: dict[str, Any], caller: Caller, headers: Mapping[str, str]
    ) -> bool:
        """Exact cache, router, semantic cache, in that order, written into ``data``.

        True when the answer is ready (``data["mock_response"]``: a cache hit or the
        router's own answer); False when the model is to be called.
        """
        routes = self.routing is not None and self.routing.handles(data)
        record = data.setdefault("metadata", {}).setdefault(META_KEY, {})
        record.setdefault("route", data.get("model"))
        timing = record.setdefault("timing", {})
        ticket: Ticket | None = None
        if self.caching is not None:
            ticket = self.caching.open(data, caller.team, caller.key_id, headers)
            started = time.perf_counter()
            hit = await self.caching.exact(ticket)
            timing["exact"] = self._lookup_time("exact", started)
            if hit is not None:
                self._serve(data, ticket, hit, Outcome.HIT_EXACT, {}, routes)
                return True
        routed = None
        if routes:
            assert self.routing is not None
            routed = await self.routing.apply(data, caller.alias)
        if self.caching is not None and ticket is not None:
            started = time.perf_counter()
            outcome, entry, info = await self.caching.after_routing(ticket, data, routed)
            timing["semantic"] = self._lookup_time("semantic", started)
            if entry is not None:
                self._serve(data, ticket, entry, outcome, info, routes)
                return True
            self.caching.record(data, outcome, ticket, info)
        ready = "mock_response" in data
        if ready and routed is not None and self.savings is not None:  # the router answered
            saved = self.savings.usd(str(data.get("model")), data.get("messages"))
            data.setdefault("metadata", {}).setdefault(META_KEY, {})["saved_usd"] = saved
        return ready

    def _lookup_time(self, kind: str, started: float) -> float:
        ms = _ms_since(started)
        if self.observer is not None:
            self.observer.timing(kind, ms)
        return round(ms, 3)

    def _serve(self, data: dict[str, Any], ticket: Ticket, entry: Entry, outcome: Outcome,
               info: dict[str, Any], routed: bool) -> None:  # fmt: skip
        assert self.caching is not None
        if routed:  # the router's record, as it was when the answer was made
            data.setdefault("metadata", {}).setdefault(META_KEY, {}).update({
                "router": ticket.target, "intent": entry.intent, "action": "ROUTE",
                "confidence": None, "model_group": entry.model_group,
            })  # fmt: skip
            if entry.model_group:
                data["model"] = entry.model_group
        data["mock_response"] = served_response(entry, ticket.target)
        self.caching.record(data, outcome, None, info)
        data["metadata"][META_KEY]["saved_usd"] = entry.cost_usd

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: AsyncIterator[Any], request_data: dict[str, Any]
    ) -> AsyncIterator[Any]:
        cached = (_gateway_meta(request_data).get(CACHE_META) or {}).get("outcome") in SERVED
        stream = rechunk(response) if cached else response
        complete = False
        try:
            async for chunk in stream:
                yield chunk
            complete = True
        finally:
            if not complete:  # the client went away: a partial answer is never cached
                self._pending({"litellm_params": request_data})

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        return self.response_headers(data, CallInfo.from_litellm(data, litellm_call_info)) or None

    def response_headers(self, data: Mapping[str, Any], call: CallInfo | None) -> dict[str, str]:
        """The ``x-gateway-*`` headers for a request's record (and who answered it)."""
        if not self.config.response_headers.enabled:
            return {}
        routed = _gateway_meta(data)
        headers = routing_headers(routed) if routed.get("router") else {}
        headers.update(cache_headers(routed.get(CACHE_META)))
        served = (routed.get(CACHE_META) or {}).get("outcome") in SERVED
        if call is not None and headers.get("x-gateway-action", "ROUTE") == "ROUTE" and not served:
            headers.update(deployment_headers(call))
        return headers

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        record = kwargs.get("standard_logging_object") or {}
        cost = float(record.get("response_cost") or 0.0)
        log_prompt_cache(record)
        await self._finish(kwargs, int(record.get("total_tokens") or 0), cost)
        if self.observer is not None:
            self.observer.request(self._success_record(kwargs, record, response_obj,
                                                       start_time, end_time))  # fmt: skip
        pending = self._pending(kwargs)
        if pending is None or self.caching is None:
            return
        stored = await self.caching.stored(pending, response_obj, record.get("model_group"), cost)
        if pending.shadow is not None:
            await self._log_shadow(pending.shadow, pending.shadow_similarity, response_obj)
        logger.debug("cache store %s: %s", pending.ticket.key.exact[:12], stored)

    async def _log_shadow(self, shadow: Entry, similarity: float | None, response: Any) -> None:
        assert self.caching is not None
        try:
            fresh = response.choices[0].message.content or ""
            cached = shadow.response["choices"][0]["message"].get("content") or ""
            answers = await self.caching.answer_similarity(cached, fresh)
        except Exception:
            logger.warning("shadow comparison failed", exc_info=True)
            return
        logger.info("cache shadow hit: query similarity %s, answer similarity %s",
                    similarity, None if answers is None else round(answers, 4))  # fmt: skip

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        """One failed provider call (a retry or fallback may still answer the request)."""
        self._pending(kwargs)  # nothing to store: forget it
        await self._finish(kwargs, 0, 0.0)
        exc = kwargs.get("exception")
        if self.observer is not None and not isinstance(exc, ProxyException | HTTPException):
            record = kwargs.get("standard_logging_object") or {}  # a provider call failed
            self.observer.upstream_error(record.get("model_group"),
                                         type(exc).__name__ if exc else "unknown")  # fmt: skip

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> None:
        """The client gets an error: its request-log record (and metrics)."""
        if self.observer is None:
            return
        meta = dict(_gateway_meta(request_data))
        trace = TRACE.get() or {}
        meta.setdefault("request_id", f"req-{uuid.uuid4().hex}")
        meta.setdefault("route", request_data.get("model"))
        meta.setdefault("stream", bool(request_data.get("stream")))
        if "endpoint" not in meta:
            meta["endpoint"] = "embeddings" if "input" in request_data else "chat"
        who = Who(getattr(user_api_key_dict, "key_alias", None),
                  getattr(user_api_key_dict, "team_id", None))  # fmt: skip
        total = _ms_since(meta.get("t0") or trace.get("t0"))
        self.observer.request(build_record(meta, who, status_of(original_exception), total,
                                           error=error_of(original_exception)))  # fmt: skip

    def _success_record(self, kwargs: Mapping[str, Any], slo: Mapping[str, Any], response: Any,
                        start_time: Any, end_time: Any) -> dict[str, Any]:  # fmt: skip
        """The request-log record of a request LiteLLM answered (model call or mock)."""
        assert self.observer is not None
        params = kwargs.get("litellm_params") or {}
        meta = _gateway_meta(params)
        limit = meta.get(LIMIT_META) or {}
        answered_here = (meta.get(CACHE_META) or {}).get("outcome") in SERVED or (
            meta.get("router") and meta.get("action") not in (None, "ROUTE"))  # fmt: skip
        upstream = None
        if not answered_here:
            metadata = params.get("metadata") or {}
            prompt, completion, cached = tokens_of((slo.get("metadata") or {}).get("usage_object"))
            try:
                upstream_ms = (end_time - start_time).total_seconds() * 1000
            except (TypeError, AttributeError):
                upstream_ms = None
            upstream = Upstream(
                model_group=slo.get("model_group"), deployment=slo.get("model_id"),
                provider=slo.get("custom_llm_provider"),
                prompt_tokens=prompt or int(slo.get("prompt_tokens") or 0),
                completion_tokens=completion or int(slo.get("completion_tokens") or 0),
                cached_tokens=cached, cost_usd=float(slo.get("response_cost") or 0.0),
                upstream_ms=upstream_ms,
                fallbacks=int(metadata.get("attempted_fallbacks") or 0),
                retries=int(metadata.get("attempted_retries") or 0),
            )  # fmt: skip
        content = self.observer.content(meta.get("route"), last_user_text(kwargs.get("messages")),
                                        answer_text(response))  # fmt: skip
        return build_record(meta, Who(limit.get("alias"), limit.get("team")), 200,
                            _ms_since(meta.get("t0")), upstream, content=content,
                            saved_usd=float(meta.get("saved_usd") or 0.0))  # fmt: skip

    def refused_record(self, meta: Mapping[str, Any], caller: Caller | None, t0: float,
                       status: int, error: Mapping[str, str]) -> None:  # fmt: skip
        """A request the fast lane refused itself (a malformed body: 400)."""
        if self.observer is None:
            return
        who = Who(caller.alias, caller.team) if caller is not None else Who(None, None)
        record = {"request_id": f"req-{uuid.uuid4().hex}", **meta}
        self.observer.request(build_record(record, who, status, _ms_since(t0), error=error))

    def answered_record(self, body: Mapping[str, Any], caller: Caller, t0: float,
                        answer: Any) -> None:  # fmt: skip
        """A request the fast lane answered itself (cache hit, router answer)."""
        if self.observer is None:
            return
        meta = _gateway_meta(body)
        content = self.observer.content(meta.get("route"), last_user_text(body.get("messages")),
                                        answer_text(answer))  # fmt: skip
        saved = float(meta.get("saved_usd") or 0.0)
        self.observer.request(build_record(meta, Who(caller.alias, caller.team), 200,
                                           _ms_since(t0), content=content,
                                           saved_usd=saved))  # fmt: skip

    async def _finish(self, kwargs: Mapping[str, Any], tokens: int, cost_usd: float) -> None:
        record = _gateway_meta(kwargs.get("litellm_params") or {})
        limit = record.get(LIMIT_META)
        if isinstance(limit, Mapping):
            saved = float(record.get("saved_usd") or 0.0)
            charge = Charge(str(limit.get("alias")), limit.get("team"), str(limit.get("model")),
                            tokens, cost_usd, saved)  # fmt: skip
            await self.finished(str(limit.get("id")), charge)

    def _pending(self, kwargs: Mapping[str, Any]) -> Pending | None:
        """The cache's pending store for a finished call, taken out of the waiting list."""
        if self.caching is None:
            return None
        record = _gateway_meta(kwargs.get("litellm_params") or {})
        return self.caching.pending((record.get(CACHE_META) or {}).get("token"))
