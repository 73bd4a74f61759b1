"""The gateway's front: the outermost ASGI app, in front of LiteLLM's.

Every HTTP request is classified (``routes.py``) and then:
- an LLM endpoint goes through the pipeline (``exchange.py``), for every protocol;
- the model list, the health checks, the dashboard page and the operators' endpoints
  are answered here;
- anything else is LiteLLM's, for the master key only (no key: 401, a gateway key: 403).
The body limit (``requests.max_body_bytes``) holds for every route and both framings
(a declared ``Content-Length`` and chunked bodies). Each request is pinned to the
generation of gateway.yaml current when it arrived. Refusals made here are logged
like any request (one line, no traceback).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from extensions.access.keys import Principal, Role
from extensions.app.assembly import Parts
from extensions.app.reload import ConfigReloader, Generations
from extensions.pipeline.admission import authenticate
from extensions.pipeline.context import Ending, Protocol, Result
from extensions.pipeline.errors import (
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    Unavailable,
)
from extensions.pipeline.pipeline import RawRequest
from extensions.protocols.anthropic_messages import MessagesAdapter
from extensions.protocols.base import Adapter, openai_error
from extensions.protocols.embeddings import EmbeddingsAdapter
from extensions.protocols.openai_chat import ChatAdapter
from extensions.protocols.openai_responses import ResponsesAdapter
from extensions.server.exchange import exchange
from extensions.server.http import (
    ASGIApp,
    BodyTooLarge,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    canonical,
    read_body,
    request_headers,
    send_bytes,
    send_json,
)
from extensions.server.models import model_list
from extensions.server.routes import Kind, Route

logger = logging.getLogger("gateway.front")
ADAPTERS: dict[Protocol, Adapter] = {
    Protocol.CHAT: ChatAdapter(),
    Protocol.RESPONSES: ResponsesAdapter(),
    Protocol.MESSAGES: MessagesAdapter(),
    Protocol.EMBEDDINGS: EmbeddingsAdapter(),
}


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class GatewayFront:
    def __init__(
        self,
        app: ASGIApp,
        generations: Generations,
        reloader: ConfigReloader | None = None,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.app = app
        self.generations = generations
        self.reloader = reloader
        self.ready = ready

    def _start_background(self) -> None:
        if self.reloader is not None:
            self.reloader.start()

    def _on_shutdown(self, receive: Receive) -> Receive:
        """The lifespan's ``receive``: at shutdown, queued handoff records are delivered
        (or dead-lettered) and the request log flushed before LiteLLM's app stops."""

        async def wrapped() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                parts = self.generations.parts
                handoffs = parts.pipeline.decider.handoffs
                if handoffs is not None:
                    await handoffs.close()
                await parts.observer.close()
            return message

        return wrapped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # start-up: the watcher runs even before traffic
            self._start_background()
            await self.app(scope, self._on_shutdown(receive), send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._start_background()
        parts = self.generations.parts  # this request's generation, to the end
        path = canonical(str(scope.get("path", "")))
        route = parts.routes.classify(str(scope.get("method", "")), path)
        headers = request_headers(scope)
        raw = RawRequest(route.protocol, path, headers, b"", time.perf_counter())
        limit = parts.config.requests.max_body_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(parts, raw, send, self._too_large(limit), {"connection": "close"})
            return
        try:
            await self._dispatch(parts, route, raw, scope, receive, send, limit)
        except BodyTooLarge:
            await self._refuse(parts, raw, send, self._too_large(limit), {"connection": "close"})
        except ClientDisconnected:
            return

    @staticmethod
    def _too_large(limit: int) -> TooLarge:
        return TooLarge(
            f"Request body too large: the limit is {limit} bytes (requests.max_body_bytes)."
        )

    async def _dispatch(
        self,
        parts: Parts,
        route: Route,
        raw: RawRequest,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
    ) -> None:
        kind = route.kind
        if kind is Kind.LLM:
            body = await read_body(receive, limit)
            full = RawRequest(raw.protocol, raw.path, raw.headers, body, raw.started)
            await exchange(parts.pipeline, ADAPTERS[route.protocol], full, send, receive)
            return
        if kind is Kind.WRONG_METHOD:
            error = MethodNotAllowed(
                f"{scope.get('method')} is not allowed here; use {route.allowed}."
            )
            await self._refuse(parts, raw, send, error, {"allow": route.allowed})
            return
        if kind is Kind.HEALTH:
            await self._health(parts, route.name, send)
            return
        if kind is Kind.DASHBOARD:
            from extensions.observe.dashboard import dashboard_page

            await send_bytes(
                send,
                200,
                dashboard_page(),
                "text/html; charset=utf-8",
                {"cache-control": "no-store"},
            )
            return
        if kind is Kind.OPERATOR and route.name == "metrics" and not parts.metrics_locked:
            await self._operator(parts, route.name, scope, send)  # metrics open to anyone
            return
        try:
            principal = authenticate(parts.verifier, raw.headers, x_api_key=kind is Kind.MODELS)
        except GatewayError as error:
            await self._refuse(parts, raw, send, error)
            return
        if kind is Kind.MODELS:
            await self._models(parts, principal, route.name, raw, send)
            return
        if principal.role is not Role.OPERATOR:
            await self._refuse(
                parts,
                raw,
                send,
                Forbidden("This route is for operators (the master key)."),
                principal=principal,
            )
            return
        if kind is Kind.OPERATOR:
            await self._operator(parts, route.name, scope, send)
            return
        body = await read_body(receive, limit)  # LiteLLM's own route, for the master key
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(
        self,
        parts: Parts,
        raw: RawRequest,
        send: Send,
        error: GatewayError,
        headers: dict[str, str] | None = None,
        principal: Principal | None = None,
    ) -> None:
        """An error answered here: OpenAI-style (Anthropic-style on /v1/messages), one log line."""
        ctx = parts.pipeline.open(raw)
        ctx.principal = principal
        adapter = ADAPTERS.get(raw.protocol)
        body = adapter.error(error) if adapter is not None else openai_error(error)
        extra = {**parts.pipeline.headers(ctx), **error.headers, **(headers or {})}
        try:
            await send_json(send, error.status, body, extra)
        finally:
            await parts.pipeline.finish(ctx, Result(Ending.FAILED, error.status, error))

    async def _health(self, parts: Parts, name: str, send: Send) -> None:
        if name == "live":
            await send_json(send, 200, {"status": "alive"})
            return
        if not self.ready():
            error = Unavailable("Not ready: the model router is not loaded yet.")
            await send_json(send, 503, openai_error(error))
            return
        await send_json(send, 200, {"status": "ready", "generation": parts.pipeline.generation})

    async def _models(
        self, parts: Parts, principal: Principal, model: str, raw: RawRequest, send: Send
    ) -> None:
        anthropic = "anthropic-version" in raw.headers
        grant = parts.pipeline.gatekeeper.grant(principal)
        names = sorted(
            n for n in parts.pipeline.catalog.groups | parts.pipeline.routers if grant.allows(n)
        )
        if not model:
            await send_json(send, 200, model_list(names, anthropic))
            return
        if model not in names:
            await self._refuse(
                parts,
                raw,
                send,
                NotFound(f"The model '{model}' does not exist.", code="model_not_found"),
                principal=principal,
            )
            return
        await send_json(send, 200, model_list([model], anthropic)["data"][0])

    async def _operator(self, parts: Parts, name: str, scope: Scope, send: Send) -> None:
        """Usage, metrics, configuration, reload, dashboard data: operators only."""
        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        observer = parts.observer
        if name in ("config", "reload"):
            if self.reloader is None:
                await send_json(send, 404, openai_error(NotFound("Reloading is off.")))
                return
            status = (
                await self.reloader.check(force=True)
                if name == "reload"
                else (self.reloader.status())
            )
            code = 200 if name == "config" or status["last_error"] is None else 422
            await send_json(send, code, status, {"cache-control": "no-store"})
            return
        if name == "usage":
            day = (query.get("day") or [None])[0]
            await send_json(send, 200, await parts.usage_report(day), {"cache-control": "no-store"})
            return
        if name == "metrics":
            handoffs = parts.pipeline.decider.handoffs
            if observer.metrics is not None and handoffs is not None:
                counts = {sink: dataclasses.asdict(c) for sink, c in handoffs.counters.items()}
                observer.metrics.handoff_counts(counts)
            budgets = parts.pipeline.gatekeeper.budgets
            if observer.metrics is not None and budgets is not None:
                try:
                    observer.metrics.budgets(await budgets.remaining())
                except Exception:  # fail-open: the page without fresh budget gauges
                    logger.warning("budgets for /metrics failed", exc_info=True)
            page = await observer.exposition()
            await send_bytes(
                send,
                200,
                page,
                "text/plain; version=0.0.4; charset=utf-8",
                {"cache-control": "no-store"},
            )
            return
        window = (query.get("window") or ["hour"])[0]
        data = await observer.dashboard_data(window)
        try:  # today's usage and what is left of each budget (the keys and teams tables)
            data["usage"] = await parts.usage_report(None)
        except Exception:  # fail-open: the charts without the budgets
            logger.warning("usage for the dashboard failed", exc_info=True)
            data["usage"] = None
        auditor = parts.pipeline.auditor
        data["audit"] = auditor.summary() if auditor is not None else None  # this worker's
        await send_json(send, 200, data, {"cache-control": "no-store"})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """LiteLLM's realtime (websocket) routes: the master key only."""
        parts = self.generations.parts
        try:
            principal = authenticate(parts.verifier, request_headers(scope), x_api_key=False)
        except GatewayError:
            principal = None
        if principal is None or principal.role is not Role.OPERATOR:
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)


def install(
    app: Any, generations: Generations, reloader: ConfigReloader | None, ready: Callable[[], bool]
) -> None:
    """Put the front before LiteLLM's FastAPI app (the outermost middleware).

    Called while the proxy starts; Starlette builds its middleware stack on the first
    call (the lifespan), so the stack is reset to be built again with ours.
    """
    from starlette.middleware import Middleware

    if any(m.cls is GatewayFront for m in app.user_middleware):
        return
    app.user_middleware.insert(
        0, Middleware(GatewayFront, generations=generations, reloader=reloader, ready=ready)
    )
    app.middleware_stack = None
