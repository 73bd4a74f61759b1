"""Build one generation of the gateway from validated settings (no environment reads here).

A generation is everything one worker needs to serve requests on one version of
gateway.yaml: the key verifier, the pipeline (gatekeeper, decider, caches, router),
the observer. A reload builds the next generation, keeping what did not change: the
encoder, the Redis link, the metrics, cache entries and limit/budget/usage counters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extensions.access.budgets import Budgets, SpendStore, budgets_by_alias, ladders_by_alias
from extensions.access.grants import grants
from extensions.access.keys import KeyVerifier
from extensions.access.limits import Limiter, LimitStore, subject_limits
from extensions.access.usage import SavingsEstimate, Usage, UsageStore
from extensions.backends.redis import RedisLink
from extensions.cache.requests import RequestCache
from extensions.config.catalog import Catalog
from extensions.config.errors import ConfigError
from extensions.config.loader import load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.embedding.encoder import BatchingEncoder
from extensions.guard.guard import Guard
from extensions.observe.labels import Labels
from extensions.observe.metrics import GatewayMetrics
from extensions.observe.observer import Observer
from extensions.pipeline.admission import Gatekeeper
from extensions.pipeline.audit import Auditor
from extensions.pipeline.decide import Decider
from extensions.pipeline.pipeline import Inflight, Pipeline
from extensions.pipeline.upstream import Upstream
from extensions.router.engine import RouterEngine
from extensions.router.handoff import HandoffDispatcher
from extensions.server.routes import RouteTable


def build_router(
    config: GatewayConfig, base_dir: Path, encoder: BatchingEncoder
) -> tuple[RouterEngine, HandoffDispatcher]:
    """Train (or load cached) classifiers for every router; the handoff sinks."""
    from extensions.router.engine import compile_routers
    from extensions.router.llm_classifier import LlmIntentClassifier, router_completion

    routers = compile_routers(config.routers, encoder, base_dir, config.embedding.cache_dir)
    patterns = [(r.name, r.pattern) for r in config.observability.request_log.content.redact]
    llm = {
        name: LlmIntentClassifier(
            spec.llm_classifier, spec.description, spec.intents, router_completion
        )
        for name, spec in config.routers.items()
        if spec.llm_classifier.enabled
    }
    return RouterEngine(routers, encoder, llm), HandoffDispatcher.from_settings(
        config.handoff_sinks, patterns
    )


def build_cache(
    config: GatewayConfig, encoder: BatchingEncoder | None, link: RedisLink | None, source: Path
) -> RequestCache:
    """The response cache on the configured tier (memory, or memory in front of Redis);
    raises ``ConfigError`` naming ``source`` when the verifier's model cannot be used."""
    from extensions.cache.pair_model import PairModelError
    from extensions.cache.policy import NOT_CACHEABLE, CacheabilityClassifier
    from extensions.cache.service import ResponseCache
    from extensions.cache.settings import Tier
    from extensions.cache.store import MemoryStore, RedisStore, Store, TieredStore
    from extensions.cache.vectors import MemoryVectorIndex, RedisVectorIndex, VectorIndex
    from extensions.cache.verifiers import CandidateVerifier, RulesVerifier, build_verifier
    from extensions.router.classifier import train_head

    settings = config.cache
    # no semantic cache: no verifier model to load (a cross-encoder is ~90 MB per worker)
    verifier: CandidateVerifier = RulesVerifier(settings.semantic.verification)
    try:
        if settings.semantic.enabled:
            verifier = build_verifier(settings.semantic, config.embedding)
    except PairModelError as exc:
        raise ConfigError(source, [f"cache.semantic.verifier.model: {exc}"]) from exc
    memory = MemoryStore(settings.memory.max_entries, settings.memory.eviction)
    store: Store = memory
    index: VectorIndex | None = None
    if settings.tier is Tier.SHARED:
        assert link is not None  # the schema requires redis.url for the shared tier
        store = TieredStore(memory, RedisStore(link))
        if settings.semantic.enabled:
            index = RedisVectorIndex(link, settings.memory.max_entries * 10)
    elif settings.semantic.enabled and encoder is not None:
        index = MemoryVectorIndex(encoder.dim, settings.memory.max_entries)
    classifier = None
    rules = settings.cacheability
    if rules.enabled and encoder is not None:
        texts = [*rules.cacheable, *rules.not_cacheable]
        labels = ["cacheable"] * len(rules.cacheable) + [NOT_CACHEABLE] * len(rules.not_cacheable)
        head = train_head(encoder.encode_sync(texts), labels)
        classifier = CacheabilityClassifier(head, rules.not_cacheable_above)
    return RequestCache(
        ResponseCache(settings, store, index, verifier=verifier),
        encoder,
        config.routers,
        classifier,
        window_check(encoder, config.embedding.max_seq_length),
    )


