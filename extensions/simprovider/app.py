"""The simulator's FastAPI app: the three wire formats plus the ``/_sim`` admin API.

Model routes: OpenAI chat completions, embeddings, models and Responses; Anthropic
messages; Gemini generateContent / streamGenerateContent and cachedContents.

Admin API (no auth; the server binds to 127.0.0.1):

- ``GET /_sim/health`` -> ``{"status": "ok", "uptime_s", "models": [...]}``
- ``GET /_sim/stats`` -> ``{"total", "streaming", "by_model", "by_endpoint", "by_fault",
  "streams"}``; ``streams``: ``{"open", "started", "completed", "cancelled", "dropped"}`` (streamed
  answers being sent now, and how the others ended: ``cancelled`` = the caller went away)
- ``POST /_sim/reset`` -> clears stats, overrides, fault counters, every prompt cache (and
  Gemini cached contents), the request log and the clock offset
- ``GET /_sim/clock`` / ``POST /_sim/clock`` (body ``{"advance_s": N}``) -> the simulated
  clock's offset; moving it forward expires caches and accrues cache storage at once
- ``GET /_sim/cached_contents`` -> every Gemini cache (live or ended) with its tokens and
  stored time (``token_hours``), plus totals, for checking a storage fee
- ``GET /_sim/models`` / ``GET /_sim/models/{model}`` -> effective behaviour and its source
- ``PUT /_sim/models/{model}`` (body: a ``models`` entry) -> runtime override
- ``DELETE /_sim/models/{model}`` -> drop the override
- ``GET /_sim/requests?model=X&limit=N`` -> last N recorded requests (secrets removed)
"""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import anthropic_api, gemini_api, gemini_cache_api, openai_api, responses_api
from .runtime import SimState, json_response, parse_json_object
from .settings import ModelBehaviour, SimSettings, describe_validation_error

_SLASHES = re.compile(r"/{2,}")


class CollapseSlashes:
    """Turns ``//v1/messages`` into ``/v1/messages`` (an ``api_base`` ending in ``/``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            path = _SLASHES.sub("/", scope["path"])
            scope = {**scope, "path": path, "raw_path": path.encode("utf-8")}
        await self.app(scope, receive, send)


def _admin_error(status: int, message: str) -> Response:
    return json_response({"error": {"message": message}}, status)


def _describe(state: SimState, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "source": state.source_of(model),
        "behaviour": state.behaviour(model).model_dump(mode="json"),
    }


def create_app(settings: SimSettings) -> FastAPI:
    """Build the simulator app; its state lives in ``app.state.sim`` (a ``SimState``)."""
    state = SimState(settings)
    app = FastAPI(title="simprovider", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sim = state
    app.add_middleware(CollapseSlashes)

    async def health() -> Response:
        return json_response(
            {
                "status": "ok",
                "uptime_s": round(time.time() - state.started_at, 3),
                "models": state.known_models(),
            }
        )

    async def stats() -> Response:
        return json_response(state.stats.as_json())

    async def reset() -> Response:
        state.reset()
        return json_response({"status": "reset"})

    async def list_models() -> Response:
        return json_response(
            {
                "defaults": settings.defaults.model_dump(mode="json"),
                "models": {name: _describe(state, name) for name in state.known_models()},
            }
        )

    async def get_model(model: str) -> Response:
        return json_response(_describe(state, model))

    async def put_model(model: str, request: Request) -> Response:
        body = parse_json_object(await request.body())
        if body is None:
            return _admin_error(400, "body must be a JSON object (a models entry)")
        try:
            entry = ModelBehaviour.model_validate(body)
        except ValidationError as exc:
            detail = describe_validation_error(exc, prefix=f"models.{model}")
            return _admin_error(422, f"invalid behaviour for {model}:\n{detail}")
        state.set_override(model, entry)
        return json_response(_describe(state, model))

    async def delete_model(model: str) -> Response:
        removed = state.drop_override(model)
        return json_response({**_describe(state, model), "removed": removed})

    async def clock() -> Response:
        return json_response({"offset_s": state.clock.offset_s, "now": state.clock.wall()})

    async def advance_clock(request: Request) -> Response:
        body = parse_json_object(await request.body())
        seconds = body.get("advance_s") if body is not None else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            return _admin_error(400, 'body must be {"advance_s": <seconds, >= 0>}')
        state.clock.advance(float(seconds))
        return await clock()

    async def cached_contents() -> Response:
        return json_response(state.cached_contents.storage(state.clock.wall()))

    async def requests(request: Request) -> Response:
        model = request.query_params.get("model") or None
        raw_limit = request.query_params.get("limit", "20")
        try:
            limit = int(raw_limit)
        except ValueError:
            return _admin_error(400, f"limit must be an integer, got {raw_limit!r}")
        return json_response({"requests": state.recent_requests(model, max(0, limit))})

    app.add_api_route("/_sim/health", health, methods=["GET"])
    app.add_api_route("/_sim/stats", stats, methods=["GET"])
    app.add_api_route("/_sim/reset", reset, methods=["POST"])
    app.add_api_route("/_sim/models", list_models, methods=["GET"])
    app.add_api_route("/_sim/models/{model}", get_model, methods=["GET"])
    app.add_api_route("/_sim/models/{model}", put_model, methods=["PUT"])
    app.add_api_route("/_sim/models/{model}", delete_model, methods=["DELETE"])
    app.add_api_route("/_sim/requests", requests, methods=["GET"])
    app.add_api_route("/_sim/clock", clock, methods=["GET"])
    app.add_api_route("/_sim/clock", advance_clock, methods=["POST"])
    app.add_api_route("/_sim/cached_contents", cached_contents, methods=["GET"])

    # before the OpenAI router: its GET /models/{model} would take .../models/X:cachedContents
    app.include_router(gemini_cache_api.build_router(state))
    app.include_router(openai_api.build_router(state))
    app.include_router(responses_api.build_router(state))
    app.include_router(anthropic_api.build_router(state))
    app.include_router(gemini_api.build_router(state))
    return app
