"""The fast lane: an ASGI middleware in front of LiteLLM's app.

Answers that need no model (cache hits, the router's own answers) cost LiteLLM
about 8-15 ms of CPU each when they go through its request machinery; here they
cost well under a millisecond plus the lookup. For a chat or embeddings request
with a valid gateway key, the middleware runs the same ``GatewayCallback.prepare``
the pre-call hook runs: if the answer is ready it is sent from here (JSON or an
SSE stream), otherwise the request goes on to LiteLLM unchanged with the decision
attached (``FORWARDED``), so nothing is classified or embedded twice.

Anything it does not fully understand (bad JSON, no or unknown key, an invalid
body, other paths) is passed through untouched: LiteLLM and our hooks answer it
with the proper error. Fail-open: an exception here passes the request on too.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from extensions.access.keys import Role
from extensions.access.usage import Charge
from extensions.hooks.auth import GatewayAuth, to_litellm_auth
from extensions.hooks.caching import text_chunks
from extensions.hooks.gateway_callback import (
    ADMITTED,
    FORWARDED,
    TRACE,
    Caller,
    Forwarded,
    GatewayCallback,
    _gateway_meta,
)
from extensions.hooks.reload import PINNED, ConfigReloader, Generations
from extensions.hooks.routing import META_KEY
from extensions.observe.dashboard import dashboard_page
from extensions.protocol.validation import check_chat_request, check_embedding_request

logger = logging.getLogger("gateway.fast_lane")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

USAGE_PATH = "/gateway/usage"
CONFIG_PATH = "/gateway/config"
RELOAD_PATH = "/gateway/reload"
CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
EMBEDDING_PATHS = frozenset({"/v1/embeddings", "/embeddings"})
MAX_STORED_EMBEDDINGS = 1024 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class TooLarge(Exception):
    """The body is over ``requests.max_body_bytes``."""


async def _read_body(receive: Receive, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole request body (None if the client went away) and the messages read, to
    replay; raises ``TooLarge`` as soon as the body passes ``limit``."""
    chunks: list[bytes] = []
    seen: list[Message] = []
    size = 0
    while True:
        message = await receive()
        seen.append(message)
        if message["type"] != "http.request":
            return None, seen
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise TooLarge
        if not message.get("more_body"):
            return b"".join(chunks), seen


def _replaying(seen: list[Message], receive: Receive) -> Receive:
    pending = list(seen)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def sse_events(body: dict[str, Any], include_usage: bool) -> list[bytes]:
    """A chat completion as OpenAI stream events: role, text in pieces, finish, [DONE]."""
    choice = body["choices"][0]
    message = choice.get("message") or {}
    base = {"id": body["id"], "object": "chat.completion.chunk", "created": body["created"],
            "model": body["model"]}  # fmt: skip
    if body.get("system_fingerprint"):
        base["system_fingerprint"] = body["system_fingerprint"]

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": piece}) for piece in text_chunks(message.get("content") or "")]
    if message.get("tool_calls"):
        calls = [{**c, "index": i} for i, c in enumerate(message["tool_calls"])]
        events.append(event({"tool_calls": calls}))
    events.append(event({}, choice.get("finish_reason") or "stop"))
    if include_usage:
        usage = {**base, "choices": [], "usage": body.get("usage")}
        events.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


