"""A whole gateway in memory: the real front, pipeline, adapters, caches, router engine and
access control, with a fake upstream, a keyword encoder and a stub for LiteLLM's app.

No process, no socket, no LiteLLM call: the unit tests drive it through the official
SDKs over ``httpx.ASGITransport``, or call the ASGI app directly to simulate clients
that go away.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import numpy as np
import openai

from extensions.access.budgets import Budgets, MemorySpend, budgets_by_alias, ladders_by_alias
from extensions.access.grants import grants
from extensions.access.keys import KeyVerifier
from extensions.access.limits import Limiter, MemoryLimits, subject_limits
from extensions.access.settings import Access
from extensions.access.usage import MemoryUsage, SavingsEstimate, Usage
from extensions.app.assembly import Parts
from extensions.app.reload import Generations
from extensions.cache.requests import RequestCache
from extensions.cache.service import ResponseCache
from extensions.cache.settings import Audit, CacheSettings
from extensions.cache.store import MemoryStore
from extensions.cache.vectors import MemoryVectorIndex
from extensions.config.catalog import Catalog
from extensions.config.schema import GatewayConfig
from extensions.embedding.encoder import BatchingEncoder
from extensions.guard.guard import Guard
from extensions.observe.observer import Observer
from extensions.observe.request_log import RequestLog
from extensions.observe.timeline import MemoryTimeline, TimelineRecorder
from extensions.pipeline.admission import Gatekeeper
from extensions.pipeline.audit import Auditor
from extensions.pipeline.decide import Decider
from extensions.pipeline.pipeline import Inflight, Pipeline
from extensions.pipeline.upstream import FakeModel, FakeUpstream
from extensions.router.classifier import OOS_LABEL, Head, Thresholds
from extensions.router.engine import CompiledRouter, RouterEngine
from extensions.router.handoff import HandoffDispatcher
from extensions.router.model import IntentModel
from extensions.router.settings import Router
from extensions.server.front import GatewayFront
from extensions.server.routes import RouteTable

REPO = Path(__file__).resolve().parents[2]
MASTER = "sk-unit-master"
KEYS = {
    "app": "sk-unit-app-key",
    "claude-only": "sk-unit-claude",
    "chat-only": "sk-unit-chat",
    "limited": "sk-unit-limited",
    "budget": "sk-unit-budget",
    "frugal": "sk-unit-frugal",
}
LABELS = ("reset", "bill", "tech", "freeze", "ambig", "default", OOS_LABEL)
KEYWORDS = {
    "password": "reset",
    "charged": "bill",
    "crash": "tech",
    "app": "tech",
    "freeze my account": "freeze",
    "freeze": "ambig",
    "weather": OOS_LABEL,
    "joke": OOS_LABEL,
}
BOW_DIM = 64

ROUTER = {
    "description": "Acme support",
    "default": {"model": "gpt-sim", "examples": ["a", "b"]},
    "out_of_scope": {"responses": ["Sorry, only Acme questions."], "examples": ["x", "y"]},
    "intents": [
        {
            "name": "reset",
            "description": "reset your password",
            "examples": ["x"],
            "action": "respond",
            "respond": {"text": "Reset it at {url}.", "variables": {"url": "https://r.example"}},
        },
        {
            "name": "bill",
            "description": "fix a charge",
            "examples": ["x"],
            "action": "handoff",
            "handoff": {"queue": "billing", "message": "An operator will help.", "sink": "log"},
        },
        {
            "name": "tech",
            "description": "fix a problem with the app",
            "examples": ["x"],
            "action": "route",
            "route": {"model": "claude-sim", "system_prompt": "be technical"},
        },
        {
            "name": "freeze",
            "description": "freeze your account",
            "examples": ["x"],
            "action": "respond",
            "respond": {"text": "Frozen."},
        },
        {
            "name": "ambig",
            "description": "freeze",
            "examples": ["x"],
            "action": "clarify",
            "clarify": {"between": ["freeze", "tech"]},
        },
    ],
}


def keyword_vectors(texts: list[str]) -> np.ndarray:
    """The router part: one-hot on the first keyword found; the rest: a hashed bag of words
    (so texts with the same words are near-identical, as paraphrases would be)."""
    out = np.zeros((len(texts), len(LABELS) + BOW_DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        low = text.lower()
        label = next((v for k, v in KEYWORDS.items() if k in low), "default")
        out[i, LABELS.index(label)] = 3.0
        for word in re.findall(r"[a-z0-9]+", low):
            slot = int(hashlib.sha1(word.encode()).hexdigest(), 16) % BOW_DIM
            out[i, len(LABELS) + slot] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


class RecordingObserver(Observer):
    """The real observer with its records kept in a list (no log output)."""

    def __init__(self, config: GatewayConfig) -> None:
        settings = config.observability
        super().__init__(
            settings,
            RequestLog(settings.request_log.model_copy(update={"stdout": False})),
            None,
            TimelineRecorder(MemoryTimeline()),
        )
        self.records: list[dict[str, Any]] = []
        self.upstream_errors: list[tuple[str | None, str]] = []

    def request(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        super().request(record)

    def upstream_error(self, model_group: str | None, error: str) -> None:
        self.upstream_errors.append((model_group, error))


async def stub_litellm(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for LiteLLM's app: answers 200 'litellm' to whatever reaches it."""
    if scope["type"] == "lifespan":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"litellm"})


