"""The pipeline through its real front and adapters, with a fake upstream (no LiteLLM).

Every router action on every chat protocol, plain and streaming; the caches; access
control; and that every request is finished exactly once (slot released, one record,
usage counted once) however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import anthropic
import openai
import pytest

from extensions.pipeline.errors import UpstreamFailed
from extensions.pipeline.upstream import FakeModel
from tests.support.fake_gateway import KEYS, MASTER, FakeGateway, fake_gateway

pytestmark = pytest.mark.unit
PROTOCOLS = ("chat", "responses", "messages")


async def ask(
    gw: FakeGateway,
    protocol: str,
    model: str,
    text: str,
    stream: bool = False,
    key: str = MASTER,
    **extra: Any,
) -> tuple[str, Mapping[str, str]]:
    """One request through the official SDK of ``protocol``: the answer's text and headers."""
    if protocol == "chat":
        chat = gw.openai(key).chat.completions.with_raw_response
        raw = await chat.create(
            model=model, messages=[{"role": "user", "content": text}], stream=stream, **extra
        )
        if not stream:
            return (raw.parse().choices[0].message.content or ""), raw.headers
        parts = [c.choices[0].delta.content or "" async for c in raw.parse() if c.choices]
        return "".join(parts), raw.headers
    if protocol == "responses":
        responses = gw.openai(key).responses.with_raw_response
        raw = await responses.create(model=model, input=text, stream=stream, **extra)
        if not stream:
            return raw.parse().output_text, raw.headers
        deltas = [e.delta async for e in raw.parse() if e.type == "response.output_text.delta"]
        return "".join(deltas), raw.headers
    messages = gw.anthropic(key).messages.with_raw_response
    raw = await messages.create(
        model=model,
        max_tokens=300,
        stream=stream,
        messages=[{"role": "user", "content": text}],
        **extra,
    )
    parsed = await raw.parse()
    if not stream:
        return "".join(b.text for b in parsed.content if b.type == "text"), raw.headers
    texts = [
        e.delta.text
        async for e in parsed
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    return "".join(texts), raw.headers


@pytest.fixture
def gw() -> FakeGateway:
    return fake_gateway()


ACTIONS = [
    ("I forgot my password", "RESPOND", "Reset it at https://r.example."),
    ("I was charged twice", "HANDOFF", "An operator will help."),
    ("tell me a joke", "REFUSE", "Sorry, only Acme questions."),
    ("freeze", "CLARIFY", "freeze your account or fix a problem with the app"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("query", "action", "answer"), ACTIONS)
async def test_router_answers_on_every_protocol(
    gw: FakeGateway, protocol: str, stream: bool, query: str, action: str, answer: str
) -> None:
    text, headers = await ask(gw, protocol, "support-bot", query, stream)
    assert answer in text
    assert headers["x-gateway-action"] == action
    assert headers["x-gateway-router"] == "support-bot"
    assert headers["x-gateway-intent"]  # REFUSE names its intent too (out_of_scope)
    assert gw.upstream.calls == []  # never an upstream call
    assert [r["action"] for r in gw.observer.records] == [action]
    assert await gw.requests_counted() == 1
    if action == "HANDOFF":  # delivered off the request path
        assert gw.pipeline.decider.handoffs is not None
        await gw.pipeline.decider.handoffs.drain()
        assert gw.sinks[0]["id"] == headers["x-gateway-handoff-id"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_route_forwards_to_the_intents_model(
    gw: FakeGateway, protocol: str, stream: bool
) -> None:
    gw.upstream.models["claude-sim"] = FakeModel(text="restart the app and try again")
    text, headers = await ask(gw, protocol, "support-bot", "my app keeps crashing", stream)
    assert text == "restart the app and try again"
    assert headers["x-gateway-action"] == "ROUTE"
    assert headers["x-gateway-model-group"] == "claude-sim"
    assert headers["x-gateway-cache"] == "MISS"
    [call] = gw.upstream.calls
    assert call.model_group == "claude-sim"
    assert call.request.messages[0] == {"role": "system", "content": "be technical"}
    [record] = gw.observer.records
    assert record["tokens"] == {"prompt": 10, "completion": 20, "cached": 0, "cache_write": 0}
    assert record["cost_usd"] == pytest.approx(0.001)
    assert gw.in_flight() == 0


async def test_clarify_round_trip_resolves_the_intent(gw: FakeGateway) -> None:
    client = gw.openai()
    first = await client.chat.completions.create(
        model="support-bot", messages=[{"role": "user", "content": "freeze"}]
    )
    question = first.choices[0].message.content or ""
    raw = await client.chat.completions.with_raw_response.create(
        model="support-bot",
        messages=[
            {"role": "user", "content": "freeze"},
            {"role": "assistant", "content": question},
            {"role": "user", "content": "freeze my account please"},
        ],
    )
    assert raw.headers["x-gateway-action"] == "RESPOND"
    assert raw.headers["x-gateway-intent"] == "freeze"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_second_identical_request_is_an_exact_hit(gw: FakeGateway, protocol: str) -> None:
    first, h1 = await ask(gw, protocol, "gpt-sim", "What are your opening hours?")
    second, h2 = await ask(gw, protocol, "gpt-sim", "What are your opening hours?")
    assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("MISS", "HIT_EXACT")
    assert first == second and len(gw.upstream.calls) == 1
    assert h2["x-gateway-model-group"] == "gpt-sim" and h2["x-gateway-provider"] == "gateway"
    hit = gw.observer.records[1]
    assert hit["cost_usd"] == 0 and hit["saved_usd"] == pytest.approx(0.001)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_paraphrase_is_a_semantic_hit(gw: FakeGateway, protocol: str) -> None:
    await ask(gw, protocol, "gpt-sim", "What are your opening hours?")
    _, headers = await ask(gw, protocol, "gpt-sim", "what are your opening hours")
    assert headers["x-gateway-cache"] == "HIT_SEMANTIC"
    assert float(headers["x-gateway-cache-similarity"]) >= 0.9
    assert len(gw.upstream.calls) == 1


async def test_streamed_answer_is_cached_and_served_to_another_protocol(gw: FakeGateway) -> None:
    """A chat answer converts losslessly (text only): the same neutral request through the
    Responses API is served from it."""
    text, _ = await ask(gw, "chat", "gpt-sim", "Explain the refund policy", stream=True)
    again, headers = await ask(gw, "responses", "gpt-sim", "Explain the refund policy")
    assert headers["x-gateway-cache"] == "HIT_EXACT" and again == text


async def test_structured_output_is_never_a_template(gw: FakeGateway) -> None:
    gw.upstream.models["gpt-sim"] = FakeModel(text='{"answer": "see the reset page"}')
    raw = await gw.openai().chat.completions.with_raw_response.create(
        model="support-bot",
        messages=[{"role": "user", "content": "I forgot my password"}],
        response_format={"type": "json_object"},
    )
    assert raw.headers["x-gateway-action"] == "ROUTE"
    assert raw.headers["x-gateway-structured-output"] == "model"
    assert raw.parse().choices[0].message.content == '{"answer": "see the reset page"}'
    assert gw.upstream.calls[0].model_group == "gpt-sim"  # a respond intent: the default model


async def test_embeddings_miss_counts_one_request_then_hits(gw: FakeGateway) -> None:
    client = gw.openai()
    first = await client.embeddings.with_raw_response.create(model="embed-sim", input=["a", "b"])
    second = await client.embeddings.with_raw_response.create(model="embed-sim", input=["a", "b"])
    assert first.headers["x-gateway-cache"] == "MISS"
    assert second.headers["x-gateway-cache"] == "HIT_EXACT"
    assert len(second.parse().data) == 2
    assert await gw.requests_counted() == 2 and len(gw.upstream.calls) == 1


# -- access control -------------------------------------------------------------------------


async def test_no_key_and_malformed_keys_get_401(gw: FakeGateway) -> None:
    async with gw.http() as http:
        body = {"model": "gpt-sim", "messages": [{"role": "user", "content": "x"}]}
        for headers in (
            {},
            {"authorization": f"Basic {MASTER}"},
            {"authorization": f"Bearer Bearer {MASTER}"},
            {"authorization": "Bearer nope"},
            {"x-api-key": MASTER},
        ):
            r = await http.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["type"] == "authentication_error"
        r = await http.post(
            "/v1/messages",
            json={
                "model": "gpt-sim",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
            },
            headers={"x-api-key": MASTER},
        )
        assert r.status_code == 200  # x-api-key is the Anthropic protocol's header
    assert len(gw.observer.records) == 6 and gw.in_flight() == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_key_reaches_only_its_models(gw: FakeGateway, protocol: str) -> None:
    with pytest.raises((openai.PermissionDeniedError, anthropic.PermissionDeniedError)):
        await ask(gw, protocol, "gpt-sim", "hello", key=KEYS["claude-only"])
    _, headers = await ask(gw, protocol, "claude-sim", "hello", key=KEYS["claude-only"])
    assert headers["x-gateway-model-group"] == "claude-sim"
    assert gw.upstream.calls[0].fallbacks["claude-sim"] == ()  # gemini-sim is not granted


async def test_a_key_reaches_only_its_endpoints(gw: FakeGateway) -> None:
    await ask(gw, "chat", "gpt-sim", "hi", key=KEYS["chat-only"])
    with pytest.raises(openai.PermissionDeniedError):
        await ask(gw, "responses", "gpt-sim", "hi", key=KEYS["chat-only"])


@pytest.mark.parametrize(
    "field",
    [
        "fallbacks",
        "api_base",
        "user_config",
        "mock_response",
        "litellm_logging_obj",
        "api_key",
        "base_url",
    ],
)
async def test_routing_controls_are_refused(gw: FakeGateway, field: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await gw.openai(KEYS["claude-only"]).chat.completions.create(
            model="claude-sim",
            messages=[{"role": "user", "content": "x"}],
            extra_body={field: ["gpt-sim"]},
        )
    assert "not allowed" in caught.value.message
    assert gw.upstream.calls == [] and gw.in_flight() == 0


async def test_unknown_fields_and_models_are_refused(gw: FakeGateway) -> None:
    client = gw.openai()
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument"):
        await client.chat.completions.create(
            model="gpt-sim",
            messages=[{"role": "user", "content": "x"}],
            extra_body={"frobnicate": 1},
        )
    with pytest.raises(openai.BadRequestError, match="Unknown model"):
        await client.chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        await client.chat.completions.create(
            model="embed-sim", messages=[{"role": "user", "content": "x"}]
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_parallel_limit_applies_and_the_slot_is_freed(gw: FakeGateway, protocol: str) -> None:
    gw.upstream.models["gpt-sim"] = FakeModel(delay_s=0.2)
    slow = asyncio.create_task(
        ask(gw, protocol, "gpt-sim", "one", key=KEYS["limited"], **_no_cache(protocol))
    )
    await asyncio.sleep(0.05)
    with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)):
        await ask(gw, protocol, "gpt-sim", "two", key=KEYS["limited"])
    await slow
    assert gw.in_flight() == 0
    await ask(gw, protocol, "gpt-sim", "three", key=KEYS["limited"])  # the slot is free again


def _no_cache(protocol: str) -> dict[str, Any]:
    return {"extra_body": {"cache": {"no-cache": True, "no-store": True}}}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_budget_is_charged_and_enforced_on_every_protocol(
    gw: FakeGateway, protocol: str
) -> None:
    for i in range(3):  # $0.001 each: the third finds $0.002 of $0.0025 spent and passes
        await ask(gw, protocol, "gpt-sim", f"question {i}", key=KEYS["budget"])
    with pytest.raises((openai.RateLimitError, anthropic.RateLimitError)) as caught:
        await ask(gw, protocol, "gpt-sim", "one more", key=KEYS["budget"])
    assert "budget" in str(caught.value)
    report = await gw.usage.report()
    assert report["key"]["budget"]["spend_usd"] == pytest.approx(0.003)
    assert report["key"]["budget"]["requests"] == 3


# -- finishing exactly once -------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (502, openai.InternalServerError),
        (429, openai.RateLimitError),
        (400, openai.BadRequestError),
    ],
)
async def test_upstream_failure_is_finished_once(
    gw: FakeGateway, protocol: str, stream: bool, status: int, error: type
) -> None:
    gw.upstream.models["gpt-sim"] = FakeModel(fail=UpstreamFailed(status, "boom"))
    with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as caught:
        await ask(gw, protocol, "gpt-sim", "hello", stream, key=KEYS["limited"])
    assert caught.value.status_code == status
    [record] = gw.observer.records
    assert record["status"] == status and record["error"]["message"] == "boom"
    assert gw.in_flight() == 0 and len(gw.inflight) == 0
    assert await gw.requests_counted() == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_stream_breaking_midway_is_finished_once(gw: FakeGateway, protocol: str) -> None:
    gw.upstream.models["gpt-sim"] = FakeModel(fail=UpstreamFailed(502, "cut"), fail_mid_stream=True)
    with pytest.raises(Exception):  # noqa: B017 - each SDK reports the error event its own way
        await ask(gw, protocol, "gpt-sim", "hello", True, key=KEYS["limited"])
    [record] = gw.observer.records
    assert record["status"] == 502
    assert gw.in_flight() == 0 and gw.upstream.open_streams == 0
    assert await gw.cache.cache.store.get("anything") is None


async def _disconnecting_request(
    gw: FakeGateway, body: bytes, path: str, after_s: float
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(after_s)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [
        (b"authorization", f"Bearer {KEYS['limited']}".encode()),
        (b"content-type", b"application/json"),
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": headers,
        "query_string": b"",
    }
    await gw.front(scope, receive, send)
    return sent


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_client_going_away_cancels_the_call_and_frees_the_slot(
    gw: FakeGateway, stream: bool
) -> None:
    gw.upstream.models["gpt-sim"] = FakeModel(delay_s=0.3)
    body = (
        b'{"model": "gpt-sim", "stream": %s, "messages": [{"role": "user", "content": '
        b'"hello there"}]}' % (b"true" if stream else b"false")
    )
    await _disconnecting_request(gw, body, "/v1/chat/completions", 0.1)
    [record] = gw.observer.records
    assert record["status"] == 499
    assert gw.in_flight() == 0 and gw.upstream.open_streams == 0
    _, headers = await ask(gw, "chat", "gpt-sim", "hello there")
    assert headers["x-gateway-cache"] == "MISS"  # the broken answer was never stored


async def test_a_bug_in_a_stage_is_a_500_and_still_finished(
    gw: FakeGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(gw.pipeline.decider, "decide", broken)
    with pytest.raises(openai.InternalServerError):
        await ask(gw, "chat", "gpt-sim", "hello", key=KEYS["limited"])
    assert gw.in_flight() == 0 and gw.observer.records[0]["status"] == 500


# -- the front's routes -------------------------------------------------------------------


async def test_deny_by_default_outside_the_llm_endpoints(gw: FakeGateway) -> None:
    async with gw.http() as http:
        app = {"authorization": f"Bearer {KEYS['app']}"}
        master = {"authorization": f"Bearer {MASTER}"}
        for path in (
            "/model/info",
            "/router/settings",
            "/openai/v1/chat/completions",
            "/metrics/",
            "/METRICS",
            "//metrics",
            "/gateway/usage",
            "/nope",
        ):
            assert (await http.get(path)).status_code == 401, path
            assert (await http.get(path, headers=app)).status_code == 403, path
        r = await http.get("/model/info", headers=master)
        assert (r.status_code, r.text) == (200, "litellm")  # handed to LiteLLM's app
        assert (await http.get("/gateway/health/live")).status_code == 200
        assert (await http.get("/gateway/health/ready")).status_code == 200
        r = await http.get("/v1/chat/completions", headers=app)
        assert r.status_code == 405 and r.headers["allow"] == "POST"


async def test_model_list_shows_what_the_key_may_use(gw: FakeGateway) -> None:
    models = await gw.openai(KEYS["claude-only"]).models.list()
    assert [m.id for m in models.data] == ["claude-sim"]
    everything = await gw.openai().models.list()
    assert "support-bot" in [m.id for m in everything.data]
    listed = await gw.anthropic(KEYS["app"]).models.list()
    assert "support-bot" in [m.id for m in listed.data]


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/model/info"]
)
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_body_limit_holds_on_every_route(gw: FakeGateway, path: str, declared: bool) -> None:
    limit = gw.front.generations.parts.config.requests.max_body_bytes
    body = b"x" * (limit + 10)
    sent: list[dict[str, Any]] = []
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"authorization", f"Bearer {MASTER}".encode())]
    if declared:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    await gw.front(scope, receive, send)
    assert sent[0]["status"] == 413


