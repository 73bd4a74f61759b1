"""Provider prompt caching of the simulator as LiteLLM 1.108 sees it, per provider.

Each test sends the same long (> 1024 tokens) system prompt twice through
``litellm.acompletion`` (or ``aresponses``) and checks the second call reports cached
tokens in the usage fields LiteLLM fills for that provider. It prints what LiteLLM reports
(``pytest -s`` shows it) and the ``response_cost`` it computes, both with LiteLLM's own
prices for real model names and with the prices config/litellm.yaml gives the sim models.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from extensions.simprovider.text import MESSAGE_OVERHEAD_TOKENS, estimate_tokens
from tests.integration.simprovider_process import REPO, running_simulator

pytestmark = pytest.mark.integration

KEY = "sim-key"
SIM_CONFIG = f"""
seed: 3
accepted_api_keys: [{KEY}]
defaults: {{ttft_ms: 1, tokens_per_second: 100000}}
"""
NO_RETRIES: dict[str, Any] = {"num_retries": 0, "max_retries": 0}
SYSTEM = "You are a meticulous assistant for the gateway demo. " * 200
SYSTEM_TOKENS = estimate_tokens(SYSTEM)  # 2,650; LiteLLM's own count is also > 1024
# system turn + user turn marker: identical in both calls; prefixes are cached in steps
SHARED = 2 * MESSAGE_OVERHEAD_TOKENS + SYSTEM_TOKENS
AUTOMATIC = 1024 + (SHARED - 1024) // 128 * 128  # 2,560
LITELLM_YAML = REPO / "config" / "litellm.yaml"


@pytest.fixture(scope="module")
def sim_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_simulator(SIM_CONFIG, tmp_path_factory.mktemp("sim-cache")) as url:
        yield url


@pytest.fixture(scope="module")
def litellm() -> ModuleType:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    module = importlib.import_module("litellm")
    setattr(module, "suppress_debug_info", True)  # noqa: B010 - ModuleType has no such attr
    return module


@pytest.fixture
async def sim(sim_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as client:
        (await client.post("/_sim/reset")).raise_for_status()
        yield client


def gateway_prices(path: Path = LITELLM_YAML) -> dict[str, dict[str, Any]]:
    """LiteLLM model -> model_info prices, as config/litellm.yaml gives the sim models."""
    config = yaml.safe_load(path.read_text())
    prices: dict[str, dict[str, Any]] = {}
    for entry in config["model_list"]:
        model = entry["litellm_params"]["model"]
        info = {k: v for k, v in entry.get("model_info", {}).items() if "cost" in k}
        prices[model] = {"litellm_provider": model.split("/")[0], "mode": "chat", **info}
    return prices


@pytest.fixture(scope="module")
def priced_sim_models(litellm: ModuleType) -> Iterator[None]:
    """Register the sim models with config/litellm.yaml's prices (removed afterwards)."""
    prices = gateway_prices()
    litellm.register_model(prices)
    yield
    for key in prices:
        litellm.model_cost.pop(key, None)


def messages(question: str, marker: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    system: dict[str, Any] = {"type": "text", "text": SYSTEM}
    if marker is not None:
        system["cache_control"] = marker
    return [
        {"role": "system", "content": [system] if marker is not None else SYSTEM},
        {"role": "user", "content": question},
    ]


def report(label: str, response: Any) -> dict[str, Any]:
    """Print and return what LiteLLM reports about cached tokens and cost."""
    usage = response.usage
    details = getattr(usage, "prompt_tokens_details", None)
    seen = {
        "prompt_tokens": usage.prompt_tokens,
        "cached_tokens": getattr(details, "cached_tokens", None),
        "cache_read_input_tokens": getattr(usage, "cache_read_input_tokens", None),
        "cache_creation_input_tokens": getattr(usage, "cache_creation_input_tokens", None),
        "completion_tokens": usage.completion_tokens,
        "response_cost": response._hidden_params.get("response_cost"),
    }
    print(f"{label}: {seen}")
    return seen


async def twice(
    litellm: ModuleType, model: str, api_base: str, **kwargs: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    build = kwargs.pop("messages_for", messages)
    seen = []
    for question in ("First question?", "Second question?"):
        response = await litellm.acompletion(
            model=model,
            api_base=api_base,
            api_key=KEY,
            messages=build(question),
            max_tokens=20,
            **NO_RETRIES,
            **kwargs,
        )
        seen.append(report(f"{model} {question}", response))
    return seen[0], seen[1]


# ------------------------------------------------------------------------------- OpenAI


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/sim-gpt-a"])
async def test_openai_automatic_caching_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, priced_sim_models: None, model: str
) -> None:
    first, second = await twice(litellm, model, f"{sim_url}/v1")
    assert first["cached_tokens"] == 0
    assert second["cached_tokens"] == AUTOMATIC  # usage.prompt_tokens_details.cached_tokens
    assert second["prompt_tokens"] == first["prompt_tokens"]  # cached tokens are included
    assert second["cache_read_input_tokens"] is None  # not filled for openai/
    # LiteLLM's price map knows gpt-4o-mini's cached-input price, config/litellm.yaml gives
    # sim-gpt-a its cache_read_input_token_cost: cached input is cheaper for both
    assert second["response_cost"] < first["response_cost"]


async def test_openai_responses_caching_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    costs = []
    for question in ("First question?", "Second question?"):
        response = await litellm.aresponses(
            model="openai/gpt-4o-mini",
            instructions=SYSTEM,
            input=question,
            api_base=f"{sim_url}/v1",
            api_key=KEY,
            **NO_RETRIES,
        )
        usage = response.usage
        cost = response._hidden_params.get("response_cost")
        print(
            f"aresponses openai/gpt-4o-mini {question}: input_tokens={usage.input_tokens} "
            f"cached_tokens={usage.input_tokens_details.cached_tokens} response_cost={cost}"
        )
        costs.append(cost)
    assert usage.input_tokens_details.cached_tokens == AUTOMATIC
    assert usage.input_tokens == SHARED + estimate_tokens("Second question?")
    assert costs[1] < costs[0]


# ---------------------------------------------------------------------------- Anthropic


@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "anthropic/sim-claude"])
async def test_anthropic_caching_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, priced_sim_models: None, model: str
) -> None:
    injection = [{"location": "message", "role": "system"}]
    first, second = await twice(litellm, model, sim_url, cache_control_injection_points=injection)
    assert first["cache_creation_input_tokens"] == SYSTEM_TOKENS
    assert first["cached_tokens"] == first["cache_read_input_tokens"] == 0
    assert second["cache_read_input_tokens"] == second["cached_tokens"] == SYSTEM_TOKENS
    assert second["cache_creation_input_tokens"] == 0
    assert second["prompt_tokens"] == first["prompt_tokens"]  # read + written + uncached
    assert second["response_cost"] < first["response_cost"]


