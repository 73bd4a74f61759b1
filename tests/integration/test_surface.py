"""Deny by default, checked against LiteLLM's whole surface through the real proxy.

The sweep reads the running proxy's ``/openapi.json`` and calls every path and method with
no key and with a gateway key granted one model: nothing answers 2xx without a key but the
documented public routes, and a gateway key gets 2xx only on the LLM endpoints and the
model list. It fails the day a LiteLLM upgrade adds a route that is open. The regressions
below are the red-team findings of issue 14, each through the real proxy.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.test_bad_input import (
    FUZZ,
    any_messages,
    chat_bodies,
    embedding_bodies,
    encoded,
    json_values,
    parts,
    texts,
    valid_messages,
)
from tests.support.stack import Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration
KEY = "sk-test-surface-one-model-3e9a"
PUBLIC = {
    ("GET", "/gateway/health/live"),
    ("GET", "/gateway/health/ready"),
    ("GET", "/gateway/dashboard"),
}
GATEWAY_KEY_OK = {
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/responses"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/embeddings"),
    ("POST", "/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/models"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/models/{model_id}"),
}


@pytest.fixture(scope="module")
def proxy(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["access"] = {
            "keys": [
                {
                    "alias": "one-model",
                    "owner": "t",
                    "env": "TEST_SURFACE_KEY",
                    "models": ["claude-sim"],
                    "max_parallel": 4,
                }
            ]
        }

    config = derive_gateway_config(tmp_path_factory.mktemp("surface"), edit)
    # provider keys exported as an operator would: they must never reach a gateway key
    env = {
        "TEST_SURFACE_KEY": KEY,
        "OPENAI_API_KEY": "sk-operator-openai-secret-1",
        "ANTHROPIC_API_KEY": "sk-operator-anthropic-secret-2",
    }
    started = Proxy(log_dir, sim, gateway_config=config, extra_env=env, name="surface").start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def http(proxy: Proxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.base_url, timeout=30) as client:
        yield client


def routes(http: httpx.Client, master: str) -> list[tuple[str, str]]:
    spec = http.get("/openapi.json", headers={"authorization": f"Bearer {master}"}).json()
    return [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "claude-sim", path)


def test_every_route_is_closed_unless_allowed(http: httpx.Client, proxy: Proxy) -> None:
    found = routes(http, proxy.master_key)
    assert len(found) > 500  # LiteLLM's whole surface, not a stub
    open_without_key, open_to_gateway_key = [], []
    for method, path in found:
        url = concrete(path)
        bare = http.request(method, url, json={})
        assert bare.status_code < 500, (method, path, bare.status_code)
        if bare.status_code < 300 and (method, path) not in PUBLIC:
            open_without_key.append((method, path))
        keyed = http.request(method, url, json={}, headers={"authorization": f"Bearer {KEY}"})
        assert keyed.status_code < 500, (method, path, keyed.status_code)
        if keyed.status_code < 300 and (method, path) not in GATEWAY_KEY_OK | PUBLIC:
            open_to_gateway_key.append((method, path))
    assert open_without_key == []
    assert open_to_gateway_key == []
    usage = http.get("/gateway/usage", headers={"authorization": f"Bearer {proxy.master_key}"})
    assert usage.json()["in_flight"].get("key:one-model", 0) == 0


@pytest.mark.parametrize(
    "path",
    [
        "/openai/v1/chat/completions",
        "/anthropic/v1/messages",
        "/openai_passthrough/v1/chat/completions",
        "/gemini/v1beta/x",
        "/langfuse/x",
        "/v1/moderations",
        "/v1/completions",
        "/v1/rerank",
        "/v1/images/generations",
        "/utils/token_counter",
    ],
)
def test_pass_through_and_other_llm_routes_are_closed_to_gateway_keys(
    http: httpx.Client, clean_sim: SimProvider, path: str
) -> None:
    body = {"model": "claude-sim", "messages": [{"role": "user", "content": "hi"}]}
    r = http.post(path, json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 403
    assert "sk-operator" not in r.text
    assert http.post(path, json=body).status_code == 401
    assert clean_sim.stats()["total"] == 0


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/metrics/",
        "/METRICS",
        "//metrics",
        "/gateway/usage/",
        "/model/info",
        "/router/settings",
        "/cache/settings",
        "/credentials",
        "/routes",
        "/fallback/claude-sim",
        "/debug/asyncio-tasks",
        "/health",
    ],
)
def test_operator_and_admin_routes_need_the_master_key(
    http: httpx.Client, proxy: Proxy, clean_sim: SimProvider, path: str
) -> None:
    assert http.get(path, headers={"authorization": f"Bearer {KEY}"}).status_code == 403
    assert http.get(path).status_code == 401
    assert clean_sim.stats()["total"] == 0  # /health would call every deployment


def test_fallbacks_never_reach_a_group_the_key_may_not_use(
    http: httpx.Client, clean_sim: SimProvider
) -> None:
    clean_sim.set_model("sim-claude", {"faults": [{"kind": "http_500", "rate": 1.0}]})
    body = {
        "model": "claude-sim",
        "messages": [{"role": "user", "content": "hi there"}],
        "cache": {"no-cache": True},
    }
    r = http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 502  # claude-sim fails; its fallback gemini-sim is not granted
    assert clean_sim.count("sim-gemini") == 0
    asked = {**body, "fallbacks": ["gemini-sim"]}
    r = http.post("/v1/chat/completions", json=asked, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400 and "not allowed" in r.json()["error"]["message"]
    assert clean_sim.count("sim-gemini") == 0


def test_fallback_answer_names_the_group_that_answered(
    http: httpx.Client, proxy: Proxy, clean_sim: SimProvider
) -> None:
    clean_sim.set_model("sim-claude", {"faults": [{"kind": "http_500", "rate": 1.0}]})
    body = {
        "model": "claude-sim",
        "messages": [{"role": "user", "content": "fall over"}],
        "cache": {"no-cache": True},
    }
    r = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {proxy.master_key}"}
    )
    assert r.status_code == 200
    assert r.headers["x-gateway-model-group"] == "gemini-sim" == r.json()["model"]
    assert r.headers["x-gateway-attempted-fallbacks"] == "1"


@pytest.mark.parametrize(
    "field",
    [
        {"api_base": "http://127.0.0.1:1"},
        {"user_config": {}},
        {"mock_response": "pwned"},
        {"litellm_metadata": {}},
        {"metadata": {"model_group": "x"}, "x": 1},
    ],
)
def test_client_routing_controls_are_refused(http: httpx.Client, field: dict[str, Any]) -> None:
    body = {"model": "claude-sim", "messages": [{"role": "user", "content": "hi"}], **field}
    r = http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert r.status_code == 400


def test_huge_model_names_do_not_grow_the_metrics(http: httpx.Client, proxy: Proxy) -> None:
    master = {"authorization": f"Bearer {proxy.master_key}"}
    before = len(http.get("/metrics", headers=master).content)
    for _ in range(5):
        body = {"model": "m" * 200_000, "messages": [{"role": "user", "content": "x"}]}
        r = http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"})
        assert r.status_code in (400, 403)
    assert len(http.get("/metrics", headers=master).content) < before + 20_000


def test_no_internal_headers_reach_clients(http: httpx.Client, proxy: Proxy) -> None:
    body = {"model": "claude-sim", "messages": [{"role": "user", "content": "headers?"}]}
    for key in (KEY, proxy.master_key):
        r = http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
        leaked = [h for h in r.headers if h.startswith(("llm_provider", "x-litellm"))]
        assert leaked == [] and "127.0.0.1" not in str(r.headers)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages",
        "/v1/responses",
        "/v1/completions",
        "/utils/token_counter",
        "/v1/chat/completions",
    ],
)
def test_chunked_bodies_over_the_limit_are_413(http: httpx.Client, proxy: Proxy, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1_000_000

    r = http.post(path, content=chunks(), headers={"authorization": f"Bearer {proxy.master_key}"})
    assert r.status_code == 413


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"[]",
        b'"x"',
        b"5",
        b"{",
        b'{"model": ["a"]}',
        b'{"model": "claude-sim", "metadata": null}',
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/v1/messages",
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/moderations",
        "/v1/rerank",
        "/v1/audio/speech",
        "/v1/images/generations",
    ],
)
def test_malformed_bodies_are_4xx_with_and_without_a_key(
    http: httpx.Client, path: str, body: bytes
) -> None:
    for headers in ({}, {"authorization": f"Bearer {KEY}"}):
        r = http.post(path, content=body, headers={**headers, "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text[:200])


def test_long_prompts_are_never_semantic_hits(http: httpx.Client, proxy: Proxy) -> None:
    preamble = " ".join(["Please read these instructions carefully before answering."] * 8)
    master = {"authorization": f"Bearer {proxy.master_key}"}
    for word in ("cat", "dog"):
        body = {
            "model": "gpt-sim",
            "messages": [
                {"role": "user", "content": f"{preamble} Translate the word {word} into French."}
            ],
        }
        r = http.post("/v1/chat/completions", json=body, headers=master)
        assert r.status_code == 200
        assert r.headers["x-gateway-cache"] != "HIT_SEMANTIC"


def test_client_ttl_is_capped(http: httpx.Client, proxy: Proxy) -> None:
    body = {
        "model": "gpt-sim",
        "messages": [{"role": "user", "content": "ttl question"}],
        "cache": {"ttl": 10**12},
    }
    r = http.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {proxy.master_key}"}
    )
    assert r.status_code == 200 and r.headers["x-gateway-cache"] == "MISS"


# -- bounded fuzz of every LLM endpoint, with and without a key ------------------------------

responses_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["claude-sim", "gpt-sim", "support-bot"]) | json_values,
        "input": texts | any_messages | json_values,
        "instructions": texts | json_values,
        "text": st.fixed_dictionaries({"format": json_values}) | json_values,
        "tools": json_values,
        "stream": st.booleans() | json_values,
        "max_output_tokens": st.integers(-5, 2**40) | json_values,
        "previous_response_id": texts,
        "store": json_values,
    },
)
messages_bodies = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["claude-sim", "gpt-sim", "support-bot"]) | json_values,
        "max_tokens": st.integers(-5, 2**40) | json_values,
        "messages": valid_messages
        | any_messages
        | st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant"]),
                    "content": st.lists(
                        parts
                        | st.fixed_dictionaries(
                            {
                                "type": st.sampled_from(
                                    ["tool_use", "tool_result", "image", "document"]
                                )
                            }
                        ),
                        max_size=3,
                    ),
                }
            ),
            max_size=3,
        )
        | json_values,
        "system": texts | json_values,
        "stream": st.booleans() | json_values,
        "metadata": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "temperature": st.floats() | json_values,
        "stop_sequences": json_values,
    },
)
ENDPOINTS = {
    "/v1/chat/completions": chat_bodies,
    "/v1/embeddings": embedding_bodies,
    "/v1/responses": responses_bodies,
    "/v1/messages": messages_bodies,
}


@settings(FUZZ, max_examples=160)
@given(data=st.data(), path=st.sampled_from(sorted(ENDPOINTS)), keyed=st.booleans())
def test_fuzz_llm_endpoints_never_a_server_error(
    http: httpx.Client, data: st.DataObject, path: str, keyed: bool
) -> None:
    raw, _, _ = data.draw(encoded(ENDPOINTS[path]))
    headers = {"content-type": "application/json"}
    if keyed:
        headers["authorization"] = f"Bearer {KEY}"
    r = http.post(path, content=raw, headers=headers)
    assert r.status_code < 500, (path, raw[:300], r.status_code, r.text[:300])
    if not keyed:
        assert r.status_code == 401
    if r.status_code >= 400:
        body = r.json()
        if path == "/v1/messages":
            assert body["type"] == "error" and body["error"]["message"]
        else:
            assert body["error"]["message"] and body["error"]["type"]


def test_after_the_sweep_and_fuzz_no_slot_is_held_and_usage_matches(
    http: httpx.Client, proxy: Proxy
) -> None:
    """Runs last in this module: every admitted request was finished exactly once."""
    time.sleep(1)  # the request log is written by a thread
    admitted = 0
    for line in proxy.process.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"ts"') and '"key_alias":"one-model"' in line:
            admitted += bool(json.loads(line)["admitted"])
    master = {"authorization": f"Bearer {proxy.master_key}"}
    usage = http.get("/gateway/usage", headers=master).json()
    assert usage["in_flight"]["key:one-model"] == 0
    assert usage["key"]["one-model"]["requests"] == admitted > 0
