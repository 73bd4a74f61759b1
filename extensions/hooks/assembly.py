"""Build the gateway's hook objects from validated settings (no environment reads here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from extensions.access.budgets import Budgets
from extensions.access.grants import grants
from extensions.access.keys import KeyVerifier
from extensions.access.limits import Limiter, LimitStore
from extensions.access.usage import SavingsEstimate, Usage
from extensions.backends.redis import RedisLink
from extensions.config.errors import ConfigError
from extensions.config.loader import litellm_model_groups, litellm_prices, load_gateway_config
from extensions.config.schema import GatewayConfig
from extensions.embedding.encoder import BatchingEncoder
from extensions.hooks.auth import GatewayAuth
from extensions.hooks.caching import CachingHook
from extensions.hooks.gateway_callback import GatewayCallback
from extensions.hooks.routing import RoutingHook
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
    config: GatewayConfig, encoder: BatchingEncoder | None, link: RedisLink | None
) -> CachingHook:
    """The response cache on the configured tier (memory, or memory in front of Redis)."""
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


def build_limiter(config: GatewayConfig, link: RedisLink | None) -> Limiter | None:
    """Key and team limits, counted in Redis (shared) or in this process."""
    from extensions.access.limits import MemoryLimits, RedisLimits, subject_limits
    from extensions.access.settings import LimitStoreKind, OnFailure

    by_alias = subject_limits(config.access)
    if not by_alias:
        return None
    settings = config.access.limits
    store: LimitStore = MemoryLimits()
    if settings.store is LimitStoreKind.REDIS:
        assert link is not None
        store = RedisLimits(link, settings.on_redis_failure is OnFailure.OPEN)
    return Limiter(store, by_alias)


def build_budgets(config: GatewayConfig, link: RedisLink | None) -> Budgets | None:
    """Spend per key and team against their budgets, in Redis (shared) or in this process."""
    from extensions.access.budgets import MemorySpend, RedisSpend, SpendStore, budgets_by_alias
    from extensions.access.settings import LimitStoreKind, OnFailure

    by_alias = budgets_by_alias(config.access)
    if not by_alias:
        return None
    settings = config.access.limits
    store: SpendStore = MemorySpend()
    if settings.store is LimitStoreKind.REDIS:
        assert link is not None
        store = RedisSpend(link, settings.on_redis_failure is OnFailure.OPEN)
    return Budgets(store, by_alias)


def build_usage(config: GatewayConfig, link: RedisLink | None) -> Usage:
    """Usage counters next to the limits: in Redis when they are, else in this process."""
    from extensions.access.settings import LimitStoreKind
    from extensions.access.usage import MemoryUsage, RedisUsage

    if config.access.limits.store is LimitStoreKind.REDIS:
        assert link is not None
        return Usage(RedisUsage(link))
    return Usage(MemoryUsage())


def build_observer(
    config: GatewayConfig, routes: set[str], metrics_dir: str | None
) -> tuple[Observer, RedisLink | None]:
    """Request log, metrics and dashboard timeline; also the one Redis link (it reports
    its state to the ``gateway_redis_up`` gauge)."""
    from extensions.observe.metrics import GatewayMetrics
    from extensions.observe.request_log import RequestLog
    from extensions.observe.settings import TimelineStore
    from extensions.observe.timeline import (
        MemoryTimeline,
        RedisTimeline,
        Timeline,
        TimelineRecorder,
    )

    settings = config.observability
    metrics = GatewayMetrics(routes) if settings.metrics.enabled else None
    on_state = None
    if metrics is not None:
        on_state = metrics.redis_up.set
    link = RedisLink(config.redis, on_state=on_state) if config.redis.url else None
    store: Timeline = MemoryTimeline()
    if settings.dashboard.store is TimelineStore.REDIS:
        assert link is not None  # the schema requires redis.url
        store = RedisTimeline(link)
    observer = Observer(settings, RequestLog(settings.request_log), metrics,
                        TimelineRecorder(store), metrics_dir)  # fmt: skip
    return observer, link


def build_gateway(
    gateway_yaml: Path,
    litellm_yaml: Path,
    master_key: str,
    environ: Mapping[str, str],
    metrics_dir: str | None = None,
) -> tuple[GatewayCallback, GatewayAuth]:
    """The callback and the auth check for one proxy worker; raises ``ConfigError``."""
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
    if needs_encoder:
        from extensions.embedding.encoder import sentence_encoder

        encoder = sentence_encoder(config.embedding)
    routing = (
        build_routing(config, gateway_yaml.parent, encoder) if config.routers and encoder else None
    )
    observer, link = build_observer(config, model_groups | set(config.routers), metrics_dir)
    caching = build_caching(config, encoder, link) if config.cache.enabled else None
    callback = GatewayCallback(config, routing, caching, grants(config.access),
                               build_limiter(config, link), build_budgets(config, link),
                               build_usage(config, link), savings, observer)  # fmt: skip
    return callback, GatewayAuth(verifier)