def window_check(encoder: BatchingEncoder | None, max_tokens: int) -> Any:
    """Whether a query fits the encoder's window (its end would be cut off otherwise)."""
    fits = getattr(encoder, "fits", None)
    if callable(fits):
        return fits
    # no tokenizer to ask: about 1.3 word pieces per word for English text
    return lambda text: len(text.split()) * 1.3 <= max_tokens


def build_observer(
    config: GatewayConfig,
    metrics: GatewayMetrics | None,
    link: RedisLink | None,
    metrics_dir: str | None,
) -> Observer:
    """Request log, metrics and the dashboard's timeline (in this process or Redis)."""
    from extensions.observe.request_log import RequestLog
    from extensions.observe.settings import TimelineStore
    from extensions.observe.timeline import (
        MemoryTimeline,
        RedisTimeline,
        Timeline,
        TimelineRecorder,
    )

    settings = config.observability
    store: Timeline = MemoryTimeline()
    if settings.dashboard.store is TimelineStore.REDIS:
        assert link is not None  # the schema requires redis.url
        store = RedisTimeline(link)
    return Observer(
        settings, RequestLog(settings.request_log), metrics, TimelineRecorder(store), metrics_dir
    )


def build_limits(
    config: GatewayConfig, link: RedisLink | None, previous: Parts | None
) -> tuple[LimitStore, SpendStore, UsageStore]:
    """Where limits, spend and usage are counted: Redis (shared) or this process. A
    reload keeps the stores (and their counts) unless their settings changed."""
    from extensions.access.budgets import MemorySpend, RedisSpend
    from extensions.access.limits import MemoryLimits, RedisLimits
    from extensions.access.settings import LimitStoreKind, OnFailure
    from extensions.access.usage import MemoryUsage, RedisUsage

    if (
        previous is not None
        and previous.config.access.limits == config.access.limits
        and previous.link is link
    ):
        return previous.limit_store, previous.spend_store, previous.usage_store
    settings = config.access.limits
    if settings.store is LimitStoreKind.REDIS:
        assert link is not None  # the schema requires redis.url
        fail_open = settings.on_redis_failure is OnFailure.OPEN
        return RedisLimits(link, fail_open), RedisSpend(link, fail_open), RedisUsage(link)
    return MemoryLimits(), MemorySpend(), MemoryUsage()


def build_auditor(config: GatewayConfig, cache: RequestCache | None,
                  encoder: BatchingEncoder | None, upstream: Upstream, previous: Parts | None,
                  metrics: GatewayMetrics | None) -> Auditor | None:  # fmt: skip
    """The audit of served semantic hits; kept across a reload that kept the cache."""
    settings = config.cache.semantic.audit
    if cache is None or encoder is None or not settings.enabled:
        return None
    if previous is not None and previous.cache is cache and previous.pipeline.auditor is not None:
        return previous.pipeline.auditor
    return Auditor(settings, cache.cache, encoder, upstream, metrics.audit if metrics else None)


@dataclass
class Parts:
    """One generation: what serves requests, and what the next reload may keep."""

    config: GatewayConfig
    catalog: Catalog
    verifier: KeyVerifier
    pipeline: Pipeline
    routes: RouteTable
    encoder: BatchingEncoder | None
    link: RedisLink | None
    observer: Observer
    cache: RequestCache | None
    limit_store: LimitStore
    spend_store: SpendStore
    usage_store: UsageStore

    def same(self, config: GatewayConfig, section: str) -> bool:
        return bool(getattr(self.config, section) == getattr(config, section))

    @property
    def metrics_locked(self) -> bool:
        return self.config.observability.metrics.require_master_key

    async def usage_report(self, day: str | None) -> dict[str, Any]:
        """Usage by key, team and model for a UTC day, with what is left of each budget."""
        gatekeeper = self.pipeline.gatekeeper
        report = await gatekeeper.usage.report(day)
        if gatekeeper.budgets is not None:
            report["budgets"] = await gatekeeper.budgets.remaining()
        report["in_flight"] = await gatekeeper.limiter.in_flight() if gatekeeper.limiter else {}
        return report


