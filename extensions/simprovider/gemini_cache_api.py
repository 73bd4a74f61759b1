"""Gemini explicit context caching: the ``cachedContents`` resource.

Google's paths (any prefix, e.g. ``/v1beta``): ``POST /cachedContents`` (create),
``GET /cachedContents`` (list, ``pageSize`` / ``pageToken``), ``GET`` / ``PATCH`` /
``DELETE /cachedContents/{id}``. LiteLLM, given a custom ``api_base``, creates and lists
at ``{api_base}/models/{model}:cachedContents`` instead, so that path answers too (list
and create, exactly as above).

A cache's token count is the simulator's estimate of its system instruction, contents and
function declarations; it must reach the model's ``cache_min_tokens`` (else 400, as
Google's "Cached content is too small"). ``ttl`` (``"300s"``) or ``expireTime`` (RFC 3339)
set its lifetime, default ``cached_content_ttl_s``. Management calls check the API key
and are recorded in stats and the request log, but have no latency and no faults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from .cached_contents import NAME_PREFIX, CachedContent, CachedContentError, expiry_from
from .gemini_api import CACHE_NOT_FOUND, WIRE, api_key_of, gemini_error, get_field, prompt_of
from .runtime import UNKNOWN_MODEL, SimState, json_response, parse_json_object, wire_allowed

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _model_name(raw: Any) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    name = raw.strip().removeprefix("models/")
    return name if name and "/" not in name else None


def _validate_contents(body: Mapping[str, Any]) -> str | None:
    contents = body.get("contents")
    if contents is None:
        return None
    if not isinstance(contents, list):
        return "* CachedContent.contents: must be a list"
    for index, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            return f"* CachedContent.contents[{index}].parts: must be a list"
    return None


def _page(request: Request) -> tuple[int, int] | None:
    """(offset, size) from ``pageToken`` / ``pageSize``; ``None`` if either is malformed."""
    try:
        size = int(request.query_params.get("pageSize") or DEFAULT_PAGE_SIZE)
        offset = int(request.query_params.get("pageToken") or 0)
    except ValueError:
        return None
    if size < 1 or offset < 0:
        return None
    return offset, min(size, MAX_PAGE_SIZE)


def build_router(state: SimState) -> APIRouter:
    router = APIRouter()

    def refuse_key(request: Request) -> Response | None:
        if state.api_key_ok(api_key_of(request)):
            return None
        return gemini_error(401, "API key not valid. Please pass a valid API key.")

    async def create(request: Request, url_model: str | None) -> Response:
        body = parse_json_object(await request.body())
        named = _model_name(body.get("model")) if body is not None else None
        target = named or _model_name(url_model) or UNKNOWN_MODEL
        state.record("gemini.cached_contents.create", target, request, body, False)
        refused = refuse_key(request)
        if refused is not None:
            return refused
        if body is None:
            return gemini_error(400, "Invalid JSON payload received.")
        if target == UNKNOWN_MODEL:
            return gemini_error(400, "* CachedContent.model: model is required")
        problem = _validate_contents(body)
        if problem is not None:
            return gemini_error(400, problem)
        behaviour = state.behaviour(target)
        if not wire_allowed(behaviour, WIRE):
            return gemini_error(404, f"models/{target} is not found (not a Gemini model).")
        prompt = prompt_of(body)
        if prompt.tokens < behaviour.cache_min_tokens:
            return gemini_error(
                400,
                f"Cached content is too small. total_token_count={prompt.tokens}, "
                f"min_total_token_count={behaviour.cache_min_tokens}",
            )
        now = state.clock.wall()
        try:
            expire = expiry_from(body, now, behaviour.cached_content_ttl_s)
        except CachedContentError as exc:
            return gemini_error(400, str(exc))
        assert expire is not None
        display = get_field(body, "displayName", "display_name")
        cache = state.cached_contents.create(
            target,
            display if isinstance(display, str) else "",
            prompt.tokens,
            prompt.text,
            expire,
            now,
            tools=body.get("tools"),
            tool_config=get_field(body, "toolConfig", "tool_config"),
        )
        return json_response(cache.resource())

    async def listing(request: Request, url_model: str | None) -> Response:
        model = _model_name(url_model) or UNKNOWN_MODEL
        state.record("gemini.cached_contents.list", model, request, None, False)
        refused = refuse_key(request)
        if refused is not None:
            return refused
        page = _page(request)
        if page is None:
            return gemini_error(400, "pageSize and pageToken must be non-negative integers")
        offset, size = page
        caches = state.cached_contents.live(state.clock.wall())
        data: dict[str, Any] = {}
        chosen = caches[offset : offset + size]
        if chosen:
            data["cachedContents"] = [c.resource() for c in chosen]
        if offset + size < len(caches):
            data["nextPageToken"] = str(offset + size)
        return json_response(data)

    def lookup(request: Request, cache_id: str, action: str) -> CachedContent | Response:
        name = NAME_PREFIX + cache_id
        cache = state.cached_contents.get(name, state.clock.wall())
        model = cache.model if cache is not None else UNKNOWN_MODEL
        state.record(f"gemini.cached_contents.{action}", model, request, None, False)
        refused = refuse_key(request)
        if refused is not None:
            return refused
        return cache if cache is not None else gemini_error(403, CACHE_NOT_FOUND)

    async def get_one(request: Request, cache_id: str) -> Response:
        found = lookup(request, cache_id, "get")
        return found if isinstance(found, Response) else json_response(found.resource())

    async def delete_one(request: Request, cache_id: str) -> Response:
        found = lookup(request, cache_id, "delete")
        if isinstance(found, Response):
            return found
        state.cached_contents.delete(found.name, state.clock.wall())
        return json_response({})

    async def update_one(request: Request, cache_id: str) -> Response:
        body = parse_json_object(await request.body())
        found = lookup(request, cache_id, "update")
        if isinstance(found, Response):
            return found
        if body is None:
            return gemini_error(400, "Invalid JSON payload received.")
        now = state.clock.wall()
        try:
            expire = expiry_from(body, now, None)
        except CachedContentError as exc:
            return gemini_error(400, str(exc))
        if expire is not None:
            state.cached_contents.set_expiry(found.name, expire, now)
        return json_response(found.resource())

    async def create_any(request: Request) -> Response:
        return await create(request, None)

    async def create_for(request: Request, model: str) -> Response:
        return await create(request, model)

    async def list_any(request: Request) -> Response:
        return await listing(request, None)

    async def list_for(request: Request, model: str) -> Response:
        return await listing(request, model)

    for prefix in ("", "/{prefix:path}"):
        collection = f"{prefix}/cachedContents"
        router.add_api_route(collection, create_any, methods=["POST"])
        router.add_api_route(collection, list_any, methods=["GET"])
        router.add_api_route(f"{collection}/{{cache_id}}", get_one, methods=["GET"])
        router.add_api_route(f"{collection}/{{cache_id}}", update_one, methods=["PATCH"])
        router.add_api_route(f"{collection}/{{cache_id}}", delete_one, methods=["DELETE"])
        litellm_style = f"{prefix}/models/{{model}}:cachedContents"
        router.add_api_route(litellm_style, create_for, methods=["POST"])
        router.add_api_route(litellm_style, list_for, methods=["GET"])
    return router
