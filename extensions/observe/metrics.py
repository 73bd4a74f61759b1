"""Prometheus metrics, fed from the request-log record (so logs and metrics agree).

With several workers, prometheus_client's multiprocess mode is used: the launcher
sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before the workers start, each
worker writes its values there, and ``/metrics`` (whichever worker answers it)
adds them up. LiteLLM's own ``litellm_*`` metrics (its ``prometheus`` callback)
are in the same registry and appear on the same page.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

from extensions.observe.labels import (
    ACTIONS,
    ATTEMPT_ERRORS,
    CACHE_OUTCOMES,
    ERROR_TYPES,
    NONE,
    OTHER,
    PII_ACTIONS,
    PII_KINDS,
    Labels,
    pick,
)
from extensions.observe.timeline import error_class, error_source

METRIC_NAMES = frozenset({
    "gateway_requests", "gateway_intents", "gateway_cache_lookups", "gateway_tokens",
    "gateway_cost_usd", "gateway_savings_usd", "gateway_upstream_errors", "gateway_fallbacks",
    "gateway_config_reloads", "gateway_request_duration_seconds",
    "gateway_overhead_duration_seconds", "gateway_classifier_duration_seconds",
    "gateway_cache_lookup_duration_seconds", "gateway_upstream_duration_seconds",
    "gateway_event_loop_lag_seconds", "gateway_redis_up", "gateway_event_loop_max_lag_seconds",
    "gateway_config_generation", "gateway_pii_requests", "gateway_handoff_records",
    "gateway_served_requests", "gateway_errors", "gateway_key_requests", "gateway_key_cost_usd",
    "gateway_intent_cost_usd", "gateway_intent_savings_usd", "gateway_degraded_requests",
    "gateway_budget_usd", "gateway_prompt_cache_usd", "gateway_cache_audits",
    "gateway_cache_audit_cost_usd", "gateway_cache_audit_precision",
})  # fmt: skip
SERVED = ["model_group", "deployment", "provider"]  # who answered: labels of several metrics
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02,
                0.03, 0.05, 0.1, 0.25, 1)  # fmt: skip
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


def _seconds(ms: object) -> float | None:
    return float(ms) / 1000 if isinstance(ms, int | float) else None


class GatewayMetrics:
    """Every gateway metric, registered once per worker in ``registry``."""

    def __init__(self, routes: Set[str], registry: CollectorRegistry = REGISTRY) -> None:
        self.routes = frozenset(routes)
        self.labels = Labels(groups=self.routes)  # replaced by Observer.configure
        r = registry
        self.requests = Counter("gateway_requests", "Requests answered, by what answered them",
                                ["route", "action", "cache", "status"], registry=r)  # fmt: skip
        self.intents = Counter("gateway_intents", "Router decisions by intent",
                               ["router", "intent"], registry=r)  # fmt: skip
        self.cache_lookups = Counter("gateway_cache_lookups", "Cache outcomes",
                                     ["endpoint", "outcome"], registry=r)  # fmt: skip
        self.served = Counter(
            "gateway_served_requests",
            "Requests answered, by who answered (a deployment, the cache, the router)",
            SERVED,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens billed by providers", [*SERVED, "type"], registry=r
        )
        self.cost = Counter(
            "gateway_cost_usd", "Provider spend in USD", ["team", *SERVED], registry=r
        )
        self.errors = Counter(
            "gateway_errors",
            "Error answers by class, status and type",
            ["class", "status", "type"],
            registry=r,
        )
        self.key_requests = Counter(
            "gateway_key_requests", "Requests by key", ["key", "team"], registry=r
        )
        self.key_cost = Counter(
            "gateway_key_cost_usd", "Provider spend in USD by key", ["key", "team"], registry=r
        )
        self.intent_cost = Counter(
            "gateway_intent_cost_usd",
            "Provider spend in USD by intent",
            ["router", "intent"],
            registry=r,
        )
        self.intent_savings = Counter(
            "gateway_intent_savings_usd",
            "USD not spent thanks to the gateway, by intent",
            ["router", "intent"],
            registry=r,
        )
        self.degraded = Counter(
            "gateway_degraded_requests",
            "Answers changed by a budget ladder (cheaper model, cache only)",
            ["kind"],
            registry=r,
        )
        self.budget = Gauge(
            "gateway_budget_usd",
            "Budgets of keys and teams: budget, spent and left (set at each scrape)",
            ["subject", "period", "amount"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.savings = Counter("gateway_savings_usd", "USD not spent thanks to the gateway",
                               ["team", "source"], registry=r)  # fmt: skip
        self.upstream_errors = Counter("gateway_upstream_errors", "Failed provider calls",
                                       ["model_group", "error"], registry=r)  # fmt: skip
        self.fallbacks = Counter("gateway_fallbacks", "Fallbacks taken, by requested group",
                                 ["model_group"], registry=r)  # fmt: skip
        self.reloads = Counter("gateway_config_reloads", "gateway.yaml reloads",
                               ["result"], registry=r)  # fmt: skip
        self.duration = Histogram("gateway_request_duration_seconds", "Whole request time",
                                  ["route", "action"], buckets=REQUEST_BUCKETS,
                                  registry=r)  # fmt: skip
        self.overhead = Histogram("gateway_overhead_duration_seconds",
                                  "The gateway's own time before answering or forwarding",
                                  ["path"], buckets=FAST_BUCKETS, registry=r)  # fmt: skip
        self.classifier = Histogram("gateway_classifier_duration_seconds",
                                    "Intent classification (embedding included)",
                                    ["router"], buckets=FAST_BUCKETS, registry=r)  # fmt: skip
        self.lookup = Histogram("gateway_cache_lookup_duration_seconds", "Cache lookups",
                                ["kind"], buckets=FAST_BUCKETS, registry=r)  # fmt: skip
        self.upstream = Histogram(
            "gateway_upstream_duration_seconds",
            "LiteLLM call time (router, provider, fallbacks)",
            SERVED,
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.loop_lag = Histogram("gateway_event_loop_lag_seconds", "Event-loop lag samples",
                                  buckets=LAG_BUCKETS, registry=r)  # fmt: skip
        self.redis_up = Gauge("gateway_redis_up", "1 when Redis answers (min over workers)",
                              registry=r, multiprocess_mode="min")  # fmt: skip
        self.max_lag = Gauge("gateway_event_loop_max_lag_seconds",
                             "Largest event-loop lag seen (max over workers)",
                             registry=r, multiprocess_mode="max")  # fmt: skip
        self.generation = Gauge("gateway_config_generation",
                                "gateway.yaml generation in use (min over workers)",
                                registry=r, multiprocess_mode="min")  # fmt: skip
        self.pii = Counter("gateway_pii_requests", "Requests in which the guardrail found data",
                           ["action", "kind"], registry=r)  # fmt: skip
        self.handoffs = Gauge("gateway_handoff_records", "Handoff records by sink and state",
                              ["sink", "state"], registry=r,
                              multiprocess_mode="livesum")  # fmt: skip
        self.prompt_cache = Counter("gateway_prompt_cache_usd",
                                    "Provider prompt caching: saved on cached input, storage fees",
                                    ["model_group", "kind"], registry=r)  # fmt: skip
        self.audits = Counter("gateway_cache_audits", "Audited semantic hits, by result",
                              ["result"], registry=r)  # fmt: skip
        self.audit_cost = Counter("gateway_cache_audit_cost_usd",
                                  "What the audits' model calls cost", registry=r)  # fmt: skip
        self.audit_precision = Gauge("gateway_cache_audit_precision",
                                     "Share of the last audits of served semantic hits that passed",
                                     registry=r, multiprocess_mode="liveall")  # fmt: skip
        self._max_lag = 0.0
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _route(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.routes else OTHER

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, kept: label values are bounded, so is this cache, and
        the per-request path skips prometheus_client's lock and label checks."""
        key = (metric._name, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, record: Mapping[str, Any]) -> None:
        """Count one request-log record."""
        labels = self.labels
        route = self._route(record.get("route"))
        action = pick(ACTIONS, record.get("action"))
        cache = pick(CACHE_OUTCOMES, record.get("cache"))
        status = int(record.get("status") or 0)
        self._child(self.requests, route, action, cache, str(status)).inc()
        latency = record.get("latency_ms") or {}
        total = _seconds(latency.get("total"))
        if total is not None:
            self._child(self.duration, route, action).observe(total)
        team = labels.team(record.get("team"))
        cost, saved = float(record.get("cost_usd") or 0.0), float(record.get("saved_usd") or 0.0)
        router = record.get("router")
        if router:
            name, intent = labels.router(router), labels.intent(router, record.get("intent"))
            self._child(self.intents, name, intent).inc()
            classify = _seconds(latency.get("classify"))
            if classify is not None:
                self._child(self.classifier, name).observe(classify)
            if cost:
                self._child(self.intent_cost, name, intent).inc(cost)
            if saved:
                self._child(self.intent_savings, name, intent).inc(saved)
        if cache != "NONE":
            self._child(self.cache_lookups, str(record.get("endpoint")), cache).inc()
        group = labels.group(record.get("model_group"))
        served = (
            group,
            labels.deployment(record.get("deployment")),
            labels.provider(record.get("provider")),
        )
        if record.get("deployment") is not None:
            self._child(self.served, *served).inc()
        tokens = record.get("tokens") or {}
        for kind in ("prompt", "completion", "cached"):
            if tokens.get(kind):
                self._child(self.tokens, *served, kind).inc(int(tokens[kind]))
        if cost:
            self._child(self.cost, team, *served).inc(cost)
        if saved:
            source = "cache" if cache.startswith("HIT") else "router"
            self._child(self.savings, team, source).inc(saved)
        alias = record.get("key_alias")
        if alias is not None:
            key = labels.key(alias)
            self._child(self.key_requests, key, team).inc()
            if cost:
                self._child(self.key_cost, key, team).inc(cost)
        if status >= 400:
            error = record.get("error")
            kind = pick(ERROR_TYPES, error.get("type")) if isinstance(error, Mapping) else NONE
            cls = error_class(status, kind, error_source(record))
            self._child(self.errors, cls, str(status), kind).inc()
        if record.get("fallbacks"):
            self._child(self.fallbacks, route).inc(int(record["fallbacks"]))
        upstream = _seconds(latency.get("upstream"))
        if upstream is not None and record.get("model_group"):
            self._child(self.upstream, *served).observe(upstream)
        degraded = record.get("degraded")
        if degraded:
            self._child(
                self.degraded, "cache_only" if str(degraded).startswith("cache_only") else "model"
            ).inc()
        pii = record.get("pii")
        if isinstance(pii, Mapping):
            for kind in pii.get("kinds") or []:
                self._child(
                    self.pii, pick(PII_ACTIONS, pii.get("action")), pick(PII_KINDS, kind)
                ).inc()
        prompt_cache = record.get("prompt_cache")
        if isinstance(prompt_cache, Mapping):
            group = labels.group(record.get("model_group"))
            for kind, field in (("saved", "saved_usd"), ("storage", "storage_usd")):
                amount = float(prompt_cache.get(field) or 0.0)
                if amount:
                    self._child(self.prompt_cache, group, kind).inc(amount)

    def audit(self, result: str, cost_usd: float, precision: float | None) -> None:
        """One audit of a served semantic hit (``pass``, ``fail``, ``error``)."""
        self._child(self.audits, result).inc()
        if cost_usd:
            self.audit_cost.inc(cost_usd)
        if precision is not None:
            self.audit_precision.set(precision)

    def budgets(self, remaining: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Set the budget gauges from ``Budgets.remaining()`` (subject -> period -> amounts)."""
        for subject, periods in remaining.items():
            for period, amounts in periods.items():
                for amount in ("budget", "spent", "left"):
                    value = amounts.get(f"{amount}_usd")
                    if isinstance(value, int | float):
                        self.budget.labels(subject, period, amount).set(value)

    def handoff_counts(self, counts: Mapping[str, Mapping[str, int]]) -> None:
        """Set the handoff gauges from the dispatcher's counters (per sink, per state)."""
        for sink, states in counts.items():
            for state, value in states.items():
                self.handoffs.labels(sink, state).set(value)

    def overhead_ms(self, path: str, ms: float) -> None:
        self.overhead.labels(path).observe(ms / 1000)

    def lookup_ms(self, kind: str, ms: float) -> None:
        self.lookup.labels(kind).observe(ms / 1000)

    def upstream_error(self, model_group: str | None, error: str) -> None:
        self.upstream_errors.labels(
            self.labels.group(model_group), pick(ATTEMPT_ERRORS, error)
        ).inc()

    def lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        if seconds > self._max_lag:
            self._max_lag = seconds
            self.max_lag.set(seconds)


def render(multiprocess_dir: str | None, registry: CollectorRegistry = REGISTRY) -> bytes:
    """The exposition text: every worker's values added up in multiprocess mode."""
    if multiprocess_dir:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(registry)
