"""The typed state of one request, nested by stage.

A ``RequestContext`` is made by ``Pipeline.start`` and carried through decide,
forward and finish; each stage fills in its own part and reads the parts before
it. Nothing about a request travels in untyped dicts or context variables:
LiteLLM only ever sees the request id, and finds the context through the
``Inflight`` registry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from extensions.access.grants import Grant
from extensions.access.keys import Principal
from extensions.access.settings import DegradeStep
from extensions.cache.policy import ClientControl
from extensions.cache.service import Outcome as CacheOutcome
from extensions.pipeline.errors import GatewayError
from extensions.prompt_cache.pricing import PromptCacheUse
from extensions.router.settings import Action


class Protocol(StrEnum):
    """The wire format a client spoke (the ``endpoint`` of the request log)."""

    CHAT = "chat"  # OpenAI /v1/chat/completions
    RESPONSES = "responses"  # OpenAI /v1/responses
    MESSAGES = "messages"  # Anthropic /v1/messages
    EMBEDDINGS = "embeddings"  # OpenAI /v1/embeddings
    OTHER = "other"  # any other route (refused at the front, or the master key's)


CHAT_PROTOCOLS = frozenset({Protocol.CHAT, Protocol.RESPONSES, Protocol.MESSAGES})


@dataclass(slots=True)
class ChatRequest:
    """A chat request in the neutral form every chat protocol is translated into: OpenAI
    Chat Completions messages and parameters, already validated."""

    model: str  # what the client asked for: a model group or a router
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # sampling, tools, response format … (forwarded as they are)
    stream: bool = False
    client_cache: ClientControl = field(default_factory=ClientControl)
    structured: bool = False  # the client asked for JSON (response_format / text.format)
    include_usage: bool = False  # a stream's last chunk carries the usage (chat clients ask)

    @property
    def max_tokens(self) -> int | None:
        value = self.params.get("max_completion_tokens") or self.params.get("max_tokens")
        return value if isinstance(value, int) else None


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    input: Any  # a string, a list of strings, or token lists (validated)
    params: dict[str, Any]
    client_cache: ClientControl = field(default_factory=ClientControl)
    stream: bool = False  # embeddings never stream


NeutralRequest = ChatRequest | EmbeddingRequest


@dataclass(slots=True)
class Admission:
    """What ``start`` let in: the slot it holds and the budget state it saw."""

    alias: str
    team: str | None
    limited: bool  # a parallel slot / rate counters were taken (released by finish)
    budget_spent: float | None = None  # highest share of a budget already spent (0..1)
    ladder: tuple[DegradeStep, ...] = ()  # the key's (or its team's) degradation ladder


@dataclass(frozen=True, slots=True)
class Screening:
    """What the PII guardrail found in the request (kinds only, never the data)."""

    action: str  # detected | redacted | blocked
    kinds: tuple[str, ...]


@dataclass(slots=True)
class Routing:
    """The router's decision for a request that named a router."""

    router: str
    action: Action
    intent: str | None = None
    confidence: float | None = None
    classify_ms: float | None = None
    model_group: str | None = None  # ROUTE: where it goes
    handoff_id: str | None = None
    structured_override: bool = False  # JSON was asked for: the model answers, not a template


@dataclass(slots=True)
class CacheState:
    outcome: CacheOutcome | None = None  # None: the cache never looked
    similarity: float | None = None
    reason: str | None = None  # why BYPASS, or which check refused the best candidate
    exact_ms: float | None = None
    semantic_ms: float | None = None
    pending: Any = None  # cache.requests.Pending: what to store once the answer is complete
    embedding_key: str | None = None  # embeddings: where to store the result
    hit_id: str | None = None  # a semantic hit's entry and namespace (for the audit)
    hit_namespace: str | None = None
    hit_group: str | None = None

    @property
    def hit(self) -> bool:
        return self.outcome in (CacheOutcome.HIT_EXACT, CacheOutcome.HIT_SEMANTIC)


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # input read from a provider's prompt cache
    cache_write_tokens: int = 0  # input written to a provider's prompt cache

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Served:
    """Who answered: for a forwarded request the deployment LiteLLM's router ended on (after
    retries and fallbacks); for the gateway's own answers provider ``gateway`` and deployment
    ``cache`` or ``router``."""

    model_group: str | None = None
    deployment: str | None = None
    provider: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    upstream_ms: float | None = None
    fallbacks: int = 0
    retries: int = 0


@dataclass(slots=True)
class RequestContext:
    id: str
    generation: int
    protocol: Protocol
    path: str
    principal: Principal | None = None  # None until authenticated
    request: NeutralRequest | None = None  # None until parsed
    started: float = field(default_factory=time.perf_counter)  # when the request arrived
    grant: Grant | None = None
    admission: Admission | None = None
    screening: Screening | None = None
    routing: Routing | None = None
    cache: CacheState = field(default_factory=CacheState)
    served: Served | None = None  # set once an upstream call answered
    failed_attempts: list[tuple[str | None, str]] = field(default_factory=list)
    saved_usd: float = 0.0
    degraded: str | None = None  # the budget ladder's rung that changed the answer
    prompt_cache: PromptCacheUse | None = None  # the provider's prompt cache at work
    gateway_ms: float | None = None  # own time before answering or forwarding
    answer_text: str = ""  # for the log's content field (when content logging is on)
    finished: bool = False

    @property
    def stream(self) -> bool:
        return self.request is not None and self.request.stream

    @property
    def requested(self) -> str | None:
        return self.request.model if self.request is not None else None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


class Ending(StrEnum):
    """How a request ended (what ``finish`` was told)."""

    ANSWERED = "answered"  # the gateway answered: cache hit or the router's own answer
    COMPLETED = "completed"  # a model answered and the answer reached the client whole
    FAILED = "failed"  # an error answer (refused, or the model call failed)
    DISCONNECTED = "disconnected"  # the client went away before the end


@dataclass(frozen=True, slots=True)
class Result:
    """How a request ended, as ``finish`` is told it."""

    ending: Ending
    status: int
    error: GatewayError | None = None
    answer: dict[str, Any] | None = None  # complete chat completion (for the cache)
