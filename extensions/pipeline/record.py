"""Pure: the request-log record of one finished request, from its context.

The same record feeds the log line, the Prometheus metrics, the dashboard's
timeline and the analytics report, so they always agree. Fields are documented in
docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extensions.observe.record import iso_now
from extensions.pipeline.context import RequestContext, Result
from extensions.pipeline.errors import GatewayError, UpstreamFailed

DIRECT = "DIRECT"  # the action of a request that named a model, not a router
NO_CACHE = "NONE"  # the cache outcome of a request the cache never saw


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _error(error: GatewayError) -> dict[str, str]:
    """``source``: ``upstream`` when the model call failed (after LiteLLM's retries and
    fallbacks), else ``gateway`` (a refusal or the gateway's own failure)."""
    source = "upstream" if isinstance(error, UpstreamFailed) else "gateway"
    return {"type": error.type, "message": error.message[:300], "source": source}


def build_record(
    ctx: RequestContext,
    result: Result,
    total_ms: float,
    content: Mapping[str, str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    principal, routing, cache, served = ctx.principal, ctx.routing, ctx.cache, ctx.served
    exact, semantic = cache.exact_ms, cache.semantic_ms
    cache_ms = (
        None if exact is None and semantic is None else round((exact or 0) + (semantic or 0), 3)
    )
    usage = served.usage if served is not None else None
    error = result.error
    record: dict[str, Any] = {
        "ts": iso_now(now),
        "event": "request",
        "request_id": ctx.id,
        "key_alias": principal.alias if principal else None,
        "team": principal.team if principal else None,
        "endpoint": ctx.protocol.value,
        "route": ctx.requested,
        "stream": ctx.stream,
        "router": routing.router if routing else None,
        "intent": routing.intent if routing else None,
        "confidence": routing.confidence if routing else None,
        "action": routing.action.value if routing else DIRECT,
        "model_group": served.model_group if served else None,
        "deployment": served.deployment if served else None,
        "provider": served.provider if served else None,
        "fallbacks": served.fallbacks if served else 0,
        "retries": served.retries if served else 0,
        "cache": cache.outcome.value if cache.outcome is not None else NO_CACHE,
        "similarity": cache.similarity,
        "latency_ms": {
            "total": round(total_ms, 3),
            "gateway": _round(ctx.gateway_ms),
            "classify": _round(routing.classify_ms) if routing else None,
            "cache": cache_ms,
            "upstream": _round(served.upstream_ms) if served else None,
        },
        "tokens": {
            "prompt": usage.prompt_tokens if usage else 0,
            "completion": usage.completion_tokens if usage else 0,
            "cached": usage.cached_tokens if usage else 0,
            "cache_write": usage.cache_write_tokens if usage else 0,
        },
        "cost_usd": round(served.cost_usd, 10) if served else 0.0,
        "saved_usd": round(ctx.saved_usd, 10),
        "status": result.status,
        "admitted": ctx.admission is not None,  # counted in usage, limits and budgets
        "error": _error(error) if error else None,
        "generation": ctx.generation,
    }
    if routing is not None and routing.handoff_id:
        record["handoff_id"] = routing.handoff_id
    if ctx.degraded:
        record["degraded"] = ctx.degraded
    if routing is not None and routing.structured_override:
        record["structured_override"] = True
    if ctx.prompt_cache is not None:
        record["prompt_cache"] = {
            "read_tokens": ctx.prompt_cache.read_tokens,
            "write_tokens": ctx.prompt_cache.write_tokens,
            "saved_usd": round(ctx.prompt_cache.saved_usd, 10),
            "storage_usd": round(ctx.prompt_cache.storage_usd, 10),
        }
    if ctx.screening is not None:
        record["pii"] = {"action": ctx.screening.action, "kinds": list(ctx.screening.kinds)}
    if ctx.failed_attempts:
        record["failed_attempts"] = [{"model_group": g, "error": e} for g, e in ctx.failed_attempts]
    if content:
        record["content"] = dict(content)
    return record
