"""Pure: the ``x-gateway-*`` headers of an answer, from the request's context.

Every response carries ``x-gateway-request-id``. With ``response_headers.enabled``
(the default) it also says who answered (``-model-group``, ``-deployment``,
``-provider``: the deployment LiteLLM's router ended on, after fallbacks; ``gateway`` /
``cache`` or ``router`` when no model answered), what the cache did (``-cache``,
``-cache-similarity``, ``-cache-reason``) and what the router decided (``-router``,
``-intent``, ``-confidence``, ``-action``, ``-handoff-id``, ``-degraded``,
``-structured-output``), on every protocol, for hits, router answers and errors alike.
"""

from __future__ import annotations

from extensions.pipeline.context import RequestContext


def _ascii(value: object) -> str:
    return str(value).encode("ascii", "replace").decode()


def response_headers(ctx: RequestContext, enabled: bool = True) -> dict[str, str]:
    out = {"x-gateway-request-id": ctx.id}
    if not enabled:
        return out
    routing, cache, served = ctx.routing, ctx.cache, ctx.served
    if routing is not None:
        out["x-gateway-router"] = routing.router
        out["x-gateway-action"] = routing.action.value
        if routing.intent:
            out["x-gateway-intent"] = routing.intent
        if routing.confidence is not None:
            out["x-gateway-confidence"] = f"{routing.confidence:.3f}"
        if routing.handoff_id:
            out["x-gateway-handoff-id"] = routing.handoff_id
        if routing.structured_override:
            out["x-gateway-structured-output"] = "model"
    if ctx.degraded:
        out["x-gateway-degraded"] = _ascii(ctx.degraded)
    if ctx.screening is not None:
        out["x-gateway-pii"] = f"{ctx.screening.action}:{','.join(ctx.screening.kinds)}"
    if cache.outcome is not None:
        out["x-gateway-cache"] = cache.outcome.value
        if cache.similarity is not None:
            out["x-gateway-cache-similarity"] = f"{cache.similarity:.4f}"
        if cache.reason:
            out["x-gateway-cache-reason"] = _ascii(cache.reason)
    if served is not None:
        if served.model_group:
            out["x-gateway-model-group"] = served.model_group
        if served.deployment:
            out["x-gateway-deployment"] = served.deployment
        if served.provider:
            out["x-gateway-provider"] = served.provider
        out["x-gateway-attempted-fallbacks"] = str(served.fallbacks)
        out["x-gateway-attempted-retries"] = str(served.retries)
    if ctx.gateway_ms is not None:
        out["x-gateway-overhead-ms"] = f"{ctx.gateway_ms:.2f}"
    return out
