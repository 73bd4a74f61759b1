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

OTHER = "other"  # label value for anything outside the configured set (bounded cardinality)
METRIC_NAMES = frozenset({
    "gateway_requests", "gateway_intents", "gateway_cache_lookups", "gateway_tokens",
    "gateway_cost_usd", "gateway_savings_usd", "gateway_upstream_errors", "gateway_fallbacks",
    "gateway_config_reloads", "gateway_request_duration_seconds",
    "gateway_overhead_duration_seconds", "gateway_classifier_duration_seconds",
    "gateway_cache_lookup_duration_seconds", "gateway_upstream_duration_seconds",
    "gateway_event_loop_lag_seconds", "gateway_redis_up", "gateway_event_loop_max_lag_seconds",
    "gateway_config_generation", "gateway_pii_requests", "gateway_handoff_records",
})  # fmt: skip
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
        r = registry
        self.requests = Counter("gateway_requests", "Requests answered, by what answered them",
                                ["route", "action", "cache", "status"], registry=r)  # fmt: skip
        self.intents = Counter("gateway_intents", "Router decisions by intent",
                               ["router", "intent"], registry=r)  # fmt: skip
        self.cache_lookups = Counter("gateway_cache_lookups", "Cache outcomes",
                                     ["endpoint", "outcome"], registry=r)  # fmt: skip
        self.tokens = Counter("gateway_tokens", "Tokens billed by providers",
                              ["model_group", "type"], registry=r)  # fmt: skip
        self.cost = Counter("gateway_cost_usd", "Provider spend in USD",
                            ["team", "model_group"], registry=r)  # fmt: skip
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
        self.upstream = Histogram("gateway_upstream_duration_seconds",
                                  "LiteLLM call time (router, provider, fallbacks)",
                                  ["model_group"], buckets=REQUEST_BUCKETS, registry=r)  # fmt: skip
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
        self._max_lag = 0.0

    def _route(self, value: object) -> str:
        return value if isinstance(value, str) and value in self.routes else OTHER

    def observe(self, record: Mapping[str, Any]) -> None:
        """Count one request-log record."""
        route = self._route(record.get("route"))
        action = str(record.get("action"))
        cache = str(record.get("cache"))
        self.requests.labels(route, action, cache, str(record.get("status"))).inc()
        latency = record.get("latency_ms") or {}
        total = _seconds(latency.get("total"))
        if total is not None:
            self.duration.labels(route, action).observe(total)
        if record.get("router"):
            self.intents.labels(record["router"], str(record.get("intent") or "none")).inc()
            classify = _seconds(latency.get("classify"))
            if classify is not None:
                self.classifier.labels(record["router"]).observe(classify)
        if cache != "NONE":
            self.cache_lookups.labels(str(record.get("endpoint")), cache).inc()
        group = str(record.get("model_group") or OTHER)
        tokens = record.get("tokens") or {}
        for kind in ("prompt", "completion", "cached"):
            if tokens.get(kind):
                self.tokens.labels(group, kind).inc(int(tokens[kind]))
        team = str(record.get("team") or "none")
        if record.get("cost_usd"):
            self.cost.labels(team, group).inc(float(record["cost_usd"]))
        if record.get("saved_usd"):
            source = "cache" if cache.startswith("HIT") else "router"
            self.savings.labels(team, source).inc(float(record["saved_usd"]))
        if record.get("fallbacks"):
            self.fallbacks.labels(route).inc(int(record["fallbacks"]))
        upstream = _seconds(latency.get("upstream"))
        if upstream is not None and record.get("model_group"):
            self.upstream.labels(group).observe(upstream)
        pii = record.get("pii")
        if isinstance(pii, Mapping):
            for kind in pii.get("kinds") or []:
                self.pii.labels(str(pii.get("action")), str(kind)).inc()

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
        self.upstream_errors.labels(model_group or OTHER, error).inc()

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
