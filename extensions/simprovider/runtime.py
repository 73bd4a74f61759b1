"""Per-app runtime state and the request pipeline shared by the three wire formats.

``SimState`` holds everything that changes while the app runs (overrides, fault counters,
the prompt caches and Gemini cached contents, the simulated clock, stats, recent request
bodies). Each wire-format module uses
``SimState.plan`` to decide latency and faults, ``admit`` to apply error/timeout faults,
and ``paced_events`` / ``DropResponse`` to emit (or cut) the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from .auto_cache import AutoPrefixCache, Piece, prefix_hashes
from .cached_contents import CachedContentStore
from .faults import FaultBook, error_status, fault_from_headers, header_number
from .prompt_cache import PromptCache
from .settings import FaultKind, FaultRule, ModelBehaviour, SimSettings, WireFormat

UNKNOWN_MODEL = "<unknown>"
TTFT_HEADER = "x-sim-ttft-ms"
TPS_HEADER = "x-sim-tokens-per-second"
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "proxy-authorization", "cookie"}
)
SECRET_QUERY = frozenset({"key"})
# Sleeps longer than this watch for the client going away (so hung requests free up).
WATCH_DISCONNECT_AFTER_S = 1.0
# Stream events due sooner than this are sent without sleeping.
_MIN_SLEEP_S = 0.0005


class SimulatedDrop(Exception):
    """Raised after a partial response to make the server abort the connection."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What happens to one request: its model's behaviour, latency and fault (if any)."""

    model: str
    behaviour: ModelBehaviour
    fault: FaultRule | None
    ttft_s: float
    tokens_per_second: float
    # where a streamed answer reports how it ended (the stats current when it was planned)
    streams: StreamCounts | None = field(default=None, compare=False)

    @property
    def drop(self) -> FaultRule | None:
        return self.fault if self.fault is not None and self.fault.kind is FaultKind.DROP else None

    def generation_delay(self, tokens: int) -> float:
        """Non-streaming delay: time to first token plus time to produce ``tokens``."""
        return self.ttft_s + tokens / self.tokens_per_second


class StreamCounts:
    """Streamed answers: how many are being sent now and how the finished ones ended.

    ``completed``: every event was sent; ``cancelled``: the client went away (or the
    server stopped) before the end; ``dropped``: cut by a ``drop`` fault.
    """

    ENDINGS = ("completed", "cancelled", "dropped")

    def __init__(self) -> None:
        self.open = 0
        self.started = 0
        self.ended: dict[str, int] = dict.fromkeys(self.ENDINGS, 0)

    def opened(self) -> None:
        self.open += 1
        self.started += 1

    def closed(self, ending: str) -> None:
        self.open -= 1
        self.ended[ending] += 1

    def as_json(self) -> dict[str, int]:
        return {"open": self.open, "started": self.started, **self.ended}


class Stats:
    """Counters of requests that reached a model endpoint (faulted ones included)."""

    def __init__(self) -> None:
        self.total = 0
        self.streaming = 0
        self.by_model: dict[str, int] = {}
        self.by_endpoint: dict[str, int] = {}
        self.by_fault: dict[str, int] = {}
        self.streams = StreamCounts()

    def count(self, endpoint: str, model: str, stream: bool) -> None:
        self.total += 1
        if stream:
            self.streaming += 1
        self.by_model[model] = self.by_model.get(model, 0) + 1
        self.by_endpoint[endpoint] = self.by_endpoint.get(endpoint, 0) + 1

    def count_fault(self, kind: FaultKind) -> None:
        self.by_fault[kind.value] = self.by_fault.get(kind.value, 0) + 1

    def as_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "streaming": self.streaming,
            "by_model": dict(self.by_model),
            "by_endpoint": dict(self.by_endpoint),
            "by_fault": dict(self.by_fault),
            "streams": self.streams.as_json(),
        }


