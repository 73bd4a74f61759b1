"""Pure: may this request be answered from the cache, and may its answer be stored?

Three layers, each able to say BYPASS with a reason (logged, and in the
``x-gateway-cache-reason`` header): the client's own controls, the YAML rules on
the request's shape, and, once the router has classified the query, the intent's
settings and the cacheability classifier (user-specific and time-sensitive
queries must not be shared).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from extensions.cache.settings import IntentCache, Rules
from extensions.embedding.encoder import Vectors
from extensions.router.classifier import Head

NOT_CACHEABLE = "not_cacheable"


@dataclass(frozen=True, slots=True)
class ClientControl:
    """LiteLLM's per-request controls: body ``cache: {...}`` or a ``Cache-Control`` header."""

    no_cache: bool = False  # do not answer from the cache (the fresh answer is stored)
    no_store: bool = False  # do not store the answer
    ttl_s: int | None = None  # store for this long instead
    max_age_s: int | None = None  # only accept entries younger than this

    @classmethod
    def parse(cls, body_cache: object, header: str | None) -> ClientControl:
        opts: dict[str, Any] = dict(body_cache) if isinstance(body_cache, Mapping) else {}
        for part in (header or "").split(","):
            name, _, value = part.strip().lower().partition("=")
            if name in {"no-cache", "no-store"}:
                opts.setdefault(name, True)
            elif name in {"max-age", "s-maxage"}:
                opts.setdefault("s-maxage", value)
        return cls(
            no_cache=opts.get("no-cache") is True,
            no_store=opts.get("no-store") is True,
            ttl_s=_positive_int(opts.get("ttl")),
            max_age_s=_positive_int(opts.get("s-maxage"), allow_zero=True),
        )


def _positive_int(value: object, allow_zero: bool = False) -> int | None:
    try:
        n = int(str(value)) if value is not None and not isinstance(value, bool) else None
    except ValueError:
        return None
    if n is None or n < 0 or (n == 0 and not allow_zero):
        return None
    return n


@dataclass(frozen=True, slots=True)
class Plan:
    lookup: bool
    store: bool
    reason: str | None = None  # why a part is off

    @property
    def bypass(self) -> bool:
        return not self.lookup and not self.store


BYPASS_ALL = Plan(False, False)


def plan_request(rules: Rules, client: ClientControl, body: Mapping[str, Any]) -> Plan:
    """Before routing: the client's controls and the request's shape."""
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > rules.max_temperature:
        return Plan(False, False, f"temperature above {rules.max_temperature}")
    if not rules.tools and (body.get("tools") or body.get("functions")):
        return Plan(False, False, "request offers tools")
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        return Plan(False, False, "n > 1")
    turns = sum(1 for m in body.get("messages") or [] if m.get("role") == "user")
    if turns > rules.max_user_turns:
        return Plan(False, False, f"more than {rules.max_user_turns} user turns")
    if client.no_cache and client.no_store:
        return Plan(False, False, "client: no-cache, no-store")
    if client.no_cache:
        return Plan(False, True, "client: no-cache")
    if client.no_store:
        return Plan(True, False, "client: no-store")
    return Plan(True, True)


def plan_intent(plan: Plan, intent: str | None, settings: IntentCache | None) -> Plan:
    """After routing: intents whose answers are user-specific or time-sensitive."""
    if settings is not None and not settings.enabled:
        return Plan(False, False, f"intent '{intent}' is never cached")
    return plan


@dataclass(frozen=True)
class CacheabilityClassifier:
    """Logistic regression on the request embedding: cacheable vs not (YAML examples)."""

    head: Head
    not_cacheable_above: float

    def probability(self, vector: Vectors) -> float:
        probs = self.head.probabilities(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        return float(probs[0, self.head.labels.index(NOT_CACHEABLE)])

    def plan(self, plan: Plan, vector: Vectors) -> Plan:
        p = self.probability(vector)
        if p > self.not_cacheable_above:
            return Plan(False, False, f"classifier: not cacheable (p={p:.2f})")
        return plan