def build_gateway(
    gateway_yaml: Path,
    litellm_yaml: Path,
    master_key: str,
    environ: Mapping[str, str],
    upstream: Upstream,
    inflight: Inflight,
    metrics_dir: str | None = None,
    previous: Parts | None = None,
) -> Parts:
    """Everything one proxy worker needs; raises ``ConfigError``.

    With ``previous`` (a reload), parts whose settings did not change are kept: the
    encoder, the Redis link, the metrics, cache entries and limit/budget counters.
    """
    catalog = Catalog.from_litellm_yaml(litellm_yaml)
    config = load_gateway_config(gateway_yaml, catalog.groups, environ)
    if not master_key:
        raise ConfigError("environment", ["LITELLM_MASTER_KEY must be set (the operators' key)"])
    verifier, problems = KeyVerifier.build(master_key, config.access, environ)
    if problems:
        raise ConfigError(gateway_yaml, problems)
    needs_encoder = bool(config.routers) or (
        config.cache.enabled
        and (config.cache.semantic.enabled or config.cache.cacheability.enabled)
    )
    encoder = None
    if needs_encoder and previous is not None and previous.same(config, "embedding"):
        encoder = previous.encoder
    if needs_encoder and encoder is None:
        from extensions.embedding.encoder import sentence_encoder

        encoder = sentence_encoder(config.embedding)
    engine, handoffs = (
        build_router(config, gateway_yaml.parent, encoder)
        if config.routers and encoder
        else (None, None)
    )
    names = catalog.groups | set(config.routers)
    if previous is not None:
        metrics = previous.observer.metrics
    else:
        metrics = GatewayMetrics(names) if config.observability.metrics.enabled else None
    if metrics is not None:
        metrics.routes = frozenset(names)
    link = previous.link if previous is not None and previous.same(config, "redis") else None
    if link is None and config.redis.url:  # one connection pool per worker
        link = RedisLink(config.redis, on_state=metrics.redis_up.set if metrics else None)
    keep = previous is not None and previous.link is link
    observer = (
        previous.observer
        if previous is not None and keep and previous.same(config, "observability")
        else build_observer(config, metrics, link, metrics_dir)
    )
    observer.configure(Labels.from_config(config, catalog))  # bounded label values
    cache = None
    if config.cache.enabled:
        if (
            previous is not None
            and keep
            and previous.same(config, "cache")
            and (previous.encoder is encoder)
            and previous.cache is not None
        ):
            cache = previous.cache  # its entries (and its cacheability classifier) are kept
            cache.routers = dict(config.routers)
        else:
            cache = build_cache(config, encoder, link, gateway_yaml)
    limit_store, spend_store, usage_store = build_limits(config, link, previous)
    by_alias = subject_limits(config.access)
    budget_by_alias = budgets_by_alias(config.access)
    gatekeeper = Gatekeeper(
        grants(config.access),
        Limiter(limit_store, by_alias) if by_alias else None,
        Budgets(spend_store, budget_by_alias) if budget_by_alias else None,
        Usage(usage_store),
        ladders_by_alias(config.access),
    )
    savings = SavingsEstimate(catalog, config.access.savings.assumed_completion_tokens)
    decider = Decider(catalog, cache, engine, handoffs, savings, config.prompt_caching)
    pipeline = Pipeline(
        generation=0,
        verifier=verifier,
        gatekeeper=gatekeeper,
        decider=decider,
        upstream=upstream,
        observer=observer,
        catalog=catalog,
        cache=cache,
        inflight=inflight,
        routers=frozenset(config.routers),
        guard=Guard(config.guardrails) if config.guardrails.routes else None,
        auditor=build_auditor(config, cache, encoder, upstream, previous, metrics),
        headers_enabled=config.response_headers.enabled,
    )
    settings = config.observability
    routes = RouteTable(
        settings.metrics.path if settings.metrics.enabled else None,
        settings.dashboard.path if settings.dashboard.enabled else None,
    )
    return Parts(
        config,
        catalog,
        verifier,
        pipeline,
        routes,
        encoder,
        link,
        observer,
        cache,
        limit_store,
        spend_store,
        usage_store,
    )
