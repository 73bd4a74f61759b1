"""The optional LLM classifier through the real proxy: it calls the configured model
group through the proxy's own router with a prompt built from the intent
descriptions, and an unusable or late answer leaves the embedding decision standing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import Proxy, SimProvider, derive_gateway_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def llm_gateway(
    log_dir: Path, sim: SimProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    def edit(data: dict[str, Any]) -> None:
        data["routers"]["support-bot"]["llm_classifier"] = {
            "enabled": True, "model": "gpt-sim-mini", "below_confidence": 1.0, "timeout_ms": 400,
        }  # fmt: skip

    path = derive_gateway_config(tmp_path_factory.mktemp("llm"), edit)
    proxy = Proxy(log_dir, sim, gateway_config=path, name="llm-proxy").start()
    yield proxy
    proxy.stop()


async def test_llm_is_asked_with_intent_descriptions(
    llm_gateway: Proxy, clean_sim: SimProvider
) -> None:
    raw = await llm_gateway.client().chat.completions.with_raw_response.create(
        model="support-bot", messages=[{"role": "user", "content": "I forgot my password"}]
    )
    # the simulated model's answer is not an intent name: the embedding decision stands
    assert raw.headers["x-gateway-action"] == "RESPOND"
    assert raw.headers["x-gateway-intent"] == "reset_password"
    sent = clean_sim.requests("sim-gpt-mini")
    assert len(sent) == 1
    prompt = json.dumps(sent[0]["body"]["messages"])
    assert "reset_password: reset your password" in prompt
    assert "I forgot my password" in prompt


async def test_llm_latency_budget_is_enforced(llm_gateway: Proxy, clean_sim: SimProvider) -> None:
    clean_sim.set_model("sim-gpt-mini", {"ttft_ms": 3000})
    started = time.monotonic()
    raw = await llm_gateway.client().chat.completions.with_raw_response.create(
        model="support-bot", messages=[{"role": "user", "content": "I was charged twice"}]
    )
    assert raw.headers["x-gateway-action"] == "HANDOFF"
    assert time.monotonic() - started < 2.0  # 400 ms budget, not the model's 3 s