class SimClock:
    """Real time plus an offset that ``POST /_sim/clock`` moves forward, so tests can let
    caches expire (and storage accumulate) without waiting."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset_s

    def wall(self) -> float:
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        self.offset_s += seconds


class SimState:
    """Mutable state of one simulator app."""

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.clock = SimClock()
        self.faults = FaultBook(settings.seed)
        self.prompt_cache = PromptCache()
        self.auto_cache = AutoPrefixCache()
        self.cached_contents = CachedContentStore()
        self.stats = Stats()
        self.overrides: dict[str, ModelBehaviour] = {}
        self._resolved: dict[str, ModelBehaviour] = {}
        self._log: dict[str, deque[dict[str, Any]]] = {}
        self._seq = 0
        self.started_at = time.time()

    # ------------------------------------------------------------------ behaviour / admin

    def behaviour(self, model: str) -> ModelBehaviour:
        """Effective behaviour of ``model`` (runtime override, else YAML entry, else defaults)."""
        found = self._resolved.get(model)
        if found is None:
            found = self.settings.behaviour_for(model, self.overrides.get(model))
            self._resolved[model] = found
        return found

    def source_of(self, model: str) -> str:
        if model in self.overrides:
            return "override"
        return "yaml" if model in self.settings.models else "defaults"

    def set_override(self, model: str, entry: ModelBehaviour) -> ModelBehaviour:
        self.overrides[model] = entry
        self._resolved.pop(model, None)
        self.faults.reset(model)
        return self.behaviour(model)

    def drop_override(self, model: str) -> bool:
        existed = self.overrides.pop(model, None) is not None
        self._resolved.pop(model, None)
        self.faults.reset(model)
        return existed

    def reset(self) -> None:
        """Clear stats, overrides, fault counters, every prompt cache (and Gemini cached
        contents with their storage record), the request log and the clock offset."""
        self.stats = Stats()
        self.overrides.clear()
        self._resolved.clear()
        self.faults.reset()
        self.prompt_cache.clear()
        self.auto_cache.clear()
        self.cached_contents.clear()
        self.clock = SimClock()
        self._log.clear()

    def known_models(self) -> list[str]:
        return sorted(set(self.settings.models) | set(self.overrides))

    # ---------------------------------------------------------------------- per request

    def api_key_ok(self, key: str | None) -> bool:
        if key is None or not key.strip():
            return False
        accepted = self.settings.accepted_api_keys
        return not accepted or key.strip() in accepted

    def record(
        self,
        endpoint: str,
        model: str,
        request: Request,
        body: Mapping[str, Any] | None,
        stream: bool,
    ) -> None:
        """Count the request and keep its (secret-free) headers and body for ``/_sim/requests``."""
        self.stats.count(endpoint, model, stream)
        size = self.settings.request_log_size
        if size <= 0:
            return
        self._seq += 1
        log = self._log.get(model)
        if log is None:
            log = deque(maxlen=size)
            self._log[model] = log
        log.append(
            {
                "seq": self._seq,
                "time": time.time(),
                "endpoint": endpoint,
                "model": model,
                "method": request.method,
                "path": request.url.path,
                "query": {
                    k: v for k, v in request.query_params.items() if k.lower() not in SECRET_QUERY
                },
                "headers": {
                    k: v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS
                },
                "stream": stream,
                "body": body,
            }
        )

    def recent_requests(self, model: str | None, limit: int) -> list[dict[str, Any]]:
        """Last ``limit`` recorded requests (of one model or all), oldest first."""
        if model is not None:
            entries = list(self._log.get(model, ()))
        else:
            entries = sorted((e for log in self._log.values() for e in log), key=lambda e: e["seq"])
        return entries[-limit:] if limit > 0 else []

    def automatic_cache(self, plan: Plan, pieces: Sequence[Piece]) -> int:
        """Cached tokens of an OpenAI-style automatically cached prompt (also Gemini implicit
        caching): 0 when the model's ``cache_automatic`` is off or the prompt is shorter than
        ``cache_min_tokens``; remembers the prompt's prefixes either way."""
        behaviour = plan.behaviour
        if not behaviour.cache_automatic:
            return 0
        if sum(p.tokens for p in pieces) < max(1, behaviour.cache_min_tokens):
            return 0
        prefixes = prefix_hashes(
            pieces, behaviour.cache_min_tokens, behaviour.cache_increment_tokens
        )
        return self.auto_cache.lookup(
            plan.model, prefixes, behaviour.cache_ttl_s, self.clock.monotonic()
        )

    def plan(self, model: str, headers: Headers | Mapping[str, str]) -> Plan:
        """Latency and fault for this request. Raises ``FaultHeaderError`` on bad headers."""
        behaviour = self.behaviour(model)
        fault = fault_from_headers(headers)
        if fault is None:
            fault = self.faults.decide(model, behaviour.faults)
        if fault is not None:
            self.stats.count_fault(fault.kind)
        ttft_ms = header_number(headers, TTFT_HEADER, 0.0, 600_000.0)
        tps = header_number(headers, TPS_HEADER, 0.001, 1_000_000.0)
        return Plan(
            model=model,
            behaviour=behaviour,
            fault=fault,
            ttft_s=(behaviour.ttft_ms if ttft_ms is None else ttft_ms) / 1000.0,
            tokens_per_second=behaviour.tokens_per_second if tps is None else tps,
            streams=self.stats.streams,
        )


def wire_allowed(behaviour: ModelBehaviour, wire: WireFormat) -> bool:
    return behaviour.api is WireFormat.ANY or behaviour.api is wire


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object, or ``None`` if it is not one."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def dumps(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(
    data: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(data), status_code, headers=headers, media_type="application/json")


def retry_after_headers(rule: FaultRule | None, with_ms: bool) -> dict[str, str]:
    """``Retry-After`` (whole seconds, rounded up) and, for OpenAI, ``retry-after-ms``."""
    if rule is None or rule.kind is not FaultKind.HTTP_429:
        return {}
    headers = {"retry-after": str(math.ceil(rule.retry_after_s))}
    if with_ms:
        headers["retry-after-ms"] = str(round(rule.retry_after_s * 1000))
    return headers