# -- budget ladder and PII guardrail --------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_budget_ladder_degrades_instead_of_refusing(gw: FakeGateway, protocol: str) -> None:
    key = KEYS["frugal"]  # $0.0025 a day: cheaper model from 30% spent, cache only from 70%
    _, first = await ask(gw, protocol, "gpt-sim", "What is the refund policy?", key=key)
    assert first["x-gateway-model-group"] == "gpt-sim" and "x-gateway-degraded" not in first
    _, second = await ask(gw, protocol, "gpt-sim", "How do I export data?", key=key)
    assert second["x-gateway-model-group"] == "gpt-sim-mini"
    assert second["x-gateway-degraded"].startswith("gpt-sim -> gpt-sim-mini (budget 40% spent")
    text, third = await ask(gw, protocol, "gpt-sim", "A brand new question", key=key)
    assert third["x-gateway-degraded"].startswith("cache_only (budget 80% spent")
    assert "nearly used up its budget" in text
    _, fourth = await ask(gw, protocol, "gpt-sim", "What is the refund policy?", key=key)
    assert fourth["x-gateway-cache"] == "HIT_EXACT"  # what the gateway has is still served
    assert len(gw.upstream.calls) == 2
    assert [r.get("degraded") is not None for r in gw.observer.records] == [
        False, True, True, False]  # fmt: skip


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_pii_guardrail_on_every_protocol(protocol: str) -> None:
    gw = fake_gateway(overrides={"guardrails": {"routes": {
        "gpt-sim": {"action": "redact"}, "claude-sim": {"action": "block"}}}})  # fmt: skip
    text = "mail me at jane.doe@example.com, card 4111 1111 1111 1111"
    _, headers = await ask(gw, protocol, "gpt-sim", text)
    assert headers["x-gateway-pii"] == "redacted:card,email"
    sent = gw.upstream.calls[0].request.messages[-1]["content"]
    assert "jane.doe" not in str(sent) and "4111" not in str(sent)
    with pytest.raises((openai.BadRequestError, anthropic.BadRequestError)) as caught:
        await ask(gw, protocol, "claude-sim", text)
    assert "card, email" in str(caught.value) and "4111" not in str(caught.value)
    assert len(gw.upstream.calls) == 1
    assert gw.observer.records[-1]["pii"] == {"action": "blocked", "kinds": ["card", "email"]}


