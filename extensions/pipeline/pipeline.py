"""The request pipeline: open → start → decide → forward → finish, for every protocol.

- ``open``: a context for the request (id, protocol, arrival time), registered in
  ``Inflight`` so LiteLLM's callback can find it by id.
- ``start``: authenticate, parse (the protocol adapter), authorise, admit.
- ``decide``: exact cache → router → semantic cache: an ``Answer`` or a ``Forward``.
- ``complete`` / ``stream``: forward through the ``Upstream`` (LiteLLM's router).
- ``finish``: store the answer, release the slot, charge, write the one record —
  exactly once per request, however it ended (an error, a client that went away, a
  failure in any stage).

The HTTP front calls these in order (``extensions/server/exchange.py``); this module
imports neither LiteLLM nor ASGI.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from extensions.access.keys import KeyVerifier
from extensions.access.usage import Charge
from extensions.cache.requests import RequestCache
from extensions.config.catalog import EMBEDDING, Catalog
from extensions.guard.guard import Guard
from extensions.guard.policy import Outcome
from extensions.observe.observer import Observer
from extensions.observe.record import last_user_text
from extensions.cache.service import Outcome as CacheOutcome
from extensions.pipeline.admission import Gatekeeper, authenticate
from extensions.pipeline.audit import AuditCase, Auditor
from extensions.pipeline.context import (
    ChatRequest,
    EmbeddingRequest,
    Ending,
    Protocol,
    RequestContext,
    Result,
    Screening,
    Served,
)
from extensions.pipeline.decide import Answer, Decider, Forward
from extensions.pipeline.errors import BadRequest
from extensions.pipeline.headers import response_headers
from extensions.pipeline.record import build_record
from extensions.pipeline.upstream import StreamReply, Upstream
from extensions.prompt_cache.pricing import prompt_cache_use
from extensions.protocols.base import Adapter
from extensions.protocols.chunks import answer_text

logger = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True, slots=True)
class RawRequest:
    """What the HTTP front hands over: the request as it arrived."""

    protocol: Protocol
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    started: float  # perf_counter at arrival


class Inflight:
    """Requests between ``open`` and ``finish``, by id (one registry per worker)."""

    def __init__(self) -> None:
        self._by_id: dict[str, RequestContext] = {}

    def add(self, ctx: RequestContext) -> None:
        self._by_id[ctx.id] = ctx

    def get(self, request_id: object) -> RequestContext | None:
        return self._by_id.get(request_id) if isinstance(request_id, str) else None

    def remove(self, request_id: str) -> None:
        self._by_id.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._by_id)


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object with a string ``model`` (400 otherwise)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The body is not valid JSON ({exc.msg}).") from None
    if not isinstance(value, dict):
        raise BadRequest("The body must be a JSON object.")
    if not isinstance(value.get("model"), str) or not value["model"]:
        raise BadRequest("'model' is required and must be a string.", param="model")
    return value


class Pipeline:
    """One generation of gateway.yaml's request path (a reload builds a new one)."""

    def __init__(
        self,
        *,
        generation: int,
        verifier: KeyVerifier,
        gatekeeper: Gatekeeper,
        decider: Decider,
        upstream: Upstream,
        observer: Observer | None,
        catalog: Catalog,
        cache: RequestCache | None,
        inflight: Inflight,
        routers: frozenset[str],
        guard: Guard | None = None,
        auditor: Auditor | None = None,
        headers_enabled: bool = True,
    ) -> None:
        self.generation = generation
        self.verifier = verifier
        self.gatekeeper = gatekeeper
        self.decider = decider
        self.upstream = upstream
        self.observer = observer
        self.catalog = catalog
        self.cache = cache
        self.inflight = inflight
        self.routers = routers
        self.guard = guard
        self.auditor = auditor
        self.headers_enabled = headers_enabled

    # -- start ----------------------------------------------------------------------------

    def open(self, raw: RawRequest) -> RequestContext:
        ctx = RequestContext(
            id=f"req-{uuid.uuid4().hex}",
            generation=self.generation,
            protocol=raw.protocol,
            path=raw.path,
            started=raw.started,
        )
        self.inflight.add(ctx)
        return ctx

    async def start(self, ctx: RequestContext, raw: RawRequest, adapter: Adapter) -> None:
        """Authenticate, parse, authorise, admit; raises ``GatewayError`` when refused."""
        x_api_key = raw.protocol is Protocol.MESSAGES
        ctx.principal = authenticate(self.verifier, raw.headers, x_api_key)
        body = parse_body(raw.body)
        model = body["model"]
        ctx.grant = self.gatekeeper.authorise(ctx.principal, raw.protocol, model)
        self._check_model(model, raw.protocol)
        ctx.request = adapter.parse(body, raw.headers)
        if self.guard is not None and isinstance(ctx.request, ChatRequest):
            await self._screen(ctx, ctx.request)
        ctx.admission = await self.gatekeeper.admit(ctx.principal, ctx.id)

    async def _screen(self, ctx: RequestContext, request: ChatRequest) -> None:
        """The PII guardrail on the request's messages (every chat protocol alike)."""
        assert self.guard is not None
        verdict, messages = await self.guard.check_async(request.model, request.messages)
        if verdict.action is Outcome.CLEAN:
            return
        ctx.screening = Screening(verdict.action.value, tuple(k.value for k in verdict.kinds))
        if verdict.blocked:
            raise BadRequest(verdict.refusal(), code="sensitive_data")
        request.messages = messages

    def _check_model(self, model: str, protocol: Protocol) -> None:
        mode = self.catalog.modes.get(model)
        if mode is None and model not in self.routers:
            raise BadRequest(
                f"Unknown model '{model}': no model group or router of that name "
                "(GET /v1/models lists them).",
                param="model",
                code="model_not_found",
            )
        embedding = mode == EMBEDDING
        if protocol is Protocol.EMBEDDINGS and not embedding:
            raise BadRequest(f"'{model}' is not an embedding model.", param="model")
        if protocol is not Protocol.EMBEDDINGS and embedding:
            raise BadRequest(f"'{model}' is an embedding model: use /v1/embeddings.", param="model")

    # -- decide ---------------------------------------------------------------------------

    async def decide(self, ctx: RequestContext) -> Answer | Forward:
        assert ctx.grant is not None
        decision = await self.decider.decide(ctx, ctx.grant)
        ctx.gateway_ms = ctx.elapsed_ms()
        if self.observer is not None:
            path = "answered" if isinstance(decision, Answer) else "forwarded"
            self.observer.timing(path, ctx.gateway_ms)
            if ctx.cache.exact_ms is not None:
                self.observer.timing("exact", ctx.cache.exact_ms)
            if ctx.cache.semantic_ms is not None:
                self.observer.timing("semantic", ctx.cache.semantic_ms)
        return decision

    # -- forward --------------------------------------------------------------------------

    async def complete(self, ctx: RequestContext, forward: Forward) -> dict[str, Any]:
        """The model's whole answer (its ``model`` is the group that answered)."""
        started = time.perf_counter()
        call = forward.call
        if isinstance(call.request, EmbeddingRequest):
            reply = await self.upstream.embed(call)
        else:
            reply = await self.upstream.complete(call)
        reply.served.upstream_ms = (time.perf_counter() - started) * 1000
        ctx.served = reply.served
        ctx.cache.embedding_key = forward.embedding_key
        return {**reply.body, "model": reply.served.model_group or call.model_group}

    async def stream(self, ctx: RequestContext, forward: Forward) -> StreamReply:
        """An open stream (the deployment is known, the first chunk may not be)."""
        started = time.perf_counter()
        reply = await self.upstream.stream(forward.call)
        ctx.served = reply.served
        reply.served.upstream_ms = (time.perf_counter() - started) * 1000
        return reply

    def chunks(self, ctx: RequestContext, reply: StreamReply) -> AsyncIterator[dict[str, Any]]:
        """The stream's chunks with ``model`` naming the group that answered."""

        async def named() -> AsyncIterator[dict[str, Any]]:
            started = time.perf_counter()
            async for chunk in reply:
                yield {**chunk, "model": reply.served.model_group}
            extra = (time.perf_counter() - started) * 1000
            reply.served.upstream_ms = (reply.served.upstream_ms or 0.0) + extra

        return named()

    # -- the answer's headers ---------------------------------------------------------------

    def headers(self, ctx: RequestContext) -> dict[str, str]:
        return response_headers(ctx, self.headers_enabled)

    # -- finish ---------------------------------------------------------------------------

    async def finish(self, ctx: RequestContext, result: Result) -> None:
        """Close the request exactly once: store, release, charge, record."""
        if ctx.finished:
            return
        ctx.finished = True
        self.inflight.remove(ctx.id)
        if result.answer is not None:
            ctx.answer_text = answer_text(result.answer)
        try:
            if ctx.admission is not None:
                await self.gatekeeper.release(ctx.admission, ctx.id)
        except Exception:  # release must not stop the record; the slot expires anyway
            logger.exception("releasing %s failed", ctx.id)
        self._price_prompt_cache(ctx)
        if result.ending is Ending.COMPLETED and result.answer is not None:
            await self._store(ctx, result.answer)
        if result.ending is Ending.ANSWERED and result.answer is not None:
            self._audit(ctx, result.answer)
        if ctx.admission is not None and ctx.principal is not None:
            await self._charge(ctx)
        self._record(ctx, result)

    def _audit(self, ctx: RequestContext, answer: dict[str, Any]) -> None:
        """A served semantic hit goes to the auditor's sample (checked off the request path)."""
        cache = ctx.cache
        if self.auditor is None or cache.outcome is not CacheOutcome.HIT_SEMANTIC:
            return
        if not (cache.hit_id and cache.hit_namespace and cache.hit_group):
            return
        assert isinstance(ctx.request, ChatRequest)
        self.auditor.submit(AuditCase(ctx.id, cache.hit_id, cache.hit_namespace, cache.hit_group,
                                      ctx.request, answer_text(answer), cache.similarity))  # fmt: skip

    def _price_prompt_cache(self, ctx: RequestContext) -> None:
        """Cached input's savings, and an explicit cache's storage fee (added to the cost)."""
        served = ctx.served
        if served is None or served.model_group is None:
            return
        deployment = self.catalog.deployments.get(served.deployment or "")
        use = prompt_cache_use(
            deployment.price if deployment is not None else None,
            self.decider.prompt_caching.groups.get(served.model_group),
            served.usage.cached_tokens,
            served.usage.cache_write_tokens,
        )
        if use is not None:
            ctx.prompt_cache = use
            served.cost_usd += use.storage_usd

    async def _store(self, ctx: RequestContext, answer: dict[str, Any]) -> None:
        if self.cache is None:
            return
        served = ctx.served or Served()
        if ctx.cache.embedding_key is not None:
            await self.cache.embedding_store(ctx.cache.embedding_key, answer)
            return
        pending = ctx.cache.pending
        if pending is None:
            return
        if pending.shadow is not None:
            await self._log_shadow(pending, answer)
        if pending.ticket.plan.store:
            await self.cache.store(pending, answer, served.model_group, served.cost_usd)

    async def _log_shadow(self, pending: Any, answer: dict[str, Any]) -> None:
        assert self.cache is not None
        try:
            cached = answer_text(pending.shadow.response)
            similarity = await self.cache.answer_similarity(cached, answer_text(answer))
        except Exception:
            logger.warning("shadow comparison failed", exc_info=True)
            return
        logger.info(
            "cache shadow hit: query similarity %s, answer similarity %s",
            pending.shadow_similarity,
            None if similarity is None else round(similarity, 4),
        )

    async def _charge(self, ctx: RequestContext) -> None:
        assert ctx.admission is not None and ctx.principal is not None
        served = ctx.served or Served()
        charge = Charge(
            ctx.principal.alias,
            ctx.principal.team,
            ctx.requested or "",
            served.usage.total,
            served.cost_usd,
            ctx.saved_usd,
        )
        try:
            await self.gatekeeper.charge(ctx.admission, charge)
        except Exception:
            logger.warning("charging %s failed", ctx.id, exc_info=True)

    def _record(self, ctx: RequestContext, result: Result) -> None:
        if self.observer is None:
            return
        content = None
        request = ctx.request
        if request is not None and not isinstance(request, EmbeddingRequest):
            content = self.observer.content(
                ctx.requested, last_user_text(request.messages), ctx.answer_text
            )
        self.observer.request(build_record(ctx, result, ctx.elapsed_ms(), content))