def access_section() -> dict[str, Any]:
    keys = [
        {"alias": "app", "owner": "o", "team": "support", "env": "UNIT_KEY_APP"},
        {"alias": "claude-only", "owner": "o", "env": "UNIT_KEY_CLAUDE", "models": ["claude-sim"]},
        {"alias": "chat-only", "owner": "o", "env": "UNIT_KEY_CHAT", "endpoints": ["chat"]},
        {
            "alias": "limited",
            "owner": "o",
            "env": "UNIT_KEY_LIMITED",
            "max_parallel": 1,
            "rpm": 1000,
        },
        {"alias": "budget", "owner": "o", "env": "UNIT_KEY_BUDGET", "daily_budget_usd": 0.0025},
        {
            "alias": "frugal",
            "owner": "o",
            "env": "UNIT_KEY_FRUGAL",
            "daily_budget_usd": 0.0025,
            "degrade": [{"at": 0.3, "model": "gpt-sim-mini"}, {"at": 0.7, "cache_only": True}],
        },
    ]
    return {
        "teams": {"support": {"models": ["support-bot", "gpt-sim*", "claude-sim", "embed-sim"]}},
        "keys": keys,
    }


ENVIRON = {
    "UNIT_KEY_APP": KEYS["app"],
    "UNIT_KEY_CLAUDE": KEYS["claude-only"],
    "UNIT_KEY_CHAT": KEYS["chat-only"],
    "UNIT_KEY_LIMITED": KEYS["limited"],
    "UNIT_KEY_BUDGET": KEYS["budget"],
    "UNIT_KEY_FRUGAL": KEYS["frugal"],
}


@dataclass
class FakeGateway:
    front: GatewayFront
    pipeline: Pipeline
    upstream: FakeUpstream
    observer: RecordingObserver
    limits: MemoryLimits
    usage: Usage
    cache: RequestCache
    encoder: BatchingEncoder
    inflight: Inflight
    sinks: list[dict[str, Any]] = field(default_factory=list)

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.front), base_url="http://gateway", timeout=10
        )

    def openai(self, key: str = MASTER) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url="http://gateway/v1", api_key=key, max_retries=0, http_client=self.http()
        )

    def anthropic(self, key: str = MASTER) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            base_url="http://gateway", api_key=key, max_retries=0, http_client=self.http()
        )

    def in_flight(self) -> int:
        return sum(len(v) for v in self.limits._in_flight.values())

    async def requests_counted(self) -> int:
        report = await self.usage.report()
        return int(sum(row["requests"] for row in report["key"].values()))


class RecordingSink:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    async def deliver(self, record: Mapping[str, Any]) -> None:
        self.records.append(dict(record))


def fake_gateway(
    models: Mapping[str, FakeModel] | None = None,
    overrides: Mapping[str, Any] | None = None,
    audit: bool = False,
) -> FakeGateway:
    data: dict[str, Any] = {
        "version": 1,
        "access": access_section(),
        "cache": {"enabled": True},
        "routers": {"support-bot": ROUTER},
        "handoff_sinks": {"log": {"type": "log"}},
    }
    data.update(overrides or {})
    config = GatewayConfig.model_validate(data)
    catalog = Catalog.from_litellm_yaml(REPO / "config" / "litellm.yaml")
    verifier, problems = KeyVerifier.build(MASTER, Access.model_validate(data["access"]), ENVIRON)
    assert not problems, problems
    dim = len(LABELS) + BOW_DIM
    encoder = BatchingEncoder(keyword_vectors, dim, "keywords")
    weights = np.zeros((len(LABELS), dim), dtype=np.float32)
    weights[:, : len(LABELS)] = np.eye(len(LABELS), dtype=np.float32) * 10
    head = Head(LABELS, weights, np.zeros(len(LABELS), dtype=np.float32))
    spec = Router.model_validate(ROUTER)
    engine = RouterEngine(
        {
            "support-bot": CompiledRouter(
                "support-bot", spec, IntentModel(head), Thresholds(0.3, 0.05)
            )
        },
        encoder,
    )
    sinks: list[dict[str, Any]] = []
    handoffs = HandoffDispatcher({"log": RecordingSink(sinks)})
    settings = CacheSettings.model_validate({"enabled": True, "semantic": {"threshold": 0.9}})
    cache = RequestCache(
        ResponseCache(
            settings, MemoryStore(1000, settings.memory.eviction), MemoryVectorIndex(dim, 1000)
        ),
        encoder,
        {"support-bot": spec},
    )
    limits = MemoryLimits()
    usage = Usage(MemoryUsage())
    gatekeeper = Gatekeeper(
        grants(config.access),
        Limiter(limits, subject_limits(config.access)),
        Budgets(MemorySpend(), budgets_by_alias(config.access)),
        usage,
        ladders_by_alias(config.access),
    )
    upstream = FakeUpstream(models)
    observer = RecordingObserver(config)
    inflight = Inflight()
    decider = Decider(catalog, cache, engine, handoffs, SavingsEstimate(catalog, 200))
    pipeline = Pipeline(
        generation=1,
        verifier=verifier,
        gatekeeper=gatekeeper,
        decider=decider,
        upstream=upstream,
        observer=observer,
        catalog=catalog,
        cache=cache,
        inflight=inflight,
        routers=frozenset({"support-bot"}),
        guard=Guard(config.guardrails) if config.guardrails.routes else None,
        auditor=Auditor(
            Audit(enabled=True, sample_rate=1.0, answer_threshold=0.9),
            cache.cache,
            encoder,
            upstream,
        )
        if audit
        else None,
    )
    parts = Parts(
        config,
        catalog,
        verifier,
        pipeline,
        RouteTable(),
        encoder,
        None,
        observer,
        cache,
        limits,
        MemorySpend(),
        MemoryUsage(),
    )
    front = GatewayFront(stub_litellm, Generations(parts))
    return FakeGateway(
        front, pipeline, upstream, observer, limits, usage, cache, encoder, inflight, sinks
    )