async def test_audit_evicts_a_wrong_semantic_hit_and_keeps_a_right_one() -> None:
    gw = fake_gateway(audit=True)
    auditor = gw.pipeline.auditor
    assert auditor is not None
    await ask(gw, "chat", "gpt-sim", "What are your opening hours?")
    _, right = await ask(gw, "chat", "gpt-sim", "what are your opening hours")
    assert right["x-gateway-cache"] == "HIT_SEMANTIC"
    await auditor.drain()
    assert (auditor.counters.passed, auditor.counters.failed) == (1, 0)
    gw.upstream.models["gpt-sim"] = FakeModel(text="Paris is the capital of France.")
    await ask(gw, "chat", "gpt-sim", "How do I export my data?")  # a wrong entry, planted
    gw.upstream.models["gpt-sim"] = FakeModel()  # the model's real answer again
    wrong, hit = await ask(gw, "chat", "gpt-sim", "how do i export my data")
    assert hit["x-gateway-cache"] == "HIT_SEMANTIC" and wrong.startswith("Paris")
    await auditor.drain()
    assert (auditor.counters.passed, auditor.counters.failed) == (1, 1)
    assert auditor.counters.precision == 0.5
    again, headers = await ask(gw, "chat", "gpt-sim", "how do i export my data")
    assert headers["x-gateway-cache"] == "MISS" and again == "fake answer"  # evicted
