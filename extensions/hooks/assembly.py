"""Build the gateway's hook objects from validated settings (no environment reads here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from extensions.access.budgets import Budgets, SpendStore
from extensions.access.grants import grants
from extensions.access.keys import KeyVerifier
from extensions.access.limits import Limiter, LimitStore
from extensions.access.usage import SavingsEstimate, Usage, UsageStore
from extensions.backends.redis import RedisLink
from extensions.config.errors import ConfigError
from extensions.config.loader import litellm_model_groups, litellm_prices, load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.embedding.encoder import BatchingEncoder
from extensions.hooks.caching import CachingHook
from extensions.hooks.gateway_callback import GatewayCallback
from extensions.hooks.routing import RoutingHook
from extensions.observe.metrics import GatewayMetrics
from extensions.observe.observer import Observer


def build_routing(config: GatewayConfig, base_dir: Path, encoder: BatchingEncoder) -> RoutingHook:
    """Train (or load cached) classifiers for every router."""
    from extensions.router.engine import RouterEngine, compile_routers
    from extensions.router.handoff import HandoffDispatcher, build_sink
    from extensions.router.llm_classifier import LlmIntentClassifier, router_completion

    routers = compile_routers(config.routers, encoder, base_dir, config.embedding.cache_dir)
    sinks = {name: build_sink(s) for name, s in config.handoff_sinks.items()}
    llm = {
        name: LlmIntentClassifier(spec.llm_classifier, spec.description, spec.intents,
                                  router_completion)
        for name, spec in config.routers.items() if spec.llm_classifier.enabled
    }  # fmt: skip
    return RoutingHook(RouterEngine(routers, encoder, llm), HandoffDispatcher(sinks))


def build_caching(
    config: GatewayConfig,
    encoder: BatchingEncoder | None,
    link: RedisLink | None,
    previous: CachingHook | None = None,
) -> CachingHook:
    """The response cache on the configured tier (memory, or memory in front of Redis).

    ``previous``: the hook of the generation before a reload whose cache settings were
    the same; its entries (and its cacheability classifier) are kept.
    """
    if previous is not None:
        return CachingHook(previous.cache, encoder, config.routers, previous.classifier)
    from extensions.cache.policy import NOT_CACHEABLE, CacheabilityClassifier
    from extensions.cache.service import ResponseCache
    from extensions.cache.settings import Tier
    from extensions.cache.store import MemoryStore, RedisStore, Store, TieredStore
    from extensions.cache.vectors import MemoryVectorIndex, RedisVectorIndex, VectorIndex
    from extensions.router.classifier import train_head

    settings = config.cache
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
    return CachingHook(ResponseCache(settings, store, index), encoder, config.routers, classifier)


def build_metrics(config: GatewayConfig, routes: set[str]) -> GatewayMetrics | None:
    """Prometheus metrics (registered once per worker: reloads keep them)."""
    return GatewayMetrics(routes) if config.observability.metrics.enabled else None


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
    return Observer(settings, RequestLog(settings.request_log), metrics,
                    TimelineRecorder(store), metrics_dir)  # fmt: skip


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


@dataclass
class Parts:
    """One generation of the gateway: the callback, the key verifier, and what the next
    reload may keep (encoder, Redis link, observer, caches and counters)."""

    config: GatewayConfig
    callback: GatewayCallback
    verifier: KeyVerifier
    encoder: BatchingEncoder | None
    link: RedisLink | None
    observer: Observer
    limit_store: LimitStore
    spend_store: SpendStore
    usage_store: UsageStore

    def same(self, config: GatewayConfig, section: str) -> bool:
        return bool(getattr(self.config, section) == getattr(config, section))


def build_gateway(
    gateway_yaml: Path,
    litellm_yaml: Path,
    master_key: str,
    environ: Mapping[str, str],
    metrics_dir: str | None = None,
    previous: Parts | None = None,
) -> Parts:
    """Everything one proxy worker needs; raises ``ConfigError``.

    With ``previous`` (a reload), parts whose settings did not change are kept: the
    encoder, the Redis link, the metrics, cache entries and limit/budget counters.
    """
    from extensions.access.budgets import budgets_by_alias
    from extensions.access.limits import subject_limits

    model_groups = litellm_model_groups(litellm_yaml)
    config = load_gateway_config(gateway_yaml, model_groups, environ)
    savings = SavingsEstimate(litellm_prices(litellm_yaml),
                              config.access.savings.assumed_completion_tokens)  # fmt: skip
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
    routing = (
        build_routing(config, gateway_yaml.parent, encoder) if config.routers and encoder else None
    )
    routes = model_groups | set(config.routers)
    metrics = previous.observer.metrics if previous is not None else build_metrics(config, routes)
    if metrics is not None:
        metrics.routes = frozenset(routes)
    link = previous.link if previous is not None and previous.same(config, "redis") else None
    if link is None and config.redis.url:  # one connection pool per worker
        link = RedisLink(config.redis, on_state=metrics.redis_up.set if metrics else None)
    keep = previous is not None and previous.link is link
    observer = (
        previous.observer
        if previous is not None and keep and previous.same(config, "observability")
        else build_observer(config, metrics, link, metrics_dir)
    )
    caching = None
    if config.cache.enabled:
        old = None
        if previous is not None and keep and previous.same(config, "cache") and (
                previous.encoder is encoder):  # fmt: skip
            old = previous.callback.caching
        caching = build_caching(config, encoder, link, old)
    limit_store, spend_store, usage_store = build_limits(config, link, previous)
    by_alias = subject_limits(config.access)
    limiter = Limiter(limit_store, by_alias) if by_alias else None
    budget_by_alias = budgets_by_alias(config.access)
    budgets = Budgets(spend_store, budget_by_alias) if budget_by_alias else None
    callback = GatewayCallback(config, routing, caching, grants(config.access), limiter, budgets,
                               Usage(usage_store), savings, observer)  # fmt: skip
    return Parts(config, callback, verifier, encoder, link, observer, limit_store, spend_store,
                 usage_store)  # fmt: skip