class FastLane:
    def __init__(
        self,
        app: Any,
        generations: Generations,
        auth: GatewayAuth,
        reloader: ConfigReloader | None = None,
    ) -> None:
        self.app = app
        self.generations = generations
        self.auth = auth
        self.reloader = reloader
        self.answered = 0
        self.errors = 0
        self._paths: tuple[GatewayCallback, dict[tuple[str, str], str]] | None = None

    @property
    def gateway(self) -> GatewayCallback:
        """The generation this request is pinned to (set when it arrived)."""
        return self.generations.pinned()

    @property
    def max_body(self) -> int:
        return self.gateway.config.requests.max_body_bytes

    def operator_paths(self) -> dict[tuple[str, str], str]:
        """(method, path) of the operators' endpoints, as the current generation sets them
        (worked out once per generation, not per request)."""
        gateway = self.gateway
        if self._paths is not None and self._paths[0] is gateway:
            return self._paths[1]
        paths = {("GET", USAGE_PATH): "usage", ("GET", CONFIG_PATH): "config",
                 ("POST", RELOAD_PATH): "reload"}  # fmt: skip
        settings = gateway.config.observability
        if settings.metrics.enabled:
            paths["GET", settings.metrics.path] = "metrics"
        if settings.dashboard.enabled:
            paths["GET", settings.dashboard.path] = "dashboard"
            paths["GET", settings.dashboard.path + "/data"] = "dashboard-data"
        self._paths = (gateway, paths)
        return paths

    def _start_background(self) -> None:
        if self.reloader is not None:
            self.reloader.start()
        elif self.gateway.observer is not None:
            self.gateway.observer.ensure_started()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "lifespan":  # start-up: the watcher runs even before traffic
            self._start_background()
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        PINNED.set(self.generations.current)  # this request's generation, to the end
        self._start_background()
        operator = self.operator_paths().get((str(scope.get("method")), path))
        if operator is not None:
            await self._operator_page(operator, scope, send)
            return
        if self._declared_too_large(scope):
            await self._too_large(send)
            return
        if scope.get("method") != "POST" or not (path in CHAT_PATHS or path in EMBEDDING_PATHS):
            await self.app(scope, receive, send)
            return
        try:
            raw, seen = await _read_body(receive, self.max_body)
        except TooLarge:
            await self._too_large(send)
            return
        replay = _replaying(seen, receive)
        if raw is None:
            await self.app(scope, replay, send)
            return
        try:
            handled = await self._handle(path, scope, raw, replay, send)
        except Exception:
            self.errors += 1
            logger.exception("fast lane failed; passing the request to LiteLLM")
            handled = False
        if not handled:
            await self.app(scope, replay, send)

    def _declared_too_large(self, scope: Scope) -> bool:
        declared = _header(scope, b"content-length")
        return declared is not None and declared.isdigit() and int(declared) > self.max_body

    async def _too_large(self, send: Send) -> None:
        """413 for any path: the body is refused before LiteLLM (or we) parse it."""
        error = _error(f"Request body too large: the limit is {self.max_body} bytes "
                       "(requests.max_body_bytes).", "invalid_request_error")  # fmt: skip
        error["error"]["code"] = "request_too_large"
        await self._send_json(send, 413, error, {"connection": "close"})

    def _caller(self, scope: Scope) -> Caller | None:
        presented = _header(scope, b"authorization")
        if not presented:
            return None
        principal = self.auth.verifier.verify(presented)
        return Caller.of(to_litellm_auth(principal)) if principal is not None else None

    async def _handle(self, path: str, scope: Scope, raw: bytes, replay: Receive,
                      send: Send) -> bool:  # fmt: skip
        """True when the request was answered here."""
        started = time.perf_counter()
        TRACE.set({"t0": started})
        problem = None
        try:
            body = json.loads(raw, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:  # bad JSON, NaN, absurd nesting
            body, problem = None, f"The body is not valid JSON ({type(exc).__name__})."
        if problem is None and not isinstance(body, dict):
            problem = "The body must be a JSON object."
        elif problem is None and not isinstance(body.get("model"), str):
            problem = "'model' is required and must be a string."
        endpoint = "embeddings" if path in EMBEDDING_PATHS else "chat"
        if problem is not None:
            await self._refuse(send, {"endpoint": endpoint}, None, started, problem)
            return True
        if isinstance(body.get("metadata"), dict):
            body["metadata"].pop(META_KEY, None)  # only the gateway writes its record
        caller = self._caller(scope)
        if caller is None or not self.gateway.grant(caller).allows(body["model"]):
            return False  # LiteLLM and the pre-call hook answer 401 / 403
        check = check_embedding_request if endpoint == "embeddings" else check_chat_request
        shape = check(body)
        if shape is not None:  # answered here: LiteLLM trips over some bodies (500)
            meta = {"endpoint": endpoint, "route": body["model"],
                    "stream": body.get("stream") is True}  # fmt: skip
            await self._refuse(send, meta, caller, started, shape.message, shape.param)
            return True
        request_id = f"req-{uuid.uuid4().hex}"
        if await self.gateway.refusal(caller, request_id) is not None:
            return False  # the pre-call hook checks again and answers 429 / 503
        ADMITTED.set(request_id)  # a forwarded request is released by LiteLLM's log events
        requested = body["model"]
        record = body.setdefault("metadata", {}).setdefault(META_KEY, {})
        record.update(request_id=request_id, route=requested, stream=body.get("stream") is True,
                      endpoint=endpoint, generation=self.gateway.generation)  # fmt: skip
        if endpoint == "embeddings":
            handled = await self._embeddings(scope, body, caller, replay, send, started)
        else:
            handled = await self._chat(scope, body, caller, send, started)
        if handled:
            saved = float(_gateway_meta(body).get("saved_usd") or 0.0)
            charge = Charge(caller.alias or "", caller.team, requested, saved_usd=saved)
            await self.gateway.finished(request_id, charge)
        return handled

    async def _refuse(self, send: Send, meta: dict[str, Any], caller: Caller | None,
                      started: float, message: str, param: str | None = None) -> None:  # fmt: skip
        """A 400 answered here, with its log line and metrics (as LiteLLM's would be)."""
        error = _error(message, "invalid_request_error")
        if param is not None:
            error["error"].update(param=param, code="400")
        await self._send_json(send, 400, error, {})
        logged = {"type": "invalid_request_error", "message": message}
        self.gateway.refused_record(meta, caller, started, 400, logged)

    async def _chat(self, scope: Scope, body: dict[str, Any], caller: Caller, send: Send,
                    started: float) -> bool:  # fmt: skip
        requested = body["model"]
        headers = {"cache-control": _header(scope, b"cache-control") or ""}
        ready = await self.gateway.prepare(body, caller, headers)
        own_ms = (time.perf_counter() - started) * 1000
        if not ready:
            self.gateway.own_time(body, "forwarded", own_ms)
            record = _gateway_meta(body)
            FORWARDED.set(Forwarded(requested, body["model"], body["messages"], record))
            return False
        self.gateway.own_time(body, "fast_lane", own_ms)
        answer = body["mock_response"].model_dump()
        extra = self.gateway.response_headers(body, None)
        extra["x-gateway-fast-lane-ms"] = f"{own_ms:.2f}"
        self.answered += 1
        if body.get("stream") is True:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._send_stream(send, sse_events(answer, include_usage), extra)
        else:
            await self._send_json(send, 200, answer, extra)
        self.gateway.answered_record(body, caller, started, answer)
        return True

    async def _embeddings(self, scope: Scope, body: dict[str, Any], caller: Caller,
                          replay: Receive, send: Send, started: float) -> bool:  # fmt: skip
        caching = self.gateway.caching
        if caching is None:
            return False
        key = caching.embedding_key(body, caller.team, caller.key_id)
        if key is None:
            return False
        hit = await caching.embedding_hit(key)
        record = _gateway_meta(body)
        record["cache"] = {"outcome": "HIT_EXACT" if hit is not None else "MISS"}
        if hit is not None:
            self.answered += 1
            self.gateway.own_time(body, "fast_lane", (time.perf_counter() - started) * 1000)
            await self._send_json(send, 200, hit, {"x-gateway-cache": "HIT_EXACT"})
            self.gateway.answered_record(body, caller, started, None)
            return True
        TRACE.set({"t0": started, "cache": record["cache"]})  # for LiteLLM's log record
        await self.app(scope, replay, _capturing(send, key, caching))
        return True

    async def _operator_page(self, what: str, scope: Scope, send: Send) -> None:
        """Usage, metrics, configuration and the dashboard's data: operators only.

        ``GET /gateway/usage[?day=YYYY-MM-DD]``, ``GET /metrics``, ``GET
        /gateway/dashboard/data?window=hour|day``, ``GET /gateway/config`` (this
        worker's generation and last reload error), ``POST /gateway/reload`` (reload
        gateway.yaml in this worker now; the others follow within ``reload.poll_s``).
        The dashboard page itself is a static shell with no data in it; its script
        fetches the data with the key.
        """
        observer = self.gateway.observer
        if what == "dashboard":
            await self._send_bytes(send, 200, dashboard_page(), "text/html; charset=utf-8")
            return
        open_metrics = what == "metrics" and observer is not None and (
            not observer.settings.metrics.require_master_key)  # fmt: skip
        if not open_metrics:
            presented = _header(scope, b"authorization")
            principal = self.auth.verifier.verify(presented) if presented else None
            if principal is None:
                await self._send_json(send, 401, _error("Invalid or missing API key.",
                                                        "authentication_error"), {})  # fmt: skip
                return
            if principal.role is not Role.OPERATOR:
                await self._send_json(send, 403, _error("This is for operators (the master key).",
                                                        "permission_denied"), {})  # fmt: skip
                return
        query = parse_qs((scope.get("query_string") or b"").decode())
        if what in ("config", "reload"):
            if self.reloader is None:
                await self._send_json(send, 404, _error("Reloading is off.", "not_found"), {})
                return
            status = await self.reloader.check(force=True) if what == "reload" else (
                self.reloader.status())  # fmt: skip
            code = 200 if what == "config" or status["last_error"] is None else 422
            await self._send_json(send, code, status, {})
            return
        if what == "usage":
            day = (query.get("day") or [None])[0]
            await self._send_json(send, 200, await self.gateway.usage_report(day), {})
            return
        assert observer is not None
        if what == "metrics":
            page = await observer.exposition()
            await self._send_bytes(send, 200, page, "text/plain; version=0.0.4; charset=utf-8")
            return
        window = (query.get("window") or ["hour"])[0]
        await self._send_json(send, 200, await observer.dashboard_data(window), {})

    @staticmethod
    async def _send_bytes(send: Send, status: int, payload: bytes, content_type: str) -> None:
        headers = [(b"content-type", content_type.encode()),
                   (b"content-length", str(len(payload)).encode()),
                   (b"cache-control", b"no-store")]  # fmt: skip
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _send_json(send: Send, status: int, body: Any, extra: dict[str, str]) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(payload)).encode())]  # fmt: skip
        headers += [(k.encode(), v.encode("latin-1", "replace")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _send_stream(send: Send, events: list[bytes], extra: dict[str, str]) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers += [(k.encode(), v.encode("latin-1", "replace")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _capturing(send: Send, key: str, caching: Any) -> Send:
    """Pass LiteLLM's response through, keeping a successful JSON body to cache it.

    (Its ``x-gateway-cache: MISS`` header comes from the headers hook, via ``TRACE``.)
    """
    state: dict[str, Any] = {"status": 0, "chunks": [], "size": 0}

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body" and state["status"] == 200:
            chunk = message.get("body", b"")
            state["size"] += len(chunk)
            if state["size"] <= MAX_STORED_EMBEDDINGS:
                state["chunks"].append(chunk)
        await send(message)
        complete = message["type"] == "http.response.body" and not message.get("more_body")
        if complete and state["status"] == 200 and state["size"] <= MAX_STORED_EMBEDDINGS:
            try:
                body = json.loads(b"".join(state["chunks"]))
            except ValueError:
                return
            if isinstance(body, dict) and body.get("data"):
                await caching.embedding_store(key, body)

    return wrapped


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def install(app: Any, generations: Generations, auth: GatewayAuth,
            reloader: ConfigReloader | None = None) -> None:  # fmt: skip
    """Put the fast lane in front of LiteLLM's FastAPI app (outermost middleware).

    Called while the proxy starts; Starlette builds its middleware stack on the
    first call (the lifespan), so the stack is reset to be built again with ours.
    """
    from starlette.middleware import Middleware

    if any(m.cls is FastLane for m in app.user_middleware):
        return
    app.user_middleware.insert(
        0, Middleware(FastLane, generations=generations, auth=auth, reloader=reloader)
    )
    app.middleware_stack = None