async def sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; long sleeps end early if the client disconnects.

    Returns ``False`` if the client went away. The body must already have been read.
    """
    if seconds <= 0:
        return True
    if seconds <= WATCH_DISCONNECT_AFTER_S:
        await asyncio.sleep(seconds)
        return True
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, watcher):
            if not task.done():
                task.cancel()
    return sleeper in done


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


async def admit(plan: Plan, request: Request) -> int | None:
    """Apply the pre-answer part of the plan's fault.

    Returns the HTTP status of an error fault (the caller answers in its wire format), or
    ``None`` to go on. A ``timeout`` fault sleeps ``hang_s`` first (ending early if the client
    disconnects) and then lets the request be answered normally.
    """
    status = error_status(plan.fault)
    if status is not None:
        return status
    if plan.fault is not None and plan.fault.kind is FaultKind.TIMEOUT:
        await sleep_unless_disconnected(request, plan.fault.hang_s)
    return None


class DropResponse(Response):
    """Sends status 200, headers and about half the body, then aborts the connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )
        raise SimulatedDrop("simulated connection drop (non-streaming)")


async def answer_json(
    plan: Plan,
    request: Request,
    data: Any,
    completion_tokens: int,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Wait the generation delay, then answer ``data`` (or drop the connection midway)."""
    await sleep_unless_disconnected(request, plan.generation_delay(completion_tokens))
    if plan.drop is not None:
        return DropResponse(dumps(data), 200, headers=headers, media_type="application/json")
    return json_response(data, headers=headers)


@dataclass(frozen=True, slots=True)
class Event:
    """One streamed SSE event and how many completion tokens it carries (for pacing)."""

    payload: bytes
    tokens: int = 0


async def paced_events(plan: Plan, events: Sequence[Event]) -> AsyncIterator[bytes]:
    """Yield events on schedule: event *i* is due at ``ttft + tokens_before_i / tps``.

    Events already due together (same instant, or the loop running late under load) are
    written as one chunk, which keeps the per-write overhead down. With a ``drop`` fault the
    stream aborts after ``after_chunks`` events (0: before any; at most all but the last
    event, so a dropped stream is always incomplete).
    """
    drop_after = (
        min(plan.drop.after_chunks, max(0, len(events) - 1)) if plan.drop is not None else None
    )
    loop = asyncio.get_running_loop()
    start = loop.time()
    tokens_before = 0
    pending: list[bytes] = []
    for index, event in enumerate(events):
        if drop_after is not None and index >= drop_after:
            if pending:
                yield b"".join(pending)
            raise SimulatedDrop(f"simulated connection drop after {index} stream events")
        due = start + plan.ttft_s + tokens_before / plan.tokens_per_second
        if due - loop.time() > _MIN_SLEEP_S:
            if pending:
                yield b"".join(pending)
                pending = []
            delay = due - loop.time()
            if delay > _MIN_SLEEP_S:
                await asyncio.sleep(delay)
        tokens_before += event.tokens
        pending.append(event.payload)
    if pending:
        yield b"".join(pending)


SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class TrackedStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` that counts itself in ``StreamCounts`` while it is sent and
    records how it ended (``/_sim/stats`` -> ``streams``), so tests can tell whether a
    caller that went away also ended the upstream stream."""

    def __init__(
        self,
        source: AsyncIterator[bytes],
        counts: StreamCounts | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._source = source
        self._counts = counts
        self._finished = False
        super().__init__(self._watch(source), media_type="text/event-stream", headers=headers)

    async def _watch(self, source: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in source:
            yield chunk
        self._finished = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        counts = self._counts
        if counts is None:
            await super().__call__(scope, receive, send)
            return
        counts.opened()
        ending = "cancelled"
        try:
            await super().__call__(scope, receive, send)
        except BaseException as exc:
            if is_simulated_drop(exc):
                ending = "dropped"
            raise
        finally:
            if ending != "dropped" and self._finished:
                ending = "completed"
            counts.closed(ending)
            # a stream cut while waiting to send is left suspended: close it now
            for gen in (self.body_iterator, self._source):
                aclose = getattr(gen, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(RuntimeError):
                        await aclose()


def sse_response(
    plan: Plan, events: Sequence[Event], headers: Mapping[str, str] | None = None
) -> StreamingResponse:
    all_headers = dict(SSE_HEADERS)
    if headers:
        all_headers.update(headers)
    return TrackedStreamingResponse(paced_events(plan, events), plan.streams, all_headers)


def sse_data(data: Any) -> bytes:
    """``data: <json>\\n\\n``."""
    return b"data: " + dumps(data) + b"\n\n"


def sse_named(event: str, data: Any) -> bytes:
    """``event: <name>\\ndata: <json>\\n\\n`` (Anthropic style)."""
    return b"event: " + event.encode("ascii") + b"\ndata: " + dumps(data) + b"\n\n"


def is_simulated_drop(exc: BaseException | None) -> bool:
    """True for ``SimulatedDrop`` (also inside exception groups / causes)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, SimulatedDrop):
            return True
        if isinstance(exc, BaseExceptionGroup):
            return any(is_simulated_drop(inner) for inner in exc.exceptions)
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
