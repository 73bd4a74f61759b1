"""Pure: the request-log record of one finished request, from what the hooks collected.

The record's fields are documented in the README ("Observability"); the same
record feeds the log line, the Prometheus metrics and the dashboard's timeline,
so the three always agree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from extensions.observe.settings import ContentLogging

DIRECT = "DIRECT"  # the action of a request that named a model, not a router
NO_CACHE = "NONE"  # the cache outcome of a request the cache never saw


@dataclass(frozen=True, slots=True)
class Upstream:
    """What LiteLLM reports about the model call that answered (or nothing, for a mock)."""

    model_group: str | None = None
    deployment: str | None = None
    provider: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    upstream_ms: float | None = None
    fallbacks: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Who:
    alias: str | None
    team: str | None


class Redactor:
    """Message text for the log: configured patterns replaced, then cut to ``max_chars``."""

    def __init__(self, settings: ContentLogging) -> None:
        self.routes = frozenset(settings.routes)
        self.max_chars = settings.max_chars
        self.patterns = [(re.compile(r.pattern), f"[{r.name}]") for r in settings.redact]

    def logs(self, route: str | None) -> bool:
        return route in self.routes

    def clean(self, text: str) -> str:
        for pattern, replacement in self.patterns:
            text = pattern.sub(replacement, text)
        if len(text) > self.max_chars:
            text = text[: self.max_chars] + "…"
        return text


def last_user_text(messages: object) -> str:
    """The last user message's text (text parts joined), or ''."""
    if not isinstance(messages, Sequence):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, Sequence):
                parts = [p.get("text", "") for p in content if isinstance(p, Mapping)]
                return " ".join(str(p) for p in parts if p)
    return ""


def answer_text(body: object) -> str:
    """The first choice's text of a chat completion (dict or pydantic object), or ''."""
    if hasattr(body, "model_dump"):
        body = body.model_dump()
    if not isinstance(body, Mapping):
        return ""
    choices = body.get("choices") or []
    if not choices or not isinstance(choices[0], Mapping):
        return ""
    message = choices[0].get("message") or {}
    return str(message.get("content") or "") if isinstance(message, Mapping) else ""


def iso_now(now: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ms(value: object) -> float | None:
    return round(float(value), 3) if isinstance(value, int | float) else None


def build_record(
    meta: Mapping[str, Any],
    who: Who,
    status: int,
    total_ms: float,
    upstream: Upstream | None = None,
    error: Mapping[str, str] | None = None,
    content: Mapping[str, str] | None = None,
    saved_usd: float = 0.0,
    now: float | None = None,
) -> dict[str, Any]:
    """The log record; ``meta`` is the gateway's record of the request (``metadata.gateway``)."""
    up = upstream or Upstream()
    raw_cache, raw_timing = meta.get("cache"), meta.get("timing")
    cache: Mapping[str, Any] = raw_cache if isinstance(raw_cache, Mapping) else {}
    timing: Mapping[str, Any] = raw_timing if isinstance(raw_timing, Mapping) else {}
    router = meta.get("router")
    exact, semantic = _ms(timing.get("exact")), _ms(timing.get("semantic"))
    cache_ms = (
        None if exact is None and semantic is None else round((exact or 0) + (semantic or 0), 3)
    )
    confidence = meta.get("confidence")
    record: dict[str, Any] = {
        "ts": iso_now(now),
        "event": "request",
        "request_id": str(meta.get("request_id") or ""),
        "key_alias": who.alias,
        "team": who.team,
        "endpoint": str(meta.get("endpoint") or "chat"),
        "route": meta.get("route"),
        "stream": bool(meta.get("stream")),
        "router": router,
        "intent": meta.get("intent") if router else None,
        "confidence": round(float(confidence), 4) if isinstance(confidence, int | float) else None,
        "action": str(meta.get("action") or DIRECT) if router else DIRECT,
        "model_group": up.model_group,
        "deployment": up.deployment,
        "provider": up.provider,
        "fallbacks": up.fallbacks,
        "retries": up.retries,
        "cache": str(cache.get("outcome") or NO_CACHE),
        "similarity": cache.get("similarity"),
        "latency_ms": {
            "total": round(total_ms, 3),
            "gateway": _ms(timing.get("gateway")),
            "classify": _ms(meta.get("classify_ms")) if router else None,
            "cache": cache_ms,
            "upstream": _ms(up.upstream_ms),
        },
        "tokens": {
            "prompt": up.prompt_tokens,
            "completion": up.completion_tokens,
            "cached": up.cached_tokens,
        },
        "cost_usd": round(up.cost_usd, 10),
        "saved_usd": round(saved_usd, 10),
        "status": status,
        "error": dict(error) if error else None,
        "generation": meta.get("generation"),  # which load of gateway.yaml served it
    }
    if content:
        record["content"] = dict(content)
    return record