# ------------------------------------------------------------------------------- Gemini


@pytest.mark.parametrize("model", ["gemini/gemini-2.5-flash", "gemini/sim-gemini"])
async def test_gemini_implicit_caching_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient, priced_sim_models: None, model: str
) -> None:
    first, second = await twice(litellm, model, f"{sim_url}/v1beta")
    assert not first["cached_tokens"] and not first["cache_read_input_tokens"]
    assert second["cached_tokens"] == second["cache_read_input_tokens"] == AUTOMATIC
    if model == "gemini/gemini-2.5-flash":
        assert second["prompt_tokens"] == first["prompt_tokens"]  # cached tokens included
        assert second["response_cost"] < first["response_cost"]
    else:  # config/litellm.yaml gives sim-gemini its cache_read_input_token_cost
        assert second["response_cost"] < first["response_cost"]


async def test_gemini_explicit_caching_through_litellm(
    litellm: ModuleType, sim_url: str, sim: httpx.AsyncClient
) -> None:
    """cache_control on a gemini/ message: LiteLLM lists cachedContents (by display name),
    creates one if none matches, then calls generateContent with ``cachedContent``."""
    model = "gemini/gemini-2.5-flash"

    def marked(question: str) -> list[dict[str, Any]]:
        return messages(question, {"type": "ephemeral", "ttl": "2h"})

    first, second = await twice(litellm, model, f"{sim_url}/v1beta", messages_for=marked)
    storage = (await sim.get("/_sim/cached_contents")).json()
    assert storage["active"] == 1
    cache = storage["caches"][0]
    # system turn and the "." user turn LiteLLM adds when only a system message is cached
    assert cache["tokens"] == SYSTEM_TOKENS + 2 * MESSAGE_OVERHEAD_TOKENS + 1
    tokens = cache["tokens"]

    assert first["cache_creation_input_tokens"] == tokens  # from the create call's usage
    assert first["cached_tokens"] == first["cache_read_input_tokens"] == tokens
    assert second["cached_tokens"] == second["cache_read_input_tokens"] == tokens
    assert second["cache_creation_input_tokens"] is None
    own = MESSAGE_OVERHEAD_TOKENS + estimate_tokens("Second question?")
    assert second["prompt_tokens"] == tokens + own
    assert first["prompt_tokens"] == 2 * tokens + own  # LiteLLM adds the created tokens
    assert second["response_cost"] < first["response_cost"]

    sent = (await sim.get("/_sim/requests", params={"limit": 10})).json()["requests"]
    assert [r["endpoint"] for r in sent] == [
        "gemini.cached_contents.list",
        "gemini.cached_contents.create",
        "gemini.generate_content",
        "gemini.cached_contents.list",
        "gemini.generate_content",
    ]
    created = sent[1]["body"]
    assert created["ttl"] == "7200s" and created["model"] == "models/gemini-2.5-flash"
    assert sent[4]["body"]["cachedContent"] == cache["name"]
    assert "system_instruction" not in sent[4]["body"]

    # storage: an hour later the cache has been stored one hour; past its TTL LiteLLM makes
    # a new one (the expired one stops accruing storage)
    await sim.post("/_sim/clock", json={"advance_s": 3600})
    hour = (await sim.get("/_sim/cached_contents")).json()
    assert hour["token_hours"] == pytest.approx(tokens, rel=0.01)
    print(f"gemini cache storage after 1 h: {hour['token_hours']:.1f} token-hours")
    await sim.post("/_sim/clock", json={"advance_s": 3601})
    third = await litellm.acompletion(
        model=model,
        api_base=f"{sim_url}/v1beta",
        api_key=KEY,
        messages=marked("Third question?"),
        **NO_RETRIES,
    )
    assert report(f"{model} after expiry", third)["cache_creation_input_tokens"] == tokens
    later = (await sim.get("/_sim/cached_contents")).json()
    assert [c["state"] for c in later["caches"]] == ["expired", "active"]
    assert later["token_hours"] == pytest.approx(2 * tokens, rel=0.01)
