"""Budget-aware routing and the PII guardrail through the real proxy.

A key whose budget is nearly spent keeps getting answers: first from a cheaper model group,
then only what the gateway can answer itself, each degraded answer saying so; never a 429
until the budget is gone. The PII guardrail redacts before the provider sees the request,
blocks with a 400 naming the kinds (never the data), on every chat protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.support.stack import Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration
FRUGAL = "sk-test-frugal-key-4c1e"
PII = "Please email jane.doe@example.com and charge card 4111 1111 1111 1111 today."


@pytest.fixture(scope="module")
def proxy(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["access"] = {
            "keys": [
                {
                    "alias": "frugal",
                    "owner": "t",
                    "env": "TEST_FRUGAL_KEY",
                    "daily_budget_usd": 0.004,  # claude-sim answers about $0.0008, gemini $0.0001
                    "degrade": [
                        {"at": 0.3, "model": "gemini-sim"},
                        {"at": 0.6, "cache_only": True},
                    ],
                }
            ]
        }
        data["guardrails"] = {
            "routes": {"gpt-sim-mini": {"action": "redact"}, "gemini-sim": {"action": "block"}}
        }

    config = derive_gateway_config(tmp_path_factory.mktemp("ladder"), edit)
    started = Proxy(
        log_dir, sim, gateway_config=config, extra_env={"TEST_FRUGAL_KEY": FRUGAL}, name="ladder"
    ).start()
    yield started
    started.stop()


async def test_a_nearly_spent_budget_degrades_instead_of_refusing(
    proxy: Proxy, clean_sim: SimProvider
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=FRUGAL, max_retries=0)
    seen: list[tuple[str, str | None]] = []
    for i in range(60):
        raw = await client.chat.completions.with_raw_response.create(
            model="claude-sim",
            max_tokens=40,
            messages=[{"role": "user", "content": f"Question number {i} about my order"}],
        )
        seen.append(
            (
                raw.headers.get("x-gateway-model-group", "none"),
                raw.headers.get("x-gateway-degraded"),
            )
        )
        if raw.headers.get("x-gateway-degraded", "").startswith("cache_only"):
            break
    groups = [g for g, _ in seen]
    assert groups[0] == "claude-sim" and seen[0][1] is None
    assert "gemini-sim" in groups  # the cheaper group took over from 30% spent
    degraded = [d for _, d in seen if d]
    assert degraded[0].startswith("claude-sim -> gemini-sim (budget")
    assert degraded[-1].startswith("cache_only (budget")  # and from 60%: no model calls
    calls = clean_sim.stats()["total"]
    for _ in range(3):  # keeps answering, with nothing spent
        raw = await client.chat.completions.with_raw_response.create(
            model="claude-sim", messages=[{"role": "user", "content": "Yet another question"}]
        )
        assert raw.headers["x-gateway-degraded"].startswith("cache_only")
        assert "nearly used up its budget" in (raw.parse().choices[0].message.content or "")
    assert clean_sim.stats()["total"] == calls


async def test_pii_is_redacted_before_the_provider_and_blocked_on_every_protocol(
    proxy: Proxy, clean_sim: SimProvider
) -> None:
    master = proxy.master_key
    client = openai.AsyncOpenAI(base_url=f"{proxy.base_url}/v1", api_key=master, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-sim-mini", messages=[{"role": "user", "content": PII}]
    )
    assert raw.headers["x-gateway-pii"] == "redacted:card,email"
    sent = str(clean_sim.requests("sim-gpt-mini", limit=1)[-1]["body"]["messages"])
    assert "jane.doe" not in sent and "4111" not in sent and "[EMAIL]" in sent.upper()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="gemini-sim", input=PII)
    assert "card, email" in caught.value.message and "4111" not in caught.value.message
    claude = anthropic.AsyncAnthropic(base_url=proxy.base_url, api_key=master, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        await claude.messages.create(
            model="gemini-sim", max_tokens=20, messages=[{"role": "user", "content": PII}]
        )
    await asyncio.sleep(0)
    assert clean_sim.count("sim-gemini") == 0
