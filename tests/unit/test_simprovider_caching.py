"""Prompt caching of the simulator (OpenAI automatic, Gemini explicit and implicit), its
storage record and simulated clock, and Gemini structured output: pure logic and the app
through ASGITransport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema  # type: ignore[import-untyped]
import pytest

from extensions.simprovider.app import create_app
from extensions.simprovider.auto_cache import AutoPrefixCache, Piece, boundaries, prefix_hashes
from extensions.simprovider.cached_contents import (
    CachedContentError,
    CachedContentStore,
    expiry_from,
    parse_timestamp,
    rfc3339,
)
from extensions.simprovider.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from tests.unit.test_simprovider import GEMINI_AUTH, OPENAI_AUTH, fast_settings, sse_payloads

pytestmark = pytest.mark.unit

LONG = "You are a meticulous assistant for the gateway demo. " * 100  # 5,300 chars
LONG_TOKENS = estimate_tokens(LONG)  # 1,325
GEMINI_URL = "/v1beta/models/gem:generateContent"


def largest_step(shared: int, minimum: int = 1024, step: int = 128) -> int:
    """The longest cacheable prefix (min + k * step) within ``shared`` tokens."""
    return 0 if shared < minimum else minimum + (shared - minimum) // step * step


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    defaults = {"ttft_ms": 0, "tokens_per_second": 1_000_000, "cache_ttl_s": 300}
    transport = httpx.ASGITransport(app=create_app(fast_settings(defaults=defaults)))
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
        yield c


# ------------------------------------------------------------------------------ pure logic


def test_boundaries_step_from_minimum() -> None:
    assert list(boundaries(1300, 1024, 128)) == [1024, 1152, 1280]
    assert list(boundaries(1000, 1024, 128)) == []
    assert list(boundaries(300, 0, 128)) == [128, 256]


def test_prefix_hashes_equal_exactly_as_far_as_the_text_is() -> None:
    head = Piece("a" * 4096, 1024)  # boundary 1024 at its end
    one = prefix_hashes([head, Piece("b" * 1024, 256)], 1024, 128)
    two = prefix_hashes([head, Piece("b" * 512 + "c" * 512, 256)], 1024, 128)
    assert [t for t, _ in one] == [1024, 1152, 1280]
    assert one[0] == two[0] and one[1] == two[1]  # first 128 tokens of the tail agree
    assert one[2] != two[2]
    split = prefix_hashes([Piece("a" * 2048, 512), Piece("a" * 2048, 512)], 1024, 128)
    assert split[0][1] != one[0][1]  # same characters, other piece boundaries


def test_auto_cache_longest_prefix_ttl_and_models() -> None:
    cache = AutoPrefixCache()
    short = [(1024, "a"), (1152, "b")]
    longer = [(1024, "a"), (1152, "b"), (1280, "c")]
    assert cache.lookup("m", short, 300, now=0) == 0
    assert cache.lookup("m", longer, 300, now=10) == 1152
    assert cache.lookup("m", longer, 300, now=20) == 1280
    assert cache.lookup("other", longer, 300, now=20) == 0
    assert cache.live_entries(now=30) == {"m": 3, "other": 3}
    assert cache.lookup("m", longer, 300, now=321) == 0  # expired after 300 s unused


def test_cached_content_store_lifetime_and_storage() -> None:
    store = CachedContentStore()
    cache = store.create("gem", "key", 2000, "prompt", expire_time=3600, now=0)
    assert cache.name.startswith("cachedContents/")
    assert store.get(cache.name, 100) is cache and store.get("cachedContents/x", 100) is None
    assert store.storage(1800)["token_hours"] == pytest.approx(1000.0)
    assert store.delete(cache.name, 1800) and not store.delete(cache.name, 1801)
    assert store.get(cache.name, 1801) is None
    record = store.storage(7200)
    assert record["caches"][0]["state"] == "deleted" and record["caches"][0]["stored_s"] == 1800
    other = store.create("gem", "", 100, "p", expire_time=60, now=0)
    assert store.live(30) == [other] and store.live(61) == []
    assert store.storage(7200)["token_hours"] == pytest.approx(1000.0 + 100 * 60 / 3600)


def test_ttl_and_expire_time_parsing() -> None:
    assert expiry_from({"ttl": "300s"}, 1000, 3600) == 1300
    assert expiry_from({"ttl": "1.5s"}, 0, None) == 1.5
    assert expiry_from({}, 1000, 3600) == 4600
    assert expiry_from({}, 1000, None) is None
    assert expiry_from({"expireTime": rfc3339(5000.25)}, 1000, None) == pytest.approx(5000.25)
    assert parse_timestamp("2030-01-01T00:00:00+01:00") == parse_timestamp("2029-12-31T23:00:00Z")
    for bad in ({"ttl": "5m"}, {"ttl": "0s"}, {"expireTime": "soon"}, {"expireTime": rfc3339(1)}):
        with pytest.raises(CachedContentError):
            expiry_from(bad, 1000, 3600)
    with pytest.raises(CachedContentError, match="not both"):
        expiry_from({"ttl": "1s", "expireTime": rfc3339(9999)}, 1000, None)


# ------------------------------------------------------------------- OpenAI automatic


async def chat(client: httpx.AsyncClient, question: str, model: str = "gpt") -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": question}],
    }
    response = await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    assert response.status_code == 200
    usage: dict[str, Any] = response.json()["usage"]
    return usage


async def test_openai_chat_caches_prefixes_in_128_token_steps(client: httpx.AsyncClient) -> None:
    first = await chat(client, "first question?")
    assert first["prompt_tokens_details"]["cached_tokens"] == 0
    second = await chat(client, "second question?")
    shared = 2 * MESSAGE_OVERHEAD_TOKENS + LONG_TOKENS  # both turn markers and the system text
    assert second["prompt_tokens_details"]["cached_tokens"] == largest_step(shared) == 1280
    assert second["prompt_tokens"] == shared + estimate_tokens("second question?")
    same = await chat(client, "second question?")
    assert same["prompt_tokens_details"]["cached_tokens"] == largest_step(same["prompt_tokens"])
    assert (await chat(client, "first question?", model="gpt-other"))["prompt_tokens_details"][
        "cached_tokens"
    ] == 0  # per model

    # unused for longer than cache_ttl_s: gone
    advanced = await client.post("/_sim/clock", json={"advance_s": 301})
    assert advanced.json()["offset_s"] == 301
    assert (await chat(client, "second question?"))["prompt_tokens_details"]["cached_tokens"] == 0

    # short prompts and cache_automatic: false are never cached
    short = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        response = await client.post("/v1/chat/completions", json=short, headers=OPENAI_AUTH)
        assert response.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    await client.put("/_sim/models/gpt", json={"api": "openai", "cache_automatic": False})
    assert (await chat(client, "second question?"))["prompt_tokens_details"]["cached_tokens"] == 0


async def test_openai_stream_usage_carries_cached_tokens(client: httpx.AsyncClient) -> None:
    await chat(client, "warm up")
    body = {
        "model": "gpt",
        "messages": [{"role": "system", "content": LONG}, {"role": "user", "content": "again"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await client.post("/v1/chat/completions", json=body, headers=OPENAI_AUTH)
    usage = json.loads(sse_payloads(response.text)[-2])["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 1280


async def test_responses_api_reports_cached_input_tokens(client: httpx.AsyncClient) -> None:
    async def respond(question: str) -> dict[str, Any]:
        body = {"model": "gpt", "instructions": LONG, "input": question}
        response = await client.post("/v1/responses", json=body, headers=OPENAI_AUTH)
        usage: dict[str, Any] = response.json()["usage"]
        return usage

    assert (await respond("one?"))["input_tokens_details"]["cached_tokens"] == 0
    second = await respond("two?")
    shared = 2 * MESSAGE_OVERHEAD_TOKENS + LONG_TOKENS
    assert second["input_tokens_details"]["cached_tokens"] == largest_step(shared)
    assert second["input_tokens"] == shared + estimate_tokens("two?")


async def test_reset_clears_caches_and_clock(client: httpx.AsyncClient) -> None:
    await chat(client, "one")
    await client.post("/_sim/clock", json={"advance_s": 5})
    assert (await client.post("/_sim/clock", json={"advance_s": -1})).status_code == 400
    await client.post("/_sim/reset")
    assert (await client.get("/_sim/clock")).json()["offset_s"] == 0
    assert (await chat(client, "one"))["prompt_tokens_details"]["cached_tokens"] == 0


# -------------------------------------------------------------------- Gemini explicit


def cache_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "models/gem",
        "displayName": "my-cache",
        "system_instruction": {"parts": [{"text": LONG}]},
        "contents": [{"role": "user", "parts": [{"text": "the document"}]}],
        **extra,
    }


CACHE_TOKENS = 2 * MESSAGE_OVERHEAD_TOKENS + LONG_TOKENS + estimate_tokens("the document")


async def generate(
    client: httpx.AsyncClient, body: dict[str, Any], url: str = GEMINI_URL
) -> httpx.Response:
    return await client.post(url, json=body, headers=GEMINI_AUTH)


def question(text: str = "what is in it?", **extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


async def test_gemini_cached_content_lifecycle(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1beta/cachedContents", json=cache_body(), headers=GEMINI_AUTH)
    assert created.status_code == 200
    resource = created.json()
    name = resource["name"]
    assert resource["model"] == "models/gem" and resource["displayName"] == "my-cache"
    assert resource["usageMetadata"] == {"totalTokenCount": CACHE_TOKENS}
    lifetime = parse_timestamp(resource["expireTime"]) - parse_timestamp(resource["createTime"])
    assert lifetime == pytest.approx(3600, abs=0.01)  # cached_content_ttl_s default

    # LiteLLM's list and create path ({api_base}/models/{model}:cachedContents) answers too
    listed = await client.get("/v1beta/models/gem:cachedContents", headers=GEMINI_AUTH)
    assert [c["name"] for c in listed.json()["cachedContents"]] == [name]
    got = await client.get(f"/v1beta/{name}", headers=GEMINI_AUTH)
    assert got.json() == resource

    used = await generate(client, question(cachedContent=name))
    assert used.status_code == 200
    usage = used.json()["usageMetadata"]
    own = MESSAGE_OVERHEAD_TOKENS + estimate_tokens("what is in it?")
    assert usage["promptTokenCount"] == CACHE_TOKENS + own
    assert usage["cachedContentTokenCount"] == CACHE_TOKENS
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": CACHE_TOKENS}]
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]

    stream_url = "/v1beta/models/gem:streamGenerateContent?alt=sse"
    streamed = await generate(client, question(cachedContent=name), stream_url)
    last = json.loads(sse_payloads(streamed.text)[-1])
    assert last["usageMetadata"]["cachedContentTokenCount"] == CACHE_TOKENS

    patched = await client.patch(f"/v1beta/{name}", json={"ttl": "60s"}, headers=GEMINI_AUTH)
    assert parse_timestamp(patched.json()["expireTime"]) - parse_timestamp(
        patched.json()["updateTime"]
    ) == pytest.approx(60, abs=0.01)
    await client.post("/_sim/clock", json={"advance_s": 61})
    assert (await generate(client, question(cachedContent=name))).status_code == 403
    assert (await client.get("/v1beta/cachedContents", headers=GEMINI_AUTH)).json() == {}

    storage = (await client.get("/_sim/cached_contents")).json()
    assert storage["active"] == 0
    record = storage["caches"][0]
    assert record["state"] == "expired" and record["tokens"] == CACHE_TOKENS
    assert record["stored_s"] == pytest.approx(60, abs=0.5)
    assert storage["token_hours"] == pytest.approx(CACHE_TOKENS * 60 / 3600, rel=0.01)


async def test_gemini_cache_storage_until_delete(client: httpx.AsyncClient) -> None:
    body = cache_body(ttl="86400s")
    name = (await client.post("/cachedContents", json=body, headers=GEMINI_AUTH)).json()["name"]
    await client.post("/_sim/clock", json={"advance_s": 1800})
    live = (await client.get("/_sim/cached_contents")).json()
    assert live["active"] == 1 and live["active_tokens"] == CACHE_TOKENS
    assert live["token_hours"] == pytest.approx(CACHE_TOKENS / 2, rel=0.001)
    deleted = await client.delete(f"/v1beta/{name}", headers=GEMINI_AUTH)
    assert deleted.status_code == 200 and deleted.json() == {}
    await client.post("/_sim/clock", json={"advance_s": 3600})
    after = (await client.get("/_sim/cached_contents")).json()
    assert after["caches"][0]["state"] == "deleted"
    assert after["token_hours"] == pytest.approx(CACHE_TOKENS / 2, rel=0.001)
    assert (await client.delete(f"/v1beta/{name}", headers=GEMINI_AUTH)).status_code == 403


async def test_gemini_cache_errors(client: httpx.AsyncClient) -> None:
    url = "/v1beta/cachedContents"
    assert (await client.post(url, json=cache_body())).status_code == 401
    small = {"model": "models/gem", "contents": [{"role": "user", "parts": [{"text": "tiny"}]}]}
    too_small = await client.post(url, json=small, headers=GEMINI_AUTH)
    assert too_small.status_code == 400 and "too small" in too_small.json()["error"]["message"]
    for bad in (
        {k: v for k, v in cache_body().items() if k != "model"},
        cache_body(ttl="10m"),
        cache_body(contents=[{"role": "user"}]),
    ):
        assert (await client.post(url, json=bad, headers=GEMINI_AUTH)).status_code == 400, bad
    wrong_api = await client.post(url, json=cache_body(model="models/gpt"), headers=GEMINI_AUTH)
    assert wrong_api.status_code == 404

    name = (await client.post(url, json=cache_body(), headers=GEMINI_AUTH)).json()["name"]
    unknown = await generate(client, question(cachedContent="cachedContents/nope"))
    assert unknown.status_code == 403
    assert unknown.json()["error"]["status"] == "PERMISSION_DENIED"
    other_model = await generate(
        client, question(cachedContent=name), "/v1beta/models/gem-2:generateContent"
    )
    assert other_model.status_code == 400 and "same" in other_model.json()["error"]["message"]
    system = {"parts": [{"text": "extra"}]}
    conflict = await generate(client, question(cachedContent=name, system_instruction=system))
    assert conflict.status_code == 400
    assert "system_instruction" in conflict.json()["error"]["message"]

    await client.post(url, json=cache_body(), headers=GEMINI_AUTH)
    page = (await client.get(url, params={"pageSize": 1}, headers=GEMINI_AUTH)).json()
    assert len(page["cachedContents"]) == 1 and page["nextPageToken"] == "1"
    rest = await client.get(url, params={"pageSize": 1, "pageToken": 1}, headers=GEMINI_AUTH)
    assert "nextPageToken" not in rest.json()
    bad_page = await client.get(url, params={"pageSize": "x"}, headers=GEMINI_AUTH)
    assert bad_page.status_code == 400


async def test_gemini_cached_tools_are_used(client: httpx.AsyncClient) -> None:
    declaration = {"name": "lookup", "parameters": {"type": "object", "properties": {}}}
    body = cache_body(tools=[{"functionDeclarations": [declaration]}])
    name = (await client.post("/v1beta/cachedContents", json=body, headers=GEMINI_AUTH)).json()[
        "name"
    ]
    answer = (await generate(client, question(cachedContent=name))).json()
    assert answer["candidates"][0]["content"]["parts"][0]["functionCall"]["name"] == "lookup"


async def test_gemini_implicit_caching(client: httpx.AsyncClient) -> None:
    def body(text: str) -> dict[str, Any]:
        return question(text, system_instruction={"parts": [{"text": LONG}]})

    first = (await generate(client, body("one?"))).json()["usageMetadata"]
    assert "cachedContentTokenCount" not in first
    second = (await generate(client, body("two?"))).json()["usageMetadata"]
    shared = 2 * MESSAGE_OVERHEAD_TOKENS + LONG_TOKENS
    assert second["cachedContentTokenCount"] == largest_step(shared)
    assert "cacheTokensDetails" not in second
    assert second["promptTokenCount"] == shared + estimate_tokens("two?")


# ------------------------------------------------------------- Gemini structured output


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 2},
        "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "minItems": 2},
        "note": {"type": ["string", "null"]},
    },
    "required": ["city", "days", "tags"],
    "$defs": {"Tag": {"type": "string", "enum": ["warm", "cold"]}},
    "additionalProperties": False,
}


@pytest.mark.parametrize("stream", [False, True])
async def test_gemini_structured_output(client: httpx.AsyncClient, stream: bool) -> None:
    url = "/v1beta/models/gem:streamGenerateContent?alt=sse" if stream else GEMINI_URL

    async def text_of(config: dict[str, Any]) -> str:
        response = await generate(client, question("weather?", generationConfig=config), url)
        if not stream:
            return str(response.json()["candidates"][0]["content"]["parts"][0]["text"])
        chunks = [json.loads(p) for p in sse_payloads(response.text)]
        return "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)

    json_schema = {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}
    answer = json.loads(await text_of(json_schema))
    jsonschema.validate(answer, SCHEMA)
    assert answer == {"city": "sim", "days": 2, "tags": ["warm", "warm"], "note": "sim"}

    openapi = {
        "type": "OBJECT",
        "properties": {"ok": {"type": "BOOLEAN"}, "n": {"type": "NUMBER", "nullable": True}},
        "propertyOrdering": ["ok", "n"],
    }
    snake = {"response_mime_type": "application/json", "response_schema": openapi}
    assert json.loads(await text_of(snake)) == {"ok": True, "n": 1}
    newer = {"responseFormat": {"text": {"mimeType": "APPLICATION_JSON", "schema": openapi}}}
    assert json.loads(await text_of(newer)) == {"ok": True, "n": 1}
    loose = json.loads(await text_of({"responseMimeType": "application/json"}))
    assert loose["answer"].startswith("Simulated reply from gem")
    enum = {"responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "enum": ["B"]}}
    assert await text_of(enum) == "B"
